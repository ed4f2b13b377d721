// The MoE FFN of one rank without host round trips (kernels/moe_cuda.hpp): routing and grouping in
// one CTA (moe_plan_kernel), then every expert that received tokens and the shared expert in one
// persistent launch (moe_ffn_kernel), started as a programmatic dependent of the plan so that it
// streams the shared expert's weights while the plan runs. The work decomposition (units of three
// phases, workspace layout, shared-memory addressing) is in kernels/moe_grid.hpp.
//
// moe_ffn_kernel: one CTA per SM, 9 warps. Warp 8 is the producer: CTA b first streams unit b when
// b < n_static (the shared expert's first phase 1 units, which need nothing from the plan), then
// waits for the plan and takes units from a global counter in increasing order; each unit's weight
// tiles arrive by TMA in a 6-stage ring of 32 KB stages (8 boxes of 64 columns x 32 rows in the
// 128-byte swizzle: 512 or 1024 contiguous bytes of every weight row per stage). Warps 0-7
// consume: m16n8k16 tensor-core MMAs with the weights as the A operand (ldmatrix.trans from the
// swizzled boxes) and the unit's tokens (at most 32, loaded once per 512 reduction rows into a
// swizzled 32 KB tile) as B; every warp owns 64 output columns of the stage (phase 1: 32 columns
// of gate and the same 32 of up), so no sums cross warps.
//   phase 1 unit: partial gate/up sums of its row part to the workspace; the last part of a column
//     group reduces them in order and writes act = weight * silu(gate) * up (bf16), or, unsplit,
//     the unit writes act itself; then counts the group done for the sub-item;
//   phase 2 unit (once the sub-item's activations are complete): partial rows y of its row part;
//     counts its column group;
//   phase 3 unit (once every phase 2 unit of its column group has counted): out = for every token,
//     the sum over its slots (routing order, the shared expert last) and row parts of y.
// Every sum runs in a fixed order: the results do not depend on timing, `out` needs no zeroing.
// Why one file of this size: the plan kernel, the persistent kernel's producer (TMA ring and its
// barriers) and consumers (MMA tiles of the three phases) share the workspace layout, the
// barrier protocol and the inline-PTX helpers; split over translation units they would need a
// header of device code whose every barrier phase must agree with both sides.
#include "kernels/moe_cuda.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "comm/cuda_check.hpp"
#include "comm/error.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/gemm_cuda.hpp"
#include "kernels/launch_order.cuh"
#include "kernels/mma.cuh"
#include "kernels/moe_grid.hpp"
#include "kernels/moe_route.cuh"
#include "kernels/sm90.cuh"
#include "kernels/tensor_map.hpp"

