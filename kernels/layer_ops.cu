// The small kernels of a decode layer: RMSNorm, RoPE, conversions, residuals, KV append, SwiGLU
// activation, MoE routing, row gather/scatter, and the counter-based random fills that reproduce
// the host's weights and KV caches bit for bit (before rounding to bf16).
#include <cmath>
#include <cstdint>

#include "comm/cuda_check.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/moe_route.cuh"
#include "kernels/rng.hpp"

namespace helix::cuda {

namespace {

constexpr int kBlock = 256;

unsigned blocks_for(int64_t n, int per_block = kBlock) {
  const int64_t b = (n + per_block - 1) / per_block;
  return unsigned(b < 1 ? 1 : (b > 1048576 ? 1048576 : b));
}

// Block-wide sum (blockDim.x a multiple of 32, at most 1024).
__device__ float block_sum(float v) {
  __shared__ float part[32];
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  __syncthreads();
  if (l == 0) part[w] = v;
  __syncthreads();
  float s = 0.0f;
  for (int i = 0; i < int(blockDim.x / 32); ++i) s += part[i];
  return s;
}

__global__ void rmsnorm_kernel(const float* x, int64_t ldx, const float* w, int64_t dim, float eps,
                               bf16* yb, float* yf) {
  const int64_t r = blockIdx.x;
  const float* xr = x + r * ldx;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
  const float inv = rsqrtf(block_sum(ss) / float(dim) + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = xr[i] * inv * w[i];
    if (yb) yb[r * dim + i] = __float2bfloat16_rn(v);
    if (yf) yf[r * dim + i] = v;
  }
}

// Rotate-half RoPE of one vector (one thread per pair), as cpu::rope.
__device__ void rope_pair(float* v, int64_t dim, int64_t i, int64_t pos, float theta) {
  const int64_t half = dim / 2;
  const double inv_freq = pow(double(theta), -2.0 * double(i) / double(dim));
  const double ang = double(pos) * inv_freq;
  const float c = float(cos(ang)), s = float(sin(ang));
  const float a = v[i], b = v[i + half];
  v[i] = a * c - b * s;
  v[i + half] = a * s + b * c;
}

__global__ void rope_kernel(float* x, int64_t rows, int64_t per_row, int64_t ld_outer,
                            int64_t ld_inner, int64_t dim, int64_t pos, float theta) {
  const int64_t half = dim / 2;
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= rows * half) return;
  const int64_t r = t / half, i = t % half;
  float* v = x + (r / per_row) * ld_outer + (r % per_row) * ld_inner;
  rope_pair(v, dim, i, pos, theta);
}

__global__ void to_bf16_kernel(const float* x, bf16* y, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16_rn(x[i]);
}

__global__ void add_kernel(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = a[i] + b[i];
}

__global__ void residual_sum_kernel(const float* x1, const float* parts, int np, float* out,
                                    int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float acc = 0.0f;
    for (int e = 0; e < np; ++e) acc += parts[int64_t(e) * n + i];
    out[i] = x1[i] + acc;
  }
}

__global__ void kv_append_gqa_kernel(const float* k_new, const float* v_new, int64_t heads,
                                     int64_t dim, bf16* kc, bf16* vc, int64_t capacity, int64_t li,
                                     int64_t n) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  const int64_t d = t % dim, bh = t / dim;  // bh = b * heads + h
  const int64_t dst = (bh * capacity + li) * dim + d;
  kc[dst] = __float2bfloat16_rn(k_new[t]);
  vc[dst] = __float2bfloat16_rn(v_new[t]);
  (void)heads;
}

// One 16-byte chunk (8 bf16) per thread when kVec, else one element.
template <bool kVec>
__global__ void kv_append_rows_kernel(const bf16* src, int64_t width, bf16* cache, int64_t capacity,
                                      int64_t li, int64_t n) {
  constexpr int64_t kPer = kVec ? 8 : 1;
  const int64_t per_row = width / kPer;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < n;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = t / per_row, c = (t % per_row) * kPer;
    const int64_t dst = (r * capacity + li) * width + c;
    if constexpr (kVec)
      *reinterpret_cast<uint4*>(cache + dst) = *reinterpret_cast<const uint4*>(src + r * width + c);
    else
      cache[dst] = src[r * width + c];
  }
}

