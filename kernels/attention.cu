// Decode attention (q_len = 1) over a KV slice for GQA (head dim 128) and absorbed MLA (latent 512
// + rope 64), flash-decoding style:
//   - grid: (head tile, split, request x KV head); the head tile varies fastest, so the CTAs that
//     read the same KV rows (MLA with more heads than one tile) run together and share them
//     through L2;
//   - a CTA streams its contiguous token range in tiles of 32 to 128 tokens through a cp.async
//     pipeline of 2 to 4 stages (16-byte loads) into padded shared memory;
//   - a CTA serves 16, 32 or 64 query heads (one to four MMA row tiles); its warps split into
//     head groups of 16, and within a group they split the tile's tokens for S = Q K^T and the
//     value width for O += P V (bf16 tensor-core MMAs, m16n8k16, fp32 accumulators); the running
//     max is shared across the warps of a group, P is written once to shared memory as bf16;
//   - each split writes its normalized partial output and natural-log LSE; the splits are merged
//     by lse_combine (the same math as the Helix combine of KVP shards).
// The configurations (heads per CTA, tokens per stage, stages, warps) are template parameters;
// every one is tested against the CPU reference, and pick_variant() chooses per launch.
// Why one file of this size: the GQA and MLA kernels share the pipeline, the MMA tiles, the
// online softmax and the configuration table, all templates instantiated here; split over
// several translation units they would need a header of device templates and explicit
// instantiations that must match pick_variant()'s table entry by entry.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "comm/cuda_check.hpp"
#include "kernels/attention_mla_sm90.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/launch_order.cuh"
#include "kernels/mma.cuh"

