// The MoE FFN of one rank without host round trips (kernels/moe_cuda.hpp): routing and grouping in
// one CTA (moe_plan_kernel), then every expert that received tokens and the shared expert in one
// persistent launch (moe_ffn_kernel).
//
// moe_ffn_kernel: one CTA per SM, 9 warps. Warp 8 is the producer: it takes work units from a
// global counter (phase 1 units first, so that a CTA never waits for a unit nobody has taken) and
// streams their weight tiles by TMA into an 8-stage ring of 16 KB stages (two 64 x 64 bf16 boxes
// in the 128-byte swizzle), tagging each stage with its unit. Warps 0-7 consume: m16n8k16
// tensor-core MMAs with the weights as the A operand (ldmatrix.trans from the swizzled boxes) and
// the unit's tokens (at most 32, loaded once per unit into a swizzled 64 KB tile) as B.
//   phase 1 unit (sub-item, 64 gate/up columns, 1024 rows of hidden): stage = gate box + up box
//     over 64 rows; warp w computes 16 columns of gate (w < 4) or up; partial sums to the
//     workspace; the last of the ceil(hidden / 1024) units of a column tile reduces them in order
//     and writes act = weight * silu(gate) * up (bf16), then counts the tile done;
//   phase 2 unit (sub-item, 64 output columns, 1024 rows of cols): stage = 128 rows of down;
//     warps w and w + 4 take 64 rows each and add in shared memory; partial rows y to the
//     workspace; the last unit of an output tile writes out = the sum over each token's slots in
//     routing order (deterministic), so `out` needs no zeroing and no atomics.
// A phase 2 unit reads its activations only once the expert's phase 1 tiles are all reduced.
#include "kernels/moe_cuda.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <string>

#include "comm/cuda_check.hpp"
#include "comm/error.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/gemm_cuda.hpp"
#include "kernels/mma.cuh"
#include "kernels/moe_route.cuh"
#include "kernels/sm90.cuh"
#include "kernels/tensor_map.hpp"

