// Exact LSE combine of partial attention outputs (flash-decoding split merge and Helix step 5),
// reading the partials in place with strides (the All-to-All receive layout).
//
// A task is one row and one chunk of its columns (128 columns: 32 lanes x one 16-byte load; 32
// with scalar loads), merged in one online pass (combine_kernel): a warp per task for few parts
// (the Helix combine over KVP shards), the 8 warps of a block per task for many (the merge of
// hundreds of flash-decoding splits; over few rows with scalar loads, so that the task count
// covers the SMs).
// It is launched as a programmatic dependent of the kernel before it (launch_order.cuh).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "comm/cuda_check.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/launch_order.cuh"

namespace helix::cuda {

namespace {

constexpr int kWarps = 8;           // warps per block
constexpr int64_t kManyParts = 24;  // from here on a block of warps shares a task

struct Args {
  int64_t parts, rows, dim, o_stride, lse_stride, chunks;
  int64_t o_row, lse_row;  // strides between rows (packed partials: dim and 1)
  const float* o;
  const float* lse;
  float* out_f32;
  bf16* out_bf16;
  float* lse_out;
};

// kW floats per lane and load: one 16-byte load or a scalar one.
template <int kW>
struct Lane {
  float v[kW];
};

template <int kW>
__device__ __forceinline__ Lane<kW> load_streaming(const float* p) {
  Lane<kW> x;
  if constexpr (kW == 4) {
    const float4 f = __ldcs(reinterpret_cast<const float4*>(p));
    x.v[0] = f.x;
    x.v[1] = f.y;
    x.v[2] = f.z;
    x.v[3] = f.w;
  } else {
    x.v[0] = __ldcs(p);
  }
  return x;
}

template <int kW>
__device__ __forceinline__ void store_row_chunk(const Args& a, int64_t at, const float* acc) {
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

// One online pass over the parts of a task: a running (max, sum, weighted sum) per warp, rescaled
// once per batch of kBatch parts whose loads are all in flight together (no prologue over the LSE
// values for the loads to wait on). kShare warps share a task, each taking every kShare-th part,
// and merge their triples in shared memory; with kShare = 1 every warp is a task of its own.
//   - few parts (the Helix combine over KVP shards): kShare = 1, 8 tasks per block;
//   - many parts (the merge of hundreds of flash-decoding splits): kShare = 8.
template <int kW, int kShare>
__global__ void __launch_bounds__(kWarps * 32, kShare == 1 ? 4 : 2) combine_kernel(const Args a) {
  constexpr int kBatch = kW == 4 ? 8 : 16;
  static_assert(kWarps % kShare == 0 && kBatch <= 32, "shape");
  __shared__ float2 ms[kShare > 1 ? kWarps : 1];
  __shared__ Lane<kW> partial[kShare > 1 ? kWarps : 1][32];
  wait_for_producer();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int sub = warp % kShare;  // this warp's place among those sharing its task
  const int64_t task = int64_t(blockIdx.x) * (kWarps / kShare) + warp / kShare;
  if (task >= a.rows * a.chunks) return;  // whole tasks leave together
  const int64_t row = task / a.chunks, chunk = task % a.chunks;
  const int64_t col = chunk * 32 * kW + int64_t(lane) * kW;
  const bool active = col < a.dim;
  const float* src = a.o + row * a.o_row + (active ? col : 0);

  float m = -INFINITY, s = 0.0f;  // the same in every lane of a warp (same parts)
  float acc[kW] = {};
  for (int64_t i0 = sub; i0 < a.parts; i0 += int64_t(kShare) * kBatch) {
    // Lane j < kBatch loads the batch's j-th LSE value; the others get it by shuffles.
    const int64_t mine = i0 + int64_t(lane % kBatch) * kShare;
    const float my_l = lane < kBatch && mine < a.parts
                           ? __ldg(a.lse + mine * a.lse_stride + row * a.lse_row)
                           : -INFINITY;
    Lane<kW> x[kBatch];
    const float* p = src + i0 * a.o_stride;
    const int64_t step = int64_t(kShare) * a.o_stride;
#pragma unroll
    for (int j = 0; j < kBatch; ++j, p += step)
      x[j] = active && i0 + int64_t(j) * kShare < a.parts ? load_streaming<kW>(p) : Lane<kW>{};
    float l[kBatch];
#pragma unroll
    for (int j = 0; j < kBatch; ++j) l[j] = __shfl_sync(0xffffffffu, my_l, j);
    float bm = m;
#pragma unroll
    for (int j = 0; j < kBatch; ++j) bm = fmaxf(bm, l[j]);
    if (bm == -INFINITY) continue;
    const float rescale = __expf(m - bm);  // 0 while nothing finite was seen
    m = bm;
    s *= rescale;
#pragma unroll
    for (int c = 0; c < kW; ++c) acc[c] *= rescale;
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const bool finite = l[j] != -INFINITY;  // an empty part's values are never read into acc
      const float w = finite ? __expf(l[j] - m) : 0.0f;
      s += w;
#pragma unroll
      for (int c = 0; c < kW; ++c) acc[c] += finite ? w * x[j].v[c] : 0.0f;
    }
  }
  if constexpr (kShare > 1) {
    if (lane == 0) ms[warp] = make_float2(m, s);
    Lane<kW> mine;
#pragma unroll
    for (int c = 0; c < kW; ++c) mine.v[c] = acc[c];
    partial[warp][lane] = mine;
    __syncthreads();
    if (sub != 0) return;
    const int first = warp;  // the task's warps: first .. first + kShare - 1
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kShare; ++w) mx = fmaxf(mx, ms[first + w].x);
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < kW; ++c) acc[c] = 0.0f;
    if (mx != -INFINITY) {
#pragma unroll
      for (int w = 0; w < kShare; ++w) {
        const float f = ms[first + w].x == -INFINITY ? 0.0f : __expf(ms[first + w].x - mx);
        sum += f * ms[first + w].y;
#pragma unroll
        for (int c = 0; c < kW; ++c) acc[c] += f * partial[first + w][lane].v[c];
      }
    }
    m = mx;
    s = sum;
  }
  const float inv = s > 0.0f ? 1.0f / s : 0.0f;
#pragma unroll
  for (int c = 0; c < kW; ++c) acc[c] *= inv;
  if (a.lse_out && chunk == 0 && lane == 0)
    a.lse_out[row] = m == -INFINITY ? -INFINITY : m + logf(s);
  if (active) store_row_chunk<kW>(a, row * a.dim + col, acc);
}

