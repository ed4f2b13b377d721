// The device memory of the CUDA executor, as one table that both the allocations and the memory
// planner read: the schedule's named buffers (layouts/schedule.hpp's activation_buffers) at their
// device element types, the executor's own scratch (bf16 GEMM inputs, expert staging, the
// split-KV workspace), and the footprint of a rank (weights, KV cache, the table, cuBLASLt's
// workspace).
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "kernels/cuda_kernels.hpp"
#include "kernels/moe_cuda.hpp"
#include "layouts/schedule.hpp"

namespace helix {

// Bytes per element of a schedule buffer on the GPU: the projection input `combined` is bf16 (the
// GEMM's input type), the routed expert ids int32, everything else fp32.
int cuda_elem_bytes(Buffer b);

// The MoE FFN step as one grouped launch (kernels/moe_cuda.hpp: router GEMM, routing and grouping
// on the GPU, every held expert that received tokens and the shared expert's slice in one
// persistent kernel; no host round trip): its shape for this rank, or none where the executor
// runs the experts one by one after copying the routing to the host (dense layers, ranks outside
// the FFN, GPUs other than compute capability 9.0 or builds without sm_90 code,
// HELIX_MOE_GROUPED=0, and shapes the kernel refuses: a hidden size or column slice that is not a
// multiple of 8, more than 4096 (token, expert) assignments).
std::optional<cuda::MoeFfnShape> grouped_moe_shape(const ModelSpec& model, const RankShard& shard,
                                                   int batch);

// The CUDA executor's scratch beyond the schedule's buffers (the per-expert MoE path's entries are
// empty when the grouped launch runs, and its workspace empty otherwise).
enum class Scratch : int {
  normed_bf,    // [B, H] bf16 RMSNorm of the layer input
  q_latent_bf,  // MLA: [B, q_lora] bf16
  q_full_bf,    // MLA: [B, q_heads, nope + rope] bf16
  latent_bf,    // MLA: [B, q_heads, kv_lora] bf16 latent partials (W_uv's input)
  ffn_in_bf,    // [B, H] bf16 RMSNorm of the residual
  gate,
  up,           // [rows, widest FFN slice] fp32 SwiGLU halves (rows: max(B, assignments); MoE
                // with the grouped launch: none)
  act_bf,       // [rows, widest FFN slice] bf16 SwiGLU output
  expert_rows,  // MoE: [assignments] int32 token of each (token, expert) assignment
  expert_wts,   // MoE: [assignments] fp32 routing weight of each
  expert_in,    // MoE: [assignments, H] bf16 gathered tokens
  expert_out,   // MoE: [assignments, H] fp32 expert outputs
  attn_split,   // fp32 split-KV workspace of the decode attention (any chunk of the batch)
  moe_work,     // MoE, grouped launch: its plan, partial sums and activations (bytes)
};
constexpr int kNumScratch = int(Scratch::moe_work) + 1;
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
