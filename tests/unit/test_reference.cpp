// The single-rank reference's handling of top-k routing: an executor's expert choice is followed
// where bf16 rounding of the router explains it (and every such flip is counted), and refused
// where it does not.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "exec/reference.hpp"
#include "layouts/model_spec.hpp"

namespace helix {
namespace {

constexpr int kBatch = 16, kSteps = 4;
constexpr int64_t kSeq = 41;

struct Fixture {
  ModelSpec m = load_model("tiny-mla-moe");
  ReferenceRun ref{m, LayerKind::moe, kBatch, kSeq, kSteps, 7};
  int64_t K = m.moe.top_k, E = m.moe.routed_experts, H = m.hidden;

  // The reference's own choice for every token of `step`, [B, top_k].
  std::vector<int32_t> own_choice(int step) const {
    std::vector<int32_t> x;
    for (int b = 0; b < kBatch; ++b) {
      const auto& t = ref.router(step, b).topk;
      x.insert(x.end(), t.begin(), t.end());
    }
    return x;
  }
  // Experts by descending reference logit.
  std::vector<int32_t> ranked(int step, int token) const {
    const RouterRecord& r = ref.router(step, token);
    std::vector<int32_t> idx(static_cast<size_t>(E));
    for (int32_t e = 0; e < int32_t(E); ++e) idx[size_t(e)] = e;
    std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) {
      return r.logits[size_t(a)] > r.logits[size_t(b)];
    });
    return idx;
  }
};

double row_diff(const std::vector<float>& a, const std::vector<float>& b, int64_t row, int64_t H) {
  double d = 0;
  for (int64_t j = 0; j < H; ++j)
    d = std::max(d, double(std::fabs(a[row * H + j] - b[row * H + j])));
  return d;
}

TEST(ReferenceRouting, RecordsAreConsistent) {
  Fixture f;
  ASSERT_TRUE(f.ref.routed());
  for (int t = 0; t < kSteps; ++t)
    for (int b = 0; b < kBatch; ++b) {
      const RouterRecord& r = f.ref.router(t, b);
      ASSERT_EQ(int64_t(r.logits.size()), f.E);
      ASSERT_EQ(int64_t(r.topk.size()), f.K);
      const auto rank = f.ranked(t, b);
      for (int64_t i = 0; i < f.K; ++i) EXPECT_EQ(r.topk[size_t(i)], rank[size_t(i)]);
      for (double d : r.bound) EXPECT_GT(d, 0.0);
    }
}

TEST(ReferenceRouting, SameSetInAnyOrderIsNoFlip) {
  Fixture f;
  std::vector<int32_t> x = f.own_choice(1);
  for (int b = 0; b < kBatch; ++b) std::reverse(x.begin() + b * f.K, x.begin() + (b + 1) * f.K);
  std::vector<RoutingFlip> flips;
  const std::vector<float> out = f.ref.output_for(1, x.data(), &flips);
  EXPECT_TRUE(flips.empty());
  EXPECT_EQ(out, f.ref.own_output(1));
  EXPECT_EQ(f.ref.output_for(1, nullptr, &flips), f.ref.own_output(1));
}