namespace helix::cuda {

namespace {

constexpr int kPad = 8;  // bf16 elements of padding per shared row (no bank conflicts)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

using mma::smem_addr;

__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  // src-size 0 zero-fills the 16 bytes (rows past the slice end are never read from memory).
  asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
               "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

using mma::ldmatrix_x4;
using mma::ldmatrix_x4_trans;
using mma::mma_bf16;
using mma::pack_bf16;

// A kernel configuration: query heads per CTA (16 x kHG, one MMA row tile per head group), tokens
// per pipeline stage, stages, warps. The warps split into kHG head groups; within a head group
// they split the tile's tokens for S = Q K^T and the value width for O += P V.
template <int DK, int DV, bool kMla, int kHG, int kTT, int kSt, int kWarps>
struct Config {
  static constexpr int kDk = DK, kDv = DV, kHeadTile = 16 * kHG, kTile = kTT, kStages = kSt;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kWarpsPerGroup = kWarps / kHG;
  static constexpr int kTokW = kTT / kWarpsPerGroup;   // tokens of S per warp
  static constexpr int kNtS = kTokW / 8;               // n-tiles of S per warp
  static constexpr int kDvWarp = DV / kWarpsPerGroup;  // value columns per warp
  static constexpr int kNtO = kDvWarp / 8;             // n-tiles of O per warp
  static_assert(kWarps % kHG == 0 && kTT % (8 * kWarpsPerGroup) == 0, "token split");
  static_assert(kNtS == 1 || kNtS % 2 == 0, "S n-tiles: one, or pairs");
  static_assert(kDvWarp % 16 == 0 && kTT % 16 == 0, "value split");
  static constexpr int kLdK = DK + kPad;
  static constexpr int kLdV = DV + kPad;
  static constexpr int kLdP = kTT + kPad;
  // Per stage: K rows (MLA: the whole 576-wide row, V is its first 512 columns), then V rows.
  static constexpr int kStageElems = kTT * kLdK + (kMla ? 0 : kTT * kLdV);
  static constexpr int kQElems = kHeadTile * kLdK;
  static constexpr int kPElems = kHeadTile * kLdP;
  static constexpr size_t kBytes = size_t(kSt * kStageElems + kQElems + kPElems) * sizeof(bf16) +
                                   size_t(2 * kWarps * 16) * sizeof(float);
};

struct Params {
  int64_t heads, q_begin, kv_begin, kv_heads, group, tokens, capacity, chunk;
  int head_tiles, splits;
  float scale_log2;
  const float* q;
  const bf16* k;
  const bf16* v;
  float* out;  // [splits][batch][heads][dv] (or the final output when splits == 1)
  float* lse;  // [splits][batch][heads]
  int64_t batch;
};

template <class C, bool kMla>
__global__ void __launch_bounds__(C::kThreads) decode_attention_kernel(const Params p) {
  constexpr int DK = C::kDk, DV = C::kDv, kTT = C::kTile, kSt = C::kStages;
  constexpr int kThreads = C::kThreads, kWarps = kThreads / 32;
  constexpr int kHeadTile = C::kHeadTile, kHG = kHeadTile / 16;
  constexpr int kTokW = C::kTokW, kNtS = C::kNtS, kDvWarp = C::kDvWarp, kNtO = C::kNtO;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* stage_base = reinterpret_cast<bf16*>(smem_raw);
  bf16* qs = stage_base + kSt * C::kStageElems;
  bf16* ps = qs + C::kQElems;
  float* red = reinterpret_cast<float*>(ps + C::kPElems);  // [2][warps][16]

  // The split merge (lse_combine) may be scheduled now; it waits for this grid to finish.
  allow_dependents();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, qd = lane % 4;
  const int hg = warp % kHG;    // this warp's head group (16 MMA rows)
  const int part = warp / kHG;  // its token range in S and value columns in O
  const int tile = blockIdx.x;
  const int split = blockIdx.y;
  const int64_t bk = blockIdx.z;
  const int64_t b = bk / p.kv_heads, kh = bk % p.kv_heads;

  // Query heads of this CTA: those mapped to KV head kh, tile `tile` of kHeadTile.
  int64_t h0 = 0, h1 = p.heads;
  if (!kMla) {
    h0 = std::max<int64_t>(0, (p.kv_begin + kh) * p.group - p.q_begin);
    h1 = std::min<int64_t>(p.heads, (p.kv_begin + kh + 1) * p.group - p.q_begin);
  }
  h0 += int64_t(tile) * kHeadTile;
  const int rows = int(std::max<int64_t>(0, std::min<int64_t>(kHeadTile, h1 - h0)));
  if (rows == 0) return;

  const int64_t t_begin = int64_t(split) * p.chunk;
  const int64_t t_end = std::min(p.tokens, t_begin + p.chunk);
  const int64_t n_tiles = t_end > t_begin ? (t_end - t_begin + kTT - 1) / kTT : 0;

  const bf16* kbase =
      kMla ? p.k + b * p.capacity * DK : p.k + (b * p.kv_heads + kh) * p.capacity * DK;
  const bf16* vbase = kMla ? nullptr : p.v + (b * p.kv_heads + kh) * p.capacity * DV;

  auto load_tile = [&](int64_t t, int stage) {
    bf16* ks = stage_base + stage * C::kStageElems;
    const int64_t tok0 = t_begin + t * kTT;
    constexpr int kChunksK = DK / 8;  // 16-byte chunks per row
#pragma unroll 4
    for (int c = threadIdx.x; c < kTT * kChunksK; c += kThreads) {
      const int r = c / kChunksK, col = (c % kChunksK) * 8;
      const int64_t tok = tok0 + r;
      const bool valid = tok < t_end;
      cp_async16(ks + r * C::kLdK + col, kbase + (valid ? tok : 0) * DK + col, valid);
    }
    if (!kMla) {
      bf16* vs = ks + kTT * C::kLdK;
      constexpr int kChunksV = DV / 8;
#pragma unroll 4
      for (int c = threadIdx.x; c < kTT * kChunksV; c += kThreads) {
        const int r = c / kChunksV, col = (c % kChunksV) * 8;
        const int64_t tok = tok0 + r;
        const bool valid = tok < t_end;
        cp_async16(vs + r * C::kLdV + col, vbase + (valid ? tok : 0) * DV + col, valid);
      }
    }
    cp_async_commit();
  };

  for (int st = 0; st < kSt - 1; ++st) {
    if (st < n_tiles)
      load_tile(st, st);
    else
      cp_async_commit();  // empty group: keeps the group count uniform
  }

  // Q tile -> bf16 shared memory (rows past `rows` are zero).
  for (int i = threadIdx.x; i < kHeadTile * DK; i += kThreads) {
    const int r = i / DK, c = i % DK;
    const float v = r < rows ? p.q[((b * p.heads) + h0 + r) * DK + c] : 0.0f;
    qs[r * C::kLdK + c] = __float2bfloat16_rn(v);
  }

  float o[kNtO][4];
#pragma unroll
  for (int i = 0; i < kNtO; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY};
  float l_run[2] = {0.0f, 0.0f};
  const bf16* qg = qs + hg * 16 * C::kLdK;  // this warp's 16 query rows
  bf16* pg = ps + hg * 16 * C::kLdP;

  for (int64_t t = 0; t < n_tiles; ++t) {
    const int stage = int(t % kSt);
    if (t + kSt - 1 < n_tiles)
      load_tile(t + kSt - 1, int((t + kSt - 1) % kSt));
    else
      cp_async_commit();
    cp_async_wait<kSt - 1>();
    __syncthreads();
    const bf16* ks = stage_base + stage * C::kStageElems;
    const bf16* vs = kMla ? ks : ks + kTT * C::kLdK;
    constexpr int kLdVs = kMla ? C::kLdK : C::kLdV;

    // S = Q K^T for this warp's tokens (n-tiles of 8).
    float s[kNtS][4];
#pragma unroll
    for (int nt = 0; nt < kNtS; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
    {
      const int a_row = (lane % 8) + 8 * ((lane / 8) % 2), a_col = 8 * (lane / 16);
      const int mi = lane / 8;
      if constexpr (kNtS % 2 == 0) {
        // One x4 load per pair of n-tiles: 16 tokens x 16 columns (both k halves).
        const int b_tok = part * kTokW + (lane % 8) + 8 * (mi / 2), b_col = 8 * (mi % 2);
#pragma unroll 4
        for (int kk = 0; kk < DK; kk += 16) {
          uint32_t a[4];
          ldmatrix_x4(a, qg + a_row * C::kLdK + kk + a_col);
#pragma unroll
          for (int np = 0; np < kNtS / 2; ++np) {
            uint32_t bb[4];
            ldmatrix_x4(bb, ks + (b_tok + 16 * np) * C::kLdK + kk + b_col);
            mma_bf16(s[2 * np], a, bb[0], bb[1]);
            mma_bf16(s[2 * np + 1], a, bb[2], bb[3]);
          }
        }
      } else {
        // One x4 load: 8 tokens x 32 columns (two k-steps of one n-tile); four independent MMA
        // chains over the 576-wide MLA rows.
        const int b_tok = part * kTokW + (lane % 8), b_col = 8 * mi;
        float s2[3][4] = {};
        static_assert(DK % 64 == 0, "k steps of 64");
#pragma unroll 2
        for (int kk = 0; kk < DK; kk += 64) {
          uint32_t a0[4], a1[4], b0[4];
          ldmatrix_x4(a0, qg + a_row * C::kLdK + kk + a_col);
          ldmatrix_x4(a1, qg + a_row * C::kLdK + kk + 16 + a_col);
          ldmatrix_x4(b0, ks + b_tok * C::kLdK + kk + b_col);
          mma_bf16(s[0], a0, b0[0], b0[1]);
          mma_bf16(s2[0], a1, b0[2], b0[3]);
          uint32_t a2[4], a3[4], b1[4];
          ldmatrix_x4(a2, qg + a_row * C::kLdK + kk + 32 + a_col);
          ldmatrix_x4(a3, qg + a_row * C::kLdK + kk + 48 + a_col);
          ldmatrix_x4(b1, ks + b_tok * C::kLdK + kk + 32 + b_col);
          mma_bf16(s2[1], a2, b1[0], b1[1]);
          mma_bf16(s2[2], a3, b1[2], b1[3]);
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) s[0][i] += s2[0][i] + s2[1][i] + s2[2][i];
      }
    }
    // Scale (base 2), mask tokens past the slice end, row maxima of this warp.
    const int64_t tok0 = t_begin + t * kTT + part * kTokW;
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kNtS; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t tok = tok0 + nt * 8 + 2 * qd + (i & 1);
        const float v = tok < t_end ? s[nt][i] * p.scale_log2 : -INFINITY;
        s[nt][i] = v;
        mx[i / 2] = fmaxf(mx[i / 2], v);
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    }
    if (qd == 0) {
      red[warp * 16 + g] = mx[0];
      red[warp * 16 + g + 8] = mx[1];
    }
    __syncthreads();
    float m_new[2], alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float m = m_run[r];
#pragma unroll
      for (int w = hg; w < kWarps; w += kHG) m = fmaxf(m, red[w * 16 + g + 8 * r]);
      m_new[r] = m;
      // Guard a row with no finite score yet: exp2(-inf - -inf) would be NaN.
      alpha[r] = m == -INFINITY ? 1.0f : exp2f(m_run[r] - m);
      m_run[r] = m;
    }
    // P = exp2(S - m), written to shared memory as bf16; per-lane partial row sums.
#pragma unroll
    for (int nt = 0; nt < kNtS; ++nt) {
      float pv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float m = m_new[i / 2];
        pv[i] = m == -INFINITY ? 0.0f : exp2f(s[nt][i] - m);
      }
      l_run[0] = l_run[0] * (nt == 0 ? alpha[0] : 1.0f) + pv[0] + pv[1];
      l_run[1] = l_run[1] * (nt == 0 ? alpha[1] : 1.0f) + pv[2] + pv[3];
      const int col = part * kTokW + nt * 8 + 2 * qd;
      *reinterpret_cast<uint32_t*>(pg + g * C::kLdP + col) = pack_bf16(pv[0], pv[1]);
      *reinterpret_cast<uint32_t*>(pg + (g + 8) * C::kLdP + col) = pack_bf16(pv[2], pv[3]);
    }
#pragma unroll
    for (int nt = 0; nt < kNtO; ++nt) {
      o[nt][0] *= alpha[0];
      o[nt][1] *= alpha[0];
      o[nt][2] *= alpha[1];
      o[nt][3] *= alpha[1];
    }
    __syncthreads();
    // O += P V over the tile's tokens, for this warp's head group and value columns.
    {
      const int a_row = (lane % 8) + 8 * ((lane / 8) % 2), a_col = 8 * (lane / 16);
      const int mi = lane / 8;
      const int v_tok = (lane % 8) + 8 * (mi % 2), v_col = 8 * (mi / 2);
#pragma unroll
      for (int kt = 0; kt < kTT; kt += 16) {
        uint32_t a[4];
        ldmatrix_x4(a, pg + a_row * C::kLdP + kt + a_col);
#pragma unroll
        for (int np = 0; np < kNtO / 2; ++np) {
          uint32_t bb[4];
          ldmatrix_x4_trans(bb, vs + (kt + v_tok) * kLdVs + part * kDvWarp + np * 16 + v_col);
          mma_bf16(o[2 * np], a, bb[0], bb[1]);
          mma_bf16(o[2 * np + 1], a, bb[2], bb[3]);
        }
      }
    }
    __syncthreads();  // the stage, P and the maxima are rewritten by the next tile
  }

