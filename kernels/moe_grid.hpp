// Work decomposition of the grouped MoE FFN kernel (kernels/moe_cuda.cu): capacities and offsets of
// its workspace, the split of each call into work units, the decoding of a unit index, and the
// shared-memory addresses its warps read. Plain C++ usable on both sides (HELIX_HD), so that the
// host tests check the arithmetic the kernel runs (tests/unit/test_moe_grid.cpp).
//
// Terms:
//   slot      one (token, expert) pair of the call; slots 0 .. T - 1 are the shared expert's
//             (token t in slot t), the routed pairs follow, grouped by held expert in token order;
//   sub-item  up to 32 consecutive slots of one expert (one activation tile); the shared expert's
//             sub-items come first (known before routing), then the routed ones in expert order;
//   phase 1   gate and up: a unit is (sub-item, 256 expert columns, rows1 rows of hidden);
//   phase 2   down: a unit is (sub-item, 512 columns of hidden, rows2 rows of the expert slice);
//   phase 3   out = for every token, the sum over its slots of the phase 2 partial rows (64
//             columns of hidden per unit, in routing order: deterministic, no atomics).
// Units are numbered phase 1, then 2, then 3, each phase in sub-item order; a CTA takes them in
// increasing order, so that a unit only ever waits for units taken before it.
//
// Weight tiles arrive by TMA in boxes of 64 columns x 32 rows (bf16, 128-byte swizzle: the 16-byte
// chunk c of row r at c ^ (r % 8)); a ring stage is 8 boxes (32 KB): phase 1 the 4 gate and 4 up
// boxes of 32 rows x 256 columns, phase 2 the 8 down boxes of 32 rows x 512 columns, so that every
// row of every matrix is read 512 or 1024 contiguous bytes at a time.
#pragma once

#include <cstdint>

#include "kernels/common.hpp"

namespace helix::moe {

constexpr int kTok = 32;                            // tokens per sub-item
constexpr int kBoxCols = 64;                        // bf16 columns of a TMA box (128 bytes)
constexpr int kBoxRows = 32;                        // rows of a TMA box and of a ring stage
constexpr int kBoxBytes = kBoxCols * kBoxRows * 2;  // 4 KB
constexpr int kStageBoxes = 8;
constexpr int kStageBytes = kStageBoxes * kBoxBytes;  // 32 KB
constexpr int kCols1 = 4 * kBoxCols;                  // phase 1 expert columns per unit
constexpr int kCols2 = kStageBoxes * kBoxCols;        // phase 2 output columns per unit
constexpr int kCols3 = 64;                            // phase 3 output columns per unit
constexpr int kPartRows = 512;                        // rows of one activation tile
constexpr int kShortPartRows = 256;  // row parts of calls with at most kFewSlots slots
constexpr int kFewSlots = 32;
constexpr int kStagesPerPart = kPartRows / kBoxRows;
constexpr int kTileRowBytes = kPartRows * 2;      // one token's row of the activation tile
constexpr int kTileBytes = kTok * kTileRowBytes;  // 32 KB
constexpr int kSplitSlots = 512;                  // slots whose row split is fully buffered
constexpr int kMaxAssign = 4096;                  // tokens * top_k per call (plan kernel)
constexpr int kMaxHeld = 1024;                    // held experts (plan kernel: one thread each)
constexpr int kWarps = 8;                         // consumer warps of the kernel

HELIX_HD int64_t cdiv(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
HELIX_HD int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}
HELIX_HD int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}
// Rows of a row part for a call (or capacity) of `slots` slots: few slots (B = 1 to 3 of
// DeepSeek-R1) give few units, so they are cut shorter to spread over every SM.
HELIX_HD int64_t part_rows_for(int64_t slots) {
  return slots <= kFewSlots ? kShortPartRows : kPartRows;
}

// What a MoeFfn holds (kernels/moe_cuda.hpp: MoeFfnShape), as plain numbers.
struct Dims {
  int64_t hidden = 0, experts = 0, top_k = 0, held = 0, cols = 0, shared_cols = 0, max_tokens = 0;
};

// Workspace capacities for max_tokens (every call of that MoeFfn fits) and the byte offsets of
// the sections, 256-byte aligned; counts in elements.
struct Layout {
  int64_t slots;     // slot capacity: max_tokens (shared) + max_tokens * min(top_k, held)
  int64_t subs;      // sub-item capacity
  int64_t colsmax;   // max(cols, shared_cols): row stride of p1 and act
  int64_t cg1max;    // phase 1 column groups of the wider slice
  int64_t cg2;       // phase 2 column groups (of hidden)
  int64_t kp1, kp2;  // most row parts: ceil(hidden / rows), ceil(colsmax / rows), rows =
                     // part_rows_for(slots)
  int64_t p1_rows;   // (part, slot) rows of p1 (0: phase 1 never split)
  int64_t y_rows;    // (part, slot) rows of y
  int64_t off_sub, off_slot_tok, off_slot_w, off_tok_n, off_tok_slots, off_cnt1, off_done1,
      off_cnt2, off_p1, off_act, off_y, total;
};

