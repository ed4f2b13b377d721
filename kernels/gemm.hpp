// Dense GEMM for decode shapes: CPU reference (fp32).
#pragma once

#include <cstdint>

namespace helix {

// One GEMM shape for every GEMM of the suite (cpu::gemm's arguments, cuda::Gemm, the
// micro-benchmark cases): y[m, n] = x[m, k] @ w[k, n], row-major, leading dimensions ldx >= k,
// ldw >= n, ldy >= n. batch > 1: that many independent GEMMs, GEMM i on x + i * stride_x,
// w + i * stride_w and y + i * stride_y (MLA's per-head W_uk absorb and W_uv).
struct GemmShape {
  int64_t m = 0, k = 0, n = 0;
  int64_t ldx = 0, ldw = 0, ldy = 0;
  bool y_bf16 = false;      // CUDA: output in bf16 (else fp32)
  bool accumulate = false;  // y += (fp32 output only)
  int batch = 1;
  int64_t stride_x = 0, stride_w = 0, stride_y = 0;

  // Packed operands: ld = k, n, n; batches one after another.
  static GemmShape packed(int64_t m, int64_t k, int64_t n, int batch = 1) {
    GemmShape g;
    g.m = m;
    g.k = k;
    g.n = n;
    g.ldx = k;
    g.ldw = n;
    g.ldy = n;
    g.batch = batch;
    g.stride_x = m * k;
    g.stride_w = k * n;
    g.stride_y = m * n;
    return g;
  }
};

}  // namespace helix

namespace helix::cpu {

// y[M, N] (=|+=) x[M, K] @ W[K, N]. W has leading dimension ldw >= N (a column slice of a wider
// matrix), x has leading dimension ldx >= K, y has leading dimension ldy >= N.
void gemm(const float* x, int64_t ldx, const float* w, int64_t ldw, float* y, int64_t ldy,
          int64_t m, int64_t k, int64_t n, bool accumulate);

}  // namespace helix::cpu
