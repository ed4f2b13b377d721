// Sigmoid top-k routing, one warp per token (cpu::moe_route): experts are taken one at a time in
// (score descending, expert index ascending) order, so that every rank and the CPU reference
// pick the same experts.
#pragma once

#include <cstdint>

namespace helix::cuda {

// The best expert strictly after (prev_s, prev_e) in that order; every lane of the warp returns
// the same (best, best_e). None left: best = -1, best_e = INT32_MAX.
__device__ __forceinline__ void moe_next_best(const float* logits, int64_t experts, int lane,
                                              float prev_s, int32_t prev_e, float& best,
                                              int32_t& best_e) {
  best = -1.0f;
  best_e = INT32_MAX;
  for (int64_t e = lane; e < experts; e += 32) {
    const float s = 1.0f / (1.0f + expf(-logits[e]));
    const bool after = s < prev_s || (s == prev_s && int32_t(e) > prev_e);
    if (!after) continue;
    if (s > best || (s == best && int32_t(e) < best_e)) {
      best = s;
      best_e = int32_t(e);
    }
  }
  for (int o = 16; o > 0; o /= 2) {
    const float ob = __shfl_xor_sync(0xffffffffu, best, o);
    const int32_t oe = __shfl_xor_sync(0xffffffffu, best_e, o);
    if (ob > best || (ob == best && oe < best_e)) {
      best = ob;
      best_e = oe;
    }
  }
}

}  // namespace helix::cuda
