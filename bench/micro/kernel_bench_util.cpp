// helix-kernel-bench: timing by CUDA events, the stream and GEMM ceilings, row errors.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/micro/kernel_bench.hpp"
#include "comm/cuda_check.hpp"
#include "comm/error.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/gemm_cuda.hpp"

namespace helix::kbench {

Buf alloc(int64_t bytes) {
  return Buf(bytes, "helix-kernel-bench", "use a GPU with more free memory or --quick");
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Device time of f (events around it; the stream is held first so that host enqueue time is not
// measured), median of `iters` after `warmup` untimed calls.
double time_us(const std::function<void(int)>& f, int warmup, int iters, cudaStream_t s) {
  for (int i = 0; i < warmup; ++i) f(i);
  HELIX_CUDA_CHECK(cudaStreamSynchronize(s));
  cudaEvent_t a, b;
  HELIX_CUDA_CHECK(cudaEventCreate(&a));
  HELIX_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    cuda::hold_stream(50000, s);
    HELIX_CUDA_CHECK(cudaEventRecord(a, s));
    f(warmup + i);
    HELIX_CUDA_CHECK(cudaEventRecord(b, s));
    HELIX_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    HELIX_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(double(ms) * 1e3);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return median(t);
}

Ceilings measure_ceilings(int iters, cudaStream_t s) {
  Ceilings c;
  c.stream_gbps = cuda::stream_read(int64_t(4) << 30, iters, s).gbps_median;
  c.gemm_tflops = cuda::gemm_rate(8192, iters, s).tflops_median;
  return c;
}

// Largest per-row relative difference ||a - b|| / ||b|| over rows of `width`.
double max_row_rel(const std::vector<float>& a, const std::vector<float>& b, int64_t width) {
  double worst = 0;
  for (size_t r = 0; r * size_t(width) < b.size(); ++r) {
    double num = 0, den = 0;
    for (int64_t c = 0; c < width; ++c) {
      const double x = a[r * size_t(width) + size_t(c)], y = b[r * size_t(width) + size_t(c)];
      num += (x - y) * (x - y);
      den += y * y;
    }
    const double e = std::isfinite(num) ? std::sqrt(num / std::max(den, 1e-30)) : INFINITY;
    worst = std::max(worst, e);
  }
  return worst;
}

}  // namespace helix::kbench