namespace helix::cuda {

namespace {

constexpr int kTokChunk = 32;  // tokens per sub-item (one activation tile)
constexpr int kRows = 1024;    // rows of hidden (phase 1) or cols (phase 2) per unit
constexpr int kTile = 64;      // output columns per unit
constexpr int kStages = 8;
constexpr int kBoxBytes = 64 * 128;
constexpr int kStageBytes = 2 * kBoxBytes;
constexpr int kConsumers = 256;  // 8 warps
constexpr int kThreads = kConsumers + 32;
constexpr int kActRowBytes = kRows * 2;
constexpr int kActBytes = kTokChunk * kActRowBytes;
constexpr int kPlanThreads = 1024;
constexpr int kMaxAssign = 4096;  // tokens * top_k per call
// Phase 1 splits the rows of hidden over several units (partial sums in the workspace) only when
// the column tiles alone give fewer than two units per SM and at most this many slots are used.
constexpr int kSplitSlots = 256;

// Shared memory of moe_ffn_kernel, offsets from the 1024-byte aligned base.
constexpr int kOffRing = 0;
constexpr int kOffAct = kOffRing + kStages * kStageBytes;
constexpr int kOffRed = kOffAct + kActBytes;            // [4 warps][4 n-tiles][4][32] fp32
constexpr int kOffTags = kOffRed + 4 * 4 * 4 * 32 * 4;  // unit and stage per ring slot
constexpr int kOffBars = kOffTags + 2 * kStages * 4;    // full[8], empty[8]
constexpr int kOffFlag = kOffBars + 2 * kStages * 8;
constexpr size_t kFfnSmem = size_t(kOffFlag) + 16 + 1024;

// Header words of the plan.
enum Hdr {
  kAssign,
  kActive,
  kSubR,
  kSubS,
  kN1,
  kN2,
  kP2PerTile,
  kQueue,
  kKSplit,  // phase 1 units per column tile of this call: 1 or ceil(hidden / 1024)
  kHdrWords = 16
};

// Everything both kernels need: shapes, derived counts, workspace sections.
struct Geo {
  int T, H, K, E, e0, held, cols_r, cols_s, ct_r, ct_s, k2_r, k2_s, ntiles, colsmax, kslots;
  int ksplit;  // most phase 1 units per column tile (the call's count is in the header)
  int sms;
  int64_t slots;     // slot capacity: row stride of act and y
  int64_t p1_slots;  // rows of each part of p1: min(slots, kSplitSlots)
  float scale;
  int* hdr;
  int* sub;            // [subs][3]: held expert (-1: shared), first slot, tokens
  int* slot_tok;       // [slots]
  float* slot_w;       // [slots]
  int* tok_n;          // [T]: slots of each token
  int* tok_slots;      // [T][kslots]: in routing order, the shared slot last
  int* cnt1;           // [subs][ctmax]
  int* done1;          // [subs]
  int* cnt2;           // [ntiles]
  float* p1;           // [ksplit][p1_slots][2][colsmax]
  __nv_bfloat16* act;  // [slots][colsmax]
  float* y;            // [k2max][slots][H]
};

struct Sizes {
  int64_t slots, subs, ctmax, ksplit, k2max, ntiles, colsmax;
  int64_t off_sub, off_slot_tok, off_slot_w, off_tok_n, off_tok_slots, off_cnt1, off_done1,
      off_cnt2, off_p1, off_act, off_y, total;
};

int64_t up256(int64_t b) {
  return (b + 255) / 256 * 256;
}
int64_t cdiv(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

Sizes sizes_of(const MoeFfnShape& s) {
  Sizes z{};
  const int64_t held = s.expert_end - s.expert_begin, T = s.max_tokens;
  const int64_t assign = T * std::min(s.top_k, held);
  z.slots = std::max<int64_t>(1, assign + (s.shared_cols > 0 ? T : 0));
  // Each active expert: ceil(tokens / 32) sub-items <= 1 + tokens / 32; the shared expert
  // ceil(T / 32).
  z.subs = std::max<int64_t>(1, std::min(held, assign) + assign / kTokChunk +
                                    (s.shared_cols > 0 ? cdiv(T, kTokChunk) : 0));
  z.colsmax = std::max(s.cols, s.shared_cols);
  z.ctmax = cdiv(z.colsmax, kTile);
  z.ksplit = cdiv(s.hidden, kRows);
  z.k2max = cdiv(z.colsmax, kRows);
  z.ntiles = cdiv(s.hidden, kTile);
  int64_t at = up256(kHdrWords * 4);
  auto take = [&](int64_t bytes) {
    const int64_t o = at;
    at += up256(bytes);
    return o;
  };
  z.off_sub = take(z.subs * 3 * 4);
  z.off_slot_tok = take(z.slots * 4);
  z.off_slot_w = take(z.slots * 4);
  z.off_tok_n = take(T * 4);
  z.off_tok_slots = take(T * (s.top_k + 1) * 4);
  z.off_cnt1 = take(z.subs * z.ctmax * 4);
  z.off_done1 = take(z.subs * 4);
  z.off_cnt2 = take(z.ntiles * 4);
  z.off_p1 = take(z.ksplit * std::min<int64_t>(z.slots, kSplitSlots) * 2 * z.colsmax * 4);
  z.off_act = take(z.slots * z.colsmax * 2);
  z.off_y = take(z.k2max * z.slots * s.hidden * 4);
  z.total = at;
  return z;
}

Geo geo_of(const MoeFfnShape& s, int64_t tokens, void* workspace) {
  const Sizes z = sizes_of(s);
  Geo g{};
  g.T = int(tokens);
  g.H = int(s.hidden);
  g.K = int(s.top_k);
  g.E = int(s.experts);
  g.e0 = int(s.expert_begin);
  g.held = int(s.expert_end - s.expert_begin);
  g.cols_r = int(s.cols);
  g.cols_s = int(s.shared_cols);
  g.ksplit = int(z.ksplit);
  g.ct_r = int(cdiv(s.cols, kTile));
  g.ct_s = int(cdiv(s.shared_cols, kTile));
  g.k2_r = int(cdiv(s.cols, kRows));
  g.k2_s = int(cdiv(s.shared_cols, kRows));
  g.ntiles = int(z.ntiles);
  g.colsmax = int(z.colsmax);
  g.kslots = int(s.top_k + 1);
  g.slots = z.slots;
  g.p1_slots = std::min<int64_t>(z.slots, kSplitSlots);
  g.sms = sm_count();
  g.scale = s.routed_scale;
  char* b = static_cast<char*>(workspace);
  g.hdr = reinterpret_cast<int*>(b);
  g.sub = reinterpret_cast<int*>(b + z.off_sub);
  g.slot_tok = reinterpret_cast<int*>(b + z.off_slot_tok);
  g.slot_w = reinterpret_cast<float*>(b + z.off_slot_w);
  g.tok_n = reinterpret_cast<int*>(b + z.off_tok_n);
  g.tok_slots = reinterpret_cast<int*>(b + z.off_tok_slots);
  g.cnt1 = reinterpret_cast<int*>(b + z.off_cnt1);
  g.done1 = reinterpret_cast<int*>(b + z.off_done1);
  g.cnt2 = reinterpret_cast<int*>(b + z.off_cnt2);
  g.p1 = reinterpret_cast<float*>(b + z.off_p1);
  g.act = reinterpret_cast<__nv_bfloat16*>(b + z.off_act);
  g.y = reinterpret_cast<float*>(b + z.off_y);
  return g;
}

// ---------------------------------------------------------------------------------------------
// Routing and plan (one CTA of 1024 threads)

// Exclusive block-wide scan of two counters; totals returned to every thread.
__device__ void block_scan2(int a, int b, int& ea, int& eb, int& ta, int& tb) {
  __shared__ int wa[32], wb[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  int ia = a, ib = b;  // inclusive within the warp
  for (int o = 1; o < 32; o *= 2) {
    const int xa = __shfl_up_sync(0xffffffffu, ia, o), xb = __shfl_up_sync(0xffffffffu, ib, o);
    if (lane >= o) {
      ia += xa;
      ib += xb;
    }
  }
  if (lane == 31) {
    wa[warp] = ia;
    wb[warp] = ib;
  }
  __syncthreads();
  int pa = 0, pb = 0;
  ta = 0;
  tb = 0;
  for (int w = 0; w < nw; ++w) {
    if (w < warp) {
      pa += wa[w];
      pb += wb[w];
    }
    ta += wa[w];
    tb += wb[w];
  }
  ea = pa + ia - a;
  eb = pb + ib - b;
  __syncthreads();
}

__global__ void __launch_bounds__(kPlanThreads, 1)
    moe_plan_kernel(const float* logits, const Geo g, const MoeRouting r) {
  __shared__ int16_t sel_e[kMaxAssign];     // expert of entry t * K + k
  __shared__ int16_t sel_slot[kMaxAssign];  // its slot (held experts)
  __shared__ float sel_w[kMaxAssign];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  // 1. Top-k per token (a warp per token), weights normalized and scaled, the margin.
  for (int t = warp; t < g.T; t += kPlanThreads / 32) {
    const float* lg = logits + int64_t(t) * g.E;
    float sum = 0.0f, prev_s = INFINITY;
    int32_t prev_e = -1;
    for (int k = 0; k < g.K; ++k) {
      float best;
      int32_t be;
      moe_next_best(lg, g.E, lane, prev_s, prev_e, best, be);
      if (lane == 0) {
        sel_e[t * g.K + k] = int16_t(be);
        sel_w[t * g.K + k] = best;
      }
      sum += best;
      prev_s = best;
      prev_e = be;
    }
    float next;
    int32_t next_e;
    moe_next_best(lg, g.E, lane, prev_s, prev_e, next, next_e);
    if (lane == 0) {
      if (r.margin) r.margin[t] = next_e == INT32_MAX ? INFINITY : prev_s - next;
      if (r.logit_margin)
        r.logit_margin[t] = next_e == INT32_MAX ? INFINITY : lg[prev_e] - lg[next_e];
      for (int k = 0; k < g.K; ++k) {
        const float w = sel_w[t * g.K + k] / sum * g.scale;
        sel_w[t * g.K + k] = w;
        r.expert[t * g.K + k] = sel_e[t * g.K + k];
        r.weight[t * g.K + k] = w;
      }
    }
  }
  __syncthreads();
  // 2. Slots per held expert (thread = local expert), in token order.
  const int entries = g.T * g.K;
  int cnt = 0;
  if (tid < g.held)
    for (int i = 0; i < entries; ++i) cnt += sel_e[i] == g.e0 + tid;
  int slot0, sub0, n_assign, n_sub_r;
  block_scan2(cnt, (cnt + kTokChunk - 1) / kTokChunk, slot0, sub0, n_assign, n_sub_r);
  const int n_active = __syncthreads_count(cnt > 0);
  if (cnt > 0) {
    int r = 0;
    for (int i = 0; i < entries; ++i)
      if (sel_e[i] == g.e0 + tid) {
        const int slot = slot0 + r++;
        g.slot_tok[slot] = i / g.K;
        g.slot_w[slot] = sel_w[i];
        sel_slot[i] = int16_t(slot);
      }
    for (int c = 0; c * kTokChunk < cnt; ++c) {
      int* s = g.sub + 3 * (sub0 + c);
      s[0] = tid;
      s[1] = slot0 + c * kTokChunk;
      s[2] = min(kTokChunk, cnt - c * kTokChunk);
    }
  }
  // The shared expert: slot n_assign + t for token t, weight 1.
  const int n_sub_s = g.cols_s > 0 ? (g.T + kTokChunk - 1) / kTokChunk : 0;
  if (g.cols_s > 0)
    for (int t = tid; t < g.T; t += kPlanThreads) {
      g.slot_tok[n_assign + t] = t;
      g.slot_w[n_assign + t] = 1.0f;
    }
  if (tid < n_sub_s) {
    int* s = g.sub + 3 * (n_sub_r + tid);
    s[0] = -1;
    s[1] = n_assign + tid * kTokChunk;
    s[2] = min(kTokChunk, g.T - tid * kTokChunk);
  }
  __syncthreads();
  // 3. Each token's slots in routing order, the shared slot last.
  for (int t = tid; t < g.T; t += kPlanThreads) {
    int n = 0;
    for (int k = 0; k < g.K; ++k) {
      const int e = sel_e[t * g.K + k];
      if (e >= g.e0 && e < g.e0 + g.held) g.tok_slots[t * g.kslots + n++] = sel_slot[t * g.K + k];
    }
    if (g.cols_s > 0) g.tok_slots[t * g.kslots + n++] = n_assign + t;
    g.tok_n[t] = n;
  }
  // 4. Counters of this call, the header.
  const int subs = n_sub_r + n_sub_s, ctmax = max(g.ct_r, g.ct_s);
  for (int i = tid; i < subs * ctmax; i += kPlanThreads) g.cnt1[i] = 0;
  for (int i = tid; i < subs; i += kPlanThreads) g.done1[i] = 0;
  for (int i = tid; i < g.ntiles; i += kPlanThreads) g.cnt2[i] = 0;
  if (tid == 0) {
    const int p2_per_tile = n_sub_r * g.k2_r + n_sub_s * g.k2_s;
    const int tiles1 = n_sub_r * g.ct_r + n_sub_s * g.ct_s;
    const int slots_used = n_assign + (g.cols_s > 0 ? g.T : 0);
    const int ksplit = tiles1 >= 2 * g.sms || slots_used > kSplitSlots ? 1 : g.ksplit;
    g.hdr[kAssign] = n_assign;
    g.hdr[kActive] = n_active;
    g.hdr[kSubR] = n_sub_r;
    g.hdr[kSubS] = n_sub_s;
    g.hdr[kN1] = tiles1 * ksplit;
    g.hdr[kKSplit] = ksplit;
    g.hdr[kN2] = p2_per_tile * g.ntiles;
    g.hdr[kP2PerTile] = p2_per_tile;
    g.hdr[kQueue] = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// The grouped expert FFN (persistent)

struct Maps {
  CUtensorMap gate, up, down, s_gate, s_up, s_down;
};

struct Unit {
  int phase;  // 1: gate/up, 2: down
  int sub;    // sub-item
  int tile;   // 64-column tile of the output (phase 1: of cols, phase 2: of hidden)
  int part;   // 1024-row slice of the reduction dimension
  int le;     // held expert, -1: the shared expert
  int slot0, ntok, cols, nst;
};

#if HELIX_SM90_DEVICE

using namespace sm90;

__device__ Unit decode_unit(const Geo& g, int n_sub_r, int n1, int ksplit, int u) {
  Unit x;
  int local;
  if (u < n1) {
    x.phase = 1;
    const int ur = g.ct_r * ksplit, us = g.ct_s * ksplit;
    if (u < n_sub_r * ur) {
      x.sub = u / ur;
      local = u % ur;
    } else {
      const int v = u - n_sub_r * ur;
      x.sub = n_sub_r + v / us;
      local = v % us;
    }
    x.tile = local / ksplit;
    x.part = local % ksplit;
  } else {
    x.phase = 2;
    const int v = u - n1, ur = g.k2_r * g.ntiles, us = g.k2_s * g.ntiles;
    int k2;
    if (v < n_sub_r * ur) {
      x.sub = v / ur;
      local = v % ur;
      k2 = g.k2_r;
    } else {
      const int w = v - n_sub_r * ur;
      x.sub = n_sub_r + w / us;
      local = w % us;
      k2 = g.k2_s;
    }
    x.tile = local / k2;
    x.part = local % k2;
  }
  const int* s = g.sub + 3 * x.sub;
  x.le = s[0];
  x.slot0 = s[1];
  x.ntok = s[2];
  x.cols = x.le >= 0 ? g.cols_r : g.cols_s;
  // Phase 1 without a split (ksplit == 1): one unit runs over all rows of hidden, its token tile
  // reloaded every 1024 rows.
  const int rows = x.phase == 1 && ksplit == 1
                       ? g.H
                       : min(kRows, (x.phase == 1 ? g.H : x.cols) - x.part * kRows);
  x.nst = x.phase == 1 ? (rows + 63) / 64 : (rows + 127) / 128;
  return x;
}

__device__ __forceinline__ int ld_acquire(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ void consumers_sync() {
  named_sync(1, kConsumers);
}

// The producer (one lane): units from the global queue, their weight tiles into the ring.
__device__ void produce(const Maps& m, const Geo& g, uint32_t base, int* tags, int n_sub_r, int n1,
                        int total) {
  int i = 0;
  for (;;) {
    const int u = atomicAdd(g.hdr + kQueue, 1);
    const bool end = u >= total;
    Unit x{};
    if (!end) x = decode_unit(g, n_sub_r, n1, g.hdr[kKSplit], u);
    const int nst = end ? 1 : x.nst;
    for (int st = 0; st < nst; ++st, ++i) {
      const int r = i % kStages;
      const uint32_t ph = uint32_t(i / kStages) & 1u;
      const uint32_t full = base + kOffBars + 8 * r, empty = base + kOffBars + 8 * (kStages + r);
      mbar_wait(empty, ph ^ 1u);  // the first pass finds every slot free
      tags[2 * r] = end ? -1 : u;
      tags[2 * r + 1] = st;
      if (end) {
        mbar_arrive(full);
        return;
      }
      mbar_arrive_expect_tx(full, kStageBytes);
      const uint32_t dst = base + kOffRing + r * kStageBytes;
      const int e = x.le >= 0 ? x.le : 0;
      if (x.phase == 1) {
        const int row = x.part * kRows + st * 64;
        tma_load_3d(dst, x.le >= 0 ? &m.gate : &m.s_gate, full, x.tile * kTile, row, e);
        tma_load_3d(dst + kBoxBytes, x.le >= 0 ? &m.up : &m.s_up, full, x.tile * kTile, row, e);
      } else {
        const int row = x.part * kRows + st * 128;
        const CUtensorMap* d = x.le >= 0 ? &m.down : &m.s_down;
        tma_load_3d(dst, d, full, x.tile * kTile, row, e);
        tma_load_3d(dst + kBoxBytes, d, full, x.tile * kTile, row + 64, e);
      }
    }
  }
}

// The unit's tokens over rows [first, first + 1024) of the reduction dimension into the
// activation tile: row n (token n of the sub-item), 16-byte chunk ch at (ch ^ (n % 8)); rows past
// the tokens and columns past the end are zeros.
__device__ void load_tile(const Geo& g, const Unit& x, int first, const __nv_bfloat16* xin,
                          unsigned char* tile) {
  const int valid = min(kRows, (x.phase == 1 ? g.H : x.cols) - first);
  for (int idx = threadIdx.x; idx < kTokChunk * (kRows / 8); idx += kConsumers) {
    const int n = idx / (kRows / 8), ch = idx % (kRows / 8);
    uint4 v = make_uint4(0, 0, 0, 0);
    if (n < x.ntok && ch * 8 < valid) {
      const int slot = x.slot0 + n;
      if (x.phase == 1) {
        const __nv_bfloat16* src = xin + int64_t(g.slot_tok[slot]) * g.H + first + ch * 8;
        v = __ldg(reinterpret_cast<const uint4*>(src));
      } else {
        const __nv_bfloat16* src = g.act + int64_t(slot) * g.colsmax + first + ch * 8;
        v = __ldcg(reinterpret_cast<const uint4*>(src));
      }
    }
    *reinterpret_cast<uint4*>(tile + n * kActRowBytes + ((ch ^ (n & 7)) << 4)) = v;
  }
}

// acc[p] += W^T (16 columns) x tokens (n-tile p) over one 64-row box.
//   box: 64 rows (reduction dimension) of 128 bytes (64 output columns), 128-byte swizzle;
//   kk0: the box's first row within the activation tile.
__device__ __forceinline__ void mma_box(float (&acc)[4][4], uint32_t box, uint32_t tile, int mt,
                                        int kk0, int n8, int lane) {
  const int j = lane >> 3, r = lane & 7;
#pragma unroll
  for (int ks = 0; ks < 4; ++ks) {
    uint32_t a[4];
    const int krow = 16 * ks + 8 * (j >> 1) + r, chunk = 2 * mt + (j & 1);
    mma::ldmatrix_x4_trans(a, box + krow * 128 + ((chunk ^ (krow & 7)) << 4));
    const int kch = ((kk0 + 16 * ks) >> 3) + (j & 1);
#pragma unroll
    for (int pp = 0; pp < 2; ++pp) {
      if (2 * pp < n8) {
        uint32_t b[4];
        const int row = 16 * pp + 8 * (j >> 1) + r;
        mma::ldmatrix_x4(b, tile + row * kActRowBytes + ((kch ^ (row & 7)) << 4));
        mma::mma_bf16(acc[2 * pp], a, b[0], b[1]);
        if (2 * pp + 1 < n8) mma::mma_bf16(acc[2 * pp + 1], a, b[2], b[3]);
      }
    }
  }
}

// Warps 4-7 hand their accumulators to warps 0-3 (the same 16 columns) through shared memory;
// red_at() is where warp w & 3 finds element (p, i) of lane `lane`.
__device__ __forceinline__ int red_at(int mt, int p, int i, int lane) {
  return ((mt * 4 + p) * 4 + i) * 32 + lane;
}
__device__ __forceinline__ void stash(float* red, const float (&acc)[4][4], int mt, int lane) {
#pragma unroll
  for (int p = 0; p < 4; ++p)
#pragma unroll
    for (int i = 0; i < 4; ++i) red[red_at(mt, p, i, lane)] = acc[p][i];
}

__device__ __forceinline__ float silu(float v) {
  return v / (1.0f + expf(-v));
}

// Calls f(p, i, n, col) for each accumulator element of this warp's 16 columns that holds a token
// of the unit (n < ntok) and a column below ncols.
template <class F>
__device__ __forceinline__ void for_each_acc(const Unit& x, int mt, int lane, int ncols, F&& f) {
  const int gq = lane / 4, q = lane % 4, n8 = (x.ntok + 7) / 8;
#pragma unroll
  for (int p = 0; p < 4; ++p)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int n = 8 * p + 2 * q + (i & 1);
      const int col = x.tile * kTile + 16 * mt + gq + 8 * (i >> 1);
      if (p < n8 && n < x.ntok && col < ncols) f(p, i, n, col);
    }
}

// After a phase 1 unit: partial gate/up sums to the workspace; the last unit of the column tile
// reduces them in order and writes the activations, then counts the tile done.
__device__ void finish_phase1(const Geo& g, const Unit& x, const float (&acc)[4][4], float* red,
                              int* flag) {
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32, mat = w >> 2, mt = w & 3;
  const int ksplit = g.hdr[kKSplit];
  if (ksplit == 1) {  // whole rows of hidden: the up warps hand their sums to the gate warps
    if (w >= 4) stash(red, acc, mt, lane);
    consumers_sync();
    if (w < 4)
      for_each_acc(x, mt, lane, x.cols, [&](int p, int i, int n, int col) {
        const int64_t slot = x.slot0 + n;
        const float up = red[red_at(mt, p, i, lane)];
        g.act[slot * g.colsmax + col] = __float2bfloat16_rn(g.slot_w[slot] * silu(acc[p][i]) * up);
      });
    __threadfence();
    consumers_sync();
    if (threadIdx.x == 0) atomicAdd(g.done1 + x.sub, 1);
    return;
  }
  for_each_acc(x, mt, lane, x.cols, [&](int p, int i, int n, int col) {
    g.p1[((int64_t(x.part) * g.p1_slots + x.slot0 + n) * 2 + mat) * g.colsmax + col] = acc[p][i];
  });
  __threadfence();
  consumers_sync();
  if (threadIdx.x == 0) *flag = atomicAdd(g.cnt1 + x.sub * max(g.ct_r, g.ct_s) + x.tile, 1);
  consumers_sync();
  if (*flag != ksplit - 1) return;
  __threadfence();
  for (int idx = threadIdx.x; idx < x.ntok * kTile; idx += kConsumers) {
    const int n = idx / kTile, col = x.tile * kTile + idx % kTile;
    if (col >= x.cols) continue;
    const int64_t slot = x.slot0 + n;
    float gs = 0.0f, us = 0.0f;
    for (int s = 0; s < ksplit; ++s) {
      const float* src = g.p1 + ((int64_t(s) * g.p1_slots + slot) * 2) * g.colsmax + col;
      gs += __ldcg(src);
      us += __ldcg(src + g.colsmax);
    }
    g.act[slot * g.colsmax + col] = __float2bfloat16_rn(g.slot_w[slot] * silu(gs) * us);
  }
  __threadfence();
  consumers_sync();
  if (threadIdx.x == 0) atomicAdd(g.done1 + x.sub, 1);
}

// After a phase 2 unit: the two row halves added, partial rows y to the workspace; the last unit
// of the output tile writes `out` for every token.
__device__ void finish_phase2(const Geo& g, const Unit& x, float (&acc)[4][4], float* red,
                              int* flag, float* out) {
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32, mt = w & 3;
  if (w >= 4) stash(red, acc, mt, lane);
  consumers_sync();
  if (w < 4)
    for_each_acc(x, mt, lane, g.H, [&](int p, int i, int n, int col) {
      g.y[(int64_t(x.part) * g.slots + x.slot0 + n) * g.H + col] =
          acc[p][i] + red[red_at(mt, p, i, lane)];
    });
  __threadfence();
  consumers_sync();
  if (threadIdx.x == 0) *flag = atomicAdd(g.cnt2 + x.tile, 1);
  consumers_sync();
  if (*flag != g.hdr[kP2PerTile] - 1) return;
  __threadfence();
  const int n_assign = g.hdr[kAssign];
  for (int idx = threadIdx.x; idx < g.T * kTile; idx += kConsumers) {
    const int t = idx / kTile, col = x.tile * kTile + idx % kTile;
    if (col >= g.H) continue;
    float sum = 0.0f;
    const int n = g.tok_n[t];
    for (int j = 0; j < n; ++j) {
      const int slot = g.tok_slots[t * g.kslots + j];
      const int k2 = slot < n_assign ? g.k2_r : g.k2_s;
      for (int c = 0; c < k2; ++c) sum += __ldcg(g.y + (int64_t(c) * g.slots + slot) * g.H + col);
    }
    out[int64_t(t) * g.H + col] = sum;
  }
}

__device__ void consume(const Geo& g, uint32_t base, unsigned char* ptr, const int* tags,
                        const __nv_bfloat16* xin, float* out, int n_sub_r, int n1) {
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  unsigned char* tile = ptr + kOffAct;
  const uint32_t tile_s = base + kOffAct;
  float* red = reinterpret_cast<float*>(ptr + kOffRed);
  int* flag = reinterpret_cast<int*>(ptr + kOffFlag);
  Unit x{};
  float acc[4][4];
  for (int i = 0;; ++i) {
    const int r = i % kStages;
    const uint32_t ph = uint32_t(i / kStages) & 1u;
    mbar_wait(base + kOffBars + 8 * r, ph);
    const int unit = tags[2 * r], st = tags[2 * r + 1];
    if (unit < 0) return;
    if (st == 0) {
      x = decode_unit(g, n_sub_r, n1, g.hdr[kKSplit], unit);
      if (x.phase == 2 && threadIdx.x == 0) {
        const int tiles = x.le >= 0 ? g.ct_r : g.ct_s;
        // Phase 1 of this sub-item runs on CTAs that never wait: it ends. Trap after ~2^26
        // polls (seconds) rather than hang on a bug.
        for (uint32_t polls = 0; ld_acquire(g.done1 + x.sub) < tiles; ++polls) {
          if (polls == (1u << 26)) asm volatile("trap;");
          __nanosleep(128);
        }
      }
#pragma unroll
      for (int p = 0; p < 4; ++p) acc[p][0] = acc[p][1] = acc[p][2] = acc[p][3] = 0.0f;
    }
    // Rows of this stage within the token tile; a new tile every 1024 rows.
    const int row_in_unit = x.phase == 1 ? 64 * st : 128 * st;
    if (row_in_unit % kRows == 0) {
      consumers_sync();  // every warp is done with the previous tile (and sees the wait above)
      load_tile(g, x, x.part * kRows + row_in_unit, xin, tile);
      consumers_sync();
    }
    const int kk0 = row_in_unit % kRows;
    const uint32_t stage = base + kOffRing + r * kStageBytes;
    const int n8 = (x.ntok + 7) / 8;
    if (x.phase == 1)  // warp w: gate (w < 4) or up, 16 columns; the 64 rows of the stage
      mma_box(acc, stage + (w >> 2) * kBoxBytes, tile_s, w & 3, kk0, n8, lane);
    else  // warp w: 16 columns, rows 64 (w >> 2) .. + 63 of the stage's 128
      mma_box(acc, stage + (w >> 2) * kBoxBytes, tile_s, w & 3, kk0 + 64 * (w >> 2), n8, lane);
    __syncwarp();
    if (lane == 0) mbar_arrive(base + kOffBars + 8 * (kStages + r));
    if (st == x.nst - 1) {
      if (x.phase == 1)
        finish_phase1(g, x, acc, red, flag);
      else
        finish_phase2(g, x, acc, red, flag, out);
    }
  }
}

#endif  // HELIX_SM90_DEVICE

__global__ void __launch_bounds__(kThreads, 1)
    moe_ffn_kernel(const __grid_constant__ Maps maps, const Geo g, const __nv_bfloat16* xin,
                   float* out) {
#if HELIX_SM90_DEVICE
  extern __shared__ unsigned char smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u;
  unsigned char* ptr = smem_raw + (base - raw);
  int* tags = reinterpret_cast<int*>(ptr + kOffTags);
  const int n_sub_r = g.hdr[kSubR], n1 = g.hdr[kN1], n2 = g.hdr[kN2];
  if (n2 == 0) {  // nothing routed here and no shared expert: out = 0
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < int64_t(g.T) * g.H;
         i += int64_t(gridDim.x) * blockDim.x)
      out[i] = 0.0f;
    return;
  }
  if (threadIdx.x == 0) {
    for (int r = 0; r < kStages; ++r) {
      mbar_init(base + kOffBars + 8 * r, 1);
      mbar_init(base + kOffBars + 8 * (kStages + r), kConsumers / 32);
    }
    mbar_init_fence();
  }
  __syncthreads();
  if (threadIdx.x >= kConsumers) {
    if (threadIdx.x == kConsumers) {
      tma_prefetch_map(&maps.gate);
      produce(maps, g, base, tags, n_sub_r, n1, n1 + n2);
    }
  } else {
    consume(g, base, ptr, tags, xin, out, n_sub_r, n1);
  }
#else
  (void)maps;
  (void)g;
  (void)xin;
  (void)out;
#endif
}

// A [count][rows][cols] bf16 tensor read in 64 x 64 boxes; a null pointer gives an unused map.
CUtensorMap weight_map(const __nv_bfloat16* p, int64_t count, int64_t rows, int64_t cols,
                       const char* what) {
  CUtensorMap m;
  std::memset(&m, 0, sizeof(m));
  if (p == nullptr || count == 0 || rows == 0 || cols == 0) return m;
  return tensor_map_bf16_3d(p, uint64_t(cols), uint64_t(rows), uint64_t(count), uint64_t(cols) * 2,
                            uint64_t(rows * cols) * 2, 64, std::string("MoeFfn ") + what);
}

}  // namespace

bool MoeFfn::available() {
#if defined(HELIX_SM90_BUILD)
  int dev = 0, major = 0;
  HELIX_CUDA_CHECK(cudaGetDevice(&dev));
  HELIX_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  return major == 9;
#else
  return false;
#endif
}

const void* MoeFfn::ffn_kernel() {
  return reinterpret_cast<const void*>(&moe_ffn_kernel);
}

MoeFfn::MoeFfn(const MoeFfnShape& s, const MoeFfnWeights& w) : shape_(s), w_(w) {
  const int64_t held = s.expert_end - s.expert_begin;
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw UsageError("MoeFfn: " + what);
  };
  need(s.hidden > 0 && s.hidden % 8 == 0, "hidden must be a positive multiple of 8");
  need(s.experts > s.top_k && s.top_k > 0 && s.experts <= 32767,
       "needs 0 < top_k < experts <= 32767");
  need(held >= 0 && held <= kPlanThreads && s.expert_begin >= 0 && s.expert_end <= s.experts,
       "held experts must be a range of at most 1024 experts");
  need(s.cols % 8 == 0 && s.shared_cols % 8 == 0 && s.cols >= 0 && s.shared_cols >= 0,
       "cols and shared_cols must be multiples of 8");
  need(held == 0 || (s.cols > 0 && w.gate && w.up && w.down),
       "held experts need cols > 0 and their gate, up and down weights");
  need(s.shared_cols == 0 || (w.s_gate && w.s_up && w.s_down),
       "shared_cols > 0 needs the shared expert's weights");
  need(s.max_tokens > 0 && s.max_tokens * s.top_k <= kMaxAssign &&
           s.max_tokens + s.max_tokens * s.top_k < 32768,
       "max_tokens * top_k must be at most 4096");
  gate_ = weight_map(w.gate, held, s.hidden, s.cols, "gate");
  up_ = weight_map(w.up, held, s.hidden, s.cols, "up");
  down_ = weight_map(w.down, held, s.cols, s.hidden, "down");
  s_gate_ = weight_map(w.s_gate, 1, s.hidden, s.shared_cols, "shared gate");
  s_up_ = weight_map(w.s_up, 1, s.hidden, s.shared_cols, "shared up");
  s_down_ = weight_map(w.s_down, 1, s.shared_cols, s.hidden, "shared down");
}

int64_t MoeFfn::workspace_bytes() const {
  return sizes_of(shape_).total;
}

void MoeFfn::run_from_logits(const __nv_bfloat16* x, const float* logits, int64_t tokens,
                             void* workspace, float* out, const MoeRouting& routing,
                             cudaStream_t stream) const {
  HELIX_CHECK(tokens >= 0 && tokens <= shape_.max_tokens, "MoeFfn: more tokens than max_tokens");
  HELIX_CHECK(available(), "MoeFfn: needs a GPU of compute capability 9.0 and an sm_90 build");
  if (tokens == 0) return;
  const Geo g = geo_of(shape_, tokens, workspace);
  HELIX_CHECK(routing.expert && routing.weight, "MoeFfn: the routing needs expert and weight");
  moe_plan_kernel<<<1, kPlanThreads, 0, stream>>>(logits, g, routing);
  HELIX_LAUNCH_CHECK();
  static std::once_flag attr;
  std::call_once(attr, [] {
    HELIX_CUDA_CHECK(cudaFuncSetAttribute(
        moe_ffn_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kFfnSmem)));
  });
  const Maps maps{gate_, up_, down_, s_gate_, s_up_, s_down_};
  moe_ffn_kernel<<<unsigned(sm_count()), kThreads, kFfnSmem, stream>>>(maps, g, x, out);
  HELIX_LAUNCH_CHECK();
}

void MoeFfn::run(Gemm& gemm, const __nv_bfloat16* x, int64_t tokens, float* logits, void* workspace,
                 float* out, const MoeRouting& routing, cudaStream_t stream) const {
  if (tokens == 0) return;
  const int64_t H = shape_.hidden, E = shape_.experts;
  GemmShape r{tokens, H, E, H, E, E};
  gemm.run(r, x, w_.router, logits, stream);
  run_from_logits(x, logits, tokens, workspace, out, routing, stream);
}

MoePlanSummary MoeFfn::summary(const void* workspace, cudaStream_t stream) const {
  int hdr[kHdrWords];
  HELIX_CUDA_CHECK(cudaMemcpyAsync(hdr, workspace, sizeof(hdr), cudaMemcpyDeviceToHost, stream));
  HELIX_CUDA_CHECK(cudaStreamSynchronize(stream));
  MoePlanSummary s;
  s.assignments = hdr[kAssign];
  s.active_experts = hdr[kActive];
  s.phase1_units = hdr[kN1];
  s.phase2_units = hdr[kN2];
  return s;
}

}  // namespace helix::cuda
