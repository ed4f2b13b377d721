#include <algorithm>

#include "comm/cuda_check.hpp"
#include "kernels/copy_segments_cuda.hpp"
#include "kernels/cuda_kernels.hpp"

namespace helix::cuda {

namespace {

__global__ void copy_segments_kernel(const unsigned char* __restrict__ src,
                                     unsigned char* __restrict__ dst,
                                     const cpu::Segment* __restrict__ segments, int64_t count) {
  for (int64_t i = blockIdx.x; i < count; i += gridDim.x) {
    const cpu::Segment seg = segments[i];
    const unsigned char* s = src + seg.src_offset;
    unsigned char* d = dst + seg.dst_offset;
    const bool vec =
        ((reinterpret_cast<uintptr_t>(s) | reinterpret_cast<uintptr_t>(d) | uintptr_t(seg.bytes)) &
         15) == 0;
    if (vec) {
      const uint4* s4 = reinterpret_cast<const uint4*>(s);
      uint4* d4 = reinterpret_cast<uint4*>(d);
      for (int64_t j = threadIdx.x; j < seg.bytes / 16; j += blockDim.x) d4[j] = s4[j];
    } else {
      for (int64_t j = threadIdx.x; j < seg.bytes; j += blockDim.x) d[j] = s[j];
    }
  }
}

}  // namespace

void copy_segments(const void* src, void* dst, const cpu::Segment* segments, int64_t count,
                   cudaStream_t stream) {
  if (count <= 0) return;
  const int64_t blocks = std::min<int64_t>(count, int64_t(sm_count()) * 16);
  copy_segments_kernel<<<unsigned(blocks), 256, 0, stream>>>(
      static_cast<const unsigned char*>(src), static_cast<unsigned char*>(dst), segments, count);
  HELIX_LAUNCH_CHECK();
}

}  // namespace helix::cuda