  // Row sums: over the quad, then over the warps of the head group (they share the running max).
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 1);
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 2);
  }
  float* red_l = red + kWarps * 16;
  if (qd == 0) {
    red_l[warp * 16 + g] = l_run[0];
    red_l[warp * 16 + g + 8] = l_run[1];
  }
  __syncthreads();
  float inv[2], lse[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = 0.0f;
#pragma unroll
    for (int w = hg; w < kWarps; w += kHG) l += red_l[w * 16 + g + 8 * r];
    const bool empty = l == 0.0f || m_run[r] == -INFINITY;
    inv[r] = empty ? 0.0f : 1.0f / l;
    lse[r] = empty ? -INFINITY : m_run[r] * kLn2 + logf(l);
  }
  const int64_t slot = (int64_t(split) * p.batch + b) * p.heads;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = hg * 16 + g + 8 * r;
    if (row >= rows) continue;
    float* dst = p.out + (slot + h0 + row) * DV + part * kDvWarp;
#pragma unroll
    for (int nt = 0; nt < kNtO; ++nt) {
      const float2 v = make_float2(o[nt][2 * r] * inv[r], o[nt][2 * r + 1] * inv[r]);
      *reinterpret_cast<float2*>(dst + nt * 8 + 2 * qd) = v;
    }
    if (part == 0 && qd == 0) p.lse[slot + h0 + row] = lse[r];
  }
}

