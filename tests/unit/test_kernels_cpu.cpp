// CPU reference kernels against plain fp64 implementations, on random data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "kernels/attention.hpp"
#include "kernels/combine.hpp"
#include "kernels/gemm.hpp"
#include "kernels/moe.hpp"
#include "kernels/norm.hpp"
#include "kernels/partials.hpp"
#include "kernels/rope.hpp"

namespace helix {
namespace {

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

double rel_err(const std::vector<float>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

TEST(CpuKernels, RmsNormMatchesDefinition) {
  const int64_t rows = 3, dim = 77;
  auto x = random_vec(size_t(rows * dim), 1),
       w = random_vec(static_cast<size_t>(dim), 2, 0.5f, 1.5f);
  std::vector<float> y(x.size(), NAN);
  cpu::rmsnorm(x.data(), w.data(), rows, dim, 1e-6f, y.data());
  std::vector<double> ref(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
    const double inv = 1 / std::sqrt(ss / dim + 1e-6);
    for (int64_t i = 0; i < dim; ++i) ref[r * dim + i] = x[r * dim + i] * inv * w[i];
  }
  EXPECT_LT(rel_err(y, ref), 1e-6);
}

TEST(CpuKernels, GemmOnColumnSliceWithLeadingDimensions) {
  for (int64_t m : {1, 3, 4, 9}) {
    const int64_t k = 37, n_all = 50, c0 = 7, n = 29, ldx = 41, ldy = 33;
    auto x = random_vec(size_t(m * ldx), 3), w = random_vec(size_t(k * n_all), 4);
    std::vector<float> y(size_t(m * ldy), NAN);
    cpu::gemm(x.data(), ldx, w.data() + c0, n_all, y.data(), ldy, m, k, n, false);
    std::vector<float> got;
    std::vector<double> ref;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += double(x[i * ldx + p]) * w[p * n_all + c0 + j];
        ref.push_back(s);
        got.push_back(y[i * ldy + j]);
      }
    EXPECT_LT(rel_err(got, ref), 1e-6) << "m=" << m;
    // accumulate adds on top
    cpu::gemm(x.data(), ldx, w.data() + c0, n_all, y.data(), ldy, m, k, n, true);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) EXPECT_NEAR(y[i * ldy + j], 2 * ref[i * n + j], 1e-4);
  }
}

TEST(CpuKernels, RopeIsARotation) {
  auto v = random_vec(64, 5);
  auto r = v;
  cpu::rope(r.data(), 64, 1234, 10000.f);
  double n0 = 0, n1 = 0, diff = 0;
  for (int i = 0; i < 64; ++i) {
    n0 += v[i] * v[i];
    n1 += r[i] * r[i];
    diff += std::abs(v[i] - r[i]);
  }
  EXPECT_NEAR(n0, n1, 1e-4);
  EXPECT_GT(diff, 1e-2);  // it did rotate
  // Position 0 is the identity; the first pair rotates by exactly pos radians.
  auto z = v;
  cpu::rope(z.data(), 64, 0, 10000.f);
  for (int i = 0; i < 64; ++i) EXPECT_FLOAT_EQ(z[i], v[i]);
  EXPECT_NEAR(r[0], v[0] * std::cos(1234.0) - v[32] * std::sin(1234.0), 1e-4);
}

// Naive fp64 attention for one query over rows [t0, t1) of K/V; returns output and natural LSE.
std::pair<std::vector<double>, double> naive_attention(const float* q, const float* k,
                                                       const float* v, int64_t t0, int64_t t1,
                                                       int64_t dk, int64_t dv, int64_t kstride,
                                                       double scale) {
  std::vector<double> s;
  double mx = -INFINITY;
  for (int64_t t = t0; t < t1; ++t) {
    double dot = 0;
    for (int64_t i = 0; i < dk; ++i) dot += double(q[i]) * k[t * kstride + i];
    s.push_back(dot * scale);
    mx = std::max(mx, s.back());
  }
  double sum = 0;
  for (auto& x : s) sum += (x = std::exp(x - mx));
  std::vector<double> o(static_cast<size_t>(dv), 0.0);
  for (int64_t t = t0; t < t1; ++t)
    for (int64_t i = 0; i < dv; ++i) o[i] += s[t - t0] / sum * v[t * kstride + i];
  return {o, mx + std::log(sum)};
}

TEST(CpuKernels, GqaAttentionMatchesNaiveForEveryGroupSize) {
  for (int64_t group : {1, 2, 4, 8, 16}) {
    const int64_t B = 2, kv = 2, D = 32, cap = 70, tokens = 61, qh = kv * group;
    auto q = random_vec(size_t(B * qh * D), 10 + uint32_t(group));
    auto k = random_vec(size_t(B * kv * cap * D), 20), v = random_vec(size_t(B * kv * cap * D), 30);
    std::vector<float> out(size_t(B * qh * D), NAN), lse(size_t(B * qh), NAN);
    cpu::GqaAttention a;
    a.batch = B;
    a.q_heads = qh;
    a.q_begin = 0;
    a.kv_begin = 0;
    a.kv_heads = kv;
    a.group = group;
    a.head_dim = D;
    a.tokens = tokens;
    a.capacity = cap;
    a.scale = 0.17f;
    a.q = q.data();
    a.k = k.data();
    a.v = v.data();
    a.out = out.data();
    a.lse = lse.data();
    cpu::attention_gqa(a);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < qh; ++h) {
        const int64_t off = (b * kv + h / group) * cap * D;
        auto [o, l] = naive_attention(&q[size_t((b * qh + h) * D)], &k[size_t(off)],
                                      &v[size_t(off)], 0, tokens, D, D, D, 0.17);
        EXPECT_NEAR(lse[size_t(b * qh + h)], l, 1e-5);
        for (int64_t i = 0; i < D; ++i) EXPECT_NEAR(out[size_t((b * qh + h) * D + i)], o[i], 1e-5);
      }
  }
}

