// The roofline's arithmetic (bench/decode/roofline.hpp) on hand-computed shapes: the bytes and
// FLOPs of every compute phase of small layouts, the MoE FFN at an actual routing, the roofline
// time against two ceilings, and a rank's fractions, step and limiter from its timings.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "bench/decode/record.hpp"
#include "bench/decode/roofline.hpp"
#include "layouts/layout.hpp"
#include "layouts/schedule.hpp"

using namespace helix;

namespace {

RankShard shard_of(const ModelSpec& m, LayoutKind kind, int n, int rank, int batch) {
  const LayerKind layer = m.default_layer_kind();
  return rank_shard(m, layer, make_layout(kind, n, m, layer, batch, {}), rank);
}

double at(const PhaseWork& w, Phase p, bool flops) {
  return flops ? w.flops[size_t(p)] : w.bytes[size_t(p)];
}

TEST(Roofline, DenseGqaPhasesByHand) {
  // tiny-gqa (H 256, 16 query / 4 KV heads of 128, FFN 512), tp over 2 ranks, rank 0: 8 query
  // heads, 2 KV heads, 8 output heads, 256 FFN columns. B = 2, 99 cached tokens (attention reads
  // 100). Weights and KV in 2 bytes, activations in 4 (the CUDA executor's sizes).
  const ModelSpec m = load_model("tiny-gqa");
  const RankShard r = shard_of(m, LayoutKind::tp, 2, 0, 2);
  ASSERT_EQ(r.q_heads.size(), 8);
  ASSERT_EQ(r.kv_heads.size(), 2);
  ASSERT_EQ(r.dense_cols.size(), 256);
  const PhaseWork w = phase_work(m, r, build_schedule(m, r, 2, 99), ElemBytes{2, 2, 4}, nullptr);
  // qkv: weights 256 x (8 + 2 x 2) x 128 + 256 (norm) = 393472; activations 2 x (256 + 12 x 128)
  // = 3584; FLOPs 2 x B x weights.
  EXPECT_DOUBLE_EQ(at(w, Phase::qkv, false), 393472.0 * 2 + 3584.0 * 4);
  EXPECT_DOUBLE_EQ(at(w, Phase::qkv, true), 2.0 * 2 * 393472);
  // kv_append: B x 2 KV heads x (K + V = 256) values of the new token.
  EXPECT_DOUBLE_EQ(at(w, Phase::kv_append, false), 2.0 * 2 * 256 * 2);
  EXPECT_DOUBLE_EQ(at(w, Phase::kv_append, true), 0.0);
  // attention: KV 2 x 2 x 100 x 256; Q, O and LSE 2 x 8 x (128 + 128 + 1); FLOPs
  // 2 x B x 8 heads x 100 tokens x (128 + 128).
  EXPECT_DOUBLE_EQ(at(w, Phase::attention, false), 102400.0 * 2 + 4112.0 * 4);
  EXPECT_DOUBLE_EQ(at(w, Phase::attention, true), 819200.0);
  // tp has no combine.
  EXPECT_DOUBLE_EQ(at(w, Phase::combine, false), 0.0);
  // o_proj: W_O 8 x 128 x 256; activations 2 x (1024 + 256).
  EXPECT_DOUBLE_EQ(at(w, Phase::o_proj, false), 262144.0 * 2 + 2560.0 * 4);
  EXPECT_DOUBLE_EQ(at(w, Phase::o_proj, true), 2.0 * 2 * 262144);
  // ffn: gate, up, down slices 3 x 256 x 256 + 256 (norm); activations 4 x B x H; the reduction
  // (EP 1): (1 + 2) x B x H activations and (1 + 1) x B x H FLOPs.
  EXPECT_DOUBLE_EQ(at(w, Phase::ffn, false), 196864.0 * 2 + 2048.0 * 4 + 1536.0 * 4);
  EXPECT_DOUBLE_EQ(at(w, Phase::ffn, true), 2.0 * 2 * 196864 + 1024.0);
  // Communication phases carry no work.
  for (Phase p : {Phase::attn_comm, Phase::o_comm, Phase::ffn_comm, Phase::out_comm}) {
    EXPECT_EQ(at(w, p, false), 0.0);
    EXPECT_EQ(at(w, p, true), 0.0);
  }
}

TEST(Roofline, MoeCountsOnlyTheExpertsThatReceivedTokens) {
  // tiny-mla-moe (H 256, 8 experts of 128 columns, top-2, one shared expert of 128 columns),
  // helix over 2 ranks: EP 2, rank 0 holds experts 0..3 whole and half of the shared expert's
  // columns (the shared expert is split over every FFN rank). B = 3, routing (0, 5), (0, 3),
  // (6, 7): 3 assignments to held experts, 2 of them touched.
  const ModelSpec m = load_model("tiny-mla-moe");
  const RankShard r = shard_of(m, LayoutKind::helix, 2, 0, 3);
  ASSERT_EQ(r.experts.begin, 0);
  ASSERT_EQ(r.experts.end, 4);
  ASSERT_EQ(r.expert_cols.size(), 128);
  ASSERT_EQ(r.shared_cols.size(), 64);
  const std::vector<int32_t> ids = {0, 5, 0, 3, 6, 7};
  const MoeActivity a = moe_activity(r, ids.data(), int64_t(ids.size()));
  EXPECT_EQ(a.touched, 2);
  EXPECT_EQ(a.assignments, 3);
  const Schedule s = build_schedule(m, r, 3, 40);
  const PhaseWork w = phase_work(m, r, s, ElemBytes{4, 4, 4}, &a);
  // Router 256 x 8, shared 3 x 256 x 64, 2 touched experts x 3 x 256 x 128, norm 256 = 248064
  // weights; FLOPs 2 x 3 x (2048 + 49152) + 2 x 3 assignments x 3 x 256 x 128; activations
  // 4 x B x H, and the reduction over EP 2: (2 + 2) x B x H read, (2 + 1) x B x H FLOPs.
  EXPECT_DOUBLE_EQ(at(w, Phase::ffn, false), (248064.0 + 3072 + 3072) * 4);
  EXPECT_DOUBLE_EQ(at(w, Phase::ffn, true), 307200.0 + 589824 + 2304);
  // Without a routing, the schedule's expected counts; the other phases do not change.
  const PhaseWork e = phase_work(m, r, s, ElemBytes{4, 4, 4}, nullptr);
  const double touched = 4 * (1 - std::pow(1 - 2.0 / 8, 3));
  EXPECT_NEAR(at(e, Phase::ffn, false) - at(w, Phase::ffn, false),
              (touched - 2) * 3 * 256 * 128 * 4, 1e-6);
  EXPECT_EQ(at(e, Phase::attention, false), at(w, Phase::attention, false));
  // A rank whose held experts received nothing reads the router and the shared slice only.
  const std::vector<int32_t> elsewhere = {4, 5, 6, 7, 5, 4};
  const MoeActivity none = moe_activity(r, elsewhere.data(), 6);
  EXPECT_EQ(none.touched, 0);
  EXPECT_EQ(none.assignments, 0);
  const PhaseWork n = phase_work(m, r, s, ElemBytes{4, 4, 4}, &none);
  EXPECT_DOUBLE_EQ(at(n, Phase::ffn, false), (2048.0 + 49152 + 256 + 3072 + 3072) * 4);
}

TEST(Roofline, TimeIsTheSlowerCeiling) {
  const Ceilings c{1000.0, 100.0};  // 1000 GB/s = 1e6 bytes per us; 100 TFLOP/s = 1e8 per us
  EXPECT_DOUBLE_EQ(roofline_us(2e6, 1e8, c), 2.0);              // memory-bound: 2 us against 1 us
  EXPECT_DOUBLE_EQ(roofline_us(1e6, 5e8, c), 5.0);              // compute-bound
  EXPECT_DOUBLE_EQ(roofline_us(1e6, 5e8, {1000.0, 0.0}), 1.0);  // no GEMM rate: bytes only
  EXPECT_DOUBLE_EQ(roofline_us(1e6, 5e8, {0.0, 100.0}), 5.0);   // no stream: FLOPs only
  EXPECT_TRUE(std::isnan(roofline_us(1e6, 5e8, {})));
}

TEST(Roofline, RankFractionsStepAndLimiter) {
  // One rank, three iterations; only qkv, attention and ffn have work.
  RunRecord r;
  r.ranks = 1;
  r.iters = 3;
  r.phase_us.assign(size_t(3 * kNumPhases), 0.0);
  auto set = [&](int it, Phase p, double us) { r.phase_us[size_t(it * kNumPhases + int(p))] = us; };
  const double qkv[3] = {4, 5, 6}, attn[3] = {30, 20, 25}, ffn[3] = {10, 12, 11};
  for (int i = 0; i < 3; ++i) {
    set(i, Phase::qkv, qkv[i]);
    set(i, Phase::attention, attn[i]);
    set(i, Phase::ffn, ffn[i]);
    set(i, Phase::o_comm, 100);  // communication: outside the compute step
  }
  r.work_bytes.assign(kNumPhases, 0.0);
  r.work_flops.assign(kNumPhases, 0.0);
  r.work_bytes[size_t(Phase::qkv)] = 4e6;         // 4 us at 1000 GB/s
  r.work_bytes[size_t(Phase::attention)] = 10e6;  // 10 us
  r.work_flops[size_t(Phase::attention)] = 2e9;   // 20 us at 100 TFLOP/s: compute-bound
  r.work_bytes[size_t(Phase::ffn)] = 8e6;         // 8 us
  const RankRoofline rr = rank_roofline(r, 0, {1000.0, 100.0});
  const PhaseRoofline& q = rr.phase[size_t(Phase::qkv)];
  EXPECT_DOUBLE_EQ(q.roofline_us, 4.0);
  EXPECT_DOUBLE_EQ(q.measured_us, 5.0);
  EXPECT_DOUBLE_EQ(q.fraction, 0.8);
  EXPECT_FALSE(q.compute_bound);
  const PhaseRoofline& a = rr.phase[size_t(Phase::attention)];
  EXPECT_DOUBLE_EQ(a.roofline_us, 20.0);
  EXPECT_DOUBLE_EQ(a.fraction, 20.0 / 25.0);
  EXPECT_TRUE(a.compute_bound);
  EXPECT_DOUBLE_EQ(rr.phase[size_t(Phase::ffn)].fraction, 8.0 / 11.0);
  EXPECT_TRUE(std::isnan(rr.phase[size_t(Phase::o_comm)].roofline_us));
  EXPECT_TRUE(std::isnan(rr.phase[size_t(Phase::o_comm)].fraction));
  EXPECT_TRUE(std::isnan(rr.phase[size_t(Phase::combine)].fraction));  // nothing measured
  // Step: 4 + 20 + 8 = 32 us of roofline against the median compute sum (44, 37, 42) = 42.
  EXPECT_DOUBLE_EQ(rr.step_roofline_us, 32.0);
  EXPECT_DOUBLE_EQ(rr.step_measured_us, 42.0);
  EXPECT_DOUBLE_EQ(rr.step_fraction, 32.0 / 42.0);
  // The most time above its roofline: attention (5 us), ahead of ffn (3 us) and qkv (1 us).
  EXPECT_EQ(rr.limiter, int(Phase::attention));
}

}  // namespace