// Header words of the plan (int32 at the start of the workspace).
enum Hdr {
  kHdrAssign,  // (token, held expert) pairs
  kHdrActive,  // held experts with tokens
  kHdrSubR,    // routed sub-items
  kHdrQueue,   // the next unit to take
  kHdrN1,      // units per phase
  kHdrN2,
  kHdrN3,
  kHdrParts1,  // row parts per column group
  kHdrParts2,
  kHdrWords = 16
};

inline Layout layout_of(const Dims& d) {
  Layout z{};
  const int64_t T = d.max_tokens, assign = T * min64(d.top_k, d.held);
  const int64_t shared_t = d.shared_cols > 0 ? T : 0;
  z.slots = max64(1, shared_t + assign);
  // An expert with n tokens has ceil(n / 32) <= 1 + n / 32 sub-items, at most min(held, assign)
  // experts have tokens; the shared expert ceil(T / 32).
  z.subs = max64(1, min64(d.held, assign) + assign / kTok + cdiv(shared_t, kTok));
  z.colsmax = max64(d.cols, d.shared_cols);
  z.cg1max = cdiv(z.colsmax, kCols1);
  z.cg2 = cdiv(d.hidden, kCols2);
  const int64_t rows = part_rows_for(z.slots);
  z.kp1 = cdiv(d.hidden, rows);
  z.kp2 = max64(1, cdiv(z.colsmax, rows));
  const int64_t split_slots = min64(z.slots, kSplitSlots);
  z.p1_rows = z.kp1 >= 2 ? z.kp1 * split_slots : 0;
  z.y_rows = max64(z.kp2 * split_slots, z.slots);
  int64_t at = 256;  // the header
  auto take = [&at](int64_t bytes) {
    const int64_t o = at;
    at += cdiv(bytes, 256) * 256;
    return o;
  };
  z.off_sub = take(z.subs * 3 * 4);
  z.off_slot_tok = take(z.slots * 4);
  z.off_slot_w = take(z.slots * 4);
  z.off_tok_n = take(T * 4);
  z.off_tok_slots = take(T * (d.top_k + 1) * 4);
  z.off_cnt1 = take(z.subs * max64(1, z.cg1max) * 4);
  z.off_done1 = take(z.subs * 4);
  z.off_cnt2 = take(z.cg2 * 4);
  z.off_p1 = take(z.p1_rows * 2 * z.colsmax * 4);
  z.off_act = take(z.slots * z.colsmax * 2);
  z.off_y = take(z.y_rows * d.hidden * 4);
  z.total = at;
  return z;
}

// The decomposition of one call of `tokens` tokens (host-side, passed to both kernels).
struct Grid {
  int T, H, K, held, cols_r, cols_s, colsmax;
  int ts;       // first routed slot: T with a shared expert, else 0
  int slots;    // slots this call can use: ts + T * min(K, held); row stride of p1 and y parts
  int n_sub_s;  // the shared expert's sub-items: ceil(T / 32), or 0
  int cg1_r, cg1_s, cg1max;  // phase 1 column groups (256 columns) of a routed / shared sub-item
  int rows1, parts1;  // phase 1: rows of hidden per unit (a multiple of 512), units per group
  int cg2;            // phase 2 column groups (512 columns of hidden)
  int rows2, parts2_r, parts2_s;  // phase 2: rows of the slice per unit, units per column group
  int n3;                         // phase 3 units (64 columns of hidden each)
  int n_static;  // units 0 .. n_static - 1 (the shared expert's first phase 1 units) are taken by
                 // CTAs 0 .. n_static - 1 before the plan is read (n_static <= static_ctas)
};