// The kernel configurations, by name: <kind>-h<heads per CTA>-t<tokens per
// stage>-s<stages>-w<warps>. The defaults (first of each kind below) were chosen by timing every
// configuration on the micro-benchmark shapes (results/README.md); HELIX_ATTN_VARIANT=<name>
// selects another one.
using GqaT64S3W4 = Config<128, 128, false, 1, 64, 3, 4>;
using GqaT64S2W4 = Config<128, 128, false, 1, 64, 2, 4>;
using GqaT32S4W4 = Config<128, 128, false, 1, 32, 4, 4>;
using GqaT128S2W4 = Config<128, 128, false, 1, 128, 2, 4>;
using GqaT64S3W8 = Config<128, 128, false, 1, 64, 3, 8>;
using MlaH16T64S2W8 = Config<576, 512, true, 1, 64, 2, 8>;
using MlaH16T32S4W4 = Config<576, 512, true, 1, 32, 4, 4>;
using MlaH16T32S2W4 = Config<576, 512, true, 1, 32, 2, 4>;
using MlaH32T32S4W8 = Config<576, 512, true, 2, 32, 4, 8>;
using MlaH64T32S3W8 = Config<576, 512, true, 4, 32, 3, 8>;
using MlaH64T32S2W8 = Config<576, 512, true, 4, 32, 2, 8>;

