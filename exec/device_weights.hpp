// One rank's weights and KV cache on the device, generated on the GPU from the counter-based RNG:
// the same values as make_layer_weights / make_kv_cache (exec/layer_data.hpp), rounded to bf16.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "comm/device_buffer.hpp"
#include "layouts/model_spec.hpp"
#include "layouts/rank_shard.hpp"

namespace helix {

using bf16 = __nv_bfloat16;

// bf16 matrices, fp32 norm weights (layout as LayerWeights).
struct DeviceWeights {
  DeviceBuffer<float> attn_norm, q_norm, kv_norm, ffn_norm;
  DeviceBuffer<bf16> wq, wk, wv, wdq, wuq, wdkv, wuk_t, wuv, wo;
  DeviceBuffer<bf16> w_gate, w_up, w_down, router, e_gate, e_up, e_down, s_gate, s_up, s_down;
  int64_t bytes() const;
};
DeviceWeights make_device_weights(const ModelSpec& model, const RankShard& shard, uint64_t seed,
                                  cudaStream_t stream);

// KV cache of one rank (KvCache's layout in bf16): GQA K and V [batch, kv_heads, capacity, 128];
// MLA one latent + rope cache [batch, capacity, 576] (v empty). Rows of the first seq_len
// positions this rank owns hold their values; the rest are zero.
struct DeviceCache {
  DeviceBuffer<bf16> k, v;
  int64_t capacity = 0;  // rows per (request, head)
  int64_t bytes() const { return k.bytes() + v.bytes(); }
};
DeviceCache make_device_cache(const ModelSpec& model, const RankShard& shard, int batch,
                              int64_t seq_len, int64_t max_positions, uint64_t seed,
                              cudaStream_t stream);

}  // namespace helix
