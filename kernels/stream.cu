// Read-only stream benchmark: the memory-read ceiling every bandwidth-bound kernel is compared
// with. 16-byte loads over a buffer much larger than L2, grid-stride, one word written per block
// (so the loads cannot be dropped).
#include <algorithm>
#include <vector>

#include "comm/cuda_check.hpp"
#include "comm/cuda_timer.hpp"
#include "kernels/cuda_kernels.hpp"

namespace helix::cuda {

namespace {

// The sink has `sink_words` words; block b writes word b % sink_words, and only when its XOR of
// everything it read equals a constant (practically never): the loads stay, the stores do not
// cost bandwidth.
__global__ void stream_read_kernel(const uint4* __restrict__ p, int64_t n, uint32_t* sink,
                                   uint32_t sink_words) {
  uint32_t acc = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const uint4 v = __ldcs(p + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  for (int o = 16; o > 0; o /= 2) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
  if (threadIdx.x % 32 == 0 && acc == 0x9e3779b9u) sink[blockIdx.x % sink_words] = acc;
}

__global__ void stream_fill_kernel(uint4* p, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    p[i] = make_uint4(uint32_t(i), uint32_t(i * 3), uint32_t(i * 7), uint32_t(i * 11));
}

// One thread waiting on the global nanosecond timer.
__global__ void hold_stream_kernel(int64_t ns) {
  uint64_t t0 = 0, t = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    __nanosleep(500);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (int64_t(t - t0) < ns);
}

unsigned stream_blocks() {
  return unsigned(sm_count() * 8);
}

}  // namespace

void hold_stream(int64_t ns, cudaStream_t stream) {
  hold_stream_kernel<<<1, 1, 0, stream>>>(ns);
  HELIX_LAUNCH_CHECK();
}

void stream_read_pass(const void* buf, int64_t bytes, uint32_t* sink, cudaStream_t stream) {
  const int64_t n = bytes / 16;
  if (n == 0) return;
  stream_read_kernel<<<stream_blocks(), 512, 0, stream>>>(static_cast<const uint4*>(buf), n, sink,
                                                          1u);
  HELIX_LAUNCH_CHECK();
}

StreamResult stream_read(int64_t bytes, int iters, cudaStream_t stream) {
  StreamResult r;
  r.bytes = bytes / 16 * 16;
  const int64_t n = r.bytes / 16;
  void* buf = nullptr;
  uint32_t* sink = nullptr;
  HELIX_CUDA_CHECK(cudaMalloc(&buf, size_t(r.bytes)));
  const unsigned blocks = stream_blocks();
  HELIX_CUDA_CHECK(cudaMalloc(&sink, blocks * sizeof(uint32_t)));
  stream_fill_kernel<<<blocks, 256, 0, stream>>>(static_cast<uint4*>(buf), n);
  HELIX_LAUNCH_CHECK();
  CudaTimer timer;
  std::vector<double> gbps;
  for (int i = 0; i < iters + 2; ++i) {
    timer.start(stream);
    stream_read_kernel<<<blocks, 512, 0, stream>>>(static_cast<const uint4*>(buf), n, sink, blocks);
    HELIX_LAUNCH_CHECK();
    timer.stop(stream);
    const double us = timer.elapsed_us();
    if (i >= 2) gbps.push_back(double(r.bytes) / (us * 1e3));  // first two: warm-up
  }
  std::sort(gbps.begin(), gbps.end());
  r.gbps_median = gbps[gbps.size() / 2];
  r.gbps_max = gbps.back();
  HELIX_CUDA_CHECK(cudaFree(sink));
  HELIX_CUDA_CHECK(cudaFree(buf));
  return r;
}

}  // namespace helix::cuda
