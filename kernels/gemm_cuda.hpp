// Dense GEMMs of decode shapes through cuBLASLt: bf16 inputs, fp32 accumulation, bf16 or fp32
// output (fp32 may accumulate into the existing output). Row-major like cpu::gemm.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "kernels/gemm.hpp"

namespace helix::cuda {

class Gemm {
 public:
  // workspace_bytes: cuBLASLt workspace on the current device.
  explicit Gemm(size_t workspace_bytes = size_t(32) << 20);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  void run(const GemmShape& s, const __nv_bfloat16* x, const __nv_bfloat16* w, void* y,
           cudaStream_t stream);
  size_t workspace_bytes() const { return ws_bytes_; }

 private:
  struct Plan;
  Plan& plan(const GemmShape& s);
  void* handle_ = nullptr;
  void* ws_ = nullptr;
  size_t ws_bytes_;
  std::map<std::string, std::unique_ptr<Plan>> plans_;
};

// The dense bf16 GEMM rate of this GPU, the compute ceiling of the decode roofline: y = x w with
// n x n operands through cuBLASLt (bf16 inputs holding random values, fp32 accumulation, bf16
// output), `iters` timed runs after two warm-ups, each timed with events that start after the
// host has enqueued it. TFLOP/s (10^12 FLOP per second, 2 n^3 FLOPs per run).
struct GemmRate {
  int64_t n = 0;
  double tflops_median = 0, tflops_max = 0;
};
GemmRate gemm_rate(int64_t n, int iters, cudaStream_t stream);

}  // namespace helix::cuda
