// The cost model's measured terms on hand-computed cases (launch costs, decode attention
// efficiency, collective curves, the exchange precision, routed experts per rank and the wait for
// the slowest rank), calibrated profiles written and read back (one-rank profiles included), the
// routing of the layer input, and the test-only phase slowdown.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "analytic/cost_model.hpp"
#include "analytic/hardware.hpp"
#include "common/usage_error.hpp"
#include "exec/layer_data.hpp"
#include "exec/reference.hpp"
#include "exec/slow_phase.hpp"
#include "layouts/layout.hpp"

namespace helix {
namespace {

// A measured profile: 1000 GB/s, 100 TFLOP/s bf16, launches of 5 us (GEMM) and 2 us (others).
HardwareProfile measured_profile() {
  HardwareProfile h = load_hardware("h200");
  h.name = "test";
  h.kind = "calibrated";
  h.stream_gbps = 1000;
  h.flops_tflops = {{DType::bf16, 100.0}};
  h.gemm_efficiency.clear();
  h.gemm_launch_us = 5;
  h.kernel_launch_us = 2;
  return h;
}

CollectiveMeasurement curve(Collective c, int n, double latency_us, double busbw_gbps,
                            std::vector<CollectivePoint> points) {
  CollectiveMeasurement m;
  m.collective = c;
  m.group_size = n;
  m.latency_us = latency_us;
  m.busbw_gbps = busbw_gbps;
  m.points = std::move(points);
  return m;
}

CostModel bf16_model(const HardwareProfile& h) {
  CostOptions o;
  o.dtype = DType::bf16;
  o.act_bytes = 2;
  return CostModel(h, o);
}

TEST(CalibratedModel, LaunchCostsAddToEveryComputeStep) {
  const ModelSpec m = load_model("llama-3.1-8b");
  const LayoutParams p = make_layout(LayoutKind::tp, 1, m, LayerKind::dense, 1, {});
  const RankShard r = rank_shard(m, LayerKind::dense, p, 0);
  HardwareProfile none = measured_profile();
  none.gemm_launch_us = none.kernel_launch_us = 0;
  const CostModel with = bf16_model(measured_profile()), without = bf16_model(none);
  for (const Step& s : build_schedule(m, r, 1, 100).steps) {
    if (s.work.coll || s.op == Op::attention) continue;
    // GQA projections: 3 GEMMs and 3 kernels; dense FFN: 3 GEMMs and 4 kernels.
    const double expect = s.op == Op::attn_prologue ? 3 * 5 + 3 * 2.0
                          : s.op == Op::ffn_compute
                              ? 3 * 5 + 4 * 2.0
                              : s.work.gemm_launches * 5 + s.work.kernel_launches * 2;
    EXPECT_NEAR(with.compute_us(s) - without.compute_us(s), expect, 1e-9) << op_name(s.op);
  }
}

// The partials exchange: one pack launch per exchange on the compute stream (HOP-B: per chunk),
// the collective itself none; the wait for HOP-B's exchanges costs nothing of its own.
TEST(CalibratedModel, OnePackLaunchPerExchange) {
  const ModelSpec m = load_model("tiny-gqa");
  HardwareProfile none = measured_profile();
  none.gemm_launch_us = none.kernel_launch_us = 0;
  const CostModel with = bf16_model(measured_profile()), without = bf16_model(none);
  for (LayoutKind k : {LayoutKind::helix, LayoutKind::helix_hopb, LayoutKind::kvp}) {
    LayoutRequest req;
    req.kvp = 4;
    req.tpa = 1;
    req.hopb_chunks = 4;
    const LayoutParams p = make_layout(k, 4, m, LayerKind::dense, 8, req);
    int packs = 0;
    for (const Step& s : build_schedule(m, rank_shard(m, LayerKind::dense, p, 0), 8, 4096).steps) {
      if (s.op == Op::pack) {
        ++packs;
        EXPECT_NEAR(with.step_us(s, false) - without.step_us(s, false), 2.0, 1e-9);
      } else if (s.work.coll) {
        EXPECT_DOUBLE_EQ(with.step_us(s, false), without.step_us(s, false)) << op_name(s.op);
        if (s.op == Op::a2a_wait) {
          EXPECT_DOUBLE_EQ(with.step_us(s, false), 0.0);
        }
      }
    }
    EXPECT_EQ(packs, k == LayoutKind::helix_hopb ? 4 : 1) << to_string(k);
  }
}

TEST(CalibratedModel, AttentionFromTheMeasuredEfficiencyCurve) {
  HardwareProfile h = measured_profile();
  // MLA, 128 heads, one request: 10 us at 1 MB (0.1 of 1000 GB/s), 200 us at 100 MB (0.5).
  h.decode_attention = {{true, 128, 1, 1, 1e6, 0.1},
                        {true, 128, 1, 1, 1e8, 0.5},
                        {true, 16, 1, 1, 1e8, 0.9},
                        {false, 8, 1, 1, 1e8, 0.8}};
  EXPECT_NEAR(h.decode_attention_us(true, 128, 1, 1, 1e6), 10.0, 1e-9);
  EXPECT_NEAR(h.decode_attention_us(true, 128, 1, 1, 1e8), 200.0, 1e-9);
  EXPECT_NEAR(h.decode_attention_us(true, 128, 1, 1, 1e7), std::sqrt(10.0 * 200.0), 1e-9);
  EXPECT_NEAR(h.decode_attention_us(true, 128, 1, 1, 1e3), 10.0, 1e-9);    // the floor below
  EXPECT_NEAR(h.decode_attention_us(true, 128, 1, 1, 1e9), 2000.0, 1e-9);  // 0.5 beyond
  EXPECT_NEAR(h.decode_attention_us(true, 100, 1, 1, 1e8), 200.0, 1e-9);   // nearest: 128
  EXPECT_NEAR(h.decode_attention_us(true, 20, 1, 1, 1e8), 1e8 / (1e6 * 0.9), 1e-6);
  EXPECT_LT(h.decode_attention_us(false, 8, 1, 1, 1e8), 1e8 / (1e6 * 0.79));
  h.decode_attention.resize(3);
  EXPECT_LT(h.decode_attention_us(false, 8, 1, 1, 1e8), 0);  // no GQA point
  // A step of DeepSeek-R1 with 128 heads on one rank reads its latent cache at that efficiency.
  const ModelSpec m = load_model("deepseek-r1");
  LayoutRequest req;
  req.kvp = 4;
  req.tpa = 1;
  const LayoutParams p = make_layout(LayoutKind::helix, 4, m, LayerKind::moe, 1, req);
  const CostModel cm = bf16_model(h);
  for (const Step& s : build_schedule(m, rank_shard(m, LayerKind::moe, p, 0), 1, 1 << 20).steps)
    if (s.op == Op::attention) {
      const double kv = s.work.kv_elems * 2;
      EXPECT_EQ(s.work.attn_q_per_kv, 128);
      EXPECT_NEAR(cm.compute_us(s), h.decode_attention_us(true, 128, 1, 1, kv), 1e-9);
    }
}

TEST(CalibratedModel, CollectivesFromTheMeasuredCurve) {
  HardwareProfile h = measured_profile();
  h.collectives = {curve(Collective::all_reduce, 4, 10, 100, {{1e3, 10.0}, {1e6, 30.0}})};
  const CostModel cm = bf16_model(h);
  EXPECT_NEAR(cm.collective_us(Collective::all_reduce, 4, 1e3, false), 10.0, 1e-9);
  EXPECT_NEAR(cm.collective_us(Collective::all_reduce, 4, std::sqrt(1e9), false), std::sqrt(300.0),
              1e-9);
  EXPECT_NEAR(cm.collective_us(Collective::all_reduce, 4, 10.0, false), 10.0, 1e-9);
  // Beyond the curve: its last time plus the extra bytes at the bus bandwidth (factor 1.5).
  EXPECT_NEAR(cm.collective_us(Collective::all_reduce, 4, 2e6, false), 30.0 + 1e6 * 1.5 / 1e5,
              1e-9);
  // Another group size moves the same bytes per rank: 2 ranks (factor 1) at S = 1.5e6 are 4
  // ranks (factor 1.5) at 1e6.
  EXPECT_NEAR(cm.collective_us(Collective::all_reduce, 2, 1.5e6, false), 30.0, 1e-9);
  // The exchange at the executors' precision: fp32 costs twice the bf16 bytes.
  Step a2a;
  a2a.op = Op::o_allreduce;
  a2a.work.coll = Collective::all_reduce;
  a2a.work.group_size = 4;
  a2a.work.comm_elems = 5e5;
  CostOptions o;
  o.dtype = DType::bf16;
  o.comm_bytes = 4;
  EXPECT_NEAR(CostModel(h, o).step_us(a2a, false),
              cm.collective_us(Collective::all_reduce, 4, 2e6, false), 1e-9);
  EXPECT_NEAR(cm.step_us(a2a, false), 30.0, 1e-9);
}

// DeepSeek-R1 at N = 4 (EP = 4, helix): one rank's experts get every token; the model prices it
// longer and the others wait for it at the FFN all-gather.
TEST(CalibratedModel, RoutedExpertsPerRankAndTheWaitForTheSlowest) {
  const ModelSpec m = load_model("deepseek-r1");
  const LayoutParams p = make_layout(LayoutKind::helix, 4, m, LayerKind::moe, 8, {});
  ASSERT_EQ(p.ep, 4);
  const CostModel cm = bf16_model(measured_profile());
  const std::vector<ExpertLoad> loads = {{1, 1}, {61, 18}, {2, 2}, {0, 0}};
  const StepAccount a = price_layout(cm, m, LayerKind::moe, p, 8, 128 * 1024, loads);
  EXPECT_EQ(a.critical, 1);
  const size_t ffn = size_t(Phase::ffn), fc = size_t(Phase::ffn_comm);
  const double slow = a.ranks[1].phase_us[ffn];
  for (int r : {0, 2, 3}) {
    EXPECT_LT(a.ranks[size_t(r)].phase_us[ffn], slow);
    // The all-gather waits for rank 1's experts: the difference of the FFN phases.
    EXPECT_NEAR(a.ranks[size_t(r)].wait_us[fc], slow - a.ranks[size_t(r)].phase_us[ffn], 1e-6);
  }
  EXPECT_NEAR(a.ranks[1].wait_us[fc], 0.0, 1e-9);
  // 18 experts with tokens: 18 x 3 GEMMs of 7168 x 2048 bf16 weights plus the router and shared.
  const RankShard r1 = rank_shard(m, LayerKind::moe, p, 1);
  const Work w = ffn_compute_work(m, r1, 8, &loads[1]);
  EXPECT_DOUBLE_EQ(w.gemm_launches, 1 + 3 * 18 + 3);
  // The shared expert's 2048 columns are split over the 4 FFN ranks.
  EXPECT_DOUBLE_EQ(w.weight_elems, 7168.0 * 256 + 3 * 7168.0 * 512 + 18 * 3 * 7168.0 * 2048 + 7168);
  // The expected load without routing is the same for every rank.
  const StepAccount e = price_layout(cm, m, LayerKind::moe, p, 8, 128 * 1024, {});
  EXPECT_NEAR(e.ranks[0].phase_us[ffn], e.ranks[3].phase_us[ffn], 1e-9);
}

TEST(CalibratedModel, ProfileRoundTripWithCurvesAndOneRankFallbacks) {
  HardwareProfile h = measured_profile();
  h.collectives = {curve(Collective::all_to_all, 2, 17.5, 250, {{1024, 17.5}, {67108864, 300.25}})};
  h.decode_attention = {{false, 16, 8, 1, 2.5e8, 0.875}};
  const std::string path = "profile_roundtrip_" + std::to_string(getpid()) + ".json";
  write_hardware_profile(path, h);
  const HardwareProfile q = load_hardware(path);
  EXPECT_EQ(hardware_to_json(q), hardware_to_json(h));
  EXPECT_DOUBLE_EQ(q.collectives[0].points[1].time_us, 300.25);
  EXPECT_EQ(q.decode_attention[0].kv_heads, 8);
  EXPECT_DOUBLE_EQ(q.gemm_launch_us, 5);
  std::remove(path.c_str());
  // One rank: no collectives, link figures and their sources from a built-in profile.
  HardwareProfile one = h;
  one.collectives.clear();
  one.sources["nvlink.bw_gbps"] = "fallback (not measured: one rank): built-in profile h200";
  const HardwareProfile back = parse_hardware_json(hardware_to_json(one), "one-rank");
  EXPECT_TRUE(back.collectives.empty());
  EXPECT_EQ(back.sources.at("nvlink.bw_gbps").rfind("fallback", 0), 0u);
  EXPECT_NO_THROW(bf16_model(back).collective_us(Collective::all_reduce, 4, 1e6, false));
  EXPECT_THROW(write_hardware_profile("/nonexistent-dir/p.json", h), UsageError);
  EXPECT_THROW(parse_hardware_json(
                   R"({"name":"x","kind":"calibrated","description":"","memory_bytes":1,
                       "mem_bw_gbps":1,"stream_gbps":1,"flops_tflops":{"bf16":1},
                       "nvlink":{"domain_gpus":1,"bw_gbps":1,"latency_us":1},
                       "network":{"bw_gbps":1,"latency_us":1},"sources":{},
                       "decode_attention":[{"kind":"gqa","q_per_kv":8,"batch":1,
                                            "kv_bytes":1,"efficiency":0.5}]})",
                   "x"),
               UsageError);  // kv_heads missing
}