template <int kW>
void launch(Args a, bool many, cudaStream_t stream) {
  a.chunks = (a.dim + 32 * kW - 1) / (32 * kW);
  const int64_t tasks = a.rows * a.chunks;
  const int64_t blocks = many ? tasks : (tasks + kWarps - 1) / kWarps;
  HELIX_CHECK(blocks <= INT32_MAX, "lse_combine: too many rows");
  // A dependent launch: the merge after the attention kernel (or the partials' producer) starts
  // while that kernel drains, and waits for its writes in wait_for_producer().
  launch_after_producer(many ? combine_kernel<kW, kWarps> : combine_kernel<kW, 1>,
                        dim3(unsigned(blocks)), dim3(kWarps * 32), 0, stream, a);
}

}  // namespace

void lse_combine(int64_t parts, int64_t rows, int64_t dim, const float* o, int64_t o_part_stride,
                 const float* lse, int64_t lse_part_stride, float* out_f32, bf16* out_bf16,
                 float* lse_out, cudaStream_t stream) {
  lse_combine_rows(parts, rows, dim, o, o_part_stride, dim, lse, lse_part_stride, 1, out_f32,
                   out_bf16, lse_out, stream);
}

void lse_combine_rows(int64_t parts, int64_t rows, int64_t dim, const float* o,
                      int64_t o_part_stride, int64_t o_row, const float* lse,
                      int64_t lse_part_stride, int64_t lse_row, float* out_f32, bf16* out_bf16,
                      float* lse_out, cudaStream_t stream) {
  if (rows == 0 || dim == 0) return;
  auto aligned = [](const void* ptr, int bytes) {
    return reinterpret_cast<uintptr_t>(ptr) % uintptr_t(bytes) == 0;
  };
  const bool vec = dim % 4 == 0 && o_part_stride % 4 == 0 && o_row % 4 == 0 && aligned(o, 16) &&
                   aligned(out_f32, 16) && aligned(out_bf16, 8);
  Args a{parts,   rows, dim, o_part_stride, lse_part_stride, 0,      o_row,
         lse_row, o,    lse, out_f32,       out_bf16,        lse_out};
  const bool many = parts >= kManyParts;
  // Many parts over few rows (a flash-decoding merge of one request): scalar loads give four
  // times the blocks, so that the SMs, not the per-warp latency chain, set the pace.
  const bool few_rows = rows * ((dim + 127) / 128) < sm_count();
  if (vec && !(many && few_rows))
    launch<4>(a, many, stream);
  else
    launch<1>(a, many, stream);
}

}  // namespace helix::cuda
