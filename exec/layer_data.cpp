#include "exec/layer_data.hpp"

#include <algorithm>
#include <cmath>

#include "kernels/gemm.hpp"
#include "kernels/moe.hpp"
#include "kernels/norm.hpp"
#include "kernels/rng.hpp"

namespace helix {

namespace {

// Fills rows [r0, r1) x columns [c0, c1) of a [rows, cols] matrix keyed by `key`, uniform with
// variance 1 / fan_in (Kaiming-style, so activations stay of order one).
std::vector<float> slice(uint64_t key, int64_t cols, Range rows, Range colr, double fan_in) {
  std::vector<float> out(size_t(rows.size() * colr.size()));
  const float s = float(std::sqrt(3.0 / fan_in));
  const int64_t width = colr.size();
  // Threads only pay for large tensors (the real models' reference; test models stay serial).
#pragma omp parallel for schedule(static) if (rows.size() * width >= (int64_t(1) << 22))
  for (int64_t i = rows.begin; i < rows.end; ++i) {
    float* row = out.data() + (i - rows.begin) * width;
    for (int64_t j = colr.begin; j < colr.end; ++j)
      row[j - colr.begin] = s * uniform_pm1(key, uint64_t(i * cols + j));
  }
  return out;
}

std::vector<float> norm_weight(uint64_t key, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) w[i] = 1.0f + 0.25f * uniform_pm1(key, uint64_t(i));
  return w;
}

void append(std::vector<float>& dst, const std::vector<float>& src) {
  dst.insert(dst.end(), src.begin(), src.end());
}

}  // namespace

int64_t LayerWeights::elements() const {
  int64_t n = 0;
  for (const auto* v : {&attn_norm, &wq,     &wk,   &wv,     &wdq,      &q_norm, &wuq,   &wdkv,
                        &kv_norm,   &wuk_t,  &wuv,  &wo,     &ffn_norm, &w_gate, &w_up,  &w_down,
                        &router,    &e_gate, &e_up, &e_down, &s_gate,   &s_up,   &s_down})
    n += int64_t(v->size());
  return n;
}

