// MoE routing and expert FFNs: CPU reference (fp32).
#pragma once

#include <cstdint>

namespace helix::cpu {

// MoE routing: scores = sigmoid(logits); the top_k experts per token by score; weights are the
// selected scores normalized to sum 1, times `scale` (DeepSeek-V3, without group limits).
//   logits: [tokens, experts]; expert: [tokens, top_k] (descending score); weight: [tokens, top_k]
void moe_route(const float* logits, int64_t tokens, int64_t experts, int64_t top_k, float scale,
               int32_t* expert, float* weight);

// SwiGLU FFN on a column slice: out[m, :] += row_scale[m] * (silu(x Wg) * (x Wu)) @ Wd
//   x: [m, hidden]; wg, wu: [hidden, cols]; wd: [cols, hidden]; row_scale: [m] or nullptr (1);
//   out: [m, hidden] (accumulated); scratch: 2 * m * cols floats
void swiglu_ffn(const float* x, int64_t m, int64_t hidden, int64_t cols, const float* wg,
                const float* wu, const float* wd, const float* row_scale, float* out,
                float* scratch);

}  // namespace helix::cpu
