#include <cmath>
#include <limits>

#include "kernels/combine.hpp"

namespace helix::cpu {

void lse_combine(int64_t parts, int64_t rows, int64_t dim, const float* o, int64_t o_part_stride,
                 const float* lse, int64_t lse_part_stride, float* out, float* lse_out) {
  lse_combine_rows(parts, rows, dim, o, o_part_stride, dim, lse, lse_part_stride, 1, out, lse_out);
}

void lse_combine_rows(int64_t parts, int64_t rows, int64_t dim, const float* o,
                      int64_t o_part_stride, int64_t o_row, const float* lse,
                      int64_t lse_part_stride, int64_t lse_row, float* out, float* lse_out) {
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < rows; ++r) {
    float m = ninf;
    for (int64_t i = 0; i < parts; ++i) {
      const float l = lse[i * lse_part_stride + r * lse_row];
      m = l > m ? l : m;
    }
    float* y = out + r * dim;
    for (int64_t j = 0; j < dim; ++j) y[j] = 0.0f;
    if (m == ninf) {  // every part empty
      if (lse_out) lse_out[r] = ninf;
      continue;
    }
    double sum = 0;
    for (int64_t i = 0; i < parts; ++i) {
      const float l = lse[i * lse_part_stride + r * lse_row];
      if (l == ninf) continue;
      const float wi = std::exp(l - m);
      sum += wi;
      const float* x = o + i * o_part_stride + r * o_row;
      for (int64_t j = 0; j < dim; ++j) y[j] += wi * x[j];
    }
    const float inv = float(1.0 / sum);  // sum >= 1: the maximal part has weight exp(0)
    for (int64_t j = 0; j < dim; ++j) y[j] *= inv;
    if (lse_out) lse_out[r] = m + float(std::log(sum));
  }
}

}  // namespace helix::cpu
