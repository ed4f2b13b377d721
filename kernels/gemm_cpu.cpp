#include "kernels/gemm.hpp"

namespace helix::cpu {

// Decode GEMMs have few rows: stream W once per row block, 4 rows at a time so every loaded W row
// serves 4 outputs; the inner loop over N is contiguous and vectorizes.
void gemm(const float* x, int64_t ldx, const float* w, int64_t ldw, float* y, int64_t ldy,
          int64_t m, int64_t k, int64_t n, bool accumulate) {
  if (!accumulate)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) y[i * ldy + j] = 0.0f;
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) {
    float* y0 = y + i * ldy;
    float* y1 = y0 + ldy;
    float* y2 = y1 + ldy;
    float* y3 = y2 + ldy;
    for (int64_t p = 0; p < k; ++p) {
      const float a0 = x[i * ldx + p], a1 = x[(i + 1) * ldx + p];
      const float a2 = x[(i + 2) * ldx + p], a3 = x[(i + 3) * ldx + p];
      const float* wr = w + p * ldw;
      for (int64_t j = 0; j < n; ++j) {
        const float b = wr[j];
        y0[j] += a0 * b;
        y1[j] += a1 * b;
        y2[j] += a2 * b;
        y3[j] += a3 * b;
      }
    }
  }
  for (; i < m; ++i) {
    float* yr = y + i * ldy;
    for (int64_t p = 0; p < k; ++p) {
      const float a = x[i * ldx + p];
      const float* wr = w + p * ldw;
      for (int64_t j = 0; j < n; ++j) yr[j] += a * wr[j];
    }
  }
}

}  // namespace helix::cpu
