// Absorbed MLA decode attention for Hopper: warpgroup MMA (wgmma) fed by the tensor memory
// accelerator (TMA) through a three-stage mbarrier pipeline. One CTA per (64-head tile, KV split,
// request); grid and outputs as the other MLA configurations of kernels/attention.cu.
//
// Warp roles (three warpgroups, 384 threads, one CTA per SM):
//   WG0, scores: holds the 64 x 512 latent query tile in registers as bf16 wgmma A fragments and
//     the 64 x 64 rope part in shared memory. Per 64-token block it computes S = Q K^T in two
//     32-token halves (m64n32k16: 32 steps with A from registers, 4 from shared memory; 16
//     accumulator registers), the online softmax (base 2, running max per row) of each half, and
//     writes P (bf16) into the half's own 32 rows of the block's rope box, which its S has just
//     read for the last time (64-byte swizzle). A new maximum in the second half rescales the
//     first half's P in shared memory, so that O is rescaled once per block.
//   WG1, WG2, values: each holds half of the 64 x 512 fp32 output (128 registers per thread) and
//     computes O = alpha O + P V over its 256 value columns (m64n256k16, A = P and B = the latent
//     rows read transposed, both from shared memory). The first thread of WG1 also issues the TMA
//     loads: the first three blocks at the start, block i + 3 once both value warpgroups are done
//     with block i.
//   setmaxnreg moves registers from the value warpgroups (160 each) to the score warpgroup (184):
//   together 3 x 168, what the CTA holds at launch.
//
// Shared memory (1024-byte aligned): 3 stages x 9 boxes of 64 tokens x 64 columns (bf16, 128-byte
// swizzle, as TMA writes them and wgmma reads them; 72 KB per stage), the rope part of Q (8 KB,
// same layout; the final row maxima and sums at the end), per-stage rescale factors, 9 mbarriers:
//   full[s]  the TMA bytes of the stage landed (1 arrival + 73728 transaction bytes);
//   pfull[s] P and the rescale factors of the stage are written (the 4 score warps);
//   empty[s] both value warpgroups are done with the stage (their 8 warps).
// The KV tensor map covers only the slice's tokens: rows past the end read as zeros (never NaN),
// and their scores are masked.
//
// Ordering: the score warpgroup tests whether block i has landed; when it has, it issues the first
// half of S(i) before releasing P(i - 1) to the value warpgroups, so that the tensor cores run
// P(i - 1) V while it computes the softmax; when it has not, it releases P(i - 1) first.
#include "kernels/attention_mla_sm90.hpp"

#include <cuda.h>

#include <cmath>
#include <mutex>
#include <string>

#include "comm/cuda_check.hpp"
#include "kernels/launch_order.cuh"
#include "kernels/mma.cuh"
#include "kernels/sm90.cuh"
#include "kernels/tensor_map.hpp"