TEST(CpuKernels, GqaAttentionEmptySliceGivesMinusInfinity) {
  std::vector<float> q(8, 0.5f), kv(8, 0.25f), out(8, NAN), lse(1, NAN);
  cpu::GqaAttention a;
  a.batch = 1;
  a.q_heads = 1;
  a.kv_heads = 1;
  a.group = 1;
  a.head_dim = 8;
  a.tokens = 0;
  a.capacity = 1;
  a.q = q.data();
  a.k = kv.data();
  a.v = kv.data();
  a.out = out.data();
  a.lse = lse.data();
  cpu::attention_gqa(a);
  EXPECT_EQ(lse[0], -std::numeric_limits<float>::infinity());
  for (float x : out) EXPECT_EQ(x, 0.0f);
}

// The identity Helix rests on: attention over a split KV, merged with lse_combine, equals attention
// over the whole KV. Uneven splits, an empty part and a round-robin-like interleaving included.
TEST(CpuKernels, SplitAttentionPlusCombineIsExact) {
  const int64_t D = 48, T = 203;
  auto q = random_vec(static_cast<size_t>(D), 40), k = random_vec(size_t(T * D), 41),
       v = random_vec(size_t(T * D), 42);
  auto [full, full_lse] = naive_attention(q.data(), k.data(), v.data(), 0, T, D, D, D, 0.2);
  for (std::vector<int64_t> cuts :
       {std::vector<int64_t>{0, 100, 203}, {0, 0, 50, 51, 203}, {0, 17, 34, 51, 68, 85, 203}}) {
    const int64_t parts = int64_t(cuts.size()) - 1;
    std::vector<float> o(size_t(parts * D), NAN), l(static_cast<size_t>(parts), NAN);
    for (int64_t p = 0; p < parts; ++p) {
      cpu::GqaAttention a;
      a.batch = 1;
      a.q_heads = 1;
      a.kv_heads = 1;
      a.group = 1;
      a.head_dim = D;
      a.tokens = cuts[p + 1] - cuts[p];
      a.capacity = T;
      a.scale = 0.2f;
      a.q = q.data();
      a.k = &k[size_t(cuts[p] * D)];
      a.v = &v[size_t(cuts[p] * D)];
      a.out = &o[size_t(p * D)];
      a.lse = &l[size_t(p)];
      cpu::attention_gqa(a);
    }
    std::vector<float> merged(static_cast<size_t>(D), NAN), merged_lse(1, NAN);
    cpu::lse_combine(parts, 1, D, o.data(), D, l.data(), 1, merged.data(), merged_lse.data());
    EXPECT_LT(rel_err(merged, full), 1e-6) << parts << " parts";
    EXPECT_NEAR(merged_lse[0], full_lse, 1e-5);
  }
}