__global__ void kv_append_mla_kernel(float* ckv, const float* w, int64_t kv_lora, int64_t rope_dim,
                                     float eps, int64_t pos, float theta, bf16* cache,
                                     int64_t capacity, int64_t li) {
  const int64_t b = blockIdx.x, width = kv_lora + rope_dim;
  float* row = ckv + b * width;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < kv_lora; i += blockDim.x) ss += row[i] * row[i];
  const float inv = rsqrtf(block_sum(ss) / float(kv_lora) + eps);
  __syncthreads();
  for (int64_t i = threadIdx.x; i < kv_lora; i += blockDim.x) row[i] = row[i] * inv * w[i];
  for (int64_t i = threadIdx.x; i < rope_dim / 2; i += blockDim.x)
    rope_pair(row + kv_lora, rope_dim, i, pos, theta);
  __syncthreads();
  bf16* dst = cache + (b * capacity + li) * width;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) dst[i] = __float2bfloat16_rn(row[i]);
}

__global__ void mla_q_rope_kernel(const float* qfull, int64_t heads, int64_t nope, int64_t rope_dim,
                                  float* q, int64_t kv_lora, int64_t pos, float theta) {
  const int64_t bh = blockIdx.x;  // b * heads + h
  const float* src = qfull + bh * (nope + rope_dim) + nope;
  float* dst = q + bh * (kv_lora + rope_dim) + kv_lora;
  for (int64_t i = threadIdx.x; i < rope_dim; i += blockDim.x) dst[i] = src[i];
  __syncthreads();
  for (int64_t i = threadIdx.x; i < rope_dim / 2; i += blockDim.x)
    rope_pair(dst, rope_dim, i, pos, theta);
  (void)heads;
}

__global__ void silu_mul_kernel(const float* g, const float* u, const float* row_scale, int64_t m,
                                int64_t cols, bf16* h) {
  const int64_t n = m * cols;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float a = g[i];
    const float s = row_scale ? row_scale[i / cols] : 1.0f;
    h[i] = __float2bfloat16_rn(s * (a / (1.0f + expf(-a))) * u[i]);
  }
}

// One warp per token: sigmoid scores, top-k by repeated arg-max (ties: lower index), normalized.
__global__ void moe_route_kernel(const float* logits, int64_t tokens, int64_t experts,
                                 int64_t top_k, float scale, int32_t* expert, float* weight) {
  const int64_t t = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (t >= tokens) return;
  const float* lg = logits + t * experts;
  float sum = 0.0f;
  int32_t prev_e = -1;
  float prev_s = INFINITY;
  for (int64_t k = 0; k < top_k; ++k) {
    float best;
    int32_t best_e;
    moe_next_best(lg, experts, lane, prev_s, prev_e, best, best_e);
    if (lane == 0) {
      expert[t * top_k + k] = best_e;
      weight[t * top_k + k] = best;
    }
    sum += best;
    prev_s = best;
    prev_e = best_e;
  }
  __syncwarp();
  if (lane == 0)
    for (int64_t k = 0; k < top_k; ++k) weight[t * top_k + k] = weight[t * top_k + k] / sum * scale;
}

__global__ void gather_rows_kernel(const bf16* x, const int32_t* rows, int64_t n, int64_t h,
                                   bf16* y) {
  const int64_t total = n * h;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = x[int64_t(rows[i / h]) * h + i % h];
}

__global__ void scatter_add_rows_kernel(const float* x, const int32_t* rows, int64_t n, int64_t h,
                                        float* y) {
  const int64_t total = n * h;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    y[int64_t(rows[i / h]) * h + i % h] += x[i];
}

__global__ void fill_slice_kernel(bf16* dst, uint64_t key, int64_t cols, int64_t r0, int64_t c0,
                                  int64_t nr, int64_t nc, float scale) {
  const int64_t total = nr * nc;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = r0 + t / nc, j = c0 + t % nc;
    dst[t] = __float2bfloat16_rn(scale * uniform_pm1(key, uint64_t(i * cols + j)));
  }
}

__global__ void fill_slice_f32_kernel(float* dst, uint64_t key, int64_t cols, int64_t r0,
                                      int64_t c0, int64_t nr, int64_t nc, float scale,
                                      float offset) {
  const int64_t total = nr * nc;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = r0 + t / nc, j = c0 + t % nc;
    dst[t] = offset + scale * uniform_pm1(key, uint64_t(i * cols + j));
  }
}

__global__ void fill_wuk_t_kernel(bf16* dst, uint64_t key, int64_t h0, int64_t nh, int64_t kv_lora,
                                  int64_t nope, float scale) {
  const int64_t total = nh * nope * kv_lora;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += int64_t(gridDim.x) * blockDim.x) {
    // dst[(lh * nope + j) * kv_lora + i] = W_uk(h, i, j)
    const int64_t i = t % kv_lora, j = (t / kv_lora) % nope, lh = t / (kv_lora * nope);
    const int64_t h = h0 + lh;
    dst[t] = __float2bfloat16_rn(scale * uniform_pm1(key, uint64_t((h * kv_lora + i) * nope + j)));
  }
}