namespace helix::cuda::detail {

namespace {

constexpr int kDk = 576, kDv = 512;
constexpr int kTok = kMlaSm90Tokens, kStages = kMlaSm90Stages, kThreads = kMlaSm90Threads;
constexpr int kBoxes = kDk / 64;       // 64-column boxes per row: 8 latent + 1 rope
constexpr int kBoxBytes = kTok * 128;  // 64 rows of 128 bytes
constexpr int kStageBytes = kBoxes * kBoxBytes;
// setmaxnreg moves registers from the value warpgroups to the score warpgroup. A CTA of 384
// threads gets 168 registers per thread at launch (65536 / 384, in steps of 8); the three
// warpgroups together may not hold more than that: 184 + 2 x 160 = 3 x 168.
constexpr int kRegScores = 184, kRegValues = 160;
static_assert(kRegScores + 2 * kRegValues <= 3 * 168, "registers of the CTA at launch");
static_assert(kMlaSm90HeadTile == 64 && kTok == 64, "one wgmma row tile, 64-token boxes");
static_assert(kDk == kDv + 64, "latent 512 + rope 64");

// Shared-memory layout, offsets from the 1024-byte aligned base.
constexpr int kOffStages = 0;
constexpr int kOffQRope = kOffStages + kStages * kStageBytes;
constexpr int kOffAlpha = kOffQRope + kBoxBytes;        // [stages][64] fp32
constexpr int kOffBars = kOffAlpha + kStages * 64 * 4;  // full[3], pfull[3], empty[3]
constexpr int kUsed = kOffBars + 3 * kStages * 8;
// At the end the row maxima (base 2) and sums, [2][64] fp32, go where the rope query was.
constexpr int kOffMl = kOffQRope;
constexpr size_t kSmemBytes = size_t(kUsed) + 1024;  // slack for aligning the base
static_assert(kOffQRope % 1024 == 0 && kStageBytes % 1024 == 0, "swizzle atoms");
static_assert(kOffMl + 2 * 64 * 4 <= kOffQRope + kBoxBytes, "row maxima and sums fit");
static_assert(kSmemBytes <= 232448, "227 KB of shared memory per block");

struct Args {
  int64_t batch, heads, tokens, chunk;
  float scale_log2;
  const float* q;
  float* out;
  float* lse;
};

#if HELIX_SM90A_DEVICE

using namespace sm90;

constexpr int kQRegSteps = kDv / 16;  // k-steps of the latent query held in registers
constexpr float kLn2 = 0.6931471805599453f;
constexpr int kHalfBytes = 32 * 128;  // 32 token rows of a box: one half block

using mma::pack_bf16;
using mma::unpack_bf16;

// 32-bit fields only (slices < 2^31 tokens, checked on the host): registers are scarce.
struct Cta {
  uint32_t base;  // shared address of the aligned base
  int b, h0, t_begin, t_end;
  int rows, n;  // valid query rows of the tile, 64-token blocks of the split
  __device__ uint32_t full(int s) const { return base + kOffBars + 8 * s; }
  __device__ uint32_t pfull(int s) const { return base + kOffBars + 8 * (kStages + s); }
  __device__ uint32_t empty(int s) const { return base + kOffBars + 8 * (2 * kStages + s); }
  __device__ uint32_t stage(int s) const { return base + kOffStages + s * kStageBytes; }
  __device__ uint32_t alpha(int s, int row) const { return base + kOffAlpha + 4 * (s * 64 + row); }
  __device__ uint32_t ml(int i) const { return base + kOffMl + 4 * i; }
};

// Releases P and the rescale factors of stage s to the value warpgroups (one arrival per warp,
// after every lane's stores and proxy fence).
__device__ __forceinline__ void release_p(const Cta& c, int s, int lane) {
  __syncwarp();
  if (lane == 0) mbar_arrive(c.pfull(s));
}

// o *= row factor (rows r0 and r0 + 8 of every fragment).
__device__ __forceinline__ void rescale(float (&o)[128], float f0, float f1) {
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    o[4 * j] *= f0;
    o[4 * j + 1] *= f0;
    o[4 * j + 2] *= f1;
    o[4 * j + 3] *= f1;
  }
}

__device__ __forceinline__ void score_warpgroup(const Args& a, const Cta& c, int t) {
  const int warp = t / 32, lane = t % 32, g = lane / 4, q4 = lane % 4;
  const int r0 = warp * 16 + g;  // this thread's rows of every fragment: r0 and r0 + 8
  const float* qtile = a.q + (int64_t(c.b) * a.heads + c.h0) * kDk;

  // The rope part of the query into its box: row r, 16-byte chunk ch at (ch ^ (r % 8)).
  for (int i = t; i < 64 * 8; i += 128) {
    const int r = i / 8, ch = i % 8;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r < c.rows) {
      const float4* src = reinterpret_cast<const float4*>(qtile + int64_t(r) * kDk + kDv + ch * 8);
      const float4 x = __ldg(src), y = __ldg(src + 1);
      v = make_uint4(pack_bf16(x.x, x.y), pack_bf16(x.z, x.w), pack_bf16(y.x, y.y),
                     pack_bf16(y.z, y.w));
    }
    st_shared(c.base + kOffQRope + r * 128 + ((ch ^ (r & 7)) << 4), v);
  }
  // The latent query as A fragments (rows r0, r0 + 8; columns 2 q4 + {0, 1, 8, 9} of each k-step).
  uint32_t qa[kQRegSteps][4];
  {
    const bool v0 = r0 < c.rows, v1 = r0 + 8 < c.rows;
    const float* q0 = qtile + int64_t(v0 ? r0 : 0) * kDk;
    const float* q1 = qtile + int64_t(v1 ? r0 + 8 : 0) * kDk;
    const float2 zero = make_float2(0.0f, 0.0f);
#pragma unroll
    for (int ks = 0; ks < kQRegSteps; ++ks) {
      const int col = 16 * ks + 2 * q4;
      const float2 x00 = v0 ? __ldg(reinterpret_cast<const float2*>(q0 + col)) : zero;
      const float2 x10 = v1 ? __ldg(reinterpret_cast<const float2*>(q1 + col)) : zero;
      const float2 x01 = v0 ? __ldg(reinterpret_cast<const float2*>(q0 + col + 8)) : zero;
      const float2 x11 = v1 ? __ldg(reinterpret_cast<const float2*>(q1 + col + 8)) : zero;
      qa[ks][0] = pack_bf16(x00.x, x00.y);
      qa[ks][1] = pack_bf16(x10.x, x10.y);
      qa[ks][2] = pack_bf16(x01.x, x01.y);
      qa[ks][3] = pack_bf16(x11.x, x11.y);
      // At most four k-steps of loads in flight: hoisting all 128 loads would spill.
      if (ks % 4 == 3) asm volatile("" ::: "memory");
    }
  }
  fence_proxy_async();
  named_sync(1, 128);

