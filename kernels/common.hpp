// Small helpers shared by host and device code.
#pragma once

#if defined(__CUDACC__)
#define HELIX_HD __host__ __device__ __forceinline__
#else
#define HELIX_HD inline
#endif