namespace helix::cuda {

namespace {

using moe::Grid;
using moe::Unit;

constexpr int kStages = 6;
constexpr int kConsumers = moe::kWarps * 32;
constexpr int kThreads = kConsumers + 32;
constexpr int kPlanThreads = 1024;
static_assert(moe::kMaxHeld == kPlanThreads, "the plan kernel counts one held expert per thread");

// Shared memory of moe_ffn_kernel, offsets from the 1024-byte aligned base.
constexpr int kOffRing = 0;
constexpr int kOffTile = kOffRing + kStages * moe::kStageBytes;
constexpr int kOffTags = kOffTile + moe::kTileBytes;  // unit and stage per ring slot
constexpr int kOffBars = kOffTags + 2 * kStages * 4;  // full[kStages], empty[kStages]
constexpr int kOffFlag = kOffBars + 2 * kStages * 8;
constexpr size_t kFfnSmem = size_t(kOffFlag) + 16 + 1024;
static_assert(kOffBars % 8 == 0, "mbarriers need 8-byte alignment");
static_assert(kFfnSmem <= 232448, "more shared memory than an sm_90 CTA can have");

// Everything both kernels need: the call's decomposition, the routing constants, the workspace.
struct Geo {
  Grid m;
  int E, e0, kslots;
  float scale;
  int* hdr;
  int* sub;            // [subs][3]: held expert (-1: shared), first slot, tokens
  int* slot_tok;       // [slots]
  float* slot_w;       // [slots]
  int* tok_n;          // [T]: slots of each token
  int* tok_slots;      // [T][kslots]: in routing order, the shared slot last
  int* cnt1;           // [subs][cg1max]: phase 1 parts done per column group
  int* done1;          // [subs]: phase 1 column groups done
  int* cnt2;           // [cg2]: phase 2 units done per column group
  float* p1;           // phase 1 partial sums (moe::p1_index)
  __nv_bfloat16* act;  // [slots][colsmax]
  float* y;            // phase 2 partial rows (moe::y_index)
};

moe::Dims dims_of(const MoeFfnShape& s) {
  moe::Dims d;
  d.hidden = s.hidden;
  d.experts = s.experts;
  d.top_k = s.top_k;
  d.held = s.expert_end - s.expert_begin;
  d.cols = s.cols;
  d.shared_cols = s.shared_cols;
  d.max_tokens = s.max_tokens;
  return d;
}

// static_ctas: CTAs that take a shared-expert unit before reading the plan (0: none).
Geo geo_of(const MoeFfnShape& s, int64_t tokens, int static_ctas, void* workspace) {
  const moe::Dims d = dims_of(s);
  const moe::Layout z = moe::layout_of(d);
  Geo g{};
  g.m = moe::grid_of(d, z, tokens, static_ctas);
  g.E = int(s.experts);
  g.e0 = int(s.expert_begin);
  g.kslots = int(s.top_k + 1);
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
  // The FFN kernel may start now: it streams the shared expert, then waits for this grid.
  allow_dependents();
  __shared__ int16_t sel_e[moe::kMaxAssign];     // expert of entry t * K + k
  __shared__ int16_t sel_slot[moe::kMaxAssign];  // its slot (held experts)
  __shared__ float sel_w[moe::kMaxAssign];
  const Grid& m = g.m;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  // 1. Top-k per token (a warp per token), weights normalized and scaled, the margin.
  for (int t = warp; t < m.T; t += kPlanThreads / 32) {
    const float* lg = logits + int64_t(t) * g.E;
    float sum = 0.0f, prev_s = INFINITY;
    int32_t prev_e = -1;
    for (int k = 0; k < m.K; ++k) {
      float best;
      int32_t be;
      moe_next_best(lg, g.E, lane, prev_s, prev_e, best, be);
      if (lane == 0) {
        sel_e[t * m.K + k] = int16_t(be);
        sel_w[t * m.K + k] = best;
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
      for (int k = 0; k < m.K; ++k) {
        const float w = sel_w[t * m.K + k] / sum * g.scale;
        sel_w[t * m.K + k] = w;
        r.expert[t * m.K + k] = sel_e[t * m.K + k];
        r.weight[t * m.K + k] = w;
      }
    }
  }
  __syncthreads();
  // 2. Slots per held expert (thread = local expert), in token order, after the shared slots.
  const int entries = m.T * m.K;
  int cnt = 0;
  if (tid < m.held)
    for (int i = 0; i < entries; ++i) cnt += sel_e[i] == g.e0 + tid;
  int slot0, sub0, n_assign, n_sub_r;
  block_scan2(cnt, (cnt + moe::kTok - 1) / moe::kTok, slot0, sub0, n_assign, n_sub_r);
  const int n_active = __syncthreads_count(cnt > 0);
  if (cnt > 0) {
    int k = 0;
    for (int i = 0; i < entries; ++i)
      if (sel_e[i] == g.e0 + tid) {
        const int slot = m.ts + slot0 + k++;
        g.slot_tok[slot] = i / m.K;
        g.slot_w[slot] = sel_w[i];
        sel_slot[i] = int16_t(slot);
      }
    for (int c = 0; c * moe::kTok < cnt; ++c) {
      int* s = g.sub + 3 * (m.n_sub_s + sub0 + c);
      s[0] = tid;
      s[1] = m.ts + slot0 + c * moe::kTok;
      s[2] = min(moe::kTok, cnt - c * moe::kTok);
    }
  }
  // The shared expert: slot t for token t, weight 1, sub-items first (the FFN kernel derives
  // them itself; written for completeness of the table).
  if (m.cols_s > 0)
    for (int t = tid; t < m.T; t += kPlanThreads) {
      g.slot_tok[t] = t;
      g.slot_w[t] = 1.0f;
    }
  if (tid < m.n_sub_s) {
    int* s = g.sub + 3 * tid;
    s[0] = -1;
    s[1] = tid * moe::kTok;
    s[2] = min(moe::kTok, m.T - tid * moe::kTok);
  }
  __syncthreads();
  // 3. Each token's slots in routing order, the shared slot last.
  for (int t = tid; t < m.T; t += kPlanThreads) {
    int n = 0;
    for (int k = 0; k < m.K; ++k) {
      const int e = sel_e[t * m.K + k];
      if (e >= g.e0 && e < g.e0 + m.held) g.tok_slots[t * g.kslots + n++] = sel_slot[t * m.K + k];
    }
    if (m.cols_s > 0) g.tok_slots[t * g.kslots + n++] = t;
    g.tok_n[t] = n;
  }
  // 4. Counters of this call, the header (the queue starts after the statically taken units).
  const int subs = m.n_sub_s + n_sub_r;
  for (int i = tid; i < subs * m.cg1max; i += kPlanThreads) g.cnt1[i] = 0;
  for (int i = tid; i < subs; i += kPlanThreads) g.done1[i] = 0;
  for (int i = tid; i < m.cg2; i += kPlanThreads) g.cnt2[i] = 0;
  if (tid == 0) {
    g.hdr[moe::kHdrAssign] = n_assign;
    g.hdr[moe::kHdrActive] = n_active;
    g.hdr[moe::kHdrSubR] = n_sub_r;
    g.hdr[moe::kHdrQueue] = m.n_static;
    g.hdr[moe::kHdrN1] = moe::units1(m, n_sub_r);
    g.hdr[moe::kHdrN2] = m.cg2 * moe::units2_per_group(m, n_sub_r);
    g.hdr[moe::kHdrN3] = m.n3;
    g.hdr[moe::kHdrParts1] = m.parts1;
    g.hdr[moe::kHdrParts2] = max(m.parts2_r, m.parts2_s);
  }
}

// ---------------------------------------------------------------------------------------------
// The grouped expert FFN (persistent)

struct Maps {
  CUtensorMap gate, up, down, s_gate, s_up, s_down;
};

#if HELIX_SM90_DEVICE

using namespace sm90;

__device__ __forceinline__ int ld_acquire(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ void consumers_sync() {
  named_sync(1, kConsumers);
}

// Thread 0 of the consumers waits until *p >= target (units that other CTAs took before this one
// and run without waiting on it); a wait that cannot end traps after ~2^26 polls (seconds).
__device__ __forceinline__ void wait_count(const int* p, int target) {
  for (uint32_t polls = 0; ld_acquire(p) < target; ++polls) {
    if (polls == (1u << 26)) asm volatile("trap;");
    __nanosleep(128);
  }
}

// The weight tiles of one unit into the ring (phase 3 units pass one empty stage).
__device__ void stream_unit(const Maps& m, const Geo& g, uint32_t base, int* tags, int& i, int u,
                            const Unit& x) {
  const int nb = x.phase == 3 ? 0 : moe::boxes_of(x, g.m.H);
  const int e = x.le >= 0 ? x.le : 0;
  for (int st = 0; st < x.nst; ++st, ++i) {
    const int r = i % kStages;
    const uint32_t ph = uint32_t(i / kStages) & 1u;
    const uint32_t full = base + kOffBars + 8 * r, empty = base + kOffBars + 8 * (kStages + r);
    mbar_wait(empty, ph ^ 1u);  // the first pass finds every slot free
    tags[2 * r] = u;
    tags[2 * r + 1] = st;
    if (x.phase == 3) {
      mbar_arrive(full);
      continue;
    }
    const uint32_t dst = base + kOffRing + r * moe::kStageBytes;
    const int row = x.row0 + st * moe::kBoxRows;
    if (x.phase == 1) {
      const CUtensorMap* gm = x.le >= 0 ? &m.gate : &m.s_gate;
      const CUtensorMap* um = x.le >= 0 ? &m.up : &m.s_up;
      mbar_arrive_expect_tx(full, uint32_t(2 * nb * moe::kBoxBytes));
      for (int b = 0; b < nb; ++b) {
        tma_load_3d(dst + b * moe::kBoxBytes, gm, full, x.c0 + b * moe::kBoxCols, row, e);
        tma_load_3d(dst + (4 + b) * moe::kBoxBytes, um, full, x.c0 + b * moe::kBoxCols, row, e);
      }
    } else {
      const CUtensorMap* dm = x.le >= 0 ? &m.down : &m.s_down;
      mbar_arrive_expect_tx(full, uint32_t(nb * moe::kBoxBytes));
      for (int b = 0; b < nb; ++b)
        tma_load_3d(dst + b * moe::kBoxBytes, dm, full, x.c0 + b * moe::kBoxCols, row, e);
    }
  }
}

// The producer (one lane).
__device__ void produce(const Maps& m, const Geo& g, uint32_t base, int* tags) {
  int i = 0;
  if (int(blockIdx.x) < g.m.n_static)  // a shared-expert unit: the sub-item table is not read
    stream_unit(m, g, base, tags, i, int(blockIdx.x),
                moe::decode_unit(g.m, 0, g.sub, int(blockIdx.x)));
  wait_for_producer();  // the plan's writes are visible from here on
  const int n_sub_r = g.hdr[moe::kHdrSubR], total = moe::units_total(g.m, n_sub_r);
  for (;;) {
    const int u = atomicAdd(g.hdr + moe::kHdrQueue, 1);
    if (u >= total) break;
    stream_unit(m, g, base, tags, i, u, moe::decode_unit(g.m, n_sub_r, g.sub, u));
  }
  const int r = i % kStages;
  mbar_wait(base + kOffBars + 8 * (kStages + r), (uint32_t(i / kStages) & 1u) ^ 1u);
  tags[2 * r] = -1;
  tags[2 * r + 1] = 0;
  mbar_arrive(base + kOffBars + 8 * r);
}

// The unit's tokens over reduction rows [first, first + 512) into the activation tile (rows of
// the n-tiles the MMAs read; tokens past the sub-item and rows past the end are zeros).
__device__ void load_tile(const Geo& g, const Unit& x, int first, const __nv_bfloat16* xin,
                          unsigned char* tile) {
  constexpr int kChunks = moe::kPartRows / 8;
  const int valid = min(moe::kPartRows, (x.phase == 1 ? g.m.H : x.ncols) - first);
  const int rows = 8 * ((x.ntok + 7) / 8);
  for (int idx = threadIdx.x; idx < rows * kChunks; idx += kConsumers) {
    const int n = idx / kChunks, ch = idx % kChunks;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (n < x.ntok && ch * 8 < valid) {
      const int slot = x.slot0 + n;
      if (x.phase == 1) {
        const int tok = x.le < 0 ? slot : g.slot_tok[slot];  // shared slot t is token t
        v = __ldg(reinterpret_cast<const uint4*>(xin + int64_t(tok) * g.m.H + first + ch * 8));
      } else {
        v = __ldcg(
            reinterpret_cast<const uint4*>(g.act + moe::act_index(g.m, slot, first + ch * 8)));
      }
    }
    *reinterpret_cast<uint4*>(tile + moe::tile_offset(n, ch)) = v;
  }
}

// acc[t][p] += (A tile t of the stage)^T x (n-tile p of the tokens) over the stage's 32 rows,
// which are rows kk0 .. kk0 + 31 of the activation tile.
__device__ __forceinline__ void mma_stage(float (&acc)[4][4][4], uint32_t stage, uint32_t tile,
                                          int phase, int w, int kk0, int n8, int lane) {
#pragma unroll
  for (int ks = 0; ks < moe::kBoxRows / 16; ++ks) {
    uint32_t b[2][4] = {};
#pragma unroll
    for (int pp = 0; pp < 2; ++pp)
      if (2 * pp < n8) mma::ldmatrix_x4(b[pp], tile + moe::b_lane_offset(pp, kk0 + 16 * ks, lane));
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      uint32_t a[4];
      mma::ldmatrix_x4_trans(a, stage + moe::a_lane_offset(phase, w, t, ks, lane));
#pragma unroll
      for (int p = 0; p < 4; ++p)
        if (p < n8) mma::mma_bf16(acc[t][p], a, b[p >> 1][2 * (p & 1)], b[p >> 1][2 * (p & 1) + 1]);
    }
  }
}

__device__ __forceinline__ float silu(float v) {
  return v / (1.0f + expf(-v));
}

// Calls f(t, p, i, n, col) for each accumulator element of this warp that holds a token of the
// unit and a column (absolute) below `ncols`.
template <int kTiles, class F>
__device__ __forceinline__ void for_each_acc(const Unit& x, int ncols, F&& f) {
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32, n8 = (x.ntok + 7) / 8;
#pragma unroll
  for (int t = 0; t < kTiles; ++t)
#pragma unroll
    for (int p = 0; p < 4; ++p)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int n = moe::acc_tok(p, lane, i);
        const int col = x.c0 + moe::acc_col(x.phase, w, t, lane, i);
        if (p < n8 && n < x.ntok && col < ncols) f(t, p, i, n, col);
      }
}

__device__ __forceinline__ float4 add4(float4 a, float4 b) {
  return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}

// After a phase 1 unit: act directly (one row part), or the partial sums to p1 and, in the last
// part of the column group, their reduction in part order; then the group counts as done.
__device__ void finish1(const Geo& g, const Unit& x, const float (&acc)[4][4][4], int* flag) {
  const Grid& m = g.m;
  const bool shared = x.le < 0;
  if (m.parts1 == 1) {
    // Tiles 0, 1 are gate, tiles 2, 3 up of the same columns.
    for_each_acc<2>(x, x.ncols, [&](int t, int p, int i, int n, int col) {
      const int slot = x.slot0 + n;
      const float wt = shared ? 1.0f : g.slot_w[slot];
      g.act[moe::act_index(m, slot, col)] =
          __float2bfloat16_rn(wt * silu(acc[t][p][i]) * acc[t + 2][p][i]);
    });
  } else {
    for_each_acc<4>(x, x.ncols, [&](int t, int p, int i, int n, int col) {
      g.p1[moe::p1_index(m, x.part, x.slot0 + n, t >> 1, col)] = acc[t][p][i];
    });
    __threadfence();
    consumers_sync();
    if (threadIdx.x == 0) *flag = atomicAdd(g.cnt1 + x.sub * m.cg1max + x.cg, 1);
    consumers_sync();
    if (*flag != m.parts1 - 1) return;
    __threadfence();
    constexpr int kQuads = moe::kCols1 / 4;
    for (int idx = threadIdx.x; idx < x.ntok * kQuads; idx += kConsumers) {
      const int n = idx / kQuads, col = x.c0 + 4 * (idx % kQuads);
      if (col >= x.ncols) continue;
      const int slot = x.slot0 + n;
      float4 gs = make_float4(0, 0, 0, 0), us = gs;
      for (int s = 0; s < m.parts1; ++s) {
        gs = add4(
            gs, __ldcg(reinterpret_cast<const float4*>(g.p1 + moe::p1_index(m, s, slot, 0, col))));
        us = add4(
            us, __ldcg(reinterpret_cast<const float4*>(g.p1 + moe::p1_index(m, s, slot, 1, col))));
      }
      const float wt = shared ? 1.0f : g.slot_w[slot];
      uint2 v;
      v.x = mma::pack_bf16(wt * silu(gs.x) * us.x, wt * silu(gs.y) * us.y);
      v.y = mma::pack_bf16(wt * silu(gs.z) * us.z, wt * silu(gs.w) * us.w);
      *reinterpret_cast<uint2*>(g.act + moe::act_index(m, slot, col)) = v;
    }
  }
  __threadfence();
  consumers_sync();
  if (threadIdx.x == 0) atomicAdd(g.done1 + x.sub, 1);
}

// After a phase 2 unit: its partial rows y, then the column group counts one more unit.
__device__ void finish2(const Geo& g, const Unit& x, const float (&acc)[4][4][4]) {
  for_each_acc<4>(x, g.m.H, [&](int t, int p, int i, int n, int col) {
    g.y[moe::y_index(g.m, x.part, x.slot0 + n, col)] = acc[t][p][i];
  });
  __threadfence();
  consumers_sync();
  if (threadIdx.x == 0) atomicAdd(g.cnt2 + x.cg, 1);
}

// A phase 3 unit: out[t][c0 .. c0 + 63] for every token, four columns per thread.
__device__ void reduce_out(const Geo& g, const Unit& x, float* out) {
  const Grid& m = g.m;
  constexpr int kQuads = moe::kCols3 / 4;
  for (int idx = threadIdx.x; idx < m.T * kQuads; idx += kConsumers) {
    const int t = idx / kQuads, col = x.c0 + 4 * (idx % kQuads);
    if (col >= m.H) continue;
    float4 sum = make_float4(0, 0, 0, 0);
    const int n = __ldcg(g.tok_n + t);
    for (int j = 0; j < n; ++j) {
      const int slot = __ldcg(g.tok_slots + t * g.kslots + j);
      const int parts = slot < m.ts ? m.parts2_s : m.parts2_r;
      for (int c = 0; c < parts; ++c)
        sum =
            add4(sum, __ldcg(reinterpret_cast<const float4*>(g.y + moe::y_index(m, c, slot, col))));
    }
    *reinterpret_cast<float4*>(out + int64_t(t) * m.H + col) = sum;
  }
}

__device__ void consume(const Geo& g, uint32_t base, unsigned char* ptr, const int* tags,
                        const __nv_bfloat16* xin, float* out) {
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  unsigned char* tile = ptr + kOffTile;
  const uint32_t tile_s = base + kOffTile;
  int* flag = reinterpret_cast<int*>(ptr + kOffFlag);
  bool planned = false;  // passed wait_for_producer(): the plan's writes are visible
  int n_sub_r = 0;
  Unit x{};
  float acc[4][4][4];
  for (int i = 0;; ++i) {
    const int r = i % kStages;
    const uint32_t ph = uint32_t(i / kStages) & 1u;
    mbar_wait(base + kOffBars + 8 * r, ph);
    const int u = tags[2 * r], st = tags[2 * r + 1];
    if (u < 0) return;
    if (st == 0) {
      if (u >= g.m.n_static && !planned) {
        wait_for_producer();
        planned = true;
        n_sub_r = g.hdr[moe::kHdrSubR];
      }
      x = moe::decode_unit(g.m, n_sub_r, g.sub, u);
      if (threadIdx.x == 0) {
        if (x.phase == 2) wait_count(g.done1 + x.sub, x.le >= 0 ? g.m.cg1_r : g.m.cg1_s);
        if (x.phase == 3)
          wait_count(g.cnt2 + x.c0 / moe::kCols2, moe::units2_per_group(g.m, n_sub_r));
      }
#pragma unroll
      for (int t = 0; t < 4; ++t)
#pragma unroll
        for (int p = 0; p < 4; ++p)
          acc[t][p][0] = acc[t][p][1] = acc[t][p][2] = acc[t][p][3] = 0.0f;
    }
    if (x.phase == 3) {
      consumers_sync();  // every thread sees the wait above
      reduce_out(g, x, out);
      __syncwarp();
      if (lane == 0) mbar_arrive(base + kOffBars + 8 * (kStages + r));
      continue;
    }
    // A new activation tile every 512 reduction rows.
    const int rin = st * moe::kBoxRows;
    if (rin % moe::kPartRows == 0) {
      consumers_sync();  // every warp is done with the previous tile (and sees the waits above)
      load_tile(g, x, x.row0 + rin, xin, tile);
      consumers_sync();
    }
    const int nb = moe::boxes_of(x, g.m.H);
    if ((x.phase == 1 ? (w >> 1) : w) < nb)
      mma_stage(acc, base + kOffRing + r * moe::kStageBytes, tile_s, x.phase, w,
                rin % moe::kPartRows, (x.ntok + 7) / 8, lane);
    __syncwarp();
    if (lane == 0) mbar_arrive(base + kOffBars + 8 * (kStages + r));
    if (st == x.nst - 1) {
      if (!planned) {  // the counters are the plan's
        wait_for_producer();
        planned = true;
        n_sub_r = g.hdr[moe::kHdrSubR];
      }
      if (x.phase == 1)
        finish1(g, x, acc, flag);
      else
        finish2(g, x, acc);
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
      if (g.m.held > 0) tma_prefetch_map(&maps.gate);
      if (g.m.cols_s > 0) tma_prefetch_map(&maps.s_gate);
      produce(maps, g, base, tags);
    }
  } else {
    consume(g, base, ptr, tags, xin, out);
  }
#else
  (void)maps;
  (void)g;
  (void)xin;
  (void)out;
#endif
}

// A [count][rows][cols] bf16 tensor read in boxes of 64 columns x 32 rows; a null pointer gives
// an unused map.
CUtensorMap weight_map(const __nv_bfloat16* p, int64_t count, int64_t rows, int64_t cols,
                       const char* what) {
  CUtensorMap m;
  std::memset(&m, 0, sizeof(m));
  if (p == nullptr || count == 0 || rows == 0 || cols == 0) return m;
  return tensor_map_bf16_3d(p, uint64_t(cols), uint64_t(rows), uint64_t(count), uint64_t(cols) * 2,
                            uint64_t(rows * cols) * 2, moe::kBoxRows,
                            std::string("MoeFfn ") + what);
}

bool pdl_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("HELIX_MOE_PDL");
    return e == nullptr || std::string(e) != "0";
  }();
  return on;
}

