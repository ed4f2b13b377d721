#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/gemm.hpp"
#include "kernels/moe.hpp"

namespace helix::cpu {

void moe_route(const float* logits, int64_t tokens, int64_t experts, int64_t top_k, float scale,
               int32_t* expert, float* weight) {
  std::vector<float> score(static_cast<size_t>(experts));
  std::vector<int32_t> order(static_cast<size_t>(experts));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t e = 0; e < experts; ++e)
      score[e] = 1.0f / (1.0f + std::exp(-logits[t * experts + e]));
    std::iota(order.begin(), order.end(), 0);
    // Highest score first; ties broken by the lower expert index, so every rank picks the same.
    std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int32_t a, int32_t b) {
      return score[a] > score[b] || (score[a] == score[b] && a < b);
    });
    double sum = 0;
    for (int64_t i = 0; i < top_k; ++i) sum += score[order[i]];
    for (int64_t i = 0; i < top_k; ++i) {
      expert[t * top_k + i] = order[i];
      weight[t * top_k + i] = float(score[order[i]] / sum) * scale;
    }
  }
}

void swiglu_ffn(const float* x, int64_t m, int64_t hidden, int64_t cols, const float* wg,
                const float* wu, const float* wd, const float* row_scale, float* out,
                float* scratch) {
  if (m == 0 || cols == 0) return;
  float* g = scratch;
  float* u = scratch + m * cols;
  gemm(x, hidden, wg, cols, g, cols, m, hidden, cols, false);
  gemm(x, hidden, wu, cols, u, cols, m, hidden, cols, false);
  for (int64_t i = 0; i < m; ++i) {
    const float s = row_scale ? row_scale[i] : 1.0f;
    for (int64_t j = 0; j < cols; ++j) {
      const float a = g[i * cols + j];
      g[i * cols + j] = s * (a / (1.0f + std::exp(-a))) * u[i * cols + j];
    }
  }
  gemm(g, cols, wd, hidden, out, hidden, m, cols, hidden, true);
}

}  // namespace helix::cpu