  const uint32_t qrope = c.base + kOffQRope;
  float s[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) s[i] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
  const int tail = c.t_end - c.t_begin - kTok * (c.n - 1);  // valid tokens of the last block

  for (int i = 0; i < c.n; ++i) {
    const int st = i % kStages;
    const uint32_t ph = uint32_t(i / kStages) & 1u;
    const uint32_t stage = c.stage(st);
    const int prev = (i + kStages - 1) % kStages;
    const int valid = i == c.n - 1 ? tail : kTok;
    bool released = i == 0;
    // Block i not here yet: release P(i - 1) now. Decided per warp (each warp arrives once).
    if (!released && __shfl_sync(0xffffffffu, int(mbar_test(c.full(st), ph)), 0) == 0) {
      release_p(c, prev, lane);
      released = true;
    }
    mbar_wait(c.full(st), ph);
    float alpha[2][2];  // [half][row]
#pragma unroll
    for (int hb = 0; hb < 2; ++hb) {
      // S = Q K^T for tokens 32 hb .. 32 hb + 31 (rows 32 hb .. of every box): the latent with A
      // from registers, the rope part from shared memory.
      wgmma_fence();
#pragma unroll
      for (int ks = 0; ks < kQRegSteps; ++ks)
        wgmma_m64n32k16_rs(
            s, qa[ks],
            desc_kmajor_sw128(stage + (ks / 4) * kBoxBytes + hb * kHalfBytes + (ks % 4) * 32),
            ks > 0);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
        wgmma_m64n32k16_ss(s, desc_kmajor_sw128(qrope + kk * 32),
                           desc_kmajor_sw128(stage + 8 * kBoxBytes + hb * kHalfBytes + kk * 32), 1);
      wgmma_commit();
      if (hb == 0 && !released) release_p(c, prev, lane);
      wgmma_wait<0>();
      fence_regs(s);

      // Online softmax of the half: s[4 j + 2 r + e] is row r0 + 8 r, token 32 hb + 8 j + 2 q4 + e.
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int idx = 4 * j + 2 * r + e;
            const float v =
                32 * hb + 8 * j + 2 * q4 + e < valid ? s[idx] * a.scale_log2 : -INFINITY;
            s[idx] = v;
            mx = fmaxf(mx, v);
          }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        // Finite: the first half of every block has a valid token.
        const float m_new = fmaxf(m_run[r], mx);
        alpha[hb][r] = exp2f(m_run[r] - m_new);  // 0 on the first half of the split
        m_run[r] = m_new;
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int idx = 4 * j + 2 * r + e;
            const float p = exp2f(s[idx] - m_new);
            s[idx] = p;
            sum += p;
          }
        l_run[r] = l_run[r] * alpha[hb][r] + sum;
      }
      // P of the half into the rows of the rope box that S no longer reads (the half's own 32
      // token rows, 4 KB): K-major rows of 32 tokens (64 bytes), 64-byte swizzle, chunk j of
      // row rr at j ^ ((rr / 2) % 4).
      const uint32_t pbox = stage + 8 * kBoxBytes + hb * kHalfBytes;
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int rr = r0 + 8 * r;
#pragma unroll
        for (int j = 0; j < 4; ++j)
          st_shared(pbox + rr * 64 + ((j ^ ((rr >> 1) & 3)) << 4) + 4 * q4,
                    pack_bf16(s[4 * j + 2 * r], s[4 * j + 2 * r + 1]));
      }
    }
    // One rescale of O per block: a new maximum in the second half rescales the first half's P
    // (already in shared memory; only its own row elements, by this thread) instead of O.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      if (alpha[1][r] != 1.0f) {
        const int rr = r0 + 8 * r;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const uint32_t at =
              stage + 8 * kBoxBytes + rr * 64 + ((j ^ ((rr >> 1) & 3)) << 4) + 4 * q4;
          const float2 v = unpack_bf16(ld_shared_u32(at));
          st_shared(at, pack_bf16(v.x * alpha[1][r], v.y * alpha[1][r]));
        }
      }
    }
    if (q4 == 0) {
      st_shared(c.alpha(st, r0), alpha[0][0] * alpha[1][0]);
      st_shared(c.alpha(st, r0 + 8), alpha[0][1] * alpha[1][1]);
    }
    fence_proxy_async();
  }
  if (c.n > 0) release_p(c, (c.n - 1) % kStages, lane);

  // Row sums over the quad, then the final maxima and sums for the value warpgroups (the rope
  // query is no longer read: every S of this warpgroup has completed).
  for (float& l : l_run) {
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
  }
  named_sync(1, 128);  // every lane of the warpgroup is past its last read of the rope query
  if (q4 == 0) {
    st_shared(c.ml(r0), m_run[0]);
    st_shared(c.ml(r0 + 8), m_run[1]);
    st_shared(c.ml(64 + r0), l_run[0]);
    st_shared(c.ml(64 + r0 + 8), l_run[1]);
  }
  named_arrive(2, kThreads);
}

