// A micro-benchmark Buffer in GPU memory: the suite's one device buffer (comm/device_buffer.hpp)
// behind the backends' Buffer interface. A failed allocation is fatal, naming the backend, the
// size, what the GPU has free and what to lower.
#pragma once

#include <cstdint>

#include "bench/micro/micro_backend.hpp"
#include "comm/device_buffer.hpp"

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

}  // namespace helix::micro
