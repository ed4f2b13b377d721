#include "bench/micro/kernel_verify.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

namespace helix::micro {

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

std::vector<float> as_f32(const std::vector<unsigned char>& raw) {
  std::vector<float> v(raw.size() / 4);
  std::memcpy(v.data(), raw.data(), v.size() * 4);
  return v;
}

double max_rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double scale = 0, err = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    scale = std::max(scale, double(std::fabs(b[i])));
    err = std::max(err, double(std::fabs(a[i] - b[i])));
  }
  return scale > 0 ? err / scale : err;
}

double max_abs_err(const std::vector<float>& a, const std::vector<float>& b) {
  double err = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (std::isinf(a[i]) && std::isinf(b[i]) && (a[i] > 0) == (b[i] > 0)) continue;
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    err = std::max(err, double(std::fabs(a[i] - b[i])));
  }
  return err;
}

VerifyResult verdict(double out_err, double out_tol, double lse_err, double lse_tol,
                     const std::string& shape) {
  VerifyResult r;
  r.out_err = out_err;
  r.out_tol = out_tol;
  r.lse_err = lse_err;
  r.lse_tol = lse_tol;
  r.ok = out_err <= out_tol && lse_err <= lse_tol;
  char tail[160];
  std::snprintf(tail, sizeof tail, ": output error %.3g (tolerance %.3g), LSE error %.3g (%.3g)",
                out_err, out_tol, lse_err, lse_tol);
  r.detail = shape + tail;
  return r;
}

bool verifiable(const KernelCase& c) {
  return c.small() != nullptr;
}

VerifyResult verify_case(MicroBackend& b, const KernelCase& c0, uint64_t seed) {
  const std::unique_ptr<KernelCase> c = c0.small();
  if (!c) return {};
  const std::vector<Operand> ops = c->operands(b);
  std::vector<std::unique_ptr<Buffer>> bufs;
  std::vector<void*> ptrs;
  for (size_t i = 0; i < ops.size(); ++i) {
    bufs.push_back(b.allocate(ops[i].bytes));
    b.fill_random(*bufs.back(), ops[i].elem, seed * 131 + i);
    ptrs.push_back(bufs.back()->data());
  }
  b.synchronize();
  HostOperands inputs(ops.size()), results(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    inputs[i].resize(size_t(ops[i].bytes));
    b.download(*bufs[i], inputs[i].data(), ops[i].bytes);
  }
  c->launch(b, ptrs);
  b.synchronize();
  for (size_t i = 0; i < ops.size(); ++i) {
    results[i].resize(size_t(ops[i].bytes));
    b.download(*bufs[i], results[i].data(), ops[i].bytes);
  }
  return c->check(inputs, results, b.storage_bytes());
}

}  // namespace helix::micro
