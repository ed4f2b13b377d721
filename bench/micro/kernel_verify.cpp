#include "bench/micro/kernel_verify.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

namespace helix::micro {

namespace {

// Storage elements (fp32, or bf16 as the upper half of an fp32) widened to fp32.
std::vector<float> widen(const std::vector<unsigned char>& raw, int64_t storage_bytes) {
  const size_t n = raw.size() / size_t(storage_bytes);
  std::vector<float> v(n);
  if (storage_bytes == 4) {
    std::memcpy(v.data(), raw.data(), n * 4);
  } else {
    for (size_t i = 0; i < n; ++i) {
      uint16_t h = 0;
      std::memcpy(&h, raw.data() + 2 * i, 2);
      const uint32_t bits = uint32_t(h) << 16;
      std::memcpy(&v[i], &bits, 4);
    }
  }
  return v;
}

std::vector<float> as_f32(const void* p, int64_t bytes) {
  std::vector<float> v(size_t(bytes / 4));
  std::memcpy(v.data(), p, v.size() * 4);
  return v;
}

// max |a - b| / max |b| (NaN anywhere: infinity).
double max_rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double scale = 0, err = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    scale = std::max(scale, double(std::fabs(b[i])));
    err = std::max(err, double(std::fabs(a[i] - b[i])));
  }
  return scale > 0 ? err / scale : err;
}

// max |a - b| (equal infinities agree: the LSE of an empty slice).
double max_abs_err(const std::vector<float>& a, const std::vector<float>& b) {
  double err = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (std::isinf(a[i]) && std::isinf(b[i]) && (a[i] > 0) == (b[i] > 0)) continue;
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    err = std::max(err, double(std::fabs(a[i] - b[i])));
  }
  return err;
}

}  // namespace

bool verifiable(const KernelCase& c) {
  return c.small() != nullptr;
}

VerifyResult verify_case(MicroBackend& b, const KernelCase& c0, uint64_t seed) {
  const std::unique_ptr<KernelCase> c = c0.small();
  if (!c) return {};
  const int64_t es = b.storage_bytes();
  // The backend under test, on fresh random operands.
  const std::vector<Operand> ops = c->operands(b);
  std::vector<std::unique_ptr<Buffer>> bufs;
  std::vector<void*> ptrs;
  for (size_t i = 0; i < ops.size(); ++i) {
    bufs.push_back(b.allocate(ops[i].bytes));
    b.fill_random(*bufs.back(), ops[i].elem, seed * 131 + i);
    ptrs.push_back(bufs.back()->data());
  }
  b.synchronize();
  std::vector<std::vector<unsigned char>> raw(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    raw[i].resize(size_t(ops[i].bytes));
    b.download(*bufs[i], raw[i].data(), ops[i].bytes);
  }
  c->launch(b, ptrs);
  b.synchronize();
  // The CPU backend on the same inputs, widened to fp32.
  static const std::unique_ptr<MicroBackend> cpu = make_cpu_micro_backend();
  const std::vector<Operand> ref_ops = c->operands(*cpu);
  std::vector<std::unique_ptr<Buffer>> ref;
  std::vector<void*> ref_ptrs;
  for (size_t i = 0; i < ops.size(); ++i) {
    ref.push_back(cpu->allocate(ref_ops[i].bytes));
    const std::vector<float> in =
        ops[i].elem == Elem::storage ? widen(raw[i], es) : as_f32(raw[i].data(), ops[i].bytes);
    std::memcpy(ref.back()->data(), in.data(), std::min(in.size() * 4, size_t(ref_ops[i].bytes)));
    ref_ptrs.push_back(ref.back()->data());
  }
  c->launch(*cpu, ref_ptrs);
  const CheckSpec spec = c->check_spec(es);
  VerifyResult r;
  r.out_tol = spec.out_tol;
  r.lse_tol = spec.lse_tol;
  for (size_t k = 0; k < spec.outputs.size(); ++k) {
    const size_t i = spec.outputs[k];
    std::vector<unsigned char> got(size_t(ops[i].bytes));
    b.download(*bufs[i], got.data(), ops[i].bytes);
    const std::vector<float> a = as_f32(got.data(), ops[i].bytes);
    const std::vector<float> want = as_f32(ref[i]->data(), ref_ops[i].bytes);
    if (k == 0)
      r.out_err = max_rel_err(a, want);
    else
      r.lse_err = std::max(r.lse_err, max_abs_err(a, want));
  }
  r.ok = r.out_err <= r.out_tol && r.lse_err <= r.lse_tol;
  char tail[160];
  std::snprintf(tail, sizeof tail, ": output error %.3g (tolerance %.3g), LSE error %.3g (%.3g)",
                r.out_err, r.out_tol, r.lse_err, r.lse_tol);
  r.detail = spec.shape + tail;
  return r;
}

}  // namespace helix::micro