// Pointers the kernels cannot use, refused with the reason (UsageError); the shape is checked by
// MoeFfn::unsupported.
void check_pointers(const MoeFfnShape& s, const MoeFfnWeights& w) {
  const int64_t held = s.expert_end - s.expert_begin;
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw UsageError("MoeFfn: " + what);
  };
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  need(held == 0 || (w.gate && w.up && w.down),
       "held experts need their gate, up and down weights");
  need(s.shared_cols == 0 || (w.s_gate && w.s_up && w.s_down),
       "shared_cols > 0 needs the shared expert's weights");
  for (const auto& [p, name] : {std::make_pair(w.gate, "gate"), std::make_pair(w.up, "up"),
                                std::make_pair(w.down, "down"), std::make_pair(w.s_gate, "s_gate"),
                                std::make_pair(w.s_up, "s_up"), std::make_pair(w.s_down, "s_down")})
    need(aligned(p), std::string(name) + " must be 16-byte aligned (TMA)");
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

bool MoeFfn::enabled() {
  const char* env = std::getenv("HELIX_MOE_GROUPED");
  return (env == nullptr || std::string(env) != "0") && available();
}

std::string MoeFfn::unsupported(const MoeFfnShape& s) {
  const int64_t held = s.expert_end - s.expert_begin;
  if (!(s.hidden > 0 && s.hidden % 8 == 0 && s.hidden < (int64_t(1) << 24)))
    return "hidden must be a positive multiple of 8 below 2^24 (TMA: 16-byte rows of down)";
  if (!(s.experts > s.top_k && s.top_k > 0 && s.experts <= 32767))
    return "needs 0 < top_k < experts <= 32767";
  if (!(held >= 0 && held <= moe::kMaxHeld && s.expert_begin >= 0 && s.expert_end <= s.experts))
    return "held experts must be a range of at most 1024 experts within the model's";
  if (!(s.cols >= 0 && s.shared_cols >= 0 && s.cols % 8 == 0 && s.shared_cols % 8 == 0 &&
        s.cols < (int64_t(1) << 24) && s.shared_cols < (int64_t(1) << 24)))
    return "cols and shared_cols must be multiples of 8 below 2^24 (TMA: 16-byte rows of gate/up)";
  if (held > 0 && s.cols == 0) return "held experts need cols > 0";
  // TMA: strides below 2^40 bytes, coordinates int32.
  if (!(s.hidden * std::max(s.cols, s.shared_cols) * 2 < (int64_t(1) << 40)))
    return "an expert's slice must be below 2^40 bytes (TMA stride)";
  if (!(s.max_tokens > 0 && s.max_tokens * s.top_k <= moe::kMaxAssign &&
        s.max_tokens + s.max_tokens * s.top_k < 32768))
    return "max_tokens * top_k must be at most 4096";
  return "";
}