__device__ __forceinline__ void issue_block(const CUtensorMap* map, const Cta& c, int blk) {
  const int st = blk % kStages;
  const uint32_t stage = c.stage(st);
  mbar_arrive_expect_tx(c.full(st), kStageBytes);
  const int tok = c.t_begin + kTok * blk;
#pragma unroll
  for (int k = 0; k < kBoxes; ++k)
    tma_load_3d(stage + k * kBoxBytes, map, c.full(st), 64 * k, tok, c.b);
}

__device__ __forceinline__ void value_warpgroup(const CUtensorMap* map, const Args& a, const Cta& c,
                                                int half, int t) {
  const int warp = t / 32, lane = t % 32, g = lane / 4, q4 = lane % 4;
  const int r0 = warp * 16 + g;
  const bool producer = half == 0 && t == 0;
  if (producer) {
    tma_prefetch_map(map);
    for (int blk = 0; blk < min(c.n, kStages); ++blk) issue_block(map, c, blk);
  }
  float o[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) o[i] = 0.0f;

  for (int i = 0; i < c.n; ++i) {
    const int st = i % kStages;
    const uint32_t ph = uint32_t(i / kStages) & 1u;
    const uint32_t stage = c.stage(st);
    const uint32_t pbox = stage + 8 * kBoxBytes, vbox = stage + 4 * half * kBoxBytes;
    mbar_wait(c.pfull(st), ph);
    // O = alpha O + P V over the block's 64 tokens: A = P (two 32-token halves, 64-byte swizzle,
    // 2 k-steps each), B = value columns 256 half .. + 255 (boxes 4 half .. 4 half + 3, N-major,
    // 16 tokens = 2048 bytes per k-step).
    const float a0 = ld_shared_f32(c.alpha(st, r0)), a1 = ld_shared_f32(c.alpha(st, r0 + 8));
    if (__any_sync(0xffffffffu, a0 != 1.0f || a1 != 1.0f)) rescale(o, a0, a1);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
      wgmma_m64n256k16_ss_tn(o, desc_kmajor_sw64(pbox + (kk / 2) * kHalfBytes + (kk % 2) * 32),
                             desc_mnmajor_sw128(vbox + kk * 2048, kBoxBytes), 1);
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs(o);
    __syncwarp();
    if (lane == 0) mbar_arrive(c.empty(st));
    if (producer && i + kStages < c.n) {
      mbar_wait(c.empty(st), ph);
      issue_block(map, c, i + kStages);
    }
  }

  named_sync(2, kThreads);  // the score warpgroup's final maxima and sums
  const int64_t slot = (int64_t(blockIdx.y) * a.batch + c.b) * a.heads + c.h0;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = r0 + 8 * r;
    if (row >= c.rows) continue;
    const float m = ld_shared_f32(c.ml(row)), l = ld_shared_f32(c.ml(64 + row));
    const bool none = !(l > 0.0f);  // an empty split: zeros and -inf
    const float inv = none ? 0.0f : 1.0f / l;
    float* dst = a.out + (slot + row) * kDv + 256 * half + 2 * q4;
#pragma unroll
    for (int j = 0; j < 32; ++j)
      *reinterpret_cast<float2*>(dst + 8 * j) =
          make_float2(o[4 * j + 2 * r] * inv, o[4 * j + 2 * r + 1] * inv);
    if (half == 0 && q4 == 0) a.lse[slot + row] = none ? -INFINITY : m * kLn2 + logf(l);
  }
}

