// Decode attention (q_len = 1) over a KV slice for GQA (head dim 128) and absorbed MLA (latent 512
// + rope 64), flash-decoding style:
//   - grid: (head tile, split, request x KV head); the head tile varies fastest, so the CTAs that
//     read the same KV rows (MLA with more than 16 heads) run together and share them through L2;
//   - a CTA of 4 warps streams its contiguous token range in tiles of 64 tokens through a
//     two-stage cp.async pipeline (16-byte loads) into padded shared memory;
//   - S = Q K^T with bf16 tensor-core MMAs (m16n8k16): every warp scores 16 tokens for the 16
//     heads of the tile; the running max is shared across warps, P is written once to shared
//     memory as bf16, and every warp accumulates O += P V for its quarter of the value width;
//   - each split writes its normalized partial output and natural-log LSE; the splits are merged
//     by lse_combine (the same math as the Helix combine of KVP shards).
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <tuple>

#include "comm/cuda_check.hpp"
#include "kernels/cuda_kernels.hpp"

namespace helix::cuda {

namespace {

constexpr int kTileTokens = 64;  // tokens per pipeline stage
constexpr int kHeadTile = 16;    // query heads per CTA (MMA rows)
constexpr int kPad = 8;          // bf16 elements of padding per shared row (no bank conflicts)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

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

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
// d += a * b, m16n8k16, bf16 inputs, fp32 accumulators.
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Warps per CTA: GQA 4 (16 tokens of S each); MLA 8 (8 tokens each), since a CTA of MLA is alone
// on its SM and its 576-wide scores are a long chain of MMAs per warp.
template <bool kMla>
constexpr int warps_of() {
  return kMla ? 8 : 4;
}

template <int DK, int DV, bool kMla>
struct Smem {
  static constexpr int kWarps = warps_of<kMla>();
  // Pipeline depth: GQA keeps two tiles in flight while computing a third (two CTAs per SM);
  // MLA's 72 KB tiles allow two stages in one CTA per SM.
  static constexpr int kStages = kMla ? 2 : 3;
  static constexpr int kLdK = DK + kPad;
  static constexpr int kLdV = DV + kPad;
  static constexpr int kLdP = kTileTokens + kPad;
  // Per stage: K rows (MLA: the whole 576-wide row, V is its first 512 columns), then V rows.
  static constexpr int kStageElems = kTileTokens * kLdK + (kMla ? 0 : kTileTokens * kLdV);
  static constexpr int kQElems = kHeadTile * kLdK;
  static constexpr int kPElems = kHeadTile * kLdP;
  static constexpr size_t kBytes =
      size_t(kStages * kStageElems + kQElems + kPElems) * sizeof(bf16) +
      size_t(2 * kWarps * kHeadTile) * sizeof(float);
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

template <int DK, int DV, bool kMla>
__global__ void __launch_bounds__(warps_of<kMla>() * 32) decode_attention_kernel(const Params p) {
  using S = Smem<DK, DV, kMla>;
  constexpr int kWarps = S::kWarps;
  constexpr int kThreads = kWarps * 32;
  constexpr int kTokW = kTileTokens / kWarps;  // tokens of S per warp
  constexpr int kNtS = kTokW / 8;              // n-tiles of S per warp
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* stage_base = reinterpret_cast<bf16*>(smem_raw);
  bf16* qs = stage_base + S::kStages * S::kStageElems;
  bf16* ps = qs + S::kQElems;
  float* red = reinterpret_cast<float*>(ps + S::kPElems);  // [2][warps][16]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, qd = lane % 4;
  const int tile = blockIdx.x;
  const int split = blockIdx.y;
  const int64_t bk = blockIdx.z;
  const int64_t b = bk / p.kv_heads, kh = bk % p.kv_heads;

  // Query heads of this CTA: those mapped to KV head kh, tile `tile` of 16.
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
  const int64_t n_tiles = t_end > t_begin ? (t_end - t_begin + kTileTokens - 1) / kTileTokens : 0;

  const bf16* kbase =
      kMla ? p.k + b * p.capacity * DK : p.k + (b * p.kv_heads + kh) * p.capacity * DK;
  const bf16* vbase = kMla ? nullptr : p.v + (b * p.kv_heads + kh) * p.capacity * DV;

  auto load_tile = [&](int64_t t, int stage) {
    bf16* ks = stage_base + stage * S::kStageElems;
    const int64_t tok0 = t_begin + t * kTileTokens;
    constexpr int kChunksK = DK / 8;  // 16-byte chunks per row
    for (int c = threadIdx.x; c < kTileTokens * kChunksK; c += kThreads) {
      const int r = c / kChunksK, col = (c % kChunksK) * 8;
      const int64_t tok = tok0 + r;
      const bool valid = tok < t_end;
      cp_async16(ks + r * S::kLdK + col, kbase + (valid ? tok : 0) * DK + col, valid);
    }
    if (!kMla) {
      bf16* vs = ks + kTileTokens * S::kLdK;
      constexpr int kChunksV = DV / 8;
      for (int c = threadIdx.x; c < kTileTokens * kChunksV; c += kThreads) {
        const int r = c / kChunksV, col = (c % kChunksV) * 8;
        const int64_t tok = tok0 + r;
        const bool valid = tok < t_end;
        cp_async16(vs + r * S::kLdV + col, vbase + (valid ? tok : 0) * DV + col, valid);
      }
    }
    cp_async_commit();
  };

  constexpr int kSt = S::kStages;
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
    qs[r * S::kLdK + c] = __float2bfloat16_rn(v);
  }