int64_t MoeFfn::workspace_bytes(const MoeFfnShape& shape) {
  return moe::layout_of(dims_of(shape)).total;
}

const void* MoeFfn::ffn_kernel() {
  return reinterpret_cast<const void*>(&moe_ffn_kernel);
}

MoeFfn::MoeFfn(const MoeFfnShape& s, const MoeFfnWeights& w) : shape_(s), w_(w) {
  const std::string why = unsupported(s);
  if (!why.empty()) throw UsageError("MoeFfn: " + why);
  check_pointers(s, w);
  const int64_t held = s.expert_end - s.expert_begin;
  gate_ = weight_map(w.gate, held, s.hidden, s.cols, "gate");
  up_ = weight_map(w.up, held, s.hidden, s.cols, "up");
  down_ = weight_map(w.down, held, s.cols, s.hidden, "down");
  s_gate_ = weight_map(w.s_gate, 1, s.hidden, s.shared_cols, "shared gate");
  s_up_ = weight_map(w.s_up, 1, s.hidden, s.shared_cols, "shared up");
  s_down_ = weight_map(w.s_down, 1, s.shared_cols, s.hidden, "shared down");
}

int64_t MoeFfn::workspace_bytes() const {
  return workspace_bytes(shape_);
}

void MoeFfn::run_from_logits(const __nv_bfloat16* x, const float* logits, int64_t tokens,
                             void* workspace, float* out, const MoeRouting& routing,
                             cudaStream_t stream) const {
  HELIX_CHECK(tokens >= 0 && tokens <= shape_.max_tokens, "MoeFfn: more tokens than max_tokens");
  if (tokens == 0) return;
  HELIX_CHECK(available(), "MoeFfn: needs a GPU of compute capability 9.0 and an sm_90 build");
  HELIX_CHECK(x && logits && workspace && out && routing.expert && routing.weight,
              "MoeFfn: x, logits, workspace, out and the routing's expert and weight are needed");
  HELIX_CHECK(reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                  reinterpret_cast<uintptr_t>(out) % 16 == 0 &&
                  reinterpret_cast<uintptr_t>(workspace) % 256 == 0,
              "MoeFfn: x and out must be 16-byte aligned, the workspace 256-byte aligned");
  static std::once_flag attr;
  std::call_once(attr, [] {
    int dev = 0, optin = 0;
    HELIX_CUDA_CHECK(cudaGetDevice(&dev));
    HELIX_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    HELIX_CHECK(size_t(optin) >= kFfnSmem, "MoeFfn: the GPU allows " + std::to_string(optin) +
                                               " bytes of shared memory per block, the kernel "
                                               "needs " +
                                               std::to_string(kFfnSmem));
    HELIX_CUDA_CHECK(cudaFuncSetAttribute(
        moe_ffn_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kFfnSmem)));
  });
  const int ctas = sm_count();
  const bool pdl = pdl_enabled();
  // Without the programmatic launch nothing runs before the plan: every unit from the queue.
  const Geo g = geo_of(shape_, tokens, pdl ? ctas : 0, workspace);
  moe_plan_kernel<<<1, kPlanThreads, 0, stream>>>(logits, g, routing);
  HELIX_LAUNCH_CHECK();
  const Maps maps{gate_, up_, down_, s_gate_, s_up_, s_down_};
  if (pdl)
    launch_after_producer(moe_ffn_kernel, dim3(unsigned(ctas)), dim3(kThreads), kFfnSmem, stream,
                          maps, g, x, out);
  else
    moe_ffn_kernel<<<unsigned(ctas), kThreads, kFfnSmem, stream>>>(maps, g, x, out);
  HELIX_LAUNCH_CHECK();
}

