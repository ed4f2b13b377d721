// The cost model: prices the schedules the executors run (layouts/schedule.hpp), step by step,
// from a hardware profile. A compute step takes the longer of its memory time (bytes moved over
// the achievable memory bandwidth) and its math time (FLOPs over the dtype's dense rate times the
// GEMM efficiency at its row count), plus the profile's fixed cost of each launch the CUDA executor
// issues for it (measured profiles; 0 in datasheet profiles); a decode attention step takes the
// time the profile's measured attention efficiency gives its KV bytes when the profile has it. A
// collective takes latency + bytes x algorithm factor / bus bandwidth, inside the NVLink domain or
// over the slower network when its group leaves the domain (a measured curve, or measured latency
// and bus bandwidth, of the nearest group size replace the formula where the profile has them).
// HOP-B is priced as the pipeline the executors run: per chunk its attention (MLA: and W_uv, whose
// weights only the first chunk reads from memory) and the pack of its rows on the compute stream,
// then its All-to-All on a communication stream while the next chunk computes; the combine and
// everything after it once. The chunked attention's arithmetic runs on the SMs it leaves to the
// exchanges (Step::reserved_sms, when the profile gives its SM count).
#pragma once

#include <array>
#include <vector>

#include "analytic/hardware.hpp"
#include "analytic/timeline.hpp"
#include "layouts/model_spec.hpp"
#include "layouts/schedule.hpp"

namespace helix {

struct CostOptions {
  DType dtype = DType::fp4;  // weights, KV cache and GEMM / attention arithmetic
  double act_bytes = 2.0;    // activations and communicated tensors (BF16)
  // Bytes per element the collectives move, when it differs from act_bytes (0: act_bytes). The
  // executors' collectives move fp32 (4): --validate prices a trace's collectives at the width
  // the trace names (comm_dtype).
  double comm_bytes = 0.0;
};

class CostModel {
 public:
  CostModel(const HardwareProfile& hw, const CostOptions& opt);
  const HardwareProfile& hardware() const { return hw_; }
  const CostOptions& options() const { return opt_; }

  // One compute step (no collective).
  double compute_us(const Step& s) const;
  // One collective of `bytes` (the nccl-tests size S) over `group_size` ranks; `network`: the
  // group leaves the NVLink domain. The one pricing function of collectives: the cost model's
  // schedules, the emulated communicator and the serving models all call it.
  double collective_us(Collective c, int group_size, double bytes, bool network) const;
  // Any step; `network` applies to collectives.
  double step_us(const Step& s, bool network) const;

 private:
  const CollectiveMeasurement* measured(Collective c, int group_size, bool network) const;
  // Fixed cost of the launches of a step.
  double launch_us(const Work& w) const;
  HardwareProfile hw_;
  CostOptions opt_;
  double mem_bw_bytes_per_us_ = 0, flops_per_us_ = 0;
};

// A cost model for pricing collectives (the emulated communicator): a compute dtype the profile
// rates (bf16 when it does, else its first), which collective_us does not use.
CostModel collective_pricing(const HardwareProfile& hw);

// Start-to-end time of one rank's schedule given each step's duration: steps run in order, except
// HOP-B's a2a_start, which runs on a communication stream (starting when both its chunk's pack
// and the previous chunk's All-to-All are done) while later compute proceeds; a2a_wait waits for
// that stream (its duration is 0 in the priced schedules, and the executors time no phase for it).
// Phase times are summed per phase (overlapped phases add up to more than the total, as in a
// trace).
struct ScheduleTime {
  double total_us = 0;
  std::array<double, kNumPhases> phase_us{};
};
ScheduleTime schedule_time(const std::vector<Step>& steps, const std::vector<double>& step_us);

// Which of a rank's communicator groups leave the NVLink domain (ranks placed on consecutive GPUs,
// domains of `domain_gpus`), indexed by Group.
std::array<bool, kNumGroups> groups_leaving_domain(const LayoutParams& layout, int rank,
                                                   int domain_gpus);

// Prices a schedule with the groups of `crosses` (from groups_leaving_domain).
ScheduleTime price_schedule(const CostModel& cm, const std::vector<Step>& steps,
                            const std::array<bool, kNumGroups>& crosses);

// Every rank of a layout priced and put on one timeline (analytic/timeline.hpp), so that a rank
// waits at each collective for the slowest member of its group. `loads`: the routed-expert load of
// each layout rank (MoE layers; empty: the expected load of uniform routing).
StepAccount price_layout(const CostModel& cm, const ModelSpec& m, LayerKind layer,
                         const LayoutParams& layout, int batch, int64_t seq_len,
                         const std::vector<ExpertLoad>& loads);

// Weights one rank holds for one layer, in elements (capacity check).
double held_weight_elems(const ModelSpec& m, const RankShard& r);
// KV cache one rank holds for one request and one layer at `seq_len` cached tokens, in elements.
double held_kv_elems(const ModelSpec& m, const RankShard& r, int64_t seq_len);

}  // namespace helix