struct Variant {
  const char* name;
  bool mla;
  int head_tile, tile, threads;
  size_t smem;
  void (*kernel)(Params);  // nullptr for the Hopper MLA kernel (kernels/attention_mla_sm90.cu)
  const void* func;        // the kernel, for attributes and occupancy
  bool sm90;               // needs sm_90a code and a GPU of compute capability 9.0
};

template <class C, bool kMla>
Variant variant(const char* name) {
  auto k = &decode_attention_kernel<C, kMla>;
  return Variant{name,
                 kMla,
                 C::kHeadTile,
                 C::kTile,
                 C::kThreads,
                 C::kBytes,
                 k,
                 reinterpret_cast<const void*>(k),
                 false};
}

// The warpgroup-MMA + TMA kernel for MLA on Hopper: 64 heads per CTA, 64-token stages, 3 stages,
// 12 warps (three warpgroups).
Variant sm90_mla_variant() {
  return Variant{"mla-wgmma-h64-t64-s3-w12",
                 true,
                 detail::kMlaSm90HeadTile,
                 detail::kMlaSm90Tokens,
                 detail::kMlaSm90Threads,
                 detail::mla_sm90_smem_bytes(),
                 nullptr,
                 detail::mla_sm90_kernel(),
                 true};
}

const std::vector<Variant>& variants() {
  static const std::vector<Variant> all = {
      variant<GqaT64S3W4, false>("gqa-h16-t64-s3-w4"),
      variant<GqaT64S2W4, false>("gqa-h16-t64-s2-w4"),
      variant<GqaT32S4W4, false>("gqa-h16-t32-s4-w4"),
      variant<GqaT128S2W4, false>("gqa-h16-t128-s2-w4"),
      variant<GqaT64S3W8, false>("gqa-h16-t64-s3-w8"),
      variant<MlaH16T64S2W8, true>("mla-h16-t64-s2-w8"),
      variant<MlaH16T32S4W4, true>("mla-h16-t32-s4-w4"),
      variant<MlaH16T32S2W4, true>("mla-h16-t32-s2-w4"),
      variant<MlaH32T32S4W8, true>("mla-h32-t32-s4-w8"),
      variant<MlaH64T32S3W8, true>("mla-h64-t32-s3-w8"),
      variant<MlaH64T32S2W8, true>("mla-h64-t32-s2-w8"),
      sm90_mla_variant(),
  };
  return all;
}