TEST(CpuKernels, PackPartialsWritesEveryPeersRowsInOrder) {
  // 5 requests of 7 heads, dim 6, over 3 peers with head ranges [0,3), [3,3) (none), [3,7).
  const int64_t B = 5, qh = 7, D = 6, row = cpu::partial_row(D);
  ASSERT_EQ(row, D + 1);
  const auto o = random_vec(size_t(B * qh * D), 60), lse = random_vec(size_t(B * qh), 61);
  const std::vector<cpu::HeadRange> peers = {{0, 3}, {3, 3}, {3, 7}};
  std::vector<float> dst(size_t(B * qh * row), NAN);
  cpu::pack_partials(o.data(), qh * D, lse.data(), qh, B, D, peers.data(), 3, dst.data());
  int64_t r = 0;
  for (const auto& p : peers)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = p.begin; h < p.end; ++h, ++r) {
        for (int64_t d = 0; d < D; ++d)
          ASSERT_EQ(dst[size_t(r * row + d)], o[size_t((b * qh + h) * D + d)]) << r;
        ASSERT_EQ(dst[size_t(r * row + D)], lse[size_t(b * qh + h)]) << r;
      }
  EXPECT_EQ(r, B * qh);
  // A chunk of requests 2..4 from strided sources: only its rows, the same order.
  std::vector<float> part(size_t(3 * qh * row), NAN);
  cpu::pack_partials(o.data() + 2 * qh * D, qh * D, lse.data() + 2 * qh, qh, 3, D, peers.data(), 3,
                     part.data());
  EXPECT_EQ(part[0], o[size_t(2 * qh * D)]);
  EXPECT_EQ(part[size_t(row - 1)], lse[size_t(2 * qh)]);
  EXPECT_EQ(part.back(), lse[size_t(4 * qh + 6)]);
}

TEST(CpuKernels, CombineOverStridedRowsEqualsThePackedCombine) {
  // The exchange layout (values then LSE in one row of dim + 1) against the packed layout: the
  // same results, bit for bit, including rows whose parts are partly or wholly empty.
  const int64_t parts = 4, rows = 9, D = 5, W = D + 1;
  auto o = random_vec(size_t(parts * rows * D), 70);
  auto lse = random_vec(size_t(parts * rows), 71, -3.f, 3.f);
  const float ninf = -std::numeric_limits<float>::infinity();
  lse[size_t(0 * rows + 2)] = ninf;                                      // row 2: part 0 empty
  for (int64_t i = 0; i < parts; ++i) lse[size_t(i * rows + 5)] = ninf;  // row 5: all empty
  std::vector<float> strided(size_t(parts * rows * W), NAN);
  for (int64_t i = 0; i < parts; ++i)
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t d = 0; d < D; ++d)
        strided[size_t((i * rows + r) * W + d)] = o[size_t((i * rows + r) * D + d)];
      strided[size_t((i * rows + r) * W + D)] = lse[size_t(i * rows + r)];
    }
  std::vector<float> want(static_cast<size_t>(rows * D)), got(static_cast<size_t>(rows * D), NAN),
      want_l(static_cast<size_t>(rows)), got_l(static_cast<size_t>(rows), NAN);
  cpu::lse_combine(parts, rows, D, o.data(), rows * D, lse.data(), rows, want.data(),
                   want_l.data());
  cpu::lse_combine_rows(parts, rows, D, strided.data(), rows * W, W, strided.data() + D, rows * W,
                        W, got.data(), got_l.data());
  EXPECT_EQ(got, want);
  for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(got_l[size_t(r)], want_l[size_t(r)]) << r;
  EXPECT_EQ(got_l[5], ninf);
}