// Splits: phase 1 in row parts of part_rows_for(slots) rows, as many as p1 holds for this call's
// slots (one part: no partial sums), phase 2 likewise within y; fewer, longer parts when a call
// has more slots than kSplitSlots.
// static_ctas: the CTAs that may take a unit before the plan is read (the launch's CTAs, or 0).
HELIX_HD Grid grid_of(const Dims& d, const Layout& z, int64_t tokens, int64_t static_ctas) {
  Grid g{};
  g.T = int(tokens);
  g.H = int(d.hidden);
  g.K = int(d.top_k);
  g.held = int(d.held);
  g.cols_r = int(d.cols);
  g.cols_s = int(d.shared_cols);
  g.colsmax = int(z.colsmax);
  g.ts = d.shared_cols > 0 ? g.T : 0;
  g.slots = int(max64(1, g.ts + tokens * min64(d.top_k, d.held)));
  g.n_sub_s = d.shared_cols > 0 ? int(cdiv(tokens, kTok)) : 0;
  g.cg1_r = int(cdiv(d.cols, kCols1));
  g.cg1_s = int(cdiv(d.shared_cols, kCols1));
  g.cg1max = int(max64(1, z.cg1max));
  const int64_t rows = part_rows_for(g.slots);
  const int64_t kp1 = cdiv(d.hidden, rows), kp2 = max64(1, cdiv(g.colsmax, rows));
  const int64_t q1 = z.p1_rows > 0 ? min64(kp1, z.p1_rows / g.slots) : 1;
  const int64_t parts1 = q1 >= 2 ? q1 : 1;
  g.rows1 = int(cdiv(kp1, parts1) * rows);
  g.parts1 = int(cdiv(d.hidden, g.rows1));
  g.cg2 = int(z.cg2);
  const int64_t q2 = max64(1, min64(kp2, z.y_rows / g.slots));
  g.rows2 = int(cdiv(kp2, q2) * rows);
  g.parts2_r = int(cdiv(d.cols, g.rows2));
  g.parts2_s = int(cdiv(d.shared_cols, g.rows2));
  g.n3 = int(cdiv(d.hidden, kCols3));
  g.n_static = int(min64(static_ctas, int64_t(g.n_sub_s) * g.cg1_s * g.parts1));
  return g;
}

HELIX_HD int units1(const Grid& g, int n_sub_r) {
  return (g.n_sub_s * g.cg1_s + n_sub_r * g.cg1_r) * g.parts1;
}
// Phase 2 units per column group (all of them must finish before phase 3 reads the group).
HELIX_HD int units2_per_group(const Grid& g, int n_sub_r) {
  return g.n_sub_s * g.parts2_s + n_sub_r * g.parts2_r;
}
HELIX_HD int units_total(const Grid& g, int n_sub_r) {
  return units1(g, n_sub_r) + g.cg2 * units2_per_group(g, n_sub_r) + g.n3;
}

struct Unit {
  int phase;     // 1, 2, 3
  int sub;       // sub-item (phases 1, 2)
  int le;        // held expert (local index), -1: the shared expert
  int cg, part;  // column group, row part
  int slot0, ntok;
  int ncols;        // columns of the sub-item's expert slice
  int c0;           // first column: of the slice (phase 1) or of hidden (phases 2, 3)
  int row0, nrows;  // rows of the reduction dimension (hidden, or the slice)
  int nst;          // ring stages
};

// The sub-item table of the plan: [subs][3] = (held expert, first slot, tokens); read only for the
// routed sub-items (the shared ones are known without the plan).
HELIX_HD Unit decode_unit(const Grid& g, int n_sub_r, const int* subs, int u) {
  Unit x{};
  const int n1 = units1(g, n_sub_r), n2 = g.cg2 * units2_per_group(g, n_sub_r);
  if (u >= n1 + n2) {
    x.phase = 3;
    x.cg = u - n1 - n2;
    x.c0 = x.cg * kCols3;
    x.nst = 1;
    x.le = -1;
    return x;
  }
  int local, parts;
  if (u < n1) {
    x.phase = 1;
    const int us = g.cg1_s * g.parts1, ur = g.cg1_r * g.parts1;
    if (u < g.n_sub_s * us) {
      x.sub = u / us;
      local = u % us;
    } else {
      const int v = u - g.n_sub_s * us;
      x.sub = g.n_sub_s + v / ur;
      local = v % ur;
    }
    parts = g.parts1;
  } else {
    x.phase = 2;
    const int v = u - n1, us = g.cg2 * g.parts2_s, ur = g.cg2 * g.parts2_r;
    if (v < g.n_sub_s * us) {
      x.sub = v / us;
      local = v % us;
      parts = g.parts2_s;
    } else {
      const int w = v - g.n_sub_s * us;
      x.sub = g.n_sub_s + w / ur;
      local = w % ur;
      parts = g.parts2_r;
    }
  }
  x.cg = local / parts;
  x.part = local % parts;
  if (x.sub < g.n_sub_s) {
    x.le = -1;
    x.slot0 = x.sub * kTok;
    x.ntok = int(min64(kTok, g.T - x.slot0));
    x.ncols = g.cols_s;
  } else {
    const int* s = subs + 3 * x.sub;
    x.le = s[0];
    x.slot0 = s[1];
    x.ntok = s[2];
    x.ncols = g.cols_r;
  }
  if (x.phase == 1) {
    x.c0 = x.cg * kCols1;
    x.row0 = x.part * g.rows1;
    x.nrows = int(min64(g.rows1, g.H - x.row0));
  } else {
    x.c0 = x.cg * kCols2;
    x.row0 = x.part * g.rows2;
    x.nrows = int(min64(g.rows2, x.ncols - x.row0));
  }
  x.nst = int(cdiv(x.nrows, kBoxRows));
  return x;
}

