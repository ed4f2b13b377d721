// Timeline kernel of kernels/delay.hpp. The GPU test checks that a timed launch lasts its time to
// within the timer's resolution and that every segment arrives; the emulated communicator
// measures the shortest launch at start-up (its floor, in the trace).
#include <algorithm>

#include "comm/cuda_check.hpp"
#include "kernels/delay.hpp"

namespace helix::cuda {

namespace {

struct Segments {
  CopySegment s[kTimedCopySegments];
  int n;
};

__device__ uint64_t global_ns() {
  uint64_t t = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Block 0's first thread reads the timer when the launch begins and, after its share of the
// copies, waits until that time plus `ns`; every thread copies a grid-strided share of each
// segment.
__global__ void timed_copies_kernel(Segments segs, int64_t ns) {
  const bool timer = blockIdx.x == 0 && threadIdx.x == 0;
  const uint64_t t0 = timer ? global_ns() : 0;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int k = 0; k < segs.n; ++k) {
    const CopySegment c = segs.s[k];
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < c.count; i += stride)
      c.dst[i] = c.src[i];
  }
  if (timer && ns > 0) {
    const uint64_t until = t0 + uint64_t(ns);
    while (global_ns() < until) __nanosleep(100);
  }
}

void launch(const CopySegment* segments, int n, int64_t ns, cudaStream_t stream) {
  Segments segs{};
  segs.n = n;
  int64_t most = 0;
  for (int i = 0; i < n; ++i) {
    segs.s[i] = segments[i];
    most = std::max(most, segments[i].count);
  }
  constexpr int kThreads = 256;
  const int64_t blocks = std::clamp<int64_t>((most + kThreads * 8 - 1) / (kThreads * 8), 1, 1024);
  timed_copies_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(segs, ns);
  HELIX_LAUNCH_CHECK();
}

}  // namespace

void timed_copies(const CopySegment* segments, int n, int64_t ns, cudaStream_t stream) {
  const int first = std::min(n, kTimedCopySegments);
  launch(segments, first, ns, stream);
  for (int at = first; at < n; at += kTimedCopySegments)
    launch(segments + at, std::min(kTimedCopySegments, n - at), 0, stream);
}

}  // namespace helix::cuda