// The router on the layer input picks what the executors pick over a long random cache: the
// attention output is small next to the input there.
TEST(CalibratedModel, RoutingOfTheLayerInputMatchesTheReference) {
  const ModelSpec m = load_model("tiny-mla-moe");
  const int B = 16;
  const std::vector<int32_t> mine = route_decode_input(m, B, 1234);
  ASSERT_EQ(mine.size(), size_t(B * m.moe.top_k));
  const ReferenceRun ref(m, LayerKind::moe, B, 4000, 1, 1234);
  int same = 0;
  for (int t = 0; t < B; ++t) {
    const RouterRecord& r = ref.router(0, t);
    std::vector<int> order(size_t(m.moe.routed_experts));
    for (size_t e = 0; e < order.size(); ++e) order[e] = int(e);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return r.logits[size_t(a)] > r.logits[size_t(b)]; });
    const std::set<int> want(order.begin(), order.begin() + m.moe.top_k);
    const std::set<int> got(mine.begin() + t * m.moe.top_k, mine.begin() + (t + 1) * m.moe.top_k);
    same += want == got;
  }
  EXPECT_GE(same, B - 2) << same << " of " << B << " tokens routed alike";
  EXPECT_TRUE(route_decode_input(load_model("tiny-gqa"), 4, 1).empty());
}

