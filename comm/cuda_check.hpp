// Checking of CUDA runtime, cuBLASLt and kernel-launch results: a failure names the call, the file,
// the line and the rank, and aborts the job (every rank, through MPI_Abort).
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "comm/error.hpp"

#define HELIX_CUDA_CHECK(call)                                              \
  do {                                                                      \
    const cudaError_t helix_cuda_rc_ = (call);                              \
    if (helix_cuda_rc_ != cudaSuccess)                                      \
      ::helix::fatal(::helix::call_site(#call, __FILE__, __LINE__) + ": " + \
                     cudaGetErrorName(helix_cuda_rc_) + " (" +              \
                     cudaGetErrorString(helix_cuda_rc_) + ")");             \
  } while (0)

// After every kernel launch: catches bad launch configurations at once (asynchronous faults
// surface at the next synchronizing call, which is checked as well).
#define HELIX_LAUNCH_CHECK() HELIX_CUDA_CHECK(cudaGetLastError())