// A configuration this build and the current GPU can run.
bool usable(const Variant& v) {
  return !v.sm90 || detail::mla_sm90_available();
}

const Variant& find_variant(const char* name) {
  for (const Variant& v : variants())
    if (std::strcmp(name, v.name) == 0) {
      if (!usable(v))
        throw UsageError(std::string("attention variant '") + name +
                         "' needs a GPU of compute capability 9.0 and a build for sm_90a "
                         "(CMAKE_CUDA_ARCHITECTURES=90a)");
      return v;
    }
  std::string known;
  for (const Variant& v : variants()) known += std::string(known.empty() ? "" : ", ") + v.name;
  throw UsageError(std::string("attention variant '") + name +
                   "' (HELIX_ATTN_VARIANT or DecodeAttention::variant) unknown (known: " + known +
                   ")");
}

// Query heads one KV head serves on this rank, at most.
int64_t heads_per_kv(const DecodeAttention& a) {
  if (a.mla) return a.heads;
  int64_t most = 0;
  for (int64_t kh = 0; kh < a.kv_heads; ++kh) {
    const int64_t h0 = std::max<int64_t>(0, (a.kv_begin + kh) * a.group - a.q_begin);
    const int64_t h1 = std::min<int64_t>(a.heads, (a.kv_begin + kh + 1) * a.group - a.q_begin);
    most = std::max(most, h1 - h0);
  }
  return std::max<int64_t>(1, most);
}

const Variant& pick_variant(const DecodeAttention& a) {
  if (a.variant) {
    const Variant& v = find_variant(a.variant);
    if (v.mla != a.mla)
      throw UsageError(std::string("attention variant '") + a.variant + "' is for " +
                       (v.mla ? "MLA" : "GQA"));
    return v;
  }
  const char* forced = std::getenv("HELIX_ATTN_VARIANT");
  if (forced && *forced) {
    const Variant& v = find_variant(forced);
    if (v.mla == a.mla) return v;  // a GQA choice leaves MLA launches on their default
  }
  // Chosen from the configuration sweep on an H200 (results/README.md): GQA with few KV streams
  // (B x KV heads x head tiles < 8, e.g. one KV head at B = 1) gains from a third stage, many
  // streams from three CTAs per SM. MLA: 16 heads per CTA when the rank has at most 16 (two CTAs
  // of four warps per SM); else 32- or 64-head tiles, so that the CTAs of a token range read its
  // latent rows once per 32 or 64 heads.
  if (!a.mla) {
    const int64_t streams = a.batch * a.kv_heads * ((heads_per_kv(a) + 15) / 16);
    return find_variant(streams < 8 ? "gqa-h16-t64-s3-w4" : "gqa-h16-t64-s2-w4");
  }
  // MLA on Hopper: the warpgroup-MMA kernel for every head count (64-head tiles).
  if (detail::mla_sm90_available()) return find_variant("mla-wgmma-h64-t64-s3-w12");
  if (a.heads <= 16) return find_variant("mla-h16-t32-s2-w4");
  return find_variant(a.heads <= 32 ? "mla-h32-t32-s4-w8" : "mla-h64-t32-s3-w8");
}

struct Geometry {
  const Variant* v;
  int dv;
  int64_t kv_heads;  // grid z per request
  int head_tiles;    // grid x
};

Geometry geometry(const DecodeAttention& a) {
  Geometry g{};
  g.v = &pick_variant(a);
  g.dv = a.mla ? 512 : 128;
  g.kv_heads = a.mla ? 1 : a.kv_heads;
  g.head_tiles = int((heads_per_kv(a) + g.v->head_tile - 1) / g.v->head_tile);
  return g;
}