void MoeFfn::run(Gemm& gemm, const __nv_bfloat16* x, int64_t tokens, float* logits, void* workspace,
                 float* out, const MoeRouting& routing, cudaStream_t stream) const {
  if (tokens == 0) return;
  const int64_t H = shape_.hidden, E = shape_.experts;
  GemmShape r = GemmShape::packed(tokens, H, E);
  gemm.run(r, x, w_.router, logits, stream);
  run_from_logits(x, logits, tokens, workspace, out, routing, stream);
}

MoePlanSummary MoeFfn::summary(const void* workspace, cudaStream_t stream) const {
  int hdr[moe::kHdrWords];
  HELIX_CUDA_CHECK(cudaMemcpyAsync(hdr, workspace, sizeof(hdr), cudaMemcpyDeviceToHost, stream));
  HELIX_CUDA_CHECK(cudaStreamSynchronize(stream));
  MoePlanSummary s;
  s.assignments = hdr[moe::kHdrAssign];
  s.active_experts = hdr[moe::kHdrActive];
  s.phase1_units = hdr[moe::kHdrN1];
  s.phase2_units = hdr[moe::kHdrN2];
  s.phase3_units = hdr[moe::kHdrN3];
  s.phase1_parts = hdr[moe::kHdrParts1];
  s.phase2_parts = hdr[moe::kHdrParts2];
  return s;
}

}  // namespace helix::cuda
