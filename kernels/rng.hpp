// Counter-based random numbers: every value is a pure function of (seed, tensor, indices), so any
// rank (or GPU thread) can generate exactly its shard of a weight matrix or KV cache, and the
// single-rank reference sees the very same values without any data being moved.
#pragma once

#include <cstdint>

#include "kernels/common.hpp"

namespace helix {

// Tensors of one layer. Expert tensors take the expert index as the first key index; KV caches
// take (request, KV head); decode inputs take the decode step.
enum class TensorId : uint64_t {
  x_in = 1,
  attn_norm,
  wq,
  wk,
  wv,
  wo,
  ffn_norm,
  w_gate,
  w_up,
  w_down,
  router,
  exp_gate,
  exp_up,
  exp_down,
  sh_gate,
  sh_up,
  sh_down,
  mla_wdq,
  mla_qnorm,
  mla_wuq,
  mla_wdkv,
  mla_kvnorm,
  mla_wuk,
  mla_wuv,
  k_cache,
  v_cache,
  latent_cache,
};

// SplitMix64 finalizer: a bijective 64-bit mix.
HELIX_HD uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Key of one tensor (or one slice of it: expert, request, head).
HELIX_HD uint64_t tensor_key(uint64_t seed, TensorId tensor, uint64_t a = 0, uint64_t b = 0) {
  return mix64(mix64(mix64(seed ^ mix64(static_cast<uint64_t>(tensor))) ^ mix64(a + 1)) ^
               mix64(b + 0x51ull));
}

// Uniform in [-1, 1) with 24 random bits (exact in fp32): element `index` of the keyed tensor.
HELIX_HD float uniform_pm1(uint64_t key, uint64_t index) {
  const uint64_t h = mix64(key ^ (index * 0xd1b54a32d192ed03ull));
  return float(int64_t(h >> 40) - (int64_t(1) << 23)) * (1.0f / float(1 << 23));
}

}  // namespace helix
