// The ceilings of the CPU backend's roofline, measured on one thread (the CPU executor runs one
// thread per rank): the read-only stream bandwidth and the rate of the fp32 reference GEMM
// (cpu::gemm). The CUDA ceilings are cuda::stream_read and cuda::gemm_rate.
#pragma once

#include <cstdint>

namespace helix::cpu {

// The sum of n floats with 16 independent partial sums (no single dependency chain; the compiler
// keeps them in vector registers): one read-only pass over the data.
float read_sum(const float* p, int64_t n);

// Read-only stream bandwidth of this thread: `iters` timed passes of read_sum over `bytes` of
// random floats after one untimed pass; decimal GB/s, the median.
double stream_read_gbps(int64_t bytes, int iters);

// Rate of cpu::gemm on this thread with n x n operands of random values, `iters` timed runs after
// one untimed run; TFLOP/s (10^12 FLOP per second, 2 n^3 FLOPs per run), the median.
double gemm_rate_tflops(int64_t n, int iters);

}  // namespace helix::cpu
