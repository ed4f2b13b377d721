// The per-rank compute steps of the CUDA executor: projections, KV append, decode attention,
// MLA's W_uv, the FFN (dense, or router and routed experts) and its reduction.
#include <algorithm>
#include <utility>
#include <vector>

#include "comm/cuda_check.hpp"
#include "comm/error.hpp"
#include "exec/cuda_executor.hpp"
#include "kernels/cuda_kernels.hpp"

namespace helix {

void CudaExecutor::prologue(int64_t pos) {
  cudaStream_t st = s_compute_;
  const int64_t B = batch_, H = m_.hidden, qh = shard_.q_heads.size();
  bf16* hn = scratch<bf16>(Scratch::normed_bf);
  float* q = f32(Buffer::q);
  cuda::rmsnorm(f32(Buffer::x), H, weights_.attn_norm.get(), B, H, m_.rms_eps, hn, nullptr, st);
  GemmShape g;
  if (m_.is_mla()) {
    const auto& a = m_.mla;
    const int64_t qk = a.qk_nope + a.qk_rope, w = a.kv_lora + a.qk_rope;
    float* cq = f32(Buffer::q_latent);
    float* qfull = f32(Buffer::q_full);
    bf16* cq_bf = scratch<bf16>(Scratch::q_latent_bf);
    bf16* qfull_bf = scratch<bf16>(Scratch::q_full_bf);
    g = {B, H, a.q_lora, H, a.q_lora, a.q_lora};
    gemm_->run(g, hn, weights_.wdq.get(), cq, st);
    cuda::rmsnorm(cq, a.q_lora, weights_.q_norm.get(), B, a.q_lora, m_.rms_eps, cq_bf, nullptr, st);
    g = {B, a.q_lora, qh * qk, a.q_lora, qh * qk, qh * qk};
    gemm_->run(g, cq_bf, weights_.wuq.get(), qfull, st);
    cuda::to_bf16(qfull, qfull_bf, B * qh * qk, st);
    // Absorb W_uk per head: q[b, h, :kv_lora] = q_nope[b, h] @ W_uk_t[h] (a strided batch).
    GemmShape ab{B, a.qk_nope, a.kv_lora, qh * qk, a.kv_lora, qh * w};
    ab.batch = int(qh);
    ab.stride_x = qk;
    ab.stride_w = a.qk_nope * a.kv_lora;
    ab.stride_y = w;
    gemm_->run(ab, qfull_bf, weights_.wuk_t.get(), q, st);
    cuda::mla_q_rope(qfull, B, qh, a.qk_nope, a.qk_rope, q, a.kv_lora, pos, m_.rope_theta, st);
    g = {B, H, w, H, w, w};
    gemm_->run(g, hn, weights_.wdkv.get(), f32(Buffer::kv_latent), st);
  } else {
    const int64_t D = m_.head_dim, kvh = shard_.kv_heads.size();
    g = {B, H, qh * D, H, qh * D, qh * D};
    gemm_->run(g, hn, weights_.wq.get(), q, st);
    g = {B, H, kvh * D, H, kvh * D, kvh * D};
    gemm_->run(g, hn, weights_.wk.get(), f32(Buffer::k_new), st);
    gemm_->run(g, hn, weights_.wv.get(), f32(Buffer::v_new), st);
    cuda::rope(q, B * qh, 1, D, 0, D, pos, m_.rope_theta, st);
    cuda::rope(f32(Buffer::k_new), B * kvh, 1, D, 0, D, pos, m_.rope_theta, st);
  }
}

void CudaExecutor::kv_append(int64_t li, int64_t pos) {
  if (li < 0) return;  // another KVP rank owns the position
  HELIX_CHECK(li < cache_.capacity, "KV cache full: local index " + std::to_string(li));
  if (m_.is_mla()) {
    cuda::kv_append_mla(f32(Buffer::kv_latent), weights_.kv_norm.get(), batch_, m_.mla.kv_lora,
                        m_.mla.qk_rope, m_.rms_eps, pos, m_.rope_theta, cache_.k.get(),
                        cache_.capacity, li, s_compute_);
  } else {
    cuda::kv_append_gqa(f32(Buffer::k_new), f32(Buffer::v_new), batch_, shard_.kv_heads.size(),
                        m_.head_dim, cache_.k.get(), cache_.v.get(), cache_.capacity, li,
                        s_compute_);
  }
}

void CudaExecutor::attention(const Step& s) {
  const int64_t qh = shard_.q_heads.size(), nb = s.batch.size();
  if (nb == 0 || qh == 0) return;
  cuda::DecodeAttention a = attention_shape(m_, shard_, nb, s.kv_tokens, cache_.capacity);
  a.reserved_sms = s.reserved_sms;  // the same as the layout's (attention_shape), from the step
  const int64_t kvh = m_.is_mla() ? 1 : shard_.kv_heads.size();
  const int64_t kv_req = kvh * cache_.capacity * qk_dim_;  // cache elements per request (K)
  a.q = f32(Buffer::q) + s.batch.begin * qh * qk_dim_;
  a.k = cache_.k.get() + s.batch.begin * kv_req;
  a.v = m_.is_mla() ? nullptr : cache_.v.get() + s.batch.begin * kv_req;
  a.out = f32(Buffer::part_o) + s.batch.begin * qh * out_dim_;
  a.lse = f32(Buffer::part_lse) + s.batch.begin * qh;
  a.workspace = scratch<float>(Scratch::attn_split);
  a.splits = cuda::attention_splits(a);
  // The workspace is sized for the splits chosen at the cache's capacity; the choice is not
  // monotone in the context length, so a shorter context may want more splits than that: it gets
  // as many as the workspace holds (any split count gives the same result).
  const int64_t per_split = cuda::attention_workspace_floats(a, 2) / 2;
  const int64_t room = scratch_[size_t(Scratch::attn_split)].bytes() / 4;
  if (a.splits > 1 && per_split > 0)
    a.splits = int(std::max<int64_t>(1, std::min<int64_t>(a.splits, room / per_split)));
  HELIX_CHECK(cuda::attention_workspace_floats(a, a.splits) * 4 <=
                  scratch_[size_t(Scratch::attn_split)].bytes(),
              "attention split workspace too small");
  cuda::attention_decode(a, s_compute_);
}

// MLA: each head's latent partial up-projected to the value width before the exchange,
// part_v[b, h] = part_o[b, h] @ W_uv[h] (one strided-batched GEMM over the heads, fp32 out, as
// the partials are exchanged in fp32). Exact: the combine weights are scalars per (request, head).
void CudaExecutor::v_up(Range batch) {
  cudaStream_t st = s_compute_;
  const auto& a = m_.mla;
  const int64_t qh = shard_.q_heads.size(), nb = batch.size();
  if (nb == 0 || qh == 0) return;
  const int64_t off = batch.begin * qh * out_dim_;
  bf16* lat = scratch<bf16>(Scratch::latent_bf);
  cuda::to_bf16(f32(Buffer::part_o) + off, lat + off, nb * qh * out_dim_, st);
  GemmShape up{nb, a.kv_lora, a.v_head, qh * a.kv_lora, a.v_head, qh * a.v_head};
  up.batch = int(qh);
  up.stride_x = a.kv_lora;
  up.stride_w = a.kv_lora * a.v_head;
  up.stride_y = a.v_head;
  gemm_->run(up, lat + off, weights_.wuv.get(), f32(Buffer::part_v) + batch.begin * qh * val_dim_,
             st);
}

void CudaExecutor::ffn_compute() {
  cudaStream_t st = s_compute_;
  const int64_t B = batch_, H = m_.hidden;
  float* x1 = f32(Buffer::x1);
  float* part = f32(Buffer::ffn_part);
  bf16* h2 = scratch<bf16>(Scratch::ffn_in_bf);
  cuda::add(f32(Buffer::x), f32(Buffer::attn_out), x1, B * H, st);
  cuda::rmsnorm(x1, H, weights_.ffn_norm.get(), B, H, m_.rms_eps, h2, nullptr, st);
  if (moe_) {
    ffn_grouped();  // writes every row of ffn_part, the shared expert included
    return;
  }
  HELIX_CUDA_CHECK(cudaMemsetAsync(part, 0, size_t(B * H) * sizeof(float), st));
  auto swiglu = [&](const bf16* x, int64_t rows, int64_t cols, const bf16* wg, const bf16* wu,
                    const bf16* wd) {
    if (rows == 0 || cols == 0) return;
    GemmShape g{rows, H, cols, H, cols, cols};
    gemm_->run(g, x, wg, scratch<float>(Scratch::gate), st);
    gemm_->run(g, x, wu, scratch<float>(Scratch::up), st);
    cuda::silu_mul(scratch<float>(Scratch::gate), scratch<float>(Scratch::up), nullptr, rows, cols,
                   scratch<bf16>(Scratch::act_bf), st);
    GemmShape d{rows, cols, H, cols, H, H};
    d.accumulate = true;
    gemm_->run(d, scratch<bf16>(Scratch::act_bf), wd, part, st);
  };
  if (shard_.layer == LayerKind::dense) {
    swiglu(h2, B, shard_.dense_cols.size(), weights_.w_gate.get(), weights_.w_up.get(),
           weights_.w_down.get());
    return;
  }
  ffn_experts();
  if (weights_.s_gate.size() > 0)
    swiglu(h2, B, shard_.shared_cols.size(), weights_.s_gate.get(), weights_.s_up.get(),
           weights_.s_down.get());
}

// The MoE FFN in two launches after the router GEMM (kernels/moe_cuda.hpp): the plan (top-k,
// weights, the held experts' assignments grouped) and one persistent kernel over every held
// expert that received tokens and the shared slice; ffn_part = the routed experts' weighted sum +
// the shared expert. The routing stays on the device (get_routing copies it when asked).
void CudaExecutor::ffn_grouped() {
  const cuda::MoeRouting routing{buf<int32_t>(Buffer::route_expert), f32(Buffer::route_weight)};
  moe_->run(*gemm_, scratch<bf16>(Scratch::ffn_in_bf), batch_, f32(Buffer::router_logits),
            scratch<void>(Scratch::moe_work), f32(Buffer::ffn_part), routing, s_compute_);
}

// Routed experts one by one (GPUs and shapes without the grouped launch, HELIX_MOE_GROUPED=0): the
// router runs on the GPU; the (token, expert) assignments come back to the host (a few hundred
// bytes), which launches the GEMMs of the held experts that received tokens.
void CudaExecutor::ffn_experts() {
  cudaStream_t st = s_compute_;
  const int64_t B = batch_, H = m_.hidden, E = m_.moe.routed_experts, K = m_.moe.top_k;
  const int64_t cols = shard_.expert_cols.size();
  bf16* h2 = scratch<bf16>(Scratch::ffn_in_bf);
  int32_t* route_e = buf<int32_t>(Buffer::route_expert);
  float* route_w = f32(Buffer::route_weight);
  GemmShape r{B, H, E, H, E, E};
  gemm_->run(r, h2, weights_.router.get(), f32(Buffer::router_logits), st);
  cuda::moe_route(f32(Buffer::router_logits), B, E, K, m_.moe.routed_scale, route_e, route_w, st);
  const int64_t n = B * K;
  HELIX_CUDA_CHECK(cudaMemcpyAsync(host_route_e_, route_e, size_t(n) * sizeof(int32_t),
                                   cudaMemcpyDeviceToHost, st));
  HELIX_CUDA_CHECK(cudaMemcpyAsync(host_route_w_, route_w, size_t(n) * sizeof(float),
                                   cudaMemcpyDeviceToHost, st));
  HELIX_CUDA_CHECK(cudaStreamSynchronize(st));
  // Rows per held expert, concatenated (second half of the pinned buffers).
  int32_t* rows = host_route_e_ + n;
  float* wts = host_route_w_ + n;
  std::vector<std::pair<int64_t, int64_t>> spans;  // (expert, first row), one per held expert
  int64_t used = 0;
  for (int64_t e = shard_.experts.begin; e < shard_.experts.end; ++e) {
    spans.emplace_back(e, used);
    for (int64_t t = 0; t < B; ++t)
      for (int64_t i = 0; i < K; ++i)
        if (host_route_e_[t * K + i] == int32_t(e)) {
          rows[used] = int32_t(t);
          wts[used] = host_route_w_[t * K + i];
          ++used;
        }
  }
  if (used == 0 || cols == 0) return;
  int32_t* exp_rows = scratch<int32_t>(Scratch::expert_rows);
  float* exp_w = scratch<float>(Scratch::expert_wts);
  HELIX_CUDA_CHECK(
      cudaMemcpyAsync(exp_rows, rows, size_t(used) * sizeof(int32_t), cudaMemcpyHostToDevice, st));
  HELIX_CUDA_CHECK(
      cudaMemcpyAsync(exp_w, wts, size_t(used) * sizeof(float), cudaMemcpyHostToDevice, st));
  for (size_t i = 0; i < spans.size(); ++i) {
    const int64_t e = spans[i].first, r0 = spans[i].second;
    const int64_t r1 = i + 1 < spans.size() ? spans[i + 1].second : used;
    const int64_t nr = r1 - r0;
    if (nr == 0) continue;
    const int64_t le = e - shard_.experts.begin;
    bf16* xe = scratch<bf16>(Scratch::expert_in) + r0 * H;
    cuda::gather_rows(h2, exp_rows + r0, nr, H, xe, st);
    GemmShape g{nr, H, cols, H, cols, cols};
    gemm_->run(g, xe, weights_.e_gate.get() + le * H * cols, scratch<float>(Scratch::gate), st);
    gemm_->run(g, xe, weights_.e_up.get() + le * H * cols, scratch<float>(Scratch::up), st);
    cuda::silu_mul(scratch<float>(Scratch::gate), scratch<float>(Scratch::up), exp_w + r0, nr, cols,
                   scratch<bf16>(Scratch::act_bf), st);
    GemmShape d{nr, cols, H, cols, H, H};
    float* ye = scratch<float>(Scratch::expert_out) + r0 * H;
    gemm_->run(d, scratch<bf16>(Scratch::act_bf), weights_.e_down.get() + le * cols * H, ye, st);
    cuda::scatter_add_rows(ye, exp_rows + r0, nr, H, f32(Buffer::ffn_part), st);
  }
}

// out = x1 + the sum of the step's partial sums (EP > 1: every EP rank's, gathered).
void CudaExecutor::ffn_reduce(const Step& s) {
  cuda::residual_sum(f32(Buffer::x1), f32(s.input), s.parts, f32(Buffer::out),
                     int64_t(batch_) * m_.hidden, s_compute_);
}

}  // namespace helix