TEST(CpuKernels, CombineOfOnlyEmptyPartsIsZero) {
  const float ninf = -std::numeric_limits<float>::infinity();
  std::vector<float> o = {NAN, NAN, NAN, NAN}, l = {ninf, ninf}, out(2, 7.f), lo(1, 0.f);
  cpu::lse_combine(2, 1, 2, o.data(), 2, l.data(), 1, out.data(), lo.data());
  EXPECT_EQ(out[0], 0.f);
  EXPECT_EQ(out[1], 0.f);
  EXPECT_EQ(lo[0], ninf);
}

TEST(CpuKernels, CombineDetectsAWrongLse) {
  // A wrong LSE on one part must move the result: the test of the combine can fail.
  const int64_t D = 16;
  auto o = random_vec(size_t(2 * D), 50);
  std::vector<float> l = {0.3f, 1.1f}, a(static_cast<size_t>(D)), b(static_cast<size_t>(D));
  cpu::lse_combine(2, 1, D, o.data(), D, l.data(), 1, a.data(), nullptr);
  l[1] += 0.5f;
  cpu::lse_combine(2, 1, D, o.data(), D, l.data(), 1, b.data(), nullptr);
  double diff = 0;
  for (int64_t i = 0; i < D; ++i) diff += std::abs(a[i] - b[i]);
  EXPECT_GT(diff, 1e-3);
}

// Absorbed MLA equals the explicit form: per head, k_nope = c W_uk[h], v = c W_uv[h].
TEST(CpuKernels, MlaAbsorbedEqualsExplicit) {
  const int64_t heads = 3, L = 64, R = 16, nope = 24, vdim = 20, T = 45;
  auto c = random_vec(size_t(T * (L + R)), 60);  // cache rows: latent then rope key
  auto qn = random_vec(size_t(heads * nope), 61), qr = random_vec(size_t(heads * R), 62);
  auto wuk = random_vec(size_t(heads * L * nope), 63),
       wuv = random_vec(size_t(heads * L * vdim), 64);
  const double scale = 1.0 / std::sqrt(double(nope + R));
  // Absorbed inputs: q = [W_uk[h] q_nope, q_rope].
  std::vector<float> q(size_t(heads * (L + R)));
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < L; ++i) {
      double s = 0;
      for (int64_t j = 0; j < nope; ++j)
        s += double(wuk[(h * L + i) * nope + j]) * qn[h * nope + j];
      q[h * (L + R) + i] = float(s);
    }
    for (int64_t i = 0; i < R; ++i) q[h * (L + R) + L + i] = qr[h * R + i];
  }
  std::vector<float> out(size_t(heads * L), NAN), lse(static_cast<size_t>(heads), NAN);
  cpu::MlaAttention a;
  a.batch = 1;
  a.heads = heads;
  a.kv_lora = L;
  a.rope = R;
  a.tokens = T;
  a.capacity = T;
  a.scale = float(scale);
  a.q = q.data();
  a.kv = c.data();
  a.out = out.data();
  a.lse = lse.data();
  cpu::attention_mla(a);
  for (int64_t h = 0; h < heads; ++h) {
    // Explicit: expand keys and values for this head.
    std::vector<double> s(static_cast<size_t>(T));
    double mx = -INFINITY;
    for (int64_t t = 0; t < T; ++t) {
      double dot = 0;
      for (int64_t j = 0; j < nope; ++j) {
        double kj = 0;
        for (int64_t i = 0; i < L; ++i)
          kj += double(c[t * (L + R) + i]) * wuk[(h * L + i) * nope + j];
        dot += kj * qn[h * nope + j];
      }
      for (int64_t i = 0; i < R; ++i) dot += double(qr[h * R + i]) * c[t * (L + R) + L + i];
      s[t] = dot * scale;
      mx = std::max(mx, s[t]);
    }
    double sum = 0;
    for (auto& x : s) sum += (x = std::exp(x - mx));
    EXPECT_NEAR(lse[h], mx + std::log(sum), 1e-4);
    for (int64_t d = 0; d < vdim; ++d) {
      double explicit_v = 0, absorbed_v = 0;
      for (int64_t t = 0; t < T; ++t) {
        double vt = 0;
        for (int64_t i = 0; i < L; ++i)
          vt += double(c[t * (L + R) + i]) * wuv[(h * L + i) * vdim + d];
        explicit_v += s[t] / sum * vt;
      }
      for (int64_t i = 0; i < L; ++i)
        absorbed_v += double(out[h * L + i]) * wuv[(h * L + i) * vdim + d];
      EXPECT_NEAR(absorbed_v, explicit_v, 1e-4 * (1 + std::abs(explicit_v)));
    }
  }
}

