// Exact LSE combine of partial attention outputs (flash-decoding split merge and Helix step 5),
// reading the partials in place with strides (the All-to-All receive layout).
//
// A task is one row and one chunk of its columns (128 columns: 32 lanes x one 16-byte load; 32
// with scalar loads). Every warp of a task first turns the row's LSE values into M = max_i lse_i
// and 1 / sum_i exp(lse_i - M) with its lanes splitting the parts and two warp reductions (no
// block barrier), then streams the partials with every load of every part in flight at once,
// weighting each by exp(lse_i - M) / sum as it arrives.
//   - few parts (the Helix combine over KVP shards): a warp per task, 8 tasks per block;
//   - many parts over few rows (the merge of hundreds of flash-decoding splits): the 8 warps of a
//     block share one task, each summing every 8th part, and add their sums in shared memory.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "comm/cuda_check.hpp"
#include "kernels/cuda_kernels.hpp"

namespace helix::cuda {

namespace {

// Warps per block: 8 tasks of a warp each, or 8 warps sharing one task. (32 warps sharing a task
// were no faster on the merge of ~250 flash-decoding splits and far slower at 64 parts.)
template <bool kShared>
constexpr int warps_of() {
  return 8;
}
constexpr int64_t kManyParts = 24;  // from here on the warps of a block share a task

struct Args {
  int64_t parts, rows, dim, o_stride, lse_stride, chunks;
  const float* o;
  const float* lse;
  float* out_f32;
  bf16* out_bf16;
  float* lse_out;
};

// kShared: the block's warps share one task. kW: floats per lane and load (4 or 1).
template <bool kShared, int kW>
__global__ void __launch_bounds__(warps_of<kShared>() * 32, 4) lse_combine_kernel(const Args a) {
  constexpr int kWarps = warps_of<kShared>(), kThreads = kWarps * 32;
  __shared__ float4 partial[kShared ? kWarps : 1][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t task = kShared ? int64_t(blockIdx.x) : int64_t(blockIdx.x) * kWarps + warp;
  if (task >= a.rows * a.chunks) return;  // whole warps (or the whole block) leave together
  const int64_t row = task / a.chunks, chunk = task % a.chunks;

  // M and the normalizer in one pass (a running maximum, the sum rescaled when it grows), the
  // lanes (and, for a shared task, the warps) taking every 32nd (256th) part, then merged.
  float m = -INFINITY, s = 0.0f;
  {
    const int64_t first = kShared ? int64_t(warp) * 32 + lane : lane;
    const int64_t step = kShared ? kThreads : 32;
#pragma unroll 4
    for (int64_t i = first; i < a.parts; i += step) {
      const float l = __ldg(a.lse + i * a.lse_stride + row);
      if (l == -INFINITY) continue;
      if (l > m) {
        s = s * __expf(m - l) + 1.0f;  // exp(-inf) = 0 for the first finite value
        m = l;
      } else {
        s += __expf(l - m);
      }
    }
    auto merge = [](float& m0, float& s0, float m1, float s1) {
      const float mm = fmaxf(m0, m1);
      if (mm == -INFINITY) return;
      s0 = s0 * __expf(m0 - mm) + s1 * __expf(m1 - mm);
      m0 = mm;
    };
    for (int o = 16; o > 0; o /= 2) {
      const float m1 = __shfl_xor_sync(0xffffffffu, m, o), s1 = __shfl_xor_sync(0xffffffffu, s, o);
      merge(m, s, m1, s1);
    }
    if constexpr (kShared) {
      __shared__ float2 ms[kWarps];
      if (lane == 0) ms[warp] = make_float2(m, s);
      __syncthreads();
      m = -INFINITY;
      s = 0.0f;
      for (int w = 0; w < kWarps; ++w) merge(m, s, ms[w].x, ms[w].y);
    }
  }
  const float inv = s > 0.0f ? 1.0f / s : 0.0f;

  const int64_t col = chunk * 32 * kW + int64_t(lane) * kW;
  const bool active = col < a.dim;
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (active && m != -INFINITY) {
    const int64_t first = kShared ? warp : 0, step = kShared ? kWarps : 1;
    const float* src = a.o + row * a.dim + col;
#pragma unroll 8
    for (int64_t i = first; i < a.parts; i += step) {
      const float l = __ldg(a.lse + i * a.lse_stride + row);
      const float w = l == -INFINITY ? 0.0f : __expf(l - m) * inv;
      if constexpr (kW == 4) {
        const float4 v = __ldcs(reinterpret_cast<const float4*>(src + i * a.o_stride));
        acc[0] += w * v.x;
        acc[1] += w * v.y;
        acc[2] += w * v.z;
        acc[3] += w * v.w;
      } else {
        acc[0] += w * __ldcs(src + i * a.o_stride);
      }
    }
  }
  if constexpr (kShared) {
    partial[warp][lane] = make_float4(acc[0], acc[1], acc[2], acc[3]);
    __syncthreads();
    if (warp != 0) return;
    for (int w = 1; w < kWarps; ++w) {
      const float4 v = partial[w][lane];
      acc[0] += v.x;
      acc[1] += v.y;
      acc[2] += v.z;
      acc[3] += v.w;
    }
  }
  if (a.lse_out && chunk == 0 && lane == 0)
    a.lse_out[row] = m == -INFINITY ? -INFINITY : m + logf(s);
  if (!active) return;
  const int64_t at = row * a.dim + col;
  if constexpr (kW == 4) {
    if (a.out_f32)
      __stcs(reinterpret_cast<float4*>(a.out_f32 + at),
             make_float4(acc[0], acc[1], acc[2], acc[3]));
    if (a.out_bf16) {
      __nv_bfloat162* y = reinterpret_cast<__nv_bfloat162*>(a.out_bf16 + at);
      y[0] = __floats2bfloat162_rn(acc[0], acc[1]);
      y[1] = __floats2bfloat162_rn(acc[2], acc[3]);
    }
  } else {
    if (a.out_f32) a.out_f32[at] = acc[0];
    if (a.out_bf16) a.out_bf16[at] = __float2bfloat16_rn(acc[0]);
  }
}

template <bool kShared, int kW>
void launch(const Args& a, cudaStream_t stream) {
  const int64_t tasks = a.rows * a.chunks;
  constexpr int kWarps = warps_of<kShared>();
  const int64_t blocks = kShared ? tasks : (tasks + kWarps - 1) / kWarps;
  HELIX_CHECK(blocks <= INT32_MAX, "lse_combine: too many rows");
  lse_combine_kernel<kShared, kW><<<unsigned(blocks), kWarps * 32, 0, stream>>>(a);
}

}  // namespace

void lse_combine(int64_t parts, int64_t rows, int64_t dim, const float* o, int64_t o_part_stride,
                 const float* lse, int64_t lse_part_stride, float* out_f32, bf16* out_bf16,
                 float* lse_out, cudaStream_t stream) {
  if (rows == 0 || dim == 0) return;
  auto aligned = [](const void* ptr, int bytes) {
    return reinterpret_cast<uintptr_t>(ptr) % uintptr_t(bytes) == 0;
  };
  const bool vec = dim % 4 == 0 && o_part_stride % 4 == 0 && aligned(o, 16) &&
                   aligned(out_f32, 16) && aligned(out_bf16, 8);
  const int width = vec ? 4 : 1;
  Args a{parts, rows, dim, o_part_stride, lse_part_stride, 0, o, lse, out_f32, out_bf16, lse_out};
  a.chunks = (dim + 32 * width - 1) / (32 * width);
  const bool shared = parts >= kManyParts;
  if (vec)
    shared ? launch<true, 4>(a, stream) : launch<false, 4>(a, stream);
  else
    shared ? launch<true, 1>(a, stream) : launch<false, 1>(a, stream);
  HELIX_LAUNCH_CHECK();
}

}  // namespace helix::cuda
