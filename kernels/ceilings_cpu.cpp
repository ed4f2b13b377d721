#include "kernels/ceilings.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#include "kernels/gemm.hpp"
#include "kernels/rng.hpp"

namespace helix::cpu {

namespace {

std::vector<float> random_floats(int64_t n, uint64_t key) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = uniform_pm1(key, uint64_t(i));
  return v;
}

// Median of `iters` timings (seconds) of f after one untimed call.
template <class F>
double median_seconds(int iters, F&& f) {
  f();
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

float read_sum(const float* p, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += p[i + j];
  for (; i < n; ++i) acc[0] += p[i];
  float s = 0;
  for (float a : acc) s += a;
  return s;
}

double stream_read_gbps(int64_t bytes, int iters) {
  const int64_t n = std::max<int64_t>(16, bytes / 4);
  const std::vector<float> buf = random_floats(n, 0x73747265616dULL);
  volatile float sink = 0;  // keeps the passes from being optimized away
  const double s =
      median_seconds(std::max(1, iters), [&] { sink = sink + read_sum(buf.data(), n); });
  return double(n) * 4.0 / s / 1e9;
}

double gemm_rate_tflops(int64_t n, int iters) {
  const std::vector<float> x = random_floats(n * n, 0x78ULL), w = random_floats(n * n, 0x77ULL);
  std::vector<float> y(size_t(n * n));
  const double s = median_seconds(
      std::max(1, iters), [&] { gemm(x.data(), n, w.data(), n, y.data(), n, n, n, n, false); });
  return 2.0 * double(n) * double(n) * double(n) / s / 1e12;
}

}  // namespace helix::cpu
