// Dense GEMM for decode shapes: CPU reference (fp32).
#pragma once

#include <cstdint>

namespace helix::cpu {

// y[M, N] (=|+=) x[M, K] @ W[K, N]. W has leading dimension ldw >= N (a column slice of a wider
// matrix), x has leading dimension ldx >= K, y has leading dimension ldy >= N.
void gemm(const float* x, int64_t ldx, const float* w, int64_t ldw, float* y, int64_t ldy,
          int64_t m, int64_t k, int64_t n, bool accumulate);

}  // namespace helix::cpu