TEST(CpuKernels, MoeRoutePicksTopKAndNormalizes) {
  const int64_t T = 5, E = 16, K = 4;
  auto logits = random_vec(size_t(T * E), 70, -3.f, 3.f);
  std::vector<int32_t> idx(size_t(T * K), -1);
  std::vector<float> w(size_t(T * K), NAN);
  cpu::moe_route(logits.data(), T, E, K, 2.5f, idx.data(), w.data());
  for (int64_t t = 0; t < T; ++t) {
    double sum = 0;
    float kth = INFINITY;
    for (int64_t i = 0; i < K; ++i) {
      sum += w[t * K + i];
      const float l = logits[t * E + idx[t * K + i]];
      EXPECT_LE(l, kth);  // descending
      kth = l;
    }
    EXPECT_NEAR(sum, 2.5, 1e-5);
    int above = 0;  // no unselected expert scores higher than the k-th selected one
    for (int64_t e = 0; e < E; ++e) above += logits[t * E + e] > kth;
    EXPECT_EQ(above, K - 1);
  }
  // Ties break toward the lower index.
  std::vector<float> tie(static_cast<size_t>(E), 0.f);
  cpu::moe_route(tie.data(), 1, E, K, 1.f, idx.data(), w.data());
  for (int64_t i = 0; i < K; ++i) EXPECT_EQ(idx[i], i);
}

TEST(CpuKernels, MoeRouteMarginIsGapToTheNextExpert) {
  const int64_t T = 6, E = 12, K = 3;
  auto logits = random_vec(size_t(T * E), 71, -3.f, 3.f);
  std::vector<int32_t> idx(size_t(T * K));
  std::vector<float> w(size_t(T * K)), margin(size_t(T), NAN);
  cpu::moe_route(logits.data(), T, E, K, 1.f, idx.data(), w.data(), margin.data());
  for (int64_t t = 0; t < T; ++t) {
    std::vector<float> s(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) s[size_t(e)] = 1.f / (1.f + std::exp(-logits[t * E + e]));
    std::sort(s.begin(), s.end(), std::greater<float>());
    EXPECT_FLOAT_EQ(margin[size_t(t)], s[size_t(K - 1)] - s[size_t(K)]);
    EXPECT_GT(margin[size_t(t)], 0.f);
  }
  // All experts chosen: nothing can flip in.
  cpu::moe_route(logits.data(), 1, E, E, 1.f, std::vector<int32_t>(size_t(E)).data(),
                 std::vector<float>(size_t(E)).data(), margin.data());
  EXPECT_TRUE(std::isinf(margin[0]));
}

