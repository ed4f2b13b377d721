// Timeline kernels of kernels/delay.hpp. No CPU reference (they compute nothing): the GPU test
// checks that a hold lasts its time to within the timer's resolution, and the emulated
// communicator measures the shortest stamp-and-hold pair at start-up (its floor, in the trace).
#include "comm/cuda_check.hpp"
#include "kernels/delay.hpp"

namespace helix::cuda {

namespace {

__device__ uint64_t global_ns() {
  uint64_t t = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void stamp_time_kernel(uint64_t* slot) {
  *slot = global_ns();
}

__global__ void hold_until_kernel(const uint64_t* slot, int64_t ns) {
  const uint64_t until = *slot + uint64_t(ns > 0 ? ns : 0);
  while (global_ns() < until) __nanosleep(100);
}

}  // namespace

void stamp_time(uint64_t* slot, cudaStream_t stream) {
  stamp_time_kernel<<<1, 1, 0, stream>>>(slot);
  HELIX_LAUNCH_CHECK();
}

void hold_until(const uint64_t* slot, int64_t ns, cudaStream_t stream) {
  hold_until_kernel<<<1, 1, 0, stream>>>(slot, ns);
  HELIX_LAUNCH_CHECK();
}

}  // namespace helix::cuda
