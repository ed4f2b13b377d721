// Exact LSE combine of partial attention outputs: CPU reference (fp32).
#pragma once

#include <cstdint>

namespace helix::cpu {

// Exact merge of `parts` partial attention outputs (flash-decoding / Helix step 5):
//   M = max_i lse_i, w_i = exp(lse_i - M), out = sum_i w_i o_i / sum_i w_i, lse = M + ln sum_i w_i.
// Rows whose parts are all empty (lse = -inf) get zeros and lse = -inf.
//   o:   part i, row r at o + i * o_part_stride + r * dim       ([parts][rows][dim] when packed)
//   lse: part i, row r at lse + i * lse_part_stride + r
//   out: [rows, dim]; lse_out: [rows] or nullptr
void lse_combine(int64_t parts, int64_t rows, int64_t dim, const float* o, int64_t o_part_stride,
                 const float* lse, int64_t lse_part_stride, float* out, float* lse_out);

// The same merge over rows of any stride (the exchange layout of kernels/partials.hpp, where a
// row holds its values and then its LSE): part i, row r at o + i * o_part_stride + r * o_row
// and lse + i * lse_part_stride + r * lse_row; out and lse_out packed as above.
void lse_combine_rows(int64_t parts, int64_t rows, int64_t dim, const float* o,
                      int64_t o_part_stride, int64_t o_row, const float* lse,
                      int64_t lse_part_stride, int64_t lse_row, float* out, float* lse_out);

}  // namespace helix::cpu
