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

}  // namespace helix::cuda