__global__ void fill_kv_rows_kernel(bf16* dst, uint64_t key, int64_t width, int64_t filled,
                                    int64_t capacity, int64_t kvp, int64_t block, int64_t k) {
  const int64_t total = capacity * width;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = t / width, d = t % width;
    float v = 0.0f;
    if (i < filled) {
      const int64_t pos = ((i / block) * kvp + k) * block + i % block;
      v = uniform_pm1(key, uint64_t(pos * width + d));
    }
    dst[t] = __float2bfloat16_rn(v);
  }
}

}  // namespace

void rmsnorm(const float* x, int64_t ldx, const float* w, int64_t rows, int64_t dim, float eps,
             bf16* y_bf16, float* y_f32, cudaStream_t stream) {
  if (rows == 0) return;
  rmsnorm_kernel<<<unsigned(rows), 256, 0, stream>>>(x, ldx, w, dim, eps, y_bf16, y_f32);
  HELIX_LAUNCH_CHECK();
}

void rope(float* x, int64_t rows, int64_t per_row, int64_t ld_outer, int64_t ld_inner, int64_t dim,
          int64_t pos, float theta, cudaStream_t stream) {
  const int64_t n = rows * (dim / 2);
  if (n == 0) return;
  rope_kernel<<<blocks_for(n), kBlock, 0, stream>>>(x, rows, per_row, ld_outer, ld_inner, dim, pos,
                                                    theta);
  HELIX_LAUNCH_CHECK();
}

void to_bf16(const float* x, bf16* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  to_bf16_kernel<<<blocks_for(n), kBlock, 0, stream>>>(x, y, n);
  HELIX_LAUNCH_CHECK();
}

void add(const float* a, const float* b, float* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  add_kernel<<<blocks_for(n), kBlock, 0, stream>>>(a, b, y, n);
  HELIX_LAUNCH_CHECK();
}

void residual_sum(const float* x1, const float* parts_buf, int parts, float* out, int64_t n,
                  cudaStream_t stream) {
  if (n == 0) return;
  residual_sum_kernel<<<blocks_for(n), kBlock, 0, stream>>>(x1, parts_buf, parts, out, n);
  HELIX_LAUNCH_CHECK();
}

void kv_append_gqa(const float* k_new, const float* v_new, int64_t batch, int64_t heads,
                   int64_t dim, bf16* k_cache, bf16* v_cache, int64_t capacity, int64_t li,
                   cudaStream_t stream) {
  const int64_t n = batch * heads * dim;
  if (n == 0) return;
  kv_append_gqa_kernel<<<blocks_for(n), kBlock, 0, stream>>>(k_new, v_new, heads, dim, k_cache,
                                                             v_cache, capacity, li, n);
  HELIX_LAUNCH_CHECK();
}

void kv_append_rows(const bf16* src, int64_t rows, int64_t width, bf16* cache, int64_t capacity,
                    int64_t li, cudaStream_t stream) {
  if (rows * width == 0) return;
  const bool vec = width % 8 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(cache) % 16 == 0;
  if (vec) {
    const int64_t n = rows * width / 8;
    kv_append_rows_kernel<true>
        <<<blocks_for(n), kBlock, 0, stream>>>(src, width, cache, capacity, li, n);
  } else {
    const int64_t n = rows * width;
    kv_append_rows_kernel<false>
        <<<blocks_for(n), kBlock, 0, stream>>>(src, width, cache, capacity, li, n);
  }
  HELIX_LAUNCH_CHECK();
}

void kv_append_mla(float* ckv, const float* kv_norm_w, int64_t batch, int64_t kv_lora,
                   int64_t rope_dim, float eps, int64_t pos, float theta, bf16* cache,
                   int64_t capacity, int64_t li, cudaStream_t stream) {
  if (batch == 0) return;
  kv_append_mla_kernel<<<unsigned(batch), 256, 0, stream>>>(ckv, kv_norm_w, kv_lora, rope_dim, eps,
                                                            pos, theta, cache, capacity, li);
  HELIX_LAUNCH_CHECK();
}

