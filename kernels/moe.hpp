// MoE routing and expert FFNs: CPU reference (fp32).
#pragma once

#include <cstdint>

namespace helix::cpu {

// MoE routing: scores = sigmoid(logits); the top_k experts per token by score; weights are the
// selected scores normalized to sum 1, times `scale` (DeepSeek-V3, without group limits).
//   logits: [tokens, experts]; expert: [tokens, top_k] (descending score); weight: [tokens, top_k]
//   margin (optional): [tokens], score of the k-th minus the (k+1)-th expert (+inf when
//   top_k = experts): how far the choice is from flipping.
void moe_route(const float* logits, int64_t tokens, int64_t experts, int64_t top_k, float scale,
               int32_t* expert, float* weight, float* margin = nullptr);

// The MoE FFN of one rank (as the decode executors compute it): for every token, the sum over its
// routed experts held here (expert_begin .. expert_end - 1) of weight * SwiGLU on the column
// slice `cols`, plus the shared expert's slice (shared_cols = 0: none). Overwrites out.
//   x [tokens, hidden]; expert, weight [tokens, top_k] (moe_route);
//   gate, up [held][hidden][cols]; down [held][cols][hidden];
//   s_gate, s_up [hidden][shared_cols]; s_down [shared_cols][hidden]; out [tokens, hidden]
struct MoeFfnRef {
  int64_t tokens = 0, hidden = 0, top_k = 0, expert_begin = 0, expert_end = 0, cols = 0,
          shared_cols = 0;
  const float* x = nullptr;
  const int32_t* expert = nullptr;
  const float* weight = nullptr;
  const float *gate = nullptr, *up = nullptr, *down = nullptr;
  const float *s_gate = nullptr, *s_up = nullptr, *s_down = nullptr;
  float* out = nullptr;
};
void moe_ffn(const MoeFfnRef& a);

// SwiGLU FFN on a column slice: out[m, :] += row_scale[m] * (silu(x Wg) * (x Wu)) @ Wd
//   x: [m, hidden]; wg, wu: [hidden, cols]; wd: [cols, hidden]; row_scale: [m] or nullptr (1);
//   out: [m, hidden] (accumulated); scratch: 2 * m * cols floats
void swiglu_ffn(const float* x, int64_t m, int64_t hidden, int64_t cols, const float* wg,
                const float* wu, const float* wd, const float* row_scale, float* out,
                float* scratch);

}  // namespace helix::cpu