  constexpr int kDvWarp = DV / kWarps;  // value columns per warp
  constexpr int kNtO = kDvWarp / 8;     // n-tiles of O per warp
  float o[kNtO][4];
#pragma unroll
  for (int i = 0; i < kNtO; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY};
  float l_run[2] = {0.0f, 0.0f};

  for (int64_t t = 0; t < n_tiles; ++t) {
    const int stage = int(t % kSt);
    if (t + kSt - 1 < n_tiles)
      load_tile(t + kSt - 1, int((t + kSt - 1) % kSt));
    else
      cp_async_commit();
    cp_async_wait<kSt - 1>();
    __syncthreads();
    const bf16* ks = stage_base + stage * S::kStageElems;
    const bf16* vs = kMla ? ks : ks + kTileTokens * S::kLdK;
    constexpr int kLdVs = kMla ? S::kLdK : S::kLdV;

    // S = Q K^T for this warp's tokens (n-tiles of 8).
    float s[kNtS][4];
#pragma unroll
    for (int nt = 0; nt < kNtS; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
    {
      const int a_row = (lane % 8) + 8 * ((lane / 8) % 2), a_col = 8 * (lane / 16);
      const int mi = lane / 8;
      if constexpr (kNtS == 2) {
        // One x4 load: 16 tokens x 16 columns (two n-tiles, both k halves).
        const int b_tok = warp * 16 + (lane % 8) + 8 * (mi / 2), b_col = 8 * (mi % 2);
#pragma unroll 4
        for (int kk = 0; kk < DK; kk += 16) {
          uint32_t a[4], bb[4];
          ldmatrix_x4(a, qs + a_row * S::kLdK + kk + a_col);
          ldmatrix_x4(bb, ks + b_tok * S::kLdK + kk + b_col);
          mma_bf16(s[0], a, bb[0], bb[1]);
          mma_bf16(s[kNtS - 1], a, bb[2], bb[3]);
        }
      } else {
        // One x4 load: 8 tokens x 32 columns (two k-steps of one n-tile).
        const int b_tok = warp * 8 + (lane % 8), b_col = 8 * mi;
        float s2[4] = {0, 0, 0, 0};  // second accumulator: two independent MMA chains
#pragma unroll 2
        for (int kk = 0; kk < DK; kk += 32) {
          uint32_t a0[4], a1[4], bb[4];
          ldmatrix_x4(a0, qs + a_row * S::kLdK + kk + a_col);
          ldmatrix_x4(a1, qs + a_row * S::kLdK + kk + 16 + a_col);
          ldmatrix_x4(bb, ks + b_tok * S::kLdK + kk + b_col);
          mma_bf16(s[0], a0, bb[0], bb[1]);
          mma_bf16(s2, a1, bb[2], bb[3]);
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) s[0][i] += s2[i];
      }
    }
    // Scale (base 2), mask tokens past the slice end, row maxima of this warp.
    const int64_t tok0 = t_begin + t * kTileTokens + warp * kTokW;
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
      red[warp * kHeadTile + g] = mx[0];
      red[warp * kHeadTile + g + 8] = mx[1];
    }
    __syncthreads();
    float m_new[2], alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float m = m_run[r];
#pragma unroll
      for (int w = 0; w < kWarps; ++w) m = fmaxf(m, red[w * kHeadTile + g + 8 * r]);
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
      const int col = warp * kTokW + nt * 8 + 2 * qd;
      *reinterpret_cast<uint32_t*>(ps + g * S::kLdP + col) = pack_bf16(pv[0], pv[1]);
      *reinterpret_cast<uint32_t*>(ps + (g + 8) * S::kLdP + col) = pack_bf16(pv[2], pv[3]);
    }
#pragma unroll
    for (int nt = 0; nt < kNtO; ++nt) {
      o[nt][0] *= alpha[0];
      o[nt][1] *= alpha[0];
      o[nt][2] *= alpha[1];
      o[nt][3] *= alpha[1];
    }
    __syncthreads();
    // O += P V over the 64 tokens of the tile, for this warp's value columns.
    {
      const int a_row = (lane % 8) + 8 * ((lane / 8) % 2), a_col = 8 * (lane / 16);
      const int mi = lane / 8;
      const int v_tok = (lane % 8) + 8 * (mi % 2), v_col = 8 * (mi / 2);
#pragma unroll
      for (int kt = 0; kt < kTileTokens; kt += 16) {
        uint32_t a[4];
        ldmatrix_x4(a, ps + a_row * S::kLdP + kt + a_col);
#pragma unroll
        for (int np = 0; np < kNtO / 2; ++np) {
          uint32_t bb[4];
          ldmatrix_x4_trans(bb, vs + (kt + v_tok) * kLdVs + warp * kDvWarp + np * 16 + v_col);
          mma_bf16(o[2 * np], a, bb[0], bb[1]);
          mma_bf16(o[2 * np + 1], a, bb[2], bb[3]);
        }
      }
    }
    __syncthreads();  // the stage, P and the maxima are rewritten by the next tile
  }