void mla_q_rope(const float* qfull, int64_t batch, int64_t heads, int64_t nope, int64_t rope_dim,
                float* q, int64_t kv_lora, int64_t pos, float theta, cudaStream_t stream) {
  if (batch * heads == 0) return;
  mla_q_rope_kernel<<<unsigned(batch * heads), 64, 0, stream>>>(qfull, heads, nope, rope_dim, q,
                                                                kv_lora, pos, theta);
  HELIX_LAUNCH_CHECK();
}

void silu_mul(const float* g, const float* u, const float* row_scale, int64_t m, int64_t cols,
              bf16* h, cudaStream_t stream) {
  if (m * cols == 0) return;
  silu_mul_kernel<<<blocks_for(m * cols), kBlock, 0, stream>>>(g, u, row_scale, m, cols, h);
  HELIX_LAUNCH_CHECK();
}

void moe_route(const float* logits, int64_t tokens, int64_t experts, int64_t top_k, float scale,
               int32_t* expert, float* weight, cudaStream_t stream) {
  if (tokens == 0) return;
  moe_route_kernel<<<blocks_for(tokens * 32), kBlock, 0, stream>>>(logits, tokens, experts, top_k,
                                                                   scale, expert, weight);
  HELIX_LAUNCH_CHECK();
}

void gather_rows(const bf16* x, const int32_t* rows, int64_t n, int64_t h, bf16* y,
                 cudaStream_t stream) {
  if (n * h == 0) return;
  gather_rows_kernel<<<blocks_for(n * h), kBlock, 0, stream>>>(x, rows, n, h, y);
  HELIX_LAUNCH_CHECK();
}

void scatter_add_rows(const float* x, const int32_t* rows, int64_t n, int64_t h, float* y,
                      cudaStream_t stream) {
  if (n * h == 0) return;
  scatter_add_rows_kernel<<<blocks_for(n * h), kBlock, 0, stream>>>(x, rows, n, h, y);
  HELIX_LAUNCH_CHECK();
}

void fill_slice(bf16* dst, uint64_t key, int64_t cols, int64_t r0, int64_t r1, int64_t c0,
                int64_t c1, float scale, cudaStream_t stream) {
  const int64_t nr = r1 - r0, nc = c1 - c0;
  if (nr <= 0 || nc <= 0) return;
  fill_slice_kernel<<<blocks_for(nr * nc), kBlock, 0, stream>>>(dst, key, cols, r0, c0, nr, nc,
                                                                scale);
  HELIX_LAUNCH_CHECK();
}

void fill_slice_f32(float* dst, uint64_t key, int64_t cols, int64_t r0, int64_t r1, int64_t c0,
                    int64_t c1, float scale, float offset, cudaStream_t stream) {
  const int64_t nr = r1 - r0, nc = c1 - c0;
  if (nr <= 0 || nc <= 0) return;
  fill_slice_f32_kernel<<<blocks_for(nr * nc), kBlock, 0, stream>>>(dst, key, cols, r0, c0, nr, nc,
                                                                    scale, offset);
  HELIX_LAUNCH_CHECK();
}

void fill_wuk_t(bf16* dst, uint64_t key, int64_t h0, int64_t h1, int64_t kv_lora, int64_t nope,
                float scale, cudaStream_t stream) {
  const int64_t n = (h1 - h0) * nope * kv_lora;
  if (n <= 0) return;
  fill_wuk_t_kernel<<<blocks_for(n), kBlock, 0, stream>>>(dst, key, h0, h1 - h0, kv_lora, nope,
                                                          scale);
  HELIX_LAUNCH_CHECK();
}

void fill_kv_rows(bf16* dst, uint64_t key, int64_t width, int64_t filled, int64_t capacity,
                  int64_t kvp, int64_t block, int64_t k, cudaStream_t stream) {
  if (capacity * width == 0) return;
  fill_kv_rows_kernel<<<blocks_for(capacity * width), kBlock, 0, stream>>>(dst, key, width, filled,
                                                                           capacity, kvp, block, k);
  HELIX_LAUNCH_CHECK();
}

void poison(void* dst, int64_t bytes, cudaStream_t stream) {
  // 0xFF bytes: NaN in fp32 and bf16.
  HELIX_CUDA_CHECK(cudaMemsetAsync(dst, 0xFF, size_t(bytes), stream));
}

int sm_count() {
  static int counts[64] = {};  // per device ordinal; queried once (launchers call this per launch)
  int dev = 0;
  HELIX_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= 64) {
    int n = 0;
    HELIX_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
  }
  if (counts[dev] == 0)
    HELIX_CUDA_CHECK(cudaDeviceGetAttribute(&counts[dev], cudaDevAttrMultiProcessorCount, dev));
  return counts[dev];
}

}  // namespace helix::cuda
