// The read-only stream case: a reduction over a buffer much larger than the last-level cache, the
// bandwidth ceiling every other case is compared with (measured first, in the same run; not
// rotated, not part of the model sweep).
#include <memory>

#include "bench/micro/kernel_case.hpp"

namespace helix::micro {

namespace {

struct StreamCase final : KernelCase {
  int64_t bytes_read = 0;
  const char* kernel() const override { return "stream"; }
  std::vector<Operand> operands(const MicroBackend&) const override {
    return {{bytes_read, Elem::storage}, {4, Elem::fp32}};
  }
  double bytes(int64_t) const override { return double(bytes_read); }
  double flops() const override { return double(bytes_read) / 4.0; }  // one add per fp32 word
  void launch(MicroBackend& b, const std::vector<void*>& p) const override {
    b.stream_read(p[0], bytes_read, static_cast<float*>(p[1]));
  }
  bool rotates() const override { return false; }
};

}  // namespace

CasePtr stream_case(int64_t bytes) {
  auto c = std::make_shared<StreamCase>();
  c->bytes_read = bytes;
  c->name = "stream/read_only/" + std::to_string(bytes) + "B";
  c->shape = "read-only reduction over " + std::to_string(bytes) + " bytes (the ceiling)";
  return c;
}

}  // namespace helix::micro