  // Row sums: over the quad, then over the warps (all warps share the same running max).
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 1);
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 2);
  }
  float* red_l = red + kWarps * kHeadTile;
  if (qd == 0) {
    red_l[warp * kHeadTile + g] = l_run[0];
    red_l[warp * kHeadTile + g + 8] = l_run[1];
  }
  __syncthreads();
  float inv[2], lse[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) l += red_l[w * kHeadTile + g + 8 * r];
    const bool empty = l == 0.0f || m_run[r] == -INFINITY;
    inv[r] = empty ? 0.0f : 1.0f / l;
    lse[r] = empty ? -INFINITY : m_run[r] * kLn2 + logf(l);
  }
  const int64_t slot = (int64_t(split) * p.batch + b) * p.heads;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = g + 8 * r;
    if (row >= rows) continue;
    float* dst = p.out + (slot + h0 + row) * DV + warp * kDvWarp;
#pragma unroll
    for (int nt = 0; nt < kNtO; ++nt) {
      const float2 v = make_float2(o[nt][2 * r] * inv[r], o[nt][2 * r + 1] * inv[r]);
      *reinterpret_cast<float2*>(dst + nt * 8 + 2 * qd) = v;
    }
    if (warp == 0 && qd == 0) p.lse[slot + h0 + row] = lse[r];
  }
}

struct Geometry {
  int dk, dv;
  int64_t kv_heads;  // grid z per request
  int head_tiles;    // grid x
  size_t smem;
};

Geometry geometry(const DecodeAttention& a) {
  Geometry g{};
  if (a.mla) {
    g.dk = 576;
    g.dv = 512;
    g.kv_heads = 1;
    g.head_tiles = int((a.heads + kHeadTile - 1) / kHeadTile);
    g.smem = Smem<576, 512, true>::kBytes;
  } else {
    g.dk = g.dv = 128;
    g.kv_heads = a.kv_heads;
    // Most query heads any KV head serves on this rank.
    int64_t most = 0;
    for (int64_t kh = 0; kh < a.kv_heads; ++kh) {
      const int64_t h0 = std::max<int64_t>(0, (a.kv_begin + kh) * a.group - a.q_begin);
      const int64_t h1 = std::min<int64_t>(a.heads, (a.kv_begin + kh + 1) * a.group - a.q_begin);
      most = std::max(most, h1 - h0);
    }
    g.head_tiles = int(std::max<int64_t>(1, (most + kHeadTile - 1) / kHeadTile));
    g.smem = Smem<128, 128, false>::kBytes;
  }
  return g;
}

template <int DK, int DV, bool kMla>
int blocks_per_sm() {
  static int cached = -1;
  if (cached < 0) {
    const size_t smem = Smem<DK, DV, kMla>::kBytes;
    HELIX_CUDA_CHECK(cudaFuncSetAttribute(decode_attention_kernel<DK, DV, kMla>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    HELIX_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &cached, decode_attention_kernel<DK, DV, kMla>, warps_of<kMla>() * 32, smem));
    cached = std::max(cached, 1);
  }
  return cached;
}

int sm_count() {
  static int n = 0;
  if (n == 0) {
    int dev = 0;
    HELIX_CUDA_CHECK(cudaGetDevice(&dev));
    HELIX_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  }
  return n;
}

int64_t chunk_for(int64_t tokens, int splits) {
  const int64_t c = (tokens + splits - 1) / std::max(splits, 1);
  return std::max<int64_t>(kTileTokens, (c + kTileTokens - 1) / kTileTokens * kTileTokens);
}

}  // namespace

int choose_splits(const DecodeAttention& a);

