// Shared by the GPU tests: a fixture that skips without a GPU, random data, bf16 rounding,
// uploads and downloads through the suite's DeviceBuffer, error measures (global and row by row).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "comm/cuda_check.hpp"
#include "comm/device_buffer.hpp"

namespace helix {

using bf16 = __nv_bfloat16;

// One fixture type for every GPU test file (gtest requires the tests of one suite to share it,
// so it lives outside the anonymous namespace).
class Gpu : public ::testing::Test {
 protected:
  void SetUp() override {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) GTEST_SKIP() << "no GPU visible";
    HELIX_CUDA_CHECK(cudaSetDevice(0));
  }
};

namespace {

inline std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

// Rounds to bf16 in place (so the CPU reference sees the values the GPU stores).
inline void round_bf16(std::vector<float>& v) {
  for (float& x : v) x = __bfloat162float(__float2bfloat16_rn(x));
}

template <class T>
DeviceBuffer<T> upload(const std::vector<T>& h) {
  DeviceBuffer<T> d(int64_t(h.size()));
  HELIX_CUDA_CHECK(cudaMemcpy(d.get(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

inline DeviceBuffer<bf16> upload_bf16(const std::vector<float>& h) {
  std::vector<bf16> b(h.size());
  for (size_t i = 0; i < h.size(); ++i) b[i] = __float2bfloat16_rn(h[i]);
  return upload(b);
}

template <class T>
std::vector<T> download(const DeviceBuffer<T>& d) {
  HELIX_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<T> h(size_t(d.size()));
  HELIX_CUDA_CHECK(cudaMemcpy(h.data(), d.get(), h.size() * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

inline std::vector<float> to_float(const std::vector<bf16>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = __bfloat162float(v[i]);
  return f;
}

// ||a - b|| / ||b|| over finite entries; NaN anywhere in `a` (a poisoned output left unwritten)
// fails the test.
inline double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i])) {
      ADD_FAILURE() << "NaN (unwritten output) at " << i;
      return INFINITY;
    }
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

inline void expect_lse_near(const std::vector<float>& got, const std::vector<float>& want,
                            double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isinf(want[i])) {
      EXPECT_TRUE(std::isinf(got[i]) && got[i] < 0) << "row " << i;
    } else {
      EXPECT_NEAR(got[i], want[i], tol) << "row " << i;
    }
  }
}

// Row-wise comparison with diagnostics: every row's relative error ||got - want|| / ||want|| must
// stay below `tol` (a wrong head cannot hide in a global norm). On failure: the number of bad
// rows, the worst ones by name, and the first element of each that differs by more than
// tol * max|want| of its row.
inline void expect_rows_near(const std::vector<float>& got, const std::vector<float>& want,
                             int64_t width, double tol,
                             const std::function<std::string(int64_t)>& row_name) {
  ASSERT_EQ(got.size(), want.size());
  const int64_t rows = int64_t(want.size()) / width;
  std::vector<std::pair<double, int64_t>> bad;
  for (int64_t r = 0; r < rows; ++r) {
    double num = 0, den = 0;
    bool nan = false;
    for (int64_t c = 0; c < width; ++c) {
      const double g = got[size_t(r * width + c)], w = want[size_t(r * width + c)];
      nan = nan || std::isnan(g);
      num += (g - w) * (g - w);
      den += w * w;
    }
    const double err = nan ? INFINITY : std::sqrt(num / std::max(den, 1e-30));
    if (!(err < tol)) bad.emplace_back(err, r);
  }
  if (bad.empty()) return;
  std::sort(bad.begin(), bad.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string msg = std::to_string(bad.size()) + " of " + std::to_string(rows) +
                    " rows with relative error >= " + std::to_string(tol) + "; worst:";
  for (size_t k = 0; k < std::min<size_t>(bad.size(), 6); ++k) {
    const int64_t r = bad[k].second;
    double scale = 0;
    for (int64_t c = 0; c < width; ++c)
      scale = std::max(scale, std::fabs(double(want[size_t(r * width + c)])));
    int64_t first = -1;
    for (int64_t c = 0; c < width && first < 0; ++c) {
      const double g = got[size_t(r * width + c)], w = want[size_t(r * width + c)];
      if (!(std::fabs(g - w) <= tol * scale)) first = c;
    }
    msg += "\n  " + row_name(r) + ": rel err " + std::to_string(bad[k].first);
    if (first >= 0)
      msg += ", first bad column " + std::to_string(first) + " got " +
             std::to_string(got[size_t(r * width + first)]) + " want " +
             std::to_string(want[size_t(r * width + first)]);
  }
  ADD_FAILURE() << msg;
}

}  // namespace
}  // namespace helix