TEST(CpuKernels, MoeFfnSumsHeldExpertsAndSharedSlice) {
  // Token t's output: the held experts among its routed ones (weights as routed) plus the shared
  // slice; experts held elsewhere contribute nothing.
  const int64_t T = 4, H = 16, K = 2, e0 = 2, e1 = 5, held = e1 - e0, C = 8, S = 4;
  auto x = random_vec(size_t(T * H), 90);
  auto g = random_vec(size_t(held * H * C), 91), u = random_vec(size_t(held * H * C), 92),
       d = random_vec(size_t(held * C * H), 93);
  auto sg = random_vec(size_t(H * S), 94), su = random_vec(size_t(H * S), 95),
       sd = random_vec(size_t(S * H), 96);
  const std::vector<int32_t> expert = {2, 4, 0, 3, 4, 2, 1, 7};  // token 3: none held
  const std::vector<float> weight = {0.7f, 0.3f, 0.6f, 0.4f, 0.5f, 0.5f, 0.9f, 0.1f};
  std::vector<float> out(size_t(T * H), NAN);
  const cpu::MoeFfnRef r{T,
                         H,
                         K,
                         e0,
                         e1,
                         C,
                         S,
                         x.data(),
                         expert.data(),
                         weight.data(),
                         g.data(),
                         u.data(),
                         d.data(),
                         sg.data(),
                         su.data(),
                         sd.data(),
                         out.data()};
  cpu::moe_ffn(r);
  std::vector<float> want(size_t(T * H), 0.f), scratch(size_t(2 * C));
  for (int64_t t = 0; t < T; ++t) {
    float* o = &want[size_t(t * H)];
    for (int64_t k = 0; k < K; ++k) {
      const int64_t e = expert[size_t(t * K + k)];
      if (e < e0 || e >= e1) continue;
      const int64_t le = e - e0;
      cpu::swiglu_ffn(&x[size_t(t * H)], 1, H, C, &g[size_t(le * H * C)], &u[size_t(le * H * C)],
                      &d[size_t(le * C * H)], &weight[size_t(t * K + k)], o, scratch.data());
    }
    cpu::swiglu_ffn(&x[size_t(t * H)], 1, H, S, sg.data(), su.data(), sd.data(), nullptr, o,
                    scratch.data());
  }
  std::vector<double> ref(want.begin(), want.end());
  EXPECT_LT(rel_err(out, ref), 1e-6);
}

TEST(CpuKernels, SwigluMatchesDefinitionWithRowScale) {
  const int64_t m = 3, H = 20, F = 13;
  auto x = random_vec(size_t(m * H), 80), wg = random_vec(size_t(H * F), 81),
       wu = random_vec(size_t(H * F), 82), wd = random_vec(size_t(F * H), 83);
  std::vector<float> scale = {0.5f, -1.0f, 2.0f}, out(size_t(m * H), 1.0f),
                     scratch(size_t(2 * m * F));
  cpu::swiglu_ffn(x.data(), m, H, F, wg.data(), wu.data(), wd.data(), scale.data(), out.data(),
                  scratch.data());
  std::vector<double> ref(size_t(m * H), 1.0);
  for (int64_t i = 0; i < m; ++i) {
    std::vector<double> a(static_cast<size_t>(F));
    for (int64_t j = 0; j < F; ++j) {
      double g = 0, u = 0;
      for (int64_t p = 0; p < H; ++p) {
        g += double(x[i * H + p]) * wg[p * F + j];
        u += double(x[i * H + p]) * wu[p * F + j];
      }
      a[j] = scale[i] * g / (1 + std::exp(-g)) * u;
    }
    for (int64_t c = 0; c < H; ++c)
      for (int64_t j = 0; j < F; ++j) ref[i * H + c] += a[j] * wd[j * H + c];
  }
  EXPECT_LT(rel_err(out, ref), 1e-5);
}

}  // namespace
}  // namespace helix