int attention_splits(const DecodeAttention& a) {
  if (a.splits > 0) return a.splits;
  // Memoized per shape: the search below runs on the host between launches, where it would show
  // up as idle GPU time inside the attention phase.
  struct Key {
    bool mla;
    int64_t batch, heads, q_begin, kv_begin, kv_heads, group, tokens;
    bool operator<(const Key& o) const {
      return std::tie(mla, batch, heads, q_begin, kv_begin, kv_heads, group, tokens) <
             std::tie(o.mla, o.batch, o.heads, o.q_begin, o.kv_begin, o.kv_heads, o.group,
                      o.tokens);
    }
  };
  static std::map<Key, int> memo;
  const Key key{a.mla, a.batch, a.heads, a.q_begin, a.kv_begin, a.kv_heads, a.group, a.tokens};
  const auto hit = memo.find(key);
  if (hit != memo.end()) return hit->second;
  const int splits = choose_splits(a);
  if (memo.size() > 4096) memo.clear();
  memo.emplace(key, splits);
  return splits;
}

int choose_splits(const DecodeAttention& a) {
  const Geometry g = geometry(a);
  const int per_sm = a.mla ? blocks_per_sm<576, 512, true>() : blocks_per_sm<128, 128, false>();
  const int64_t units = a.batch * g.kv_heads * g.head_tiles;
  const int64_t slots = int64_t(sm_count()) * per_sm;  // CTAs of one full wave
  if (a.tokens <= 256) return 1;
  // Wave efficiency (FlashAttention's rule): among split counts that keep every split at least
  // 256 tokens long, the CTAs of the grid should fill whole waves of the GPU. Take the smallest
  // split count within 5% of the best efficiency (fewer splits: less merging).
  const int64_t most = std::max<int64_t>(1, std::min<int64_t>(a.tokens / 256, 4 * slots));
  auto efficiency = [&](int64_t s) {
    const int64_t ctas =
        units * int64_t((a.tokens + chunk_for(a.tokens, int(s)) - 1) / chunk_for(a.tokens, int(s)));
    const int64_t waves = (ctas + slots - 1) / slots;
    return double(ctas) / double(waves * slots);
  };
  double best = 0;
  for (int64_t s = 1; s <= most; ++s) best = std::max(best, efficiency(s));
  int64_t pick = 1;
  for (int64_t s = 1; s <= most; ++s)
    if (efficiency(s) >= 0.95 * best) {
      pick = s;
      break;
    }
  // The splits actually produced by the rounded chunk length.
  const int64_t chunk = chunk_for(a.tokens, int(pick));
  return int((a.tokens + chunk - 1) / chunk);
}

int64_t attention_workspace_floats(const DecodeAttention& a, int splits) {
  const int64_t dv = a.mla ? 512 : 128;
  return splits <= 1 ? 0 : int64_t(splits) * a.batch * a.heads * (dv + 1);
}

void attention_decode(const DecodeAttention& a, cudaStream_t stream) {
  if (a.batch == 0 || a.heads == 0) return;
  const Geometry g = geometry(a);
  const int splits = attention_splits(a);
  Params p{};
  p.heads = a.heads;
  p.q_begin = a.q_begin;
  p.kv_begin = a.kv_begin;
  p.kv_heads = g.kv_heads;
  p.group = a.group;
  p.tokens = a.tokens;
  p.capacity = a.capacity;
  p.chunk = chunk_for(a.tokens, splits);
  p.head_tiles = g.head_tiles;
  p.splits = splits;
  p.scale_log2 = a.scale * kLog2e;
  p.q = a.q;
  p.k = a.k;
  p.v = a.v;
  p.batch = a.batch;
  if (splits == 1) {
    p.out = a.out;
    p.lse = a.lse;
  } else {
    HELIX_CHECK(a.workspace != nullptr, "attention_decode: split workspace missing");
    p.out = a.workspace;
    p.lse = a.workspace + int64_t(splits) * a.batch * a.heads * g.dv;
  }
  const dim3 grid(unsigned(g.head_tiles), unsigned(splits), unsigned(a.batch * g.kv_heads));
  if (a.mla) {
    blocks_per_sm<576, 512, true>();
    decode_attention_kernel<576, 512, true><<<grid, warps_of<true>() * 32, g.smem, stream>>>(p);
  } else {
    blocks_per_sm<128, 128, false>();
    decode_attention_kernel<128, 128, false><<<grid, warps_of<false>() * 32, g.smem, stream>>>(p);
  }
  HELIX_LAUNCH_CHECK();
  if (splits > 1) {
    const int64_t rows = a.batch * a.heads;
    lse_combine(splits, rows, g.dv, p.out, rows * g.dv, p.lse, rows, a.out, nullptr, a.lse, stream);
  }
}

}  // namespace helix::cuda
