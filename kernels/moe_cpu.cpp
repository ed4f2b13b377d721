#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels/gemm.hpp"
#include "kernels/moe.hpp"

namespace helix::cpu {

void moe_route(const float* logits, int64_t tokens, int64_t experts, int64_t top_k, float scale,
               int32_t* expert, float* weight, float* margin) {
  std::vector<float> score(static_cast<size_t>(experts));
  std::vector<int32_t> order(static_cast<size_t>(experts));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t e = 0; e < experts; ++e)
      score[e] = 1.0f / (1.0f + std::exp(-logits[t * experts + e]));
    std::iota(order.begin(), order.end(), 0);
    // Highest score first; ties broken by the lower expert index, so every rank picks the same.
    const int64_t ranked = std::min(top_k + 1, experts);  // the (k+1)-th for the margin
    std::partial_sort(order.begin(), order.begin() + ranked, order.end(),
                      [&](int32_t a, int32_t b) {
                        return score[a] > score[b] || (score[a] == score[b] && a < b);
                      });
    if (margin)
      margin[t] = top_k < experts ? score[order[top_k - 1]] - score[order[top_k]]
                                  : std::numeric_limits<float>::infinity();
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

void moe_ffn(const MoeFfnRef& a) {
  const int64_t H = a.hidden, B = a.tokens, K = a.top_k;
  const int64_t widest = std::max<int64_t>({a.cols, a.shared_cols, 1});
  std::fill(a.out, a.out + B * H, 0.0f);
  std::vector<float> scratch(size_t(2 * B * widest)), xe(size_t(B * H)), ye(size_t(B * H));
  std::vector<float> we(static_cast<size_t>(B));
  std::vector<int64_t> rows;
  for (int64_t e = a.expert_begin; e < a.expert_end && a.cols > 0; ++e) {
    rows.clear();
    for (int64_t t = 0; t < B; ++t)
      for (int64_t i = 0; i < K; ++i)
        if (a.expert[t * K + i] == e) {
          we[rows.size()] = a.weight[t * K + i];
          rows.push_back(t);
        }
    if (rows.empty()) continue;
    const int64_t n = int64_t(rows.size()), le = e - a.expert_begin;
    for (int64_t r = 0; r < n; ++r)
      std::copy(a.x + rows[size_t(r)] * H, a.x + (rows[size_t(r)] + 1) * H, &xe[size_t(r * H)]);
    std::fill(ye.begin(), ye.begin() + n * H, 0.0f);
    swiglu_ffn(xe.data(), n, H, a.cols, a.gate + le * H * a.cols, a.up + le * H * a.cols,
               a.down + le * a.cols * H, we.data(), ye.data(), scratch.data());
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < H; ++j) a.out[rows[size_t(r)] * H + j] += ye[size_t(r * H + j)];
  }
  if (a.shared_cols > 0)
    swiglu_ffn(a.x, B, H, a.shared_cols, a.s_gate, a.s_up, a.s_down, nullptr, a.out,
               scratch.data());
}

}  // namespace helix::cpu