TEST(SlowPhase, ParsedFromTheEnvironmentAndCalibratedOnThePreviousStep) {
  unsetenv("HELIX_TEST_SLOW_PHASE");
  EXPECT_FALSE(slow_phase_from_env().on());
  setenv("HELIX_TEST_SLOW_PHASE", "ffn:0.10", 1);
  const SlowPhase s = slow_phase_from_env();
  EXPECT_EQ(s.phase, int(Phase::ffn));
  EXPECT_DOUBLE_EQ(s.fraction, 0.10);
  for (const char* bad : {"ffn", "ffn:", "ffn:0", "ffn:-1", "ffn:x", "nope:0.1", "ffn:11"}) {
    setenv("HELIX_TEST_SLOW_PHASE", bad, 1);
    EXPECT_THROW(slow_phase_from_env(), UsageError) << bad;
  }
  unsetenv("HELIX_TEST_SLOW_PHASE");
  PhaseDelay d(s);
  const std::vector<Step> steps = {
      Step{Op::ffn_compute, Phase::ffn, Group::none, -1, {0, 1}, {}},
      Step{Op::ffn_reduce, Phase::ffn, Group::none, -1, {0, 1}, {}},
      Step{Op::out_bcast, Phase::out_comm, Group::kvp, -1, {0, 1}, {}}};
  EXPECT_EQ(d.last_step(steps), 1);
  // HOP-B's wait for the exchanges is timed in no phase: the delay goes after the last exchange.
  const PhaseDelay comm(SlowPhase{int(Phase::attn_comm), 0.1, "attn_comm:0.1"});
  const std::vector<Step> hopb = {Step{Op::a2a_start, Phase::attn_comm, Group::kvp, 0, {0, 1}, {}},
                                  Step{Op::attention, Phase::attention, Group::none, 1, {1, 2}, {}},
                                  Step{Op::a2a_start, Phase::attn_comm, Group::kvp, 1, {1, 2}, {}},
                                  Step{Op::a2a_wait, Phase::attn_comm, Group::kvp, -1, {0, 2}, {}}};
  EXPECT_EQ(comm.last_step(hopb), 2);
  EXPECT_DOUBLE_EQ(d.next_us(), 0.0);  // no estimate before the first step
  d.observe(steps, {80.0, 20.0, 5.0}, 0.0);
  EXPECT_DOUBLE_EQ(d.next_us(), 10.0);
  d.observe(steps, {80.0, 30.0, 5.0}, 10.0);  // the delay of 10 us taken out again
  EXPECT_DOUBLE_EQ(d.next_us(), 10.0);
}

}  // namespace
}  // namespace helix
