// Exact LSE combine of partial attention outputs (flash-decoding split merge and Helix step 5),
// reading the partials in place with strides (the All-to-All receive layout). One block per row:
// the block first turns the row's LSE values into weights w_i = exp(lse_i - M) / sum (shared
// memory), then its threads split the columns (16-byte loads) and the parts (so that hundreds of
// splits are summed in parallel, not one after another), and reduce over the parts at the end.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "comm/cuda_check.hpp"
#include "kernels/cuda_kernels.hpp"

namespace helix::cuda {

namespace {

constexpr int kMaxThreads = 1024;

__device__ float block_reduce(float v, bool is_max, float* scratch) {
  for (int o = 16; o > 0; o /= 2) {
    const float x = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, x) : v + x;
  }
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  __syncthreads();
  if (l == 0) scratch[w] = v;
  __syncthreads();
  float r = is_max ? -INFINITY : 0.0f;
  for (int i = 0; i < int(blockDim.x / 32); ++i) r = is_max ? fmaxf(r, scratch[i]) : r + scratch[i];
  return r;
}

// vec: columns in groups of 4 (16-byte loads). cgp: column groups per pass; pg: part groups.
template <bool kVec>
__global__ void __launch_bounds__(kMaxThreads)
    lse_combine_kernel(int64_t parts, int64_t dim, const float* o, int64_t o_stride,
                       const float* lse, int64_t lse_stride, float* out_f32, bf16* out_bf16,
                       float* lse_out, int cgp, int pg) {
  extern __shared__ float sh[];
  float* w = sh;            // [parts]
  float* red = sh + parts;  // [pg][cgp * width]
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < parts; i += blockDim.x) m = fmaxf(m, lse[i * lse_stride + row]);
  m = block_reduce(m, true, scratch);
  float s = 0.0f;
  if (m != -INFINITY)
    for (int64_t i = threadIdx.x; i < parts; i += blockDim.x) {
      const float l = lse[i * lse_stride + row];
      s += l == -INFINITY ? 0.0f : __expf(l - m);
    }
  s = block_reduce(s, false, scratch);
  const float inv = s > 0.0f ? 1.0f / s : 0.0f;
  for (int64_t i = threadIdx.x; i < parts; i += blockDim.x) {
    const float l = lse[i * lse_stride + row];
    w[i] = (m == -INFINITY || l == -INFINITY) ? 0.0f : __expf(l - m) * inv;
  }
  if (lse_out && threadIdx.x == 0) lse_out[row] = m == -INFINITY ? -INFINITY : m + logf(s);
  __syncthreads();

  constexpr int kW = kVec ? 4 : 1;
  const int64_t groups = dim / kW;
  const int cg = threadIdx.x % cgp, pi = threadIdx.x / cgp;
  for (int64_t c0 = 0; c0 < groups; c0 += cgp) {
    const int64_t c = c0 + cg;
    float acc[kW];
#pragma unroll
    for (int j = 0; j < kW; ++j) acc[j] = 0.0f;
    if (pi < pg && c < groups) {
#pragma unroll 4
      for (int64_t i = pi; i < parts; i += pg) {
        const float wi = w[i];
        const float* x = o + i * o_stride + row * dim + c * kW;
        if (kVec) {
          const float4 v = __ldcs(reinterpret_cast<const float4*>(x));
          acc[0] += wi * v.x;
          acc[1 % kW] += wi * v.y;
          acc[2 % kW] += wi * v.z;
          acc[kW - 1] += wi * v.w;
        } else {
          acc[0] += wi * x[0];
        }
      }
      if (pg > 1)
#pragma unroll
        for (int j = 0; j < kW; ++j) red[(pi * cgp + cg) * kW + j] = acc[j];
    }
    if (pg > 1) {
      __syncthreads();
      if (pi == 0 && c < groups)
        for (int p = 1; p < pg; ++p)
#pragma unroll
          for (int j = 0; j < kW; ++j) acc[j] += red[(p * cgp + cg) * kW + j];
      __syncthreads();
    }
    if (pi == 0 && c < groups) {
      const int64_t at = row * dim + c * kW;
      if (kVec) {
        if (out_f32)
          __stcs(reinterpret_cast<float4*>(out_f32 + at),
                 make_float4(acc[0], acc[1 % kW], acc[2 % kW], acc[kW - 1]));
        if (out_bf16) {
          __nv_bfloat162* y = reinterpret_cast<__nv_bfloat162*>(out_bf16 + at);
          y[0] = __floats2bfloat162_rn(acc[0], acc[1 % kW]);
          y[1] = __floats2bfloat162_rn(acc[2 % kW], acc[kW - 1]);
        }
      } else {
        if (out_f32) out_f32[at] = acc[0];
        if (out_bf16) out_bf16[at] = __float2bfloat16_rn(acc[0]);
      }
    }
  }
}

}  // namespace

void lse_combine(int64_t parts, int64_t rows, int64_t dim, const float* o, int64_t o_part_stride,
                 const float* lse, int64_t lse_part_stride, float* out_f32, bf16* out_bf16,
                 float* lse_out, cudaStream_t stream) {
  if (rows == 0) return;
  HELIX_CHECK(rows <= INT32_MAX, "lse_combine: too many rows");
  auto aligned = [](const void* ptr, int bytes) {
    return reinterpret_cast<uintptr_t>(ptr) % uintptr_t(bytes) == 0;
  };
  const bool vec = dim % 4 == 0 && o_part_stride % 4 == 0 && aligned(o, 16) &&
                   aligned(out_f32, 16) && aligned(out_bf16, 8);
  const int64_t width = vec ? 4 : 1;
  // Many parts (hundreds of flash-decoding splits over few rows): a wide block sums them in
  // parallel; few parts (the Helix KVP combine): 256 threads.
  const int threads = parts >= 64 ? kMaxThreads : 256;
  const int cgp = int(std::min<int64_t>(dim / width, threads));
  const int pg = int(std::min<int64_t>(threads / cgp, std::max<int64_t>(parts, 1)));
  const size_t smem = size_t(parts + (pg > 1 ? pg * cgp * width : 0)) * sizeof(float);
  HELIX_CHECK(smem <= 48 * 1024, "lse_combine: too many parts for shared memory");
  if (vec)
    lse_combine_kernel<true><<<unsigned(rows), unsigned(threads), smem, stream>>>(
        parts, dim, o, o_part_stride, lse, lse_part_stride, out_f32, out_bf16, lse_out, cgp, pg);
  else
    lse_combine_kernel<false><<<unsigned(rows), unsigned(threads), smem, stream>>>(
        parts, dim, o, o_part_stride, lse, lse_part_stride, out_f32, out_bf16, lse_out, cgp, pg);
  HELIX_LAUNCH_CHECK();
}

}  // namespace helix::cuda