// The closest pair across the top-k boundary (k-th and (k+1)-th expert) of some token: swapped, it
// is within the rounding bound, and the reference follows it for that token only.
TEST(ReferenceRouting, FollowsAFlipWithinRounding) {
  Fixture f;
  int best_t = -1, best_b = -1;
  double best_gap = INFINITY;
  for (int t = 0; t < kSteps; ++t)
    for (int b = 0; b < kBatch; ++b) {
      const auto rank = f.ranked(t, b);
      const RouterRecord& r = f.ref.router(t, b);
      const double gap =
          r.logits[size_t(rank[size_t(f.K - 1)])] - r.logits[size_t(rank[size_t(f.K)])];
      if (gap < best_gap) best_gap = gap, best_t = t, best_b = b;
    }
  ASSERT_GE(best_t, 0);
  const auto rank = f.ranked(best_t, best_b);
  const RouterRecord& r = f.ref.router(best_t, best_b);
  const int32_t kth = rank[size_t(f.K - 1)], next = rank[size_t(f.K)];
  ASSERT_LE(best_gap, r.bound[size_t(kth)] + r.bound[size_t(next)])
      << "the seed gives no near-tie; pick another";
  std::vector<int32_t> x = f.own_choice(best_t);
  std::replace(x.begin() + best_b * f.K, x.begin() + (best_b + 1) * f.K, kth, next);
  std::vector<RoutingFlip> flips;
  const std::vector<float> out = f.ref.output_for(best_t, x.data(), &flips);
  ASSERT_EQ(flips.size(), 1u);
  EXPECT_TRUE(flips[0].accepted);
  EXPECT_EQ(flips[0].step, best_t);
  EXPECT_EQ(flips[0].token, best_b);
  EXPECT_EQ(flips[0].executor_expert, next);
  EXPECT_EQ(flips[0].reference_expert, kth);
  EXPECT_NEAR(flips[0].logit_gap, best_gap, 1e-12);
  const std::vector<float>& own = f.ref.own_output(best_t);
  for (int b = 0; b < kBatch; ++b)
    if (b == best_b)
      EXPECT_GT(row_diff(out, own, b, f.H), 1e-3) << "the swapped expert changes the row";
    else
      EXPECT_EQ(row_diff(out, own, b, f.H), 0.0);
  // Following the same choice twice gives the same row (the recomputation is deterministic).
  flips.clear();
  EXPECT_EQ(f.ref.output_for(best_t, x.data(), &flips), out);
}

// Replacing the k-th expert by the weakest one is no rounding effect: refused, the row kept.
TEST(ReferenceRouting, RefusesAFlipBeyondRounding) {
  Fixture f;
  const int t = 2, b = 5;
  const auto rank = f.ranked(t, b);
  const RouterRecord& r = f.ref.router(t, b);
  const int32_t kth = rank[size_t(f.K - 1)], worst = rank.back();
  ASSERT_GT(r.logits[size_t(kth)] - r.logits[size_t(worst)],
            r.bound[size_t(kth)] + r.bound[size_t(worst)]);
  std::vector<int32_t> x = f.own_choice(t);
  std::replace(x.begin() + b * f.K, x.begin() + (b + 1) * f.K, kth, worst);
  std::vector<RoutingFlip> flips;
  const std::vector<float> out = f.ref.output_for(t, x.data(), &flips);
  ASSERT_EQ(flips.size(), 1u);
  EXPECT_FALSE(flips[0].accepted);
  EXPECT_GT(flips[0].logit_gap, flips[0].bound);
  EXPECT_EQ(out, f.ref.own_output(t));
}

TEST(ReferenceRouting, RefusesInvalidChoices) {
  Fixture f;
  for (int32_t bad : {-1, int32_t(f.E)}) {
    std::vector<int32_t> x = f.own_choice(0);
    x[0] = bad;
    std::vector<RoutingFlip> flips;
    EXPECT_EQ(f.ref.output_for(0, x.data(), &flips), f.ref.own_output(0));
    ASSERT_FALSE(flips.empty());
    for (const auto& fl : flips) EXPECT_FALSE(fl.accepted);
  }
  std::vector<int32_t> dup = f.own_choice(0);
  dup[1] = dup[0];  // the same expert twice
  std::vector<RoutingFlip> flips;
  EXPECT_EQ(f.ref.output_for(0, dup.data(), &flips), f.ref.own_output(0));
  ASSERT_FALSE(flips.empty());
  EXPECT_FALSE(flips[0].accepted);
}

TEST(ReferenceRouting, DenseLayersHaveNoRouter) {
  const ModelSpec m = load_model("tiny-gqa");
  ReferenceRun ref(m, LayerKind::dense, 2, 9, 2, 3);
  EXPECT_FALSE(ref.routed());
  const std::vector<int32_t> junk(16, 0);
  std::vector<RoutingFlip> flips;
  EXPECT_EQ(ref.output_for(1, junk.data(), &flips), ref.own_output(1));
  EXPECT_TRUE(flips.empty());
}

}  // namespace
}  // namespace helix