int blocks_per_sm(const Variant& v) {
  static std::map<const void*, int> cached;
  const auto hit = cached.find(v.func);
  if (hit != cached.end()) return hit->second;
  HELIX_CUDA_CHECK(
      cudaFuncSetAttribute(v.func, cudaFuncAttributeMaxDynamicSharedMemorySize, int(v.smem)));
  int n = 0;
  HELIX_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, v.func, v.threads, v.smem));
  n = std::max(n, 1);
  cached.emplace(v.func, n);
  return n;
}

int64_t chunk_for(int64_t tokens, int splits, int tile) {
  const int64_t c = (tokens + splits - 1) / std::max(splits, 1);
  return std::max<int64_t>(tile, (c + tile - 1) / tile * tile);
}

// The split count. A CTA streams its split with a bounded number of bytes in flight, so an idle
// slot of the GPU's waves is bandwidth lost (FlashAttention's wave-efficiency rule); each CTA also
// reads its query rows and, when the KV is split, writes a partial output and LSE that the merge
// reads back. The choice minimizes (KV bytes + per-CTA bytes x CTAs) / wave efficiency over the
// split counts that keep every split at least 256 tokens long (the fewest splits on ties).
// Measured on an H200: against the earlier rule (the fewest splits within 5% of the best wave
// efficiency) the one-KV-head B = 1 T1M shapes go from 249 to 261 splits (0.80 -> 0.82 of the
// stream ceiling) and MLA with 16 heads T1M from 0.74 to 0.77, while MLA with 128 heads at B = 8
// keeps few long splits: its partials (128 heads x 513 floats per request and split) are a large
// fraction of a short split's KV.
int choose_splits(const DecodeAttention& a, const Geometry& g) {
  const int per_sm = blocks_per_sm(*g.v);
  const int tile = g.v->tile;
  const int64_t units = a.batch * g.kv_heads * g.head_tiles;
  // CTAs of one full wave over the SMs this launch may fill.
  const int64_t sms = std::max<int64_t>(1, int64_t(sm_count()) - std::max(0, a.reserved_sms));
  const int64_t slots = sms * per_sm;
  if (a.tokens <= 256) return 1;
  const int dk = a.mla ? 576 : 128;
  const double kv_bytes = double(a.batch) * double(g.kv_heads) * double(a.tokens) *
                          double(a.mla ? dk * 2 : (dk + g.dv) * 2);
  const double rows = double(std::min<int64_t>(g.v->head_tile, heads_per_kv(a)));
  const double q_bytes = rows * dk * 4.0;                      // fp32 query rows, per CTA
  const double partial_bytes = 2.0 * rows * (g.dv + 1) * 4.0;  // written, then merged
  const int64_t most = std::max<int64_t>(1, std::min<int64_t>(a.tokens / 256, 4 * slots));
  double best_cost = 0;
  int64_t best = 1;
  for (int64_t s = 1; s <= most; ++s) {
    const int64_t chunk = chunk_for(a.tokens, int(s), tile);
    const int64_t n = (a.tokens + chunk - 1) / chunk;  // the splits this chunk length produces
    const int64_t ctas = units * n;
    const int64_t waves = (ctas + slots - 1) / slots;
    const double efficiency = double(ctas) / double(waves * slots);
    const double cost =
        (kv_bytes + double(ctas) * (q_bytes + (n > 1 ? partial_bytes : 0.0))) / efficiency;
    if (s == 1 || cost < best_cost * (1.0 - 1e-9)) {
      best_cost = cost;
      best = n;
    }
  }
  return int(best);
}

