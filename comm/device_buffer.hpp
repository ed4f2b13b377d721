// Device memory owned by one object: cudaMalloc on construction, cudaFree on destruction, a typed
// pointer in between. The one device buffer of the CUDA code (executor activations and weights,
// micro-benchmark operands, KV-transfer caches). A failed allocation is fatal: the message names
// what the memory was for, its size, what the GPU has free and what to lower.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

namespace helix {

namespace detail {
// cudaMalloc of `bytes` (at least 256), fatal on failure with the message above.
void* device_alloc(int64_t bytes, const char* what, const char* hint);
}  // namespace detail

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  // `count` elements (0: no memory, get() is null). `what` names the memory in the failure
  // message, `hint` says what to lower.
  explicit DeviceBuffer(int64_t count, const char* what = "a device buffer",
                        const char* hint = "fewer ranks per GPU or a smaller run")
      : p_(count > 0 ? static_cast<T*>(detail::device_alloc(count * int64_t(sizeof(T)), what, hint))
                     : nullptr),
        n_(count > 0 ? count : 0) {}
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) {
    o.p_ = nullptr;
    o.n_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = o.p_;
      n_ = o.n_;
      o.p_ = nullptr;
      o.n_ = 0;
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { release(); }

  T* get() const { return p_; }
  int64_t size() const { return n_; }
  int64_t bytes() const { return n_ * int64_t(sizeof(T)); }

 private:
  void release() {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  int64_t n_ = 0;
};

}  // namespace helix