// Boxes of stage data a unit's stage holds per matrix (the producer skips boxes wholly past the
// columns of the matrix; their warps skip them too).
HELIX_HD int boxes_of(const Unit& x, int H) {
  const int per = x.phase == 1 ? kCols1 / kBoxCols : kStageBoxes;
  const int ncols = x.phase == 1 ? x.ncols : H;
  return int(min64(per, cdiv(ncols - x.c0, kBoxCols)));
}

// ---- workspace element indices ---------------------------------------------------------------
HELIX_HD int64_t p1_index(const Grid& g, int part, int slot, int mat, int col) {
  return ((int64_t(part) * g.slots + slot) * 2 + mat) * g.colsmax + col;
}
HELIX_HD int64_t act_index(const Grid& g, int slot, int col) {
  return int64_t(slot) * g.colsmax + col;
}
HELIX_HD int64_t y_index(const Grid& g, int part, int slot, int col) {
  return (int64_t(part) * g.slots + slot) * g.H + col;
}

// ---- shared memory addresses of the consumer warps ------------------------------------------
// Byte offset of the 16-byte chunk `chunk` (columns 8 chunk .. + 7) of row `row` in a box.
HELIX_HD uint32_t box_offset(int row, int chunk) {
  return uint32_t(row * 128 + ((chunk ^ (row & 7)) << 4));
}
// Byte offset of the 16-byte chunk `chunk` (reduction rows 8 chunk .. + 7) of token n in the
// activation tile.
HELIX_HD uint32_t tile_offset(int n, int chunk) {
  return uint32_t(n * kTileRowBytes + ((chunk ^ (n & 7)) << 4));
}
// Each consumer warp computes four 16-column A tiles t of a stage (weights transposed: the
// m16n8k16 A operand, 16 output columns x 16 reduction rows) against every 8-token n-tile:
//   phase 1: warp w takes columns 32 (w % 2) .. + 31 of box pair w / 2: tiles 0, 1 of gate (box
//            w / 2), tiles 2, 3 of up (box 4 + w / 2), so that gate and up of a column meet in
//            the same thread;
//   phase 2: warp w takes box w, tiles t = its 16-column quarters.
HELIX_HD int tile_box(int phase, int w, int t) {
  return phase == 1 ? (t >> 1) * 4 + (w >> 1) : w;
}
HELIX_HD int tile_mt(int phase, int w, int t) {  // 16-column quarter of the box
  return phase == 1 ? 2 * (w & 1) + (t & 1) : t;
}
// The row address lane `lane` gives ldmatrix.x4.trans for A tile t at k-step ks (16 rows).
HELIX_HD uint32_t a_lane_offset(int phase, int w, int t, int ks, int lane) {
  const int j = lane >> 3, r = lane & 7;
  const int krow = 16 * ks + 8 * (j >> 1) + r, chunk = 2 * tile_mt(phase, w, t) + (j & 1);
  return uint32_t(tile_box(phase, w, t) * kBoxBytes) + box_offset(krow, chunk);
}
// The row address lane `lane` gives ldmatrix.x4 for the B fragments of n-tiles 2 pp and 2 pp + 1
// (tokens 16 pp .. + 15) at reduction rows kk .. kk + 15 of the tile.
HELIX_HD uint32_t b_lane_offset(int pp, int kk, int lane) {
  const int j = lane >> 3, r = lane & 7;
  return tile_offset(16 * pp + 8 * (j >> 1) + r, (kk >> 3) + (j & 1));
}
// Accumulator element i of n-tile p of A tile t of lane `lane`: its column within the unit's
// column range (phase 1: of the 256, phase 2: of the 512) and its token within the sub-item.
HELIX_HD int acc_col(int phase, int w, int t, int lane, int i) {
  const int box = phase == 1 ? (w >> 1) : w;
  return box * kBoxCols + 16 * tile_mt(phase, w, t) + (lane >> 2) + 8 * (i >> 1);
}
HELIX_HD int acc_tok(int p, int lane, int i) {
  return 8 * p + 2 * (lane & 3) + (i & 1);
}

}  // namespace helix::moe
