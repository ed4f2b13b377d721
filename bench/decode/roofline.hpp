// The roofline of a decode step on each rank: per phase, the bytes and FLOPs that phase's compute
// steps must move on that rank (the schedule's Work: weight, KV and activation elements at the
// executor's element sizes, and FLOPs; for a MoE FFN only the held experts that received tokens in
// the timed step, from the executor's routing), priced against the ceilings measured in the same
// job: roofline_us = max(bytes / stream bandwidth, FLOPs / dense GEMM rate). The step's roofline
// is the sum over its compute phases; the fraction is roofline_us / measured_us (1 = at the
// roofline). Communication phases have no roofline here (their limit is a link, priced by the
// cost model).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

#include "layouts/model_spec.hpp"
#include "layouts/rank_shard.hpp"
#include "layouts/schedule.hpp"

namespace helix {

struct RunRecord;

// Bytes per element of each kind of Work (DecodeBackend::*_elem_bytes).
struct ElemBytes {
  int weight = 4, kv = 4, act = 4;
};

// The ceilings measured in the job (0: not measured; that term is left out).
struct Ceilings {
  double stream_gbps = 0;  // decimal GB/s
  double gemm_tflops = 0;  // 10^12 FLOP/s
};

// What a rank's router did in one step: held experts that received at least one token, and the
// (token, held expert) assignments.
struct MoeActivity {
  int64_t touched = 0, assignments = 0;
};
// From the [batch, top_k] expert ids an executor chose (n = batch x top_k entries).
MoeActivity moe_activity(const RankShard& shard, const int32_t* experts, int64_t n);

// Per phase, what the schedule's compute steps move (bytes) and compute (FLOPs); communication
// phases stay 0. moe: the actual routing of a MoE FFN (null: the schedule's expected counts).
struct PhaseWork {
  std::array<double, kNumPhases> bytes{}, flops{};
};
PhaseWork phase_work(const ModelSpec& model, const RankShard& shard, const Schedule& schedule,
                     const ElemBytes& elem, const MoeActivity* moe);

// max(bytes / stream, FLOPs / GEMM rate) in microseconds; a term whose ceiling is 0 is left out,
// NaN when neither ceiling was measured.
double roofline_us(double bytes, double flops, const Ceilings& c);

// One rank of a run against its roofline. Phases: measured = the median over iterations of the
// rank's time in the phase; fraction = roofline / measured (NaN for communication phases and
// where nothing was measured). Step: the compute phases only (measured = the median over
// iterations of their sum). The limiter is the compute phase with the most time above its
// roofline (-1 when none).
struct PhaseRoofline {
  double bytes = 0, flops = 0;
  double roofline_us = NAN, measured_us = 0, fraction = NAN;
  bool compute_bound = false;  // FLOPs / GEMM rate > 0 and >= bytes / stream
};
struct RankRoofline {
  std::array<PhaseRoofline, kNumPhases> phase;
  double step_roofline_us = 0, step_measured_us = 0, step_fraction = NAN;
  int limiter = -1;
};
RankRoofline rank_roofline(const RunRecord& run, int rank, const Ceilings& c);

}  // namespace helix