void launch_decode(const DecodeAttention& a, const Geometry& g, int splits, float* out, float* lse,
                   cudaStream_t stream) {
  Params p{};
  p.heads = a.heads;
  p.q_begin = a.q_begin;
  p.kv_begin = a.kv_begin;
  p.kv_heads = g.kv_heads;
  p.group = a.group;
  p.tokens = a.tokens;
  p.capacity = a.capacity;
  p.chunk = chunk_for(a.tokens, splits, g.v->tile);
  p.head_tiles = g.head_tiles;
  p.splits = splits;
  p.scale_log2 = a.scale * kLog2e;
  p.q = a.q;
  p.k = a.k;
  p.v = a.v;
  p.batch = a.batch;
  p.out = out;
  p.lse = lse;
  const dim3 grid(unsigned(g.head_tiles), unsigned(splits), unsigned(a.batch * g.kv_heads));
  blocks_per_sm(*g.v);  // sets the kernel's shared-memory limit once
  g.v->kernel<<<grid, unsigned(g.v->threads), g.v->smem, stream>>>(p);
  HELIX_LAUNCH_CHECK();
}

}  // namespace

int attention_splits(const DecodeAttention& a) {
  if (a.splits > 0) return a.splits;
  const Geometry g = geometry(a);
  // Memoized per shape and configuration: the search below runs on the host between launches,
  // where it would show up as idle GPU time inside the attention phase.
  struct Key {
    const void* kernel;
    int64_t batch, heads, q_begin, kv_begin, kv_heads, group, tokens;
    int reserved_sms;
    bool operator<(const Key& o) const {
      return std::tie(kernel, batch, heads, q_begin, kv_begin, kv_heads, group, tokens,
                      reserved_sms) < std::tie(o.kernel, o.batch, o.heads, o.q_begin, o.kv_begin,
                                               o.kv_heads, o.group, o.tokens, o.reserved_sms);
    }
  };
  static std::map<Key, int> memo;
  const Key key{g.v->func,  a.batch, a.heads,  a.q_begin,     a.kv_begin,
                a.kv_heads, a.group, a.tokens, a.reserved_sms};
  const auto hit = memo.find(key);
  if (hit != memo.end()) return hit->second;
  const int splits = choose_splits(a, g);
  if (memo.size() > 4096) memo.clear();
  memo.emplace(key, splits);
  return splits;
}

std::string attention_variant(const DecodeAttention& a) {
  return geometry(a).v->name;
}

void check_attention_variant_env() {
  const char* forced = std::getenv("HELIX_ATTN_VARIANT");
  if (forced && *forced) find_variant(forced);
}

std::vector<std::string> attention_variant_names(bool mla) {
  std::vector<std::string> names;
  for (const Variant& v : variants())
    if (v.mla == mla && usable(v)) names.push_back(v.name);
  return names;
}

int64_t attention_workspace_floats(const DecodeAttention& a, int splits) {
  const int64_t dv = a.mla ? 512 : 128;
  return splits <= 1 ? 0 : int64_t(splits) * a.batch * a.heads * (dv + 1);
}

void attention_decode(const DecodeAttention& a, cudaStream_t stream) {
  if (a.batch == 0 || a.heads == 0) return;
  const Geometry g = geometry(a);
  const int splits = attention_splits(a);
  float* part_out = a.out;
  float* part_lse = a.lse;
  if (splits > 1) {
    HELIX_CHECK(a.workspace != nullptr, "attention_decode: split workspace missing");
    part_out = a.workspace;
    part_lse = a.workspace + int64_t(splits) * a.batch * a.heads * g.dv;
  }
  if (g.v->sm90) {
    detail::MlaSm90Launch m;
    m.batch = a.batch;
    m.heads = a.heads;
    m.tokens = a.tokens;
    m.capacity = a.capacity;
    m.chunk = chunk_for(a.tokens, splits, g.v->tile);
    m.splits = splits;
    m.scale_log2 = a.scale * kLog2e;
    m.q = a.q;
    m.kv = a.k;
    m.out = part_out;
    m.lse = part_lse;
    detail::mla_sm90_launch(m, stream);
  } else {
    launch_decode(a, g, splits, part_out, part_lse, stream);
  }
  if (splits > 1) {
    const int64_t rows = a.batch * a.heads;
    lse_combine(splits, rows, g.dv, part_out, rows * g.dv, part_lse, rows, a.out, nullptr, a.lse,
                stream);
  }
}

}  // namespace helix::cuda
