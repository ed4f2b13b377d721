// The weights and KV cache one rank holds for one decoder layer, generated from the counter-based
// RNG so that every rank builds exactly its shard and the single-rank reference sees the same
// values. Host fp32 (the CPU backend and the reference); the CUDA backend converts to bf16.
#pragma once

#include <cstdint>
#include <vector>

#include "layouts/model_spec.hpp"
#include "layouts/schedule.hpp"

namespace helix {

struct LayerWeights {
  // Attention (GQA)
  std::vector<float> attn_norm;  // [H]
  std::vector<float> wq;         // [H, q_heads * Dh]   columns of the held query heads
  std::vector<float> wk, wv;     // [H, kv_heads * Dh]  columns of the held KV heads
  // Attention (MLA, absorbed)
  std::vector<float> wdq;      // [H, q_lora]
  std::vector<float> q_norm;   // [q_lora]
  std::vector<float> wuq;      // [q_lora, q_heads * (nope + rope)]
  std::vector<float> wdkv;     // [H, kv_lora + rope]
  std::vector<float> kv_norm;  // [kv_lora]
  std::vector<float> wuk_t;  // [q_heads][nope, kv_lora]  (W_uk of each held query head, transposed)
  std::vector<float> wuv;    // [q_heads][kv_lora, v_head]
  // Output projection
  std::vector<float> wo;  // [o_heads * Dout, H]  rows of the owned heads (Dout: head_dim / v_head)
  // FFN
  std::vector<float> ffn_norm;              // [H]
  std::vector<float> w_gate, w_up;          // dense: [H, cols]
  std::vector<float> w_down;                // dense: [cols, H]
  std::vector<float> router;                // MoE: [H, routed experts] (replicated)
  std::vector<float> e_gate, e_up;          // MoE: [held experts][H, expert cols]
  std::vector<float> e_down;                // MoE: [held experts][expert cols, H]
  std::vector<float> s_gate, s_up, s_down;  // shared experts (concatenated): [H, cols], [cols, H]

  int64_t elements() const;
};

// Weights of the shard `shard` describes, for the layer generated from `seed`.
LayerWeights make_layer_weights(const ModelSpec& model, const RankShard& shard, uint64_t seed);

// The columns `cols` of routed expert `expert`: gate and up [H, cols], down [cols, H], each
// appended to the given vectors (the same values make_layer_weights gives the rank holding it).
void append_expert_weights(const ModelSpec& model, int64_t expert, Range cols, uint64_t seed,
                           std::vector<float>* gate, std::vector<float>* up,
                           std::vector<float>* down);

// Element counts of the shard and cache a rank holds (the memory planner; no allocation).
int64_t weight_elements(const ModelSpec& model, const RankShard& shard);
int64_t cache_elements(const ModelSpec& model, const RankShard& shard, int batch,
                       int64_t max_positions);

// KV cache of one rank: its KV heads and tokens for every request, in local token order.
struct KvCache {
  int64_t batch = 0;
  int64_t heads = 0;     // KV heads held (MLA: 1, the latent)
  int64_t capacity = 0;  // rows per (request, head)
  int64_t width = 0;     // GQA: head_dim (K and V separate); MLA: kv_lora + rope
  std::vector<float> k;  // GQA: [batch, heads, capacity, head_dim]; MLA: [batch, capacity, width]
  std::vector<float> v;  // GQA: [batch, heads, capacity, head_dim]; MLA: unused
};

// Cache with room for positions [0, max_positions) of this rank, holding random KV for the
// positions [0, seq_len) it owns (what a prefill of seq_len tokens would have left).
KvCache make_kv_cache(const ModelSpec& model, const RankShard& shard, int batch, int64_t seq_len,
                      int64_t max_positions, uint64_t seed);

// The hidden states entering the layer at decode step `step`: [batch, H], the same on every rank.
std::vector<float> make_decode_input(const ModelSpec& model, int batch, int step, uint64_t seed);

// MoE layers: the experts the router picks for the timed decode input (step 0) when the attention
// output is left out of the residual, [batch, top_k]: rmsnorm(x) x ffn_norm, the router GEMM and
// top-k, as the executors route. Over long random KV caches the attention output averages to a
// small fraction of x, so this is the executors' choice except near ties (the traces record the
// real one: routed_rows). Empty for dense models.
std::vector<int32_t> route_decode_input(const ModelSpec& model, int batch, uint64_t seed);

}  // namespace helix