#endif  // HELIX_SM90A_DEVICE

__global__ void __launch_bounds__(kThreads, 1)
    mla_decode_sm90_kernel(const __grid_constant__ CUtensorMap kv_map, const Args a) {
#if HELIX_SM90A_DEVICE
  // The split merge (lse_combine) may be scheduled now; it waits for this grid to finish.
  allow_dependents();
  extern __shared__ unsigned char smem_raw[];
  Cta c;
  const uint32_t raw = smem_u32(smem_raw);
  c.base = (raw + 1023u) & ~1023u;
  c.b = int(blockIdx.z);
  c.h0 = int(blockIdx.x) * kMlaSm90HeadTile;
  c.rows = int(min(int64_t(kMlaSm90HeadTile), a.heads - c.h0));
  c.t_begin = int(min(int64_t(blockIdx.y) * a.chunk, a.tokens));
  c.t_end = int(min(a.tokens, int64_t(c.t_begin) + a.chunk));
  c.n = c.t_end > c.t_begin ? (c.t_end - c.t_begin + kTok - 1) / kTok : 0;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(c.full(s), 1);
      mbar_init(c.pfull(s), 4);
      mbar_init(c.empty(s), 8);
    }
    mbar_init_fence();
  }
  __syncthreads();
  const int wg = threadIdx.x / 128, t = threadIdx.x % 128;
  if (wg == 0) {
    setmaxnreg_inc<kRegScores>();
    score_warpgroup(a, c, t);
  } else {
    setmaxnreg_dec<kRegValues>();
    value_warpgroup(&kv_map, a, c, wg - 1, t);
  }
#else
  // Compiled without sm_90a: never launched (mla_sm90_available() is false in such a build).
  (void)kv_map;
  (void)a;
#endif
}

}  // namespace

bool mla_sm90_available() {
#if defined(HELIX_SM90A_BUILD)
  static int cached[64] = {};  // per device: 0 unknown, 1 yes, 2 no
  int dev = 0;
  HELIX_CUDA_CHECK(cudaGetDevice(&dev));
  int* slot = dev >= 0 && dev < 64 ? &cached[dev] : nullptr;
  if (slot && *slot) return *slot == 1;
  int major = 0, minor = 0;
  HELIX_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  HELIX_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  const bool yes = major == 9 && minor == 0;
  if (slot) *slot = yes ? 1 : 2;
  return yes;
#else
  return false;
#endif
}

const void* mla_sm90_kernel() {
  return reinterpret_cast<const void*>(&mla_decode_sm90_kernel);
}

size_t mla_sm90_smem_bytes() {
  return kSmemBytes;
}

void mla_sm90_launch(const MlaSm90Launch& a, cudaStream_t stream) {
  HELIX_CHECK(mla_sm90_available(), "the sm_90a MLA kernel is not available on this device/build");
  HELIX_CHECK(a.chunk % kTok == 0 && a.chunk > 0, "mla_sm90_launch: chunk not a multiple of 64");
  HELIX_CHECK(reinterpret_cast<uintptr_t>(a.kv) % 16 == 0 && a.capacity >= a.tokens,
              "mla_sm90_launch: KV cache not 16-byte aligned or shorter than the slice");
  HELIX_CHECK(a.tokens < (int64_t(1) << 31) && a.batch < 65536,
              "mla_sm90_launch: slice or batch too large for the tensor map");
  static std::once_flag attr;
  std::call_once(attr, [] {
    HELIX_CUDA_CHECK(cudaFuncSetAttribute(
        mla_decode_sm90_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmemBytes)));
  });
  // [batch][tokens][576] bf16 over the slice only: rows past the slice read as zeros.
  const CUtensorMap map = tensor_map_bf16_3d(
      a.kv, kDk, uint64_t(a.tokens > 0 ? a.tokens : 1), uint64_t(a.batch), uint64_t(kDk) * 2,
      uint64_t(a.capacity) * kDk * 2, kTok, "the MLA KV cache");
  const Args args{a.batch, a.heads, a.tokens, a.chunk, a.scale_log2, a.q, a.out, a.lse};
  const dim3 grid(unsigned((a.heads + kMlaSm90HeadTile - 1) / kMlaSm90HeadTile), unsigned(a.splits),
                  unsigned(a.batch));
  mla_decode_sm90_kernel<<<grid, kThreads, kSmemBytes, stream>>>(map, args);
  HELIX_LAUNCH_CHECK();
}

}  // namespace helix::cuda::detail