LayerWeights make_layer_weights(const ModelSpec& m, const RankShard& p, uint64_t seed) {
  LayerWeights s;
  const int64_t H = m.hidden;
  const Range all_h{0, H};
  auto key = [&](TensorId t, uint64_t a = 0) { return tensor_key(seed, t, a); };
  s.attn_norm = norm_weight(key(TensorId::attn_norm), H);
  if (m.is_mla()) {
    const auto& a = m.mla;
    const int64_t qk = a.qk_nope + a.qk_rope;
    s.wdq = slice(key(TensorId::mla_wdq), a.q_lora, all_h, {0, a.q_lora}, double(H));
    s.q_norm = norm_weight(key(TensorId::mla_qnorm), a.q_lora);
    s.wuq = slice(key(TensorId::mla_wuq), m.q_heads * qk, {0, a.q_lora},
                  {p.q_heads.begin * qk, p.q_heads.end * qk}, double(a.q_lora));
    s.wdkv = slice(key(TensorId::mla_wdkv), a.kv_lora + a.qk_rope, all_h,
                   {0, a.kv_lora + a.qk_rope}, double(H));
    s.kv_norm = norm_weight(key(TensorId::mla_kvnorm), a.kv_lora);
    // W_uk: [heads][kv_lora][nope], element (h, i, j) at (h * kv_lora + i) * nope + j; stored
    // transposed per head as [nope][kv_lora] so the absorb is a row-major GEMM.
    const uint64_t kuk = key(TensorId::mla_wuk);
    const float suk = float(std::sqrt(3.0 / a.kv_lora));
    s.wuk_t.resize(size_t(p.q_heads.size() * a.qk_nope * a.kv_lora));
    for (int64_t h = p.q_heads.begin; h < p.q_heads.end; ++h)
      for (int64_t i = 0; i < a.kv_lora; ++i)
        for (int64_t j = 0; j < a.qk_nope; ++j)
          s.wuk_t[((h - p.q_heads.begin) * a.qk_nope + j) * a.kv_lora + i] =
              suk * uniform_pm1(kuk, uint64_t((h * a.kv_lora + i) * a.qk_nope + j));
    // W_uv: [heads][kv_lora][v], rows of the attended heads (every KV shard up-projects its own
    // partials before the exchange).
    s.wuv = slice(key(TensorId::mla_wuv), a.v_head,
                  {p.q_heads.begin * a.kv_lora, p.q_heads.end * a.kv_lora}, {0, a.v_head},
                  double(a.kv_lora));
    s.wo = slice(key(TensorId::wo), H, {p.o_heads.begin * a.v_head, p.o_heads.end * a.v_head},
                 all_h, double(m.q_heads) * a.v_head);
  } else {
    const int64_t D = m.head_dim;
    s.wq = slice(key(TensorId::wq), m.q_heads * D, all_h, {p.q_heads.begin * D, p.q_heads.end * D},
                 double(H));
    s.wk = slice(key(TensorId::wk), m.kv_heads * D, all_h,
                 {p.kv_heads.begin * D, p.kv_heads.end * D}, double(H));
    s.wv = slice(key(TensorId::wv), m.kv_heads * D, all_h,
                 {p.kv_heads.begin * D, p.kv_heads.end * D}, double(H));
    s.wo = slice(key(TensorId::wo), H, {p.o_heads.begin * D, p.o_heads.end * D}, all_h,
                 double(m.q_heads) * double(D));
  }
  if (!p.in_ffn) return s;
  s.ffn_norm = norm_weight(key(TensorId::ffn_norm), H);
  if (p.layer == LayerKind::dense) {
    const Range c = p.dense_cols;
    s.w_gate = slice(key(TensorId::w_gate), m.ffn, all_h, c, double(H));
    s.w_up = slice(key(TensorId::w_up), m.ffn, all_h, c, double(H));
    s.w_down = slice(key(TensorId::w_down), H, c, all_h, double(m.ffn));
  } else {
    const int64_t E = m.moe.routed_experts, F = m.moe.expert_ffn;
    s.router = slice(key(TensorId::router), E, all_h, {0, E}, double(H));
    for (int64_t e = p.experts.begin; e < p.experts.end; ++e)
      append_expert_weights(m, e, p.expert_cols, seed, &s.e_gate, &s.e_up, &s.e_down);
    const int64_t Fs = int64_t(m.moe.shared_experts) * F;
    if (Fs > 0) {
      s.s_gate = slice(key(TensorId::sh_gate), Fs, all_h, p.shared_cols, double(H));
      s.s_up = slice(key(TensorId::sh_up), Fs, all_h, p.shared_cols, double(H));
      s.s_down = slice(key(TensorId::sh_down), H, p.shared_cols, all_h, double(Fs));
    }
  }
  return s;
}

void append_expert_weights(const ModelSpec& m, int64_t e, Range cols, uint64_t seed,
                           std::vector<float>* gate, std::vector<float>* up,
                           std::vector<float>* down) {
  const int64_t H = m.hidden, F = m.moe.expert_ffn;
  const Range all_h{0, H};
  append(*gate,
         slice(tensor_key(seed, TensorId::exp_gate, uint64_t(e)), F, all_h, cols, double(H)));
  append(*up, slice(tensor_key(seed, TensorId::exp_up, uint64_t(e)), F, all_h, cols, double(H)));
  append(*down,
         slice(tensor_key(seed, TensorId::exp_down, uint64_t(e)), H, cols, all_h, double(F)));
}

