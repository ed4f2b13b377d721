// The MoE FFN of one rank on the GPU without host round trips (CPU reference: cpu::moe_route and
// cpu::moe_ffn in kernels/moe.hpp):
//   1. router logits [tokens, experts] = x @ W_router (cuBLASLt, fp32 out);
//   2. moe_plan (one CTA): sigmoid top-k per token (ties: lower expert index), the routing
//      weights normalized and scaled, the margin between the k-th and (k+1)-th score, and the
//      grouping of the (token, expert) assignments of the held experts into contiguous slots,
//      plus one slot per token for the shared expert; the work list of step 3;
//   3. moe_ffn (one persistent launch over the SMs, a programmatic dependent of step 2 that
//      streams the shared expert while the plan runs): SwiGLU of every expert that received
//      tokens and of the shared expert, with the weights streamed once by TMA.
// Outputs: out [tokens, hidden] fp32 (overwritten) = sum over the token's held experts of
// weight * expert(x) + shared(x); the per-token routing (expert ids, weights, margins).
//
// Shapes (row-major, bf16 weights as the decode executors hold them):
//   x        [tokens, hidden]                 bf16 (the normalized hidden state)
//   router   [hidden, experts]                bf16 (all experts)
//   gate, up [held][hidden][cols]             bf16 (held experts expert_begin .. expert_end - 1,
//   down     [held][cols][hidden]             bf16  column slice `cols` of the expert FFN)
//   s_gate, s_up [hidden][shared_cols], s_down [shared_cols][hidden]   (shared expert slice;
//                                              shared_cols = 0: none)
//   expert [tokens, top_k] int32 (global ids, descending score), weight [tokens, top_k] fp32,
//   margin, logit_margin [tokens] fp32 (see MoeRouting)
// Requirements (checked, UsageError): hidden, cols, shared_cols multiples of 8 (TMA needs 16-byte
// row strides), weights, x and out 16-byte aligned, the workspace 256-byte aligned, at most 1024
// held experts and max_tokens * top_k <= 4096.
//
// Work decomposition (kernels/moe_grid.hpp): phase 1 units are (sub-item of <= 32 tokens of an
// expert, 256 gate/up columns, a row part of hidden), phase 2 units (sub-item, 512 output
// columns, a row part of cols), phase 3 units (64 output columns: the sum over each token's
// slots). Partial sums go to the workspace and are reduced in a fixed order (the results do not
// depend on timing); the down projection of an expert starts once its activations are complete.
// Needs a GPU of compute capability 9.0 and an sm_90 build (available()); the executors keep
// their per-expert path otherwise. Step 3 has one CTA per SM; launched as a programmatic
// dependent of step 2 (the default), CTA b streams a unit of the shared expert before it reads
// the plan, which assumes that all its CTAs become resident (as they do unless other kernels
// hold SMs indefinitely); HELIX_MOE_PDL=0 launches step 3 after step 2 ends and takes every unit
// from the shared queue.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

namespace helix::cuda {

class Gemm;

struct MoeFfnShape {
  int64_t hidden = 0;
  int64_t experts = 0;  // routed experts of the model
  int64_t top_k = 0;
  int64_t expert_begin = 0, expert_end = 0;  // held experts
  int64_t cols = 0;                          // columns of each held expert's FFN slice
  int64_t shared_cols = 0;                   // columns of the shared expert's slice (0: none)
  float routed_scale = 1.0f;
  int64_t max_tokens = 0;  // at most tokens per call (top_k * max_tokens <= 4096)
};

struct MoeFfnWeights {
  const __nv_bfloat16* router = nullptr;
  const __nv_bfloat16 *gate = nullptr, *up = nullptr, *down = nullptr;
  const __nv_bfloat16 *s_gate = nullptr, *s_up = nullptr, *s_down = nullptr;
};

// Per-token routing as chosen on the GPU (device pointers, [tokens, top_k] and [tokens]); the
// margins are optional (nullptr: not written): how far each token's choice is from flipping,
// in sigmoid score and in router logit (k-th minus (k+1)-th expert, +inf when top_k = experts).
struct MoeRouting {
  int32_t* expert = nullptr;
  float* weight = nullptr;
  float* margin = nullptr;
  float* logit_margin = nullptr;
};

// What the last call did (read back on request; never on the timed path).
struct MoePlanSummary {
  int64_t active_experts = 0;  // held experts that received tokens
  int64_t assignments = 0;     // (token, held expert) pairs
  int64_t phase1_units = 0, phase2_units = 0, phase3_units = 0;
  int64_t phase1_parts = 0, phase2_parts = 0;  // row parts per column group (1: unsplit)
};

class MoeFfn {
 public:
  // Encodes the weights' tensor maps once; throws UsageError on shapes it cannot run.
  MoeFfn(const MoeFfnShape& shape, const MoeFfnWeights& weights);
  // True on a GPU of compute capability 9.0 with a build that holds sm_90 code.
  static bool available();
  // available(), unless HELIX_MOE_GROUPED=0 asks the callers (the CUDA executor, helix-micro's
  // moe_experts) for their per-expert cuBLASLt path.
  static bool enabled();
  // Why the kernels cannot run `shape` (the constructor's UsageError without "MoeFfn: "), or ""
  // when they can; the constructor also checks the weights' pointers.
  static std::string unsupported(const MoeFfnShape& shape);
  // Device workspace of a call for `shape` (what workspace_bytes() returns on an instance).
  static int64_t workspace_bytes(const MoeFfnShape& shape);
  // The grouped kernel (for cudaFuncGetAttributes: registers, local memory).
  static const void* ffn_kernel();
  // Device workspace of a call (plan, partial sums, activations), 256-byte aligned offsets.
  int64_t workspace_bytes() const;
  // Steps 1-3 on `stream`: no host synchronization. logits: [max_tokens, experts] fp32 scratch.
  void run(Gemm& gemm, const __nv_bfloat16* x, int64_t tokens, float* logits, void* workspace,
           float* out, const MoeRouting& routing, cudaStream_t stream) const;
  // Steps 2-3 only, from logits computed by the caller.
  void run_from_logits(const __nv_bfloat16* x, const float* logits, int64_t tokens, void* workspace,
                       float* out, const MoeRouting& routing, cudaStream_t stream) const;
  // Copies the plan of the last call on `workspace` to the host (synchronizes the stream).
  MoePlanSummary summary(const void* workspace, cudaStream_t stream) const;
  const MoeFfnShape& shape() const { return shape_; }

 private:
  MoeFfnShape shape_;
  MoeFfnWeights w_;
  CUtensorMap gate_, up_, down_, s_gate_, s_up_, s_down_;
};

}  // namespace helix::cuda
