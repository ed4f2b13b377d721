// GPU memory of the CUDA micro backends: a Buffer holding the suite's one device buffer
// (comm/device_buffer.hpp; a failed allocation is fatal, naming the backend, the size, what the
// GPU has free and what to lower), and the MemorySpace that allocates them and copies them to and
// from the host on the backend's stream.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include <memory>

#include "bench/micro/micro_backend.hpp"
#include "comm/cuda_check.hpp"
#include "comm/device_buffer.hpp"
#include "comm/error.hpp"

namespace helix::micro {

class GpuBuffer final : public Buffer {
 public:
  // `who` names the backend in the message ("helix-micro (cuda)"); `hint` says what to lower.
  GpuBuffer(int64_t bytes, const char* who, const char* hint) : mem_(bytes, who, hint) {}
  void* data() override { return mem_.get(); }
  const void* data() const override { return mem_.get(); }
  int64_t bytes() const override { return mem_.size(); }

 private:
  DeviceBuffer<unsigned char> mem_;
};

class DeviceMemory : public virtual MemorySpace {
 public:
  DeviceMemory(const char* who, const char* hint) : who_(who), hint_(hint) {}
  std::unique_ptr<Buffer> allocate(int64_t bytes) override {
    return std::make_unique<GpuBuffer>(bytes, who_, hint_);
  }
  void upload(Buffer& dst, const void* host, int64_t bytes) override {
    HELIX_CHECK(bytes <= dst.bytes(), "upload larger than the buffer");
    HELIX_CUDA_CHECK(
        cudaMemcpyAsync(dst.data(), host, size_t(bytes), cudaMemcpyHostToDevice, copy_stream_));
    HELIX_CUDA_CHECK(cudaStreamSynchronize(copy_stream_));
  }
  void download(const Buffer& src, void* host, int64_t bytes) override {
    HELIX_CHECK(bytes <= src.bytes(), "download larger than the buffer");
    HELIX_CUDA_CHECK(
        cudaMemcpyAsync(host, src.data(), size_t(bytes), cudaMemcpyDeviceToHost, copy_stream_));
    HELIX_CUDA_CHECK(cudaStreamSynchronize(copy_stream_));
  }

 protected:
  cudaStream_t copy_stream_ = nullptr;  // the backend's stream, set once it exists

 private:
  const char* who_;
  const char* hint_;
};

}  // namespace helix::micro