KvCache make_kv_cache(const ModelSpec& m, const RankShard& p, int batch, int64_t seq_len,
                      int64_t max_positions, uint64_t seed) {
  KvCache c;
  c.batch = batch;
  c.capacity = std::max<int64_t>(1, p.local_tokens(max_positions));
  const int64_t filled = p.local_tokens(seq_len);
  if (m.is_mla()) {
    c.heads = 1;
    c.width = m.mla.kv_lora + m.mla.qk_rope;
    c.k.assign(size_t(batch * c.capacity * c.width), 0.0f);
    for (int64_t b = 0; b < batch; ++b) {
      const uint64_t key = tensor_key(seed, TensorId::latent_cache, uint64_t(b), 0);
      for (int64_t i = 0; i < filled; ++i) {
        const int64_t pos = p.placement.global_pos(p.kvp_index, i);
        float* row = &c.k[size_t((b * c.capacity + i) * c.width)];
        for (int64_t d = 0; d < c.width; ++d)
          row[d] = uniform_pm1(key, uint64_t(pos * c.width + d));
      }
    }
  } else {
    c.heads = p.kv_heads.size();
    c.width = m.head_dim;
    c.k.assign(size_t(batch * c.heads * c.capacity * c.width), 0.0f);
    c.v.assign(c.k.size(), 0.0f);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t h = 0; h < c.heads; ++h) {
        const uint64_t g = uint64_t(p.kv_heads.begin + h);
        const uint64_t kk = tensor_key(seed, TensorId::k_cache, uint64_t(b), g);
        const uint64_t kv = tensor_key(seed, TensorId::v_cache, uint64_t(b), g);
        for (int64_t i = 0; i < filled; ++i) {
          const int64_t pos = p.placement.global_pos(p.kvp_index, i);
          const size_t o = size_t(((b * c.heads + h) * c.capacity + i) * c.width);
          for (int64_t d = 0; d < c.width; ++d) {
            c.k[o + d] = uniform_pm1(kk, uint64_t(pos * c.width + d));
            c.v[o + d] = uniform_pm1(kv, uint64_t(pos * c.width + d));
          }
        }
      }
  }
  return c;
}

std::vector<float> make_decode_input(const ModelSpec& m, int batch, int step, uint64_t seed) {
  std::vector<float> x(size_t(batch) * m.hidden);
  const uint64_t key = tensor_key(seed, TensorId::x_in, uint64_t(step));
  for (size_t i = 0; i < x.size(); ++i) x[i] = uniform_pm1(key, i);
  return x;
}

std::vector<int32_t> route_decode_input(const ModelSpec& m, int batch, uint64_t seed) {
  if (!m.has_moe()) return {};
  const int64_t H = m.hidden, E = m.moe.routed_experts, K = m.moe.top_k;
  auto key = [&](TensorId t) { return tensor_key(seed, t, 0); };
  const std::vector<float> x = make_decode_input(m, batch, 0, seed);
  const std::vector<float> norm = norm_weight(key(TensorId::ffn_norm), H);
  const std::vector<float> router = slice(key(TensorId::router), E, {0, H}, {0, E}, double(H));
  std::vector<float> h(x.size()), logits(size_t(batch * E)), weight(size_t(batch * K));
  std::vector<int32_t> expert(size_t(batch * K));
  cpu::rmsnorm(x.data(), norm.data(), batch, H, m.rms_eps, h.data());
  cpu::gemm(h.data(), H, router.data(), E, logits.data(), E, batch, H, E, false);
  cpu::moe_route(logits.data(), batch, E, K, float(m.moe.routed_scale), expert.data(),
                 weight.data());
  return expert;
}

}  // namespace helix

namespace helix {

int64_t weight_elements(const ModelSpec& m, const RankShard& p) {
  const int64_t H = m.hidden, qh = p.q_heads.size(), oh = p.o_heads.size();
  int64_t n = H;  // attention norm
  if (m.is_mla()) {
    const auto& a = m.mla;
    n += H * a.q_lora + a.q_lora + a.q_lora * qh * (a.qk_nope + a.qk_rope) +
         H * (a.kv_lora + a.qk_rope) + a.kv_lora + qh * a.qk_nope * a.kv_lora +
         qh * a.kv_lora * a.v_head + oh * a.v_head * H;
  } else {
    n += H * (qh + 2 * p.kv_heads.size()) * m.head_dim + oh * m.head_dim * H;
  }
  if (!p.in_ffn) return n;
  n += H;  // FFN norm
  if (p.layer == LayerKind::dense) {
    n += 3 * H * p.dense_cols.size();
  } else {
    n += H * m.moe.routed_experts + p.experts.size() * 3 * H * p.expert_cols.size() +
         3 * H * p.shared_cols.size();
  }
  return n;
}

int64_t cache_elements(const ModelSpec& m, const RankShard& p, int batch, int64_t max_positions) {
  const int64_t cap = std::max<int64_t>(1, p.local_tokens(max_positions));
  const int64_t heads = m.is_mla() ? 1 : p.kv_heads.size();
  return int64_t(batch) * heads * cap * m.kv_elems_per_token_per_head();
}

}  // namespace helix
