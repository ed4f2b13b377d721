// Programmatic dependent launch (sm_90): a kernel launched with launch_after_producer() may start
// while the previous kernel of its stream is still running; it must call wait_for_producer()
// before it reads anything that kernel wrote. A producer calls allow_dependents() to let the
// dependent kernel's blocks be scheduled early (they wait in wait_for_producer() until the
// producer has finished and its writes are visible). On older GPUs both are no-ops and the launch
// is ordered as usual.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "comm/cuda_check.hpp"

namespace helix::cuda {

__device__ __forceinline__ void wait_for_producer() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// Launches kernel<<<blocks, threads, smem, stream>>>(args...) as a programmatic dependent of the
// previous kernel in `stream`.
template <typename... Params, typename... Args>
void launch_after_producer(void (*kernel)(Params...), dim3 blocks, dim3 threads, size_t smem,
                           cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = blocks;
  cfg.blockDim = threads;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  HELIX_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace helix::cuda
