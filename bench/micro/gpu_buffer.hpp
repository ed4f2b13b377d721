// A DeviceBuffer in GPU memory (cudaMalloc), for the CUDA micro backends. A failed allocation is
// fatal, with the size asked for, what the GPU has free and what to lower.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>

#include "bench/micro/micro_backend.hpp"
#include "comm/error.hpp"

namespace helix::micro {

class GpuBuffer final : public DeviceBuffer {
 public:
  // `who` names the backend in the message ("helix-micro (cuda)"); `hint` says what to lower.
  GpuBuffer(int64_t bytes, const char* who, const char* hint) : bytes_(bytes) {
    const cudaError_t rc = cudaMalloc(&ptr_, size_t(std::max<int64_t>(bytes, 256)));
    if (rc == cudaSuccess) return;
    (void)cudaGetLastError();  // not sticky; cleared so the message below names the cause
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fatal(std::string(who) + ": cannot allocate " + gib(double(bytes)) + " on the GPU (" +
          cudaGetErrorString(rc) + "; " + gib(double(free_b)) + " free of " + gib(double(total_b)) +
          "); " + hint);
  }
  ~GpuBuffer() override { cudaFree(ptr_); }
  GpuBuffer(const GpuBuffer&) = delete;
  GpuBuffer& operator=(const GpuBuffer&) = delete;
  void* data() override { return ptr_; }
  const void* data() const override { return ptr_; }
  int64_t bytes() const override { return bytes_; }

 private:
  static std::string gib(double bytes) {
    char b[32];
    std::snprintf(b, sizeof b, "%.2f GiB", bytes / double(int64_t(1) << 30));
    return b;
  }
  void* ptr_ = nullptr;
  int64_t bytes_ = 0;
};

}  // namespace helix::micro
