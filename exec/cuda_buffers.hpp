// The device memory of the CUDA executor, as one table that both the allocations and the memory
// planner read: the schedule's named buffers (layouts/schedule.hpp's activation_buffers) at their
// device element types, the executor's own scratch (bf16 GEMM inputs, expert staging, the
// split-KV workspace), and the footprint of a rank (weights, KV cache, the table, cuBLASLt's
// workspace).
#pragma once

#include <array>
#include <cstdint>

#include "kernels/cuda_kernels.hpp"
#include "layouts/schedule.hpp"

namespace helix {

// Bytes per element of a schedule buffer on the GPU: the projection input `combined` is bf16 (the
// GEMM's input type), the routed expert ids int32, everything else fp32.
int cuda_elem_bytes(Buffer b);

// The CUDA executor's scratch beyond the schedule's buffers.
enum class Scratch : int {
  normed_bf,    // [B, H] bf16 RMSNorm of the layer input
  q_latent_bf,  // MLA: [B, q_lora] bf16
  q_full_bf,    // MLA: [B, q_heads, nope + rope] bf16
  latent_bf,    // MLA: [B, q_heads, kv_lora] bf16 latent partials (W_uv's input)
  ffn_in_bf,    // [B, H] bf16 RMSNorm of the residual
  gate,
  up,           // [rows, widest FFN slice] fp32 SwiGLU halves (rows: max(B, assignments))
  act_bf,       // [rows, widest FFN slice] bf16 SwiGLU output
  expert_rows,  // MoE: [assignments] int32 token of each (token, expert) assignment
  expert_wts,   // MoE: [assignments] fp32 routing weight of each
  expert_in,    // MoE: [assignments, H] bf16 gathered tokens
  expert_out,   // MoE: [assignments, H] fp32 expert outputs
  attn_split,   // fp32 split-KV workspace of the decode attention (any chunk of the batch)
};
constexpr int kNumScratch = int(Scratch::attn_split) + 1;
struct ScratchEntry {
  const char* name = "";
  int64_t elems = 0;
  int elem_bytes = 4;
  int64_t bytes() const { return elems * elem_bytes; }
};
std::array<ScratchEntry, kNumScratch> cuda_scratch(const ModelSpec& model, const RankShard& shard,
                                                   int batch, int64_t cache_capacity);

// Bytes a rank's executor allocates on the device.
struct CudaFootprint {
  int64_t weights = 0, kv = 0, activations = 0, workspace = 0;
  int64_t total() const { return weights + kv + activations + workspace; }
};
CudaFootprint cuda_footprint(const ModelSpec& model, const RankShard& shard, int batch,
                             int64_t max_positions);
// cuBLASLt workspace of the executor's GEMMs.
constexpr int64_t kGemmWorkspaceBytes = int64_t(32) << 20;

// The decode attention of `batch` requests over `tokens` tokens of a cache of `capacity` rows
// (pointers unset), leaving the SMs the layout reserves for HOP-B's exchanges.
cuda::DecodeAttention attention_shape(const ModelSpec& model, const RankShard& shard, int64_t batch,
                                      int64_t tokens, int64_t capacity);

}  // namespace helix
