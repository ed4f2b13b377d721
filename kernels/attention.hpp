// Decode attention over a KV slice (GQA and absorbed MLA) returning partial output + LSE:
// CPU reference (fp32).
#pragma once

#include <cstdint>

namespace helix::cpu {

// Decode attention for GQA over a KV slice, returning the partial output normalized by its own
// softmax sum and the natural-log LSE of the scaled scores (-inf and zeros for an empty slice).
struct GqaAttention {
  int64_t batch = 0;
  int64_t q_heads = 0;   // local query heads (global heads q_begin .. q_begin + q_heads - 1)
  int64_t q_begin = 0;   // first global query head
  int64_t kv_begin = 0;  // first global KV head held in the cache
  int64_t kv_heads = 0;  // KV heads held in the cache
  int64_t group = 1;     // query heads per KV head (global head h uses KV head h / group)
  int64_t head_dim = 0;
  int64_t tokens = 0;    // tokens in the slice (for every request)
  int64_t capacity = 0;  // cache rows per (request, KV head)
  float scale = 1.0f;
  const float* q = nullptr;  // [batch, q_heads, head_dim]
  const float* k = nullptr;  // [batch, kv_heads, capacity, head_dim]
  const float* v = nullptr;  // [batch, kv_heads, capacity, head_dim]
  float* out = nullptr;      // [batch, q_heads, head_dim]
  float* lse = nullptr;      // [batch, q_heads]
};
void attention_gqa(const GqaAttention& a);

// Decode attention for absorbed MLA: every head attends over the shared cache of
// (latent[kv_lora], rope key[rope]) rows; the value is the latent itself.
struct MlaAttention {
  int64_t batch = 0;
  int64_t heads = 0;
  int64_t kv_lora = 0;
  int64_t rope = 0;
  int64_t tokens = 0;
  int64_t capacity = 0;
  float scale = 1.0f;
  const float* q = nullptr;   // [batch, heads, kv_lora + rope]: absorbed latent query, rope query
  const float* kv = nullptr;  // [batch, capacity, kv_lora + rope]
  float* out = nullptr;       // [batch, heads, kv_lora]
  float* lse = nullptr;       // [batch, heads]
};
void attention_mla(const MlaAttention& a);

}  // namespace helix::cpu
