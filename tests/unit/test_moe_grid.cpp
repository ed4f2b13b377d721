// The grouped MoE kernel's host-visible arithmetic (kernels/moe_grid.hpp), checked on the CPU:
//   - the work units of a call cover every (sub-item, column, reduction row) exactly once per
//     phase, in phase order, and every workspace index, TMA box and sub-item they touch lies within
//     the sections the layout allocates (shapes that once wrote past the workspace included);
//   - the shared-memory addresses the consumer warps give ldmatrix, run through a model of
//     ldmatrix(.trans) and mma.m16n8k16 (PTX fragment layouts) on boxes filled as TMA's 128-byte
//     swizzle lays them out, give exactly the products of the weights and the tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/moe_grid.hpp"

namespace helix {
namespace {

using moe::Grid;
using moe::Layout;
using moe::Unit;

struct Case {
  int64_t hidden, experts, top_k, held, cols, shared_cols, max_tokens, tokens;
  uint32_t seed = 1;
  int hot = 0;  // the first `hot` tokens all pick held expert 0 (sub-items of 32 tokens)
};

std::string name_of(const Case& c) {
  return "H " + std::to_string(c.hidden) + ", " + std::to_string(c.held) + " of " +
         std::to_string(c.experts) + " experts top-" + std::to_string(c.top_k) + ", cols " +
         std::to_string(c.cols) + ", shared " + std::to_string(c.shared_cols) + ", T " +
         std::to_string(c.tokens) + " of " + std::to_string(c.max_tokens);
}

// The plan kernel's grouping, written out plainly: routed slots after the shared ones, grouped by
// held expert in token order, sub-items of at most 32 slots. Returns the sub-item table and the
// routed sub-item count.
std::vector<int> plan_subs(const Case& c, const Grid& g, int& n_sub_r, int& max_slot) {
  std::mt19937 rng(c.seed);
  std::vector<std::vector<int>> tok(size_t(c.held));
  for (int64_t t = 0; t < c.tokens; ++t) {
    std::vector<int> e(size_t(c.experts));
    for (int64_t i = 0; i < c.experts; ++i) e[size_t(i)] = int(i);
    std::shuffle(e.begin(), e.end(), rng);
    if (t < c.hot) std::iter_swap(e.begin(), std::find(e.begin(), e.end(), 0));
    for (int64_t k = 0; k < c.top_k; ++k)
      if (e[size_t(k)] < c.held) tok[size_t(e[size_t(k)])].push_back(int(t));
  }
  std::vector<int> subs(size_t(3 * g.n_sub_s), -1);
  int slot = g.ts;
  n_sub_r = 0;
  for (int64_t le = 0; le < c.held; ++le) {
    const int n = int(tok[size_t(le)].size());
    for (int f = 0; f < n; f += moe::kTok) {
      subs.insert(subs.end(), {int(le), slot + f, std::min(moe::kTok, n - f)});
      ++n_sub_r;
    }
    slot += n;
  }
  max_slot = slot;  // one past the last routed slot
  return subs;
}

void check_case(const Case& c, int64_t ctas) {
  SCOPED_TRACE(name_of(c) + ", " + std::to_string(ctas) + " CTAs");
  const moe::Dims d{c.hidden, c.experts, c.top_k, c.held, c.cols, c.shared_cols, c.max_tokens};
  const Layout z = moe::layout_of(d);
  const Grid g = moe::grid_of(d, z, c.tokens, ctas);
  int n_sub_r = 0, end_slot = 0;
  const std::vector<int> subs = plan_subs(c, g, n_sub_r, end_slot);
  const int n_subs = g.n_sub_s + n_sub_r;

  // Workspace sections in order, each within the total.
  const std::vector<int64_t> offs = {256,         z.off_sub,       z.off_slot_tok, z.off_slot_w,
                                     z.off_tok_n, z.off_tok_slots, z.off_cnt1,     z.off_done1,
                                     z.off_cnt2,  z.off_p1,        z.off_act,      z.off_y,
                                     z.total};
  for (size_t i = 1; i < offs.size(); ++i) EXPECT_LE(offs[i - 1], offs[i]);
  EXPECT_EQ(z.total - z.off_y, (z.y_rows * c.hidden * 4 + 255) / 256 * 256);
  ASSERT_LE(end_slot, g.slots);
  ASSERT_LE(g.slots, z.slots);
  ASSERT_LE(n_subs, z.subs);
  ASSERT_LE(g.cg1max, std::max<int64_t>(1, z.cg1max));
  EXPECT_LE(g.n_static, ctas);
  if (g.parts1 >= 2) {
    EXPECT_LE(int64_t(g.parts1) * g.slots, z.p1_rows);
  }
  EXPECT_LE(int64_t(std::max(g.parts2_r, g.parts2_s)) * g.slots, z.y_rows);

  // Coverage counters: phase 1 [sub][col][row part], phase 2 [sub][col][row], phase 3 [col].
  const int cmax = std::max(g.cols_r, g.cols_s);
  std::vector<int> rows1(size_t(n_subs) * size_t(cmax)), rows2(size_t(n_subs) * size_t(c.hidden));
  std::vector<int> cols3(size_t(c.hidden));
  std::vector<int> per_group2(size_t(g.cg2));
  const int total = moe::units_total(g, n_sub_r);
  int last_phase = 1;
  for (int u = 0; u < total; ++u) {
    // Units taken before the plan is read decode without the sub-item table.
    const Unit x = moe::decode_unit(g, n_sub_r, u < g.n_static ? nullptr : subs.data(), u);
    ASSERT_GE(x.phase, last_phase) << "unit " << u;
    last_phase = x.phase;
    if (u < g.n_static) {
      ASSERT_EQ(x.phase, 1);
      ASSERT_LT(x.le, 0) << "a unit taken before the plan must be the shared expert's";
    }
    if (x.phase == 3) {
      ASSERT_EQ(x.nst, 1);
      for (int col = x.c0; col < std::min<int>(x.c0 + moe::kCols3, g.H); ++col)
        ++cols3[size_t(col)];
      continue;
    }
    ASSERT_GE(x.sub, 0);
    ASSERT_LT(x.sub, n_subs);
    ASSERT_GE(x.ntok, 1);
    ASSERT_LE(x.ntok, moe::kTok);
    ASSERT_LE(x.slot0 + x.ntok, g.slots);
    ASSERT_EQ(x.ncols, x.le < 0 ? g.cols_s : g.cols_r);
    ASSERT_LT(x.le, int(c.held));
    ASSERT_GE(x.nrows, 1);
    ASSERT_EQ(x.nst, (x.nrows + moe::kBoxRows - 1) / moe::kBoxRows);
    const int red_len = x.phase == 1 ? g.H : x.ncols;  // the reduction dimension
    const int out_len = x.phase == 1 ? x.ncols : g.H;  // the output columns
    ASSERT_LE(x.row0 + x.nrows, red_len);
    ASSERT_LT(x.c0, out_len);
    // The boxes the producer issues start inside the tensor (TMA fills the rest with zeros).
    const int nb = moe::boxes_of(x, g.H);
    ASSERT_GE(nb, 1);
    ASSERT_LT(x.c0 + (nb - 1) * moe::kBoxCols, out_len);
    const int width = x.phase == 1 ? moe::kCols1 : moe::kCols2;
    ASSERT_GE(x.c0 + nb * moe::kBoxCols, std::min(out_len, x.c0 + width));
    ASSERT_LT(x.row0 + (x.nst - 1) * moe::kBoxRows, red_len);
    const int last_slot = x.slot0 + x.ntok - 1;
    if (x.phase == 1) {
      ASSERT_LT(x.cg, x.le < 0 ? g.cg1_s : g.cg1_r);
      ASSERT_LT(int64_t(x.sub) * g.cg1max + x.cg, z.subs * std::max<int64_t>(1, z.cg1max));
      if (g.parts1 >= 2) {  // partial sums of the last slot and column stay within p1
        ASSERT_LT(moe::p1_index(g, x.part, last_slot, 1, x.ncols - 1), z.p1_rows * 2 * z.colsmax);
      } else {
        ASSERT_EQ(x.nrows, g.H);
      }
      ASSERT_LT(moe::act_index(g, last_slot, x.ncols - 1), z.slots * z.colsmax);
      for (int col = x.c0; col < std::min(x.c0 + width, x.ncols); ++col)
        rows1[size_t(x.sub) * size_t(cmax) + size_t(col)] += x.nrows;
      ASSERT_EQ(x.row0, x.part * g.rows1);
    } else {
      ASSERT_LT(x.cg, g.cg2);
      ++per_group2[size_t(x.cg)];
      ASSERT_LT(moe::y_index(g, x.part, last_slot, g.H - 1), z.y_rows * c.hidden);
      ASSERT_LT(moe::act_index(g, last_slot, x.row0 + x.nrows - 1), z.slots * z.colsmax);
      for (int col = x.c0; col < std::min(x.c0 + width, g.H); ++col)
        rows2[size_t(x.sub) * size_t(c.hidden) + size_t(col)] += x.nrows;
      ASSERT_EQ(x.row0, x.part * g.rows2);
    }
  }
  EXPECT_EQ(last_phase, 3);
  // Phase 1: every column of every sub-item over all rows of hidden; phase 2: every output column
  // of every sub-item over all rows of its slice (row parts start at part * rows, checked above,
  // so equal sums mean no overlap).
  for (int s = 0; s < n_subs; ++s) {
    const int ncols = s < g.n_sub_s ? g.cols_s : g.cols_r;
    for (int col = 0; col < cmax; ++col)
      ASSERT_EQ(rows1[size_t(s) * size_t(cmax) + size_t(col)], col < ncols ? g.H : 0)
          << "sub-item " << s << " column " << col;
    for (int col = 0; col < g.H; ++col)
      ASSERT_EQ(rows2[size_t(s) * size_t(c.hidden) + size_t(col)], ncols)
          << "sub-item " << s << " output column " << col;
  }
  for (int col = 0; col < g.H; ++col) ASSERT_EQ(cols3[size_t(col)], 1) << "output column " << col;
  for (int cg = 0; cg < g.cg2; ++cg)
    EXPECT_EQ(per_group2[size_t(cg)], moe::units2_per_group(g, n_sub_r)) << "column group " << cg;
}

TEST(MoeGrid, UnitsCoverTheWorkOnceAndStayInTheWorkspace) {
  std::vector<Case> cases = {
      // The GPU test's shapes: partial 512-row parts and 64-column boxes, slices that are not
      // multiples of 64, up to 64 tokens, no shared expert, few tokens on the held experts.
      {1088, 32, 4, 16, 128, 64, 4, 1},
      {1000, 32, 4, 32, 200, 72, 10, 7},
      {1088, 32, 4, 16, 64, 136, 36, 33},
      {512, 16, 2, 8, 96, 0, 67, 64, 3, 40},
      {256, 64, 6, 4, 64, 0, 8, 5},
      {256, 16, 2, 2, 64, 0, 6, 3},
      // DeepSeek-R1 with 16 held experts and a 512-column slice (TPF 4), B = 8 and 32: these
      // wrote phase 1 partial sums past the workspace before.
      {7168, 256, 8, 16, 512, 256, 11, 8, 41},
      {7168, 256, 8, 16, 512, 256, 35, 32, 42},
      // helix-kernel-bench: EP 1 and EP 4 at B = 1, 8, 32 (all 2048 columns).
      {7168, 256, 8, 256, 2048, 2048, 1, 1},
      {7168, 256, 8, 256, 2048, 2048, 8, 8},
      {7168, 256, 8, 256, 2048, 2048, 32, 32},
      {7168, 256, 8, 64, 2048, 512, 1, 1},
      {7168, 256, 8, 64, 2048, 512, 8, 8},
      {7168, 256, 8, 64, 2048, 512, 32, 32},
      // Fewer tokens than max_tokens; many slots (fewer row parts); the micro backend's top-1
      // grouping with 32 rows per expert.
      {7168, 256, 8, 64, 2048, 512, 32, 3},
      {7168, 64, 8, 64, 1024, 256, 256, 256, 5, 40},
      {7168, 64, 1, 64, 2048, 0, 2048, 2048, 6},
      {4096, 8, 1, 8, 1408, 0, 256, 256, 7},
      // The GPU test's split cases.
      {2048, 64, 4, 32, 1032, 520, 43, 40, 60},
      {1536, 16, 4, 8, 256, 256, 131, 128, 61},
      {1024, 16, 2, 16, 128, 64, 259, 256, 62},
      {2048, 16, 2, 4, 64, 2048, 163, 160, 63},
      {7168, 256, 8, 2, 2048, 2048, 11, 8, 43, 4},
  };
  for (const Case& c : cases)
    for (int64_t ctas : {132, 78, 1, 0}) check_case(c, ctas);
}

// The split of a call: rows and units per column group of both phases, static units.
void expect_split(const moe::Dims& d, int64_t tokens, int rows1, int parts1, int rows2,
                  int parts2_r, int parts2_s, int n_static) {
  const Grid g = moe::grid_of(d, moe::layout_of(d), tokens, 132);
  SCOPED_TRACE("max_tokens " + std::to_string(d.max_tokens) + ", " + std::to_string(tokens) +
               " tokens");
  EXPECT_EQ(g.rows1, rows1);
  EXPECT_EQ(g.parts1, parts1);
  EXPECT_EQ(g.rows2, rows2);
  EXPECT_EQ(g.parts2_r, parts2_r);
  EXPECT_EQ(g.parts2_s, parts2_s);
  EXPECT_EQ(g.n_static, n_static);
}

TEST(MoeGrid, SplitsFollowTheSlots) {
  // Dims: hidden, experts, top_k, held, cols, shared_cols, max_tokens.
  // EP 1, B = 32 (288 slots, up to kSplitSlots): every 512-row part of hidden and of the slice is
  // its own unit; the shared expert's 8 x 14 phase 1 units are taken before the plan is read.
  expect_split({7168, 256, 8, 256, 2048, 2048, 32}, 32, 512, 14, 512, 4, 4, 8 * 14);
  // 4096 tokens of top-1 (the micro backend): p1 holds 512 slots of 14 parts, so 7168 rows go in
  // one part and no partial sums are written; y holds one part of the 2048-row slice.
  const moe::Dims micro{7168, 256, 1, 256, 2048, 0, 4096};
  expect_split(micro, 4096, 7168, 1, 2048, 1, 0, 0);
  // The same MoeFfn called with 100 tokens splits fully again.
  expect_split(micro, 100, 512, 14, 512, 4, 0, 0);
  // A call of at most 32 slots (B = 1 to 3 of DeepSeek-R1) in parts of 256 rows: twice the units
  // for the same bytes.
  expect_split(micro, 20, 256, 28, 256, 8, 0, 0);
  // EP 4, B = 1: the capacity is sized for the short parts too.
  expect_split({7168, 256, 8, 64, 2048, 512, 1}, 1, 256, 28, 256, 8, 2, 2 * 28);
}

// ---- a model of ldmatrix and mma.m16n8k16 -----------------------------------------------------

// Shared memory holding bf16 values as floats, addressed in bytes.
struct Smem {
  std::vector<float> v;
  explicit Smem(int bytes) : v(size_t(bytes / 2), 0.0f) {}
  float& at(uint32_t byte) { return v.at(byte / 2); }
};

// ldmatrix.x4: lane 8 j + r gives the address of row r of matrix j (8 consecutive b16). Register j
// of lane T holds row T / 4, columns 2 (T % 4) and + 1 of matrix j; with .trans, rows 2 (T % 4)
// and + 1 of column T / 4.
void ldmatrix_x4(Smem& s, const uint32_t (&addr)[32], bool trans, float (&out)[32][4][2]) {
  for (int T = 0; T < 32; ++T)
    for (int j = 0; j < 4; ++j)
      for (int h = 0; h < 2; ++h) {
        const int row = trans ? 2 * (T % 4) + h : T / 4, col = trans ? T / 4 : 2 * (T % 4) + h;
        out[T][j][h] = s.at(addr[8 * j + row] + uint32_t(2 * col));
      }
}

// mma.m16n8k16.row.col: lane T (g = T / 4, q = T % 4) holds A[g][2q, 2q+1] (a0), A[g+8][..] (a1),
// A[g][2q+8, +9] (a2), A[g+8][2q+8, +9] (a3); B[2q, 2q+1][g] (b0), B[2q+8, +9][g] (b1); and
// C[g][2q], C[g][2q+1], C[g+8][2q], C[g+8][2q+1].
void mma(float (&acc)[32][4], const float (&a)[32][4][2], const float (&b)[32][4][2], int b_reg) {
  float A[16][16], B[16][8];
  for (int T = 0; T < 32; ++T) {
    const int g = T / 4, q = T % 4;
    for (int h = 0; h < 2; ++h) {
      A[g][2 * q + h] = a[T][0][h];
      A[g + 8][2 * q + h] = a[T][1][h];
      A[g][2 * q + 8 + h] = a[T][2][h];
      A[g + 8][2 * q + 8 + h] = a[T][3][h];
      B[2 * q + h][g] = b[T][b_reg][h];
      B[2 * q + 8 + h][g] = b[T][b_reg + 1][h];
    }
  }
  for (int T = 0; T < 32; ++T) {
    const int g = T / 4, q = T % 4;
    for (int i = 0; i < 4; ++i) {
      const int m = g + 8 * (i >> 1), n = 2 * q + (i & 1);
      for (int k = 0; k < 16; ++k) acc[T][i] += A[m][k] * B[k][n];
    }
  }
}

// One ring stage of either phase, filled as TMA writes it, times an activation tile, as the
// consumer warps compute it; every accumulator against the plain dot product (small integers:
// exact in fp32).
void check_stage(int phase, int kk0, int n8) {
  SCOPED_TRACE("phase " + std::to_string(phase) + ", tile rows " + std::to_string(kk0) + ", " +
               std::to_string(n8) + " n-tiles");
  std::mt19937 rng(uint32_t(1000 * phase + kk0 + n8));
  std::uniform_int_distribution<int> val(-3, 3);
  // Weights: phase 1 gate and up [32 rows][256 columns]; phase 2 down [32 rows][512 columns].
  const int cols = phase == 1 ? moe::kCols1 : moe::kCols2, mats = phase == 1 ? 2 : 1;
  std::vector<float> w(size_t(mats * moe::kBoxRows * cols));
  for (float& f : w) f = float(val(rng));
  auto W = [&](int mat, int k, int c) { return w[size_t((mat * moe::kBoxRows + k) * cols + c)]; };
  Smem stage(moe::kStageBytes);
  for (int b = 0; b < moe::kStageBoxes; ++b) {
    const int mat = phase == 1 ? b / 4 : 0, c0 = phase == 1 ? 64 * (b % 4) : 64 * b;
    for (int k = 0; k < moe::kBoxRows; ++k)
      for (int c = 0; c < moe::kBoxCols; ++c)
        stage.at(uint32_t(b * moe::kBoxBytes) + moe::box_offset(k, c / 8) + uint32_t(2 * (c % 8))) =
            W(mat, k, c0 + c);
  }
  // Tokens: [32][512 reduction rows].
  std::vector<float> xt(size_t(moe::kTok * moe::kPartRows));
  for (float& f : xt) f = float(val(rng));
  Smem tile(moe::kTileBytes);
  for (int n = 0; n < moe::kTok; ++n)
    for (int k = 0; k < moe::kPartRows; ++k)
      tile.at(moe::tile_offset(n, k / 8) + uint32_t(2 * (k % 8))) =
          xt[size_t(n * moe::kPartRows + k)];
  for (int wp = 0; wp < moe::kWarps; ++wp) {
    float acc[4][4][32][4] = {};
    for (int ks = 0; ks < moe::kBoxRows / 16; ++ks) {
      float b[2][32][4][2];
      for (int pp = 0; pp < 2; ++pp) {
        if (2 * pp >= n8) continue;
        uint32_t addr[32];
        for (int l = 0; l < 32; ++l) addr[l] = moe::b_lane_offset(pp, kk0 + 16 * ks, l);
        ldmatrix_x4(tile, addr, false, b[pp]);
      }
      for (int t = 0; t < 4; ++t) {
        uint32_t addr[32];
        for (int l = 0; l < 32; ++l) addr[l] = moe::a_lane_offset(phase, wp, t, ks, l);
        float a[32][4][2];
        ldmatrix_x4(stage, addr, true, a);
        for (int p = 0; p < n8; ++p) mma(acc[t][p], a, b[p >> 1], 2 * (p & 1));
      }
    }
    for (int t = 0; t < 4; ++t)
      for (int p = 0; p < n8; ++p)
        for (int l = 0; l < 32; ++l)
          for (int i = 0; i < 4; ++i) {
            const int col = moe::acc_col(phase, wp, t, l, i), n = moe::acc_tok(p, l, i);
            const int mat = phase == 1 ? t >> 1 : 0;
            float want = 0;
            for (int k = 0; k < moe::kBoxRows; ++k)
              want += W(mat, k, col) * xt[size_t(n * moe::kPartRows + kk0 + k)];
            ASSERT_EQ(acc[t][p][l][i], want)
                << "warp " << wp << " tile " << t << " n-tile " << p << " lane " << l << " element "
                << i << " (column " << col << ", token " << n << ")";
          }
  }
}

TEST(MoeGrid, WarpFragmentsComputeTheStageProduct) {
  for (int phase : {1, 2})
    for (int kk0 : {0, 32, 224, 480})
      for (int n8 : {1, 3, 4}) check_stage(phase, kk0, n8);
}

TEST(MoeGrid, EveryWarpColumnIsComputedOnceAndGateMeetsUp) {
  // Token 0's accumulators over all warps, tiles and lanes hold every column of the stage once
  // (phase 1: of gate and of up), and a lane's gate tile t (0, 1) and up tile t + 2 hold the same
  // columns, so that silu(gate) * up needs no exchange between threads.
  for (int phase : {1, 2}) {
    const int cols = phase == 1 ? moe::kCols1 : moe::kCols2, mats = phase == 1 ? 2 : 1;
    std::vector<int> seen(size_t(mats * cols), 0);
    for (int w = 0; w < moe::kWarps; ++w)
      for (int t = 0; t < 4; ++t)
        for (int l = 0; l < 32; ++l)
          for (int i = 0; i < 4; ++i) {
            const int col = moe::acc_col(phase, w, t, l, i);
            ASSERT_LT(col, cols);
            if (moe::acc_tok(0, l, i) == 0) ++seen[size_t((phase == 1 ? t >> 1 : 0) * cols + col)];
            if (phase == 1 && t < 2) {
              EXPECT_EQ(col, moe::acc_col(phase, w, t + 2, l, i));
            }
          }
    for (size_t c = 0; c < seen.size(); ++c)
      EXPECT_EQ(seen[c], 1) << "phase " << phase << " column " << c;
  }
}

}  // namespace
}  // namespace helix
