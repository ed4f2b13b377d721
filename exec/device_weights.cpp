#include "exec/device_weights.hpp"

#include <algorithm>
#include <cmath>

#include "exec/layer_data.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/rng.hpp"

namespace helix {

int64_t DeviceWeights::bytes() const {
  int64_t n = 0;
  for (const DeviceBuffer<float>* a : {&attn_norm, &q_norm, &kv_norm, &ffn_norm}) n += a->bytes();
  for (const DeviceBuffer<bf16>* a :
       {&wq, &wk, &wv, &wdq, &wuq, &wdkv, &wuk_t, &wuv, &wo, &w_gate, &w_up, &w_down, &router,
        &e_gate, &e_up, &e_down, &s_gate, &s_up, &s_down})
    n += a->bytes();
  return n;
}

namespace {

float fan_scale(double fan_in) {
  return float(std::sqrt(3.0 / fan_in));
}

constexpr const char* kHint = "fewer layers of work per GPU: more ranks, or a smaller model";

void fill(DeviceBuffer<bf16>& dst, uint64_t key, int64_t cols, Range rows, Range colr,
          double fan_in, cudaStream_t s) {
  dst = DeviceBuffer<bf16>(rows.size() * colr.size(), "weights", kHint);
  cuda::fill_slice(dst.get(), key, cols, rows.begin, rows.end, colr.begin, colr.end,
                   fan_scale(fan_in), s);
}

void fill_norm(DeviceBuffer<float>& dst, uint64_t key, int64_t n, cudaStream_t s) {
  dst = DeviceBuffer<float>(n, "norm weights", kHint);
  cuda::fill_slice_f32(dst.get(), key, n, 0, 1, 0, n, 0.25f, 1.0f, s);
}

}  // namespace

DeviceWeights make_device_weights(const ModelSpec& m, const RankShard& p, uint64_t seed,
                                  cudaStream_t st) {
  DeviceWeights s;
  const int64_t H = m.hidden;
  const Range all_h{0, H};
  auto key = [&](TensorId t, uint64_t a = 0) { return tensor_key(seed, t, a); };
  fill_norm(s.attn_norm, key(TensorId::attn_norm), H, st);
  if (m.is_mla()) {
    const auto& a = m.mla;
    const int64_t qk = a.qk_nope + a.qk_rope;
    fill(s.wdq, key(TensorId::mla_wdq), a.q_lora, all_h, {0, a.q_lora}, double(H), st);
    fill_norm(s.q_norm, key(TensorId::mla_qnorm), a.q_lora, st);
    fill(s.wuq, key(TensorId::mla_wuq), m.q_heads * qk, {0, a.q_lora},
         {p.q_heads.begin * qk, p.q_heads.end * qk}, double(a.q_lora), st);
    fill(s.wdkv, key(TensorId::mla_wdkv), a.kv_lora + a.qk_rope, all_h, {0, a.kv_lora + a.qk_rope},
         double(H), st);
    fill_norm(s.kv_norm, key(TensorId::mla_kvnorm), a.kv_lora, st);
    s.wuk_t = DeviceBuffer<bf16>(p.q_heads.size() * a.qk_nope * a.kv_lora, "weights", kHint);
    cuda::fill_wuk_t(s.wuk_t.get(), key(TensorId::mla_wuk), p.q_heads.begin, p.q_heads.end,
                     a.kv_lora, a.qk_nope, fan_scale(a.kv_lora), st);
    fill(s.wuv, key(TensorId::mla_wuv), a.v_head,
         {p.q_heads.begin * a.kv_lora, p.q_heads.end * a.kv_lora}, {0, a.v_head}, double(a.kv_lora),
         st);
    fill(s.wo, key(TensorId::wo), H, {p.o_heads.begin * a.v_head, p.o_heads.end * a.v_head}, all_h,
         double(m.q_heads) * a.v_head, st);
  } else {
    const int64_t D = m.head_dim;
    fill(s.wq, key(TensorId::wq), m.q_heads * D, all_h, {p.q_heads.begin * D, p.q_heads.end * D},
         double(H), st);
    fill(s.wk, key(TensorId::wk), m.kv_heads * D, all_h, {p.kv_heads.begin * D, p.kv_heads.end * D},
         double(H), st);
    fill(s.wv, key(TensorId::wv), m.kv_heads * D, all_h, {p.kv_heads.begin * D, p.kv_heads.end * D},
         double(H), st);
    fill(s.wo, key(TensorId::wo), H, {p.o_heads.begin * D, p.o_heads.end * D}, all_h,
         double(m.q_heads) * double(D), st);
  }
  if (!p.in_ffn) return s;
  fill_norm(s.ffn_norm, key(TensorId::ffn_norm), H, st);
  if (p.layer == LayerKind::dense) {
    const Range c = p.dense_cols;
    fill(s.w_gate, key(TensorId::w_gate), m.ffn, all_h, c, double(H), st);
    fill(s.w_up, key(TensorId::w_up), m.ffn, all_h, c, double(H), st);
    fill(s.w_down, key(TensorId::w_down), H, c, all_h, double(m.ffn), st);
  } else {
    const int64_t E = m.moe.routed_experts, F = m.moe.expert_ffn;
    const int64_t cols = p.expert_cols.size(), ne = p.experts.size();
    fill(s.router, key(TensorId::router), E, all_h, {0, E}, double(H), st);
    s.e_gate = DeviceBuffer<bf16>(ne * H * cols, "expert weights", kHint);
    s.e_up = DeviceBuffer<bf16>(ne * H * cols, "expert weights", kHint);
    s.e_down = DeviceBuffer<bf16>(ne * cols * H, "expert weights", kHint);
    for (int64_t e = p.experts.begin; e < p.experts.end; ++e) {
      const int64_t le = e - p.experts.begin;
      const float sg = fan_scale(double(H)), sd = fan_scale(double(F));
      cuda::fill_slice(s.e_gate.get() + le * H * cols, key(TensorId::exp_gate, uint64_t(e)), F, 0,
                       H, p.expert_cols.begin, p.expert_cols.end, sg, st);
      cuda::fill_slice(s.e_up.get() + le * H * cols, key(TensorId::exp_up, uint64_t(e)), F, 0, H,
                       p.expert_cols.begin, p.expert_cols.end, sg, st);
      cuda::fill_slice(s.e_down.get() + le * cols * H, key(TensorId::exp_down, uint64_t(e)), H,
                       p.expert_cols.begin, p.expert_cols.end, 0, H, sd, st);
    }
    const int64_t Fs = int64_t(m.moe.shared_experts) * F;
    if (Fs > 0) {
      fill(s.s_gate, key(TensorId::sh_gate), Fs, all_h, p.shared_cols, double(H), st);
      fill(s.s_up, key(TensorId::sh_up), Fs, all_h, p.shared_cols, double(H), st);
      fill(s.s_down, key(TensorId::sh_down), H, p.shared_cols, all_h, double(Fs), st);
    }
  }
  return s;
}

DeviceCache make_device_cache(const ModelSpec& m, const RankShard& shard, int batch,
                              int64_t seq_len, int64_t max_positions, uint64_t seed,
                              cudaStream_t st) {
  DeviceCache c;
  c.capacity = std::max<int64_t>(1, shard.local_tokens(max_positions));
  const int64_t B = batch, cap = c.capacity;
  const int64_t filled = shard.local_tokens(seq_len);
  const char* hint = "a shorter sequence, a smaller batch or more KVP ranks";
  if (m.is_mla()) {
    const int64_t w = m.attn_qk_dim();
    c.k = DeviceBuffer<bf16>(B * cap * w, "the KV cache", hint);
    for (int64_t b = 0; b < B; ++b)
      cuda::fill_kv_rows(c.k.get() + b * cap * w,
                         tensor_key(seed, TensorId::latent_cache, uint64_t(b), 0), w, filled, cap,
                         shard.placement.kvp, shard.placement.block, shard.kvp_index, st);
    return c;
  }
  const int64_t D = m.head_dim, kvh = shard.kv_heads.size();
  c.k = DeviceBuffer<bf16>(B * kvh * cap * D, "the KV cache", hint);
  c.v = DeviceBuffer<bf16>(B * kvh * cap * D, "the KV cache", hint);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < kvh; ++h) {
      const uint64_t g = uint64_t(shard.kv_heads.begin + h);
      const int64_t off = (b * kvh + h) * cap * D;
      cuda::fill_kv_rows(c.k.get() + off, tensor_key(seed, TensorId::k_cache, uint64_t(b), g), D,
                         filled, cap, shard.placement.kvp, shard.placement.block, shard.kvp_index,
                         st);
      cuda::fill_kv_rows(c.v.get() + off, tensor_key(seed, TensorId::v_cache, uint64_t(b), g), D,
                         filled, cap, shard.placement.kvp, shard.placement.block, shard.kvp_index,
                         st);
    }
  return c;
}

}  // namespace helix
