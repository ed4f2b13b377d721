// Shared by the GPU tests: a fixture that skips without a GPU, random data, bf16 rounding,
// uploads and downloads through the suite's DeviceBuffer, error measures.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "comm/cuda_check.hpp"
#include "comm/device_buffer.hpp"

namespace helix {

using bf16 = __nv_bfloat16;

namespace {

class Gpu : public ::testing::Test {
 protected:
  void SetUp() override {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) GTEST_SKIP() << "no GPU visible";
    HELIX_CUDA_CHECK(cudaSetDevice(0));
  }
};

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

}  // namespace
}  // namespace helix
