// The accounting of a step across ranks (analytic/timeline.hpp): the wait / transfer split of
// measured runs on synthetic per-rank timings with a known answer, the simulation of the ranks'
// timelines, the critical rank and the breakdown that adds up to the step.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

#include "analytic/cost_model.hpp"
#include "analytic/timeline.hpp"
#include "layouts/layout.hpp"
#include "layouts/model_spec.hpp"

namespace helix {
namespace {

Step compute(Phase ph) {
  Step s;
  s.op = ph == Phase::ffn ? Op::ffn_compute : Op::attn_prologue;
  s.phase = ph;
  return s;
}

Step allreduce(Group g, int n) {
  Step s;
  s.op = Op::o_allreduce;
  s.phase = Phase::o_comm;
  s.group = g;
  s.work.coll = Collective::all_reduce;
  s.work.group_size = n;
  s.work.comm_elems = 1024;
  return s;
}

LayoutParams tp(int n) {
  LayoutParams p;
  p.kind = LayoutKind::tp;
  p.n = n;
  p.tpa = n;
  p.tpf = n;
  return p;
}

// Four ranks arrive at one all-reduce at different times; it completes when the last arrives plus
// its transfer, on each member within a small skew (as a ring does). The shortest-duration rule
// recovers the transfer within the skew and each wait within twice the skew.
TEST(Timeline, MeasuredWaitAndTransferFromTheShortestDuration) {
  const std::vector<double> arrive = {12.0, 40.0, 25.0, 3.0};
  const double transfer = 18.0, tail = 7.0;
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> skew(-0.5, 0.5);
  const double last = *std::max_element(arrive.begin(), arrive.end());
  std::vector<RankSteps> ranks;
  std::vector<double> step;
  for (int r = 0; r < 4; ++r) {
    RankSteps rs;
    rs.rank = r;
    rs.steps = {compute(Phase::qkv), allreduce(Group::world, 4), compute(Phase::ffn)};
    const double done = last + transfer + skew(rng);
    rs.step_us = {arrive[size_t(r)], done - arrive[size_t(r)], tail};
    step.push_back(done + tail + 0.25);  // 0.25 us of launch gaps
    ranks.push_back(rs);
  }
  const StepAccount a = account_measured(tp(4), ranks, step);
  ASSERT_EQ(a.ranks.size(), 4u);
  for (int r = 0; r < 4; ++r) {
    const RankAccount& x = a.ranks[size_t(r)];
    const size_t oc = size_t(Phase::o_comm);
    EXPECT_NEAR(x.transfer_us[oc], transfer, 0.5) << r;
    EXPECT_NEAR(x.wait_us[oc], last - arrive[size_t(r)], 1.0) << r;
    EXPECT_DOUBLE_EQ(x.wait_us[oc] + x.transfer_us[oc], x.phase_us[oc]);
    // The last to arrive waits (almost) for no one.
    if (arrive[size_t(r)] == last) {
      EXPECT_LT(x.wait_us[oc], 1.0);
    }
    // compute + wait + transfer + other = step, other = the launch gaps.
    EXPECT_NEAR(x.compute_us + x.wait_exposed_us + x.transfer_exposed_us + x.other_us, x.step_us,
                1e-9);
    EXPECT_NEAR(x.other_us, 0.25, 1e-9);
    EXPECT_DOUBLE_EQ(x.compute_us, arrive[size_t(r)] + tail);
  }
  // Every rank leaves the all-reduce together: the critical rank is the one the others waited
  // for, and its parts add up to the longest step.
  EXPECT_EQ(a.critical, 1);
  EXPECT_DOUBLE_EQ(a.step_us, *std::max_element(step.begin(), step.end()));
  EXPECT_NEAR(a.compute_us + a.wait_us + a.transfer_us + a.other_us, a.step_us, 1e-9);
  EXPECT_LT(a.wait_us, 1.0);
}

// The same ranks simulated from their compute and the transfer alone: every rank leaves the
// collective when the last arrives plus the transfer.
TEST(Timeline, SimulatedRanksWaitForTheLastArrival) {
  const std::vector<double> arrive = {12.0, 40.0, 25.0, 3.0};
  std::vector<RankSteps> ranks;
  for (int r = 0; r < 4; ++r) {
    RankSteps rs;
    rs.rank = r;
    rs.steps = {compute(Phase::qkv), allreduce(Group::world, 4), compute(Phase::ffn)};
    rs.step_us = {arrive[size_t(r)], 18.0, r == 3 ? 30.0 : 7.0};
    ranks.push_back(rs);
  }
  const StepAccount a = simulate_timeline(tp(4), ranks);
  for (int r = 0; r < 4; ++r) {
    const RankAccount& x = a.ranks[size_t(r)];
    EXPECT_DOUBLE_EQ(x.wait_us[size_t(Phase::o_comm)], 40.0 - arrive[size_t(r)]);
    EXPECT_DOUBLE_EQ(x.transfer_us[size_t(Phase::o_comm)], 18.0);
    EXPECT_DOUBLE_EQ(x.step_us, 58.0 + (r == 3 ? 30.0 : 7.0));
    EXPECT_NEAR(x.other_us, 0.0, 1e-9);
  }
  EXPECT_EQ(a.critical, 3);  // the longest tail, although it arrived first
}

// Two groups: ranks {0,1} and {2,3} all-reduce separately; a slow rank delays only its group.
TEST(Timeline, GroupsWaitOnlyForTheirOwnMembers) {
  LayoutParams p;
  p.kind = LayoutKind::helix;
  p.n = 4;
  p.kvp = 2;
  p.tpa = 2;
  p.tpf = 4;
  std::vector<RankSteps> ranks;
  for (int r = 0; r < 4; ++r) {
    RankSteps rs;
    rs.rank = r;
    rs.steps = {compute(Phase::qkv), allreduce(Group::tpa, 2)};
    rs.step_us = {r == 1 ? 50.0 : 10.0, 5.0};
    ranks.push_back(rs);
  }
  const StepAccount a = simulate_timeline(p, ranks);
  EXPECT_DOUBLE_EQ(a.ranks[0].wait_us[size_t(Phase::o_comm)], 40.0);  // waits for rank 1
  EXPECT_DOUBLE_EQ(a.ranks[2].wait_us[size_t(Phase::o_comm)], 0.0);   // {2, 3} arrive together
  EXPECT_DOUBLE_EQ(a.ranks[3].step_us, 15.0);
  EXPECT_EQ(a.critical, 1);  // ranks 0 and 1 end together at 55 us; rank 0 waited for 1
}

// Ranks with the same work: the simulation is the single-rank pipeline of the cost model
// (schedule_time), HOP-B's overlap included, for every layout.
TEST(Timeline, IdenticalRanksMatchTheSingleRankPipeline) {
  const ModelSpec m = load_model("tiny-gqa");
  const HardwareProfile hw = load_hardware("h200");
  CostOptions co;
  co.dtype = DType::bf16;
  const CostModel cm(hw, co);
  for (LayoutKind k : {LayoutKind::tp, LayoutKind::helix, LayoutKind::helix_hopb}) {
    LayoutRequest req;
    req.hopb_chunks = 4;
    const LayoutParams p = make_layout(k, 2, m, LayerKind::dense, 8, req);
    std::vector<RankSteps> ranks;
    for (int r = 0; r < 2; ++r) {
      RankSteps rs;
      rs.rank = r;
      rs.steps = build_schedule(m, rank_shard(m, LayerKind::dense, p, r), 8, 4096).steps;
      for (const Step& s : rs.steps) rs.step_us.push_back(cm.step_us(s, false));
      ranks.push_back(rs);
    }
    const StepAccount a = simulate_timeline(p, ranks);
    const ScheduleTime t = schedule_time(ranks[0].steps, ranks[0].step_us);
    EXPECT_NEAR(a.ranks[0].step_us, t.total_us, 1e-9) << to_string(k);
    for (int ph = 0; ph < kNumPhases; ++ph)
      EXPECT_NEAR(a.ranks[0].phase_us[size_t(ph)], t.phase_us[size_t(ph)], 1e-9) << ph;
    EXPECT_NEAR(a.ranks[0].compute_us + a.ranks[0].wait_exposed_us +
                    a.ranks[0].transfer_exposed_us + a.ranks[0].other_us,
                a.ranks[0].step_us, 1e-9);
  }
}

// HOP-B: the exchanges overlap the next chunk; a slow peer shows as the compute stream's wait at
// a2a_wait, split in the proportion of the exchanges' wait and transfer.
TEST(Timeline, HopbJoinSplitsInTheExchangesProportion) {
  const ModelSpec m = load_model("tiny-gqa");
  LayoutRequest req;
  req.kvp = 2;
  req.tpa = 1;
  req.hopb_chunks = 2;
  const LayoutParams p = make_layout(LayoutKind::helix_hopb, 2, m, LayerKind::dense, 2, req);
  std::vector<RankSteps> ranks;
  for (int r = 0; r < 2; ++r) {
    RankSteps rs;
    rs.rank = r;
    rs.steps = build_schedule(m, rank_shard(m, LayerKind::dense, p, r), 2, 1000).steps;
    for (const Step& s : rs.steps)
      rs.step_us.push_back(s.op == Op::attention ? (r == 1 ? 40.0 : 10.0)
                           : s.work.coll         ? (s.op == Op::a2a_wait ? 0.0 : 5.0)
                                                 : 1.0);
    ranks.push_back(rs);
  }
  const StepAccount a = simulate_timeline(p, ranks);
  const RankAccount& fast = a.ranks[0];
  const size_t ac = size_t(Phase::attn_comm);
  EXPECT_GT(fast.wait_us[ac], 0.0);  // rank 0 waits for rank 1's attention
  // attn_comm: the exchanges (wait and transfer) and the packs (1 us each); the compute stream's
  // wait at a2a_wait is in no phase.
  double packs = 0;
  for (const Step& s : ranks[0].steps) packs += s.op == Op::pack ? 1.0 : 0.0;
  EXPECT_GT(packs, 0.0);
  EXPECT_NEAR(fast.phase_us[ac], fast.wait_us[ac] + fast.transfer_us[ac] + packs, 1e-9);
  EXPECT_NEAR(fast.compute_us + fast.wait_exposed_us + fast.transfer_exposed_us + fast.other_us,
              fast.step_us, 1e-9);
  EXPECT_EQ(a.critical, 1);
}

TEST(Timeline, MismatchedSchedulesAreRefused) {
  std::vector<RankSteps> ranks(2);
  for (int r = 0; r < 2; ++r) {
    ranks[size_t(r)].rank = r;
    ranks[size_t(r)].steps = {compute(Phase::qkv)};
    ranks[size_t(r)].step_us = {1.0};
  }
  ranks[0].steps.push_back(allreduce(Group::world, 2));
  ranks[0].step_us.push_back(1.0);
  EXPECT_THROW(simulate_timeline(tp(2), ranks), std::invalid_argument);
  EXPECT_THROW(account_measured(tp(2), ranks, {2.0, 1.0}), std::invalid_argument);
  ranks.pop_back();  // rank 1 missing
  EXPECT_THROW(simulate_timeline(tp(2), ranks), std::invalid_argument);
  // One rank alone: every collective is transfer.
  const StepAccount one = account_single(ranks[0], 3.0);
  EXPECT_DOUBLE_EQ(one.ranks[0].transfer_us[size_t(Phase::o_comm)], 1.0);
  EXPECT_DOUBLE_EQ(one.ranks[0].wait_us[size_t(Phase::o_comm)], 0.0);
  EXPECT_DOUBLE_EQ(one.ranks[0].other_us, 1.0);
}

}  // namespace
}  // namespace helix
