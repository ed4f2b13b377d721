#include "bench/micro/kernel_verify.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/attention.hpp"
#include "kernels/combine.hpp"

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

std::vector<float> as_f32(const std::vector<unsigned char>& raw) {
  std::vector<float> v(raw.size() / 4);
  std::memcpy(v.data(), raw.data(), v.size() * 4);
  return v;
}

// max |a - b| / max |b| (NaN anywhere: infinity).
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double scale = 0, err = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    scale = std::max(scale, double(std::fabs(b[i])));
    err = std::max(err, double(std::fabs(a[i] - b[i])));
  }
  return scale > 0 ? err / scale : err;
}

double abs_err(const std::vector<float>& a, const std::vector<float>& b) {
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
  return c.kind == KernelKind::attn_gqa || c.kind == KernelKind::attn_mla ||
         c.kind == KernelKind::lse_combine;
}

std::string verify_key(const KernelCase& c) {
  if (c.kind == KernelKind::attn_gqa || c.kind == KernelKind::attn_mla) {
    const KernelCase s = verify_shape(c);
    const int64_t t = c.kind == KernelKind::attn_gqa ? s.gqa.tokens : s.mla.tokens;
    return c.name.substr(0, c.name.rfind('/')) + "/T" + std::to_string(t);
  }
  return c.name;
}

KernelCase verify_shape(const KernelCase& c) {
  KernelCase s = c;
  s.gqa.tokens = std::min(c.gqa.tokens, kVerifyGqaTokens);
  s.mla.tokens = std::min(c.mla.tokens, kVerifyMlaTokens);
  s.combine.rows = std::min(c.combine.rows, kVerifyCombineRows);
  return s;
}

VerifyResult verify_case(MicroBackend& b, const KernelCase& c0, uint64_t seed) {
  VerifyResult r;
  if (!verifiable(c0)) return r;
  const KernelCase c = verify_shape(c0);
  const int64_t es = b.storage_bytes();
  const std::vector<Operand> ops = case_operands(c, b);
  std::vector<std::unique_ptr<Buffer>> bufs;
  std::vector<void*> ptrs;
  for (size_t i = 0; i < ops.size(); ++i) {
    bufs.push_back(b.allocate(ops[i].bytes));
    b.fill_random(*bufs.back(), ops[i].elem, seed * 131 + i);
    ptrs.push_back(bufs.back()->data());
  }
  b.synchronize();
  std::vector<std::vector<unsigned char>> host(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    host[i].resize(size_t(ops[i].bytes));
    b.download(*bufs[i], host[i].data(), ops[i].bytes);
  }
  launch_case(b, c, ptrs);
  b.synchronize();
  auto result = [&](size_t i) {
    std::vector<unsigned char> raw(size_t(ops[i].bytes));
    b.download(*bufs[i], raw.data(), ops[i].bytes);
    return as_f32(raw);
  };
  const bool narrow = es < 4;
  char line[256];
  if (c.kind == KernelKind::attn_gqa) {
    const auto& g = c.gqa;
    const std::vector<float> q = as_f32(host[0]), k = widen(host[1], es), v = widen(host[2], es);
    std::vector<float> out(size_t(g.batch * g.q_heads * g.head_dim)),
        lse(size_t(g.batch * g.q_heads));
    cpu::GqaAttention a;
    a.batch = g.batch;
    a.q_heads = g.q_heads;
    a.kv_heads = g.kv_heads;
    a.group = g.q_heads / g.kv_heads;
    a.head_dim = g.head_dim;
    a.tokens = g.tokens;
    a.capacity = g.tokens;
    a.scale = 1.0f / std::sqrt(float(g.head_dim));
    a.q = q.data();
    a.k = k.data();
    a.v = v.data();
    a.out = out.data();
    a.lse = lse.data();
    cpu::attention_gqa(a);
    r.out_err = rel_err(result(3), out);
    r.lse_err = abs_err(result(4), lse);
    std::snprintf(line, sizeof line, "B=%lld q_heads=%lld kv_heads=%lld tokens=%lld",
                  (long long)g.batch, (long long)g.q_heads, (long long)g.kv_heads,
                  (long long)g.tokens);
  } else if (c.kind == KernelKind::attn_mla) {
    const auto& m = c.mla;
    const std::vector<float> q = as_f32(host[0]), kv = widen(host[1], es);
    std::vector<float> out(size_t(m.batch * m.heads * m.kv_lora)), lse(size_t(m.batch * m.heads));
    cpu::MlaAttention a;
    a.batch = m.batch;
    a.heads = m.heads;
    a.kv_lora = m.kv_lora;
    a.rope = m.rope;
    a.tokens = m.tokens;
    a.capacity = m.tokens;
    a.scale = 1.0f / std::sqrt(float(m.kv_lora + m.rope));
    a.q = q.data();
    a.kv = kv.data();
    a.out = out.data();
    a.lse = lse.data();
    cpu::attention_mla(a);
    r.out_err = rel_err(result(2), out);
    r.lse_err = abs_err(result(3), lse);
    std::snprintf(line, sizeof line, "B=%lld heads=%lld tokens=%lld", (long long)m.batch,
                  (long long)m.heads, (long long)m.tokens);
  } else {
    const auto& k = c.combine;
    const std::vector<float> o = as_f32(host[0]), l = as_f32(host[1]);
    std::vector<float> out(size_t(k.rows * k.dim)), lse(size_t(k.rows));
    cpu::lse_combine(k.parts, k.rows, k.dim, o.data(), k.rows * k.dim, l.data(), k.rows, out.data(),
                     lse.data());
    r.out_err = rel_err(result(2), out);
    r.lse_err = abs_err(result(3), lse);
    std::snprintf(line, sizeof line, "parts=%lld rows=%lld dim=%lld", (long long)k.parts,
                  (long long)k.rows, (long long)k.dim);
  }
  // bf16 storage: the kernels round queries and probabilities to bf16 for the tensor cores.
  const bool attn = c.kind != KernelKind::lse_combine;
  r.out_tol = attn ? (narrow ? 2e-2 : 1e-4) : 1e-3;
  r.lse_tol = attn ? (narrow ? 2e-2 : 1e-4) : 1e-3;
  r.ok = r.out_err <= r.out_tol && r.lse_err <= r.lse_tol;
  char tail[160];
  std::snprintf(tail, sizeof tail, ": output error %.3g (tolerance %.3g), LSE error %.3g (%.3g)",
                r.out_err, r.out_tol, r.lse_err, r.lse_tol);
  r.detail = std::string(line) + tail;
  return r;
}

}  // namespace helix::micro
