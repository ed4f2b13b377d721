// One decode step across the ranks of a layout: where each rank waits for its peers, how long each
// collective's transfer takes, which rank is critical, and the critical step in parts that add up
// to its time. Two entry points over the same accounting:
//
//   account_measured   real runs: every rank's steps as timed on its own clock. A collective
//                      completes at (nearly) the same moment on every member of its group, so the
//                      member that arrives last waits for no one: its duration is the transfer.
//                      transfer = the shortest duration among the members; wait = a member's own
//                      duration - transfer. No synchronized clocks are needed. The error is the
//                      spread of the members' completion times (a ring or tree finishes on its
//                      members within about one hop of each other, a few us on NVLink): the
//                      transfer is overestimated and each wait misread by at most that spread.
//   simulate_timeline  emulation of every rank on one GPU, and the cost model: each rank's compute
//                      steps take their (measured or priced) time on its own timeline and each
//                      collective its transfer alone; a collective completes on every member at
//                      max over members of (arrival + transfer), so a rank that arrives early
//                      waits for the last one. Waits and transfers are then read off with the same
//                      rule as account_measured.
//
// Streams: HOP-B's a2a_start runs on a communication stream (it arrives when both its chunk's
// attention and the previous chunk's exchange are done) while later compute proceeds; a2a_wait is
// the compute stream waiting for that stream. The exchanges' durations count in attn_comm (with
// their wait and transfer), as do the packs of their rows (compute on the compute stream, neither
// wait nor transfer): attn_comm >= its wait + transfer. The a2a_wait's time is in no phase (as the
// executors time it: it is exposed communication, executor.hpp).
//
// The breakdown of a rank's step: compute (its compute phases) + wait + transfer (of its blocking
// collectives, and the a2a_wait time split in the proportion of its exchanges' wait and transfer)
// + other (the rest: the packs, launch gaps and host work between steps; step minus the three)
// = step_us.
// wait + transfer + other = step - compute = the exposed communication (executor.hpp).
#pragma once

#include <array>
#include <vector>

#include "layouts/layout.hpp"
#include "layouts/schedule.hpp"

namespace helix {

// One rank's steps of one decode step and the duration of each.
struct RankSteps {
  int rank = 0;  // layout rank
  std::vector<Step> steps;
  std::vector<double> step_us;  // per step (account_measured: as timed; simulate: see above)
};

struct RankAccount {
  double step_us = 0;  // the rank's step: measured wall time, or simulated end of both streams
  std::array<double, kNumPhases> phase_us{}, wait_us{}, transfer_us{};
  // The step in parts: compute + wait + transfer + other = step_us.
  double compute_us = 0, wait_exposed_us = 0, transfer_exposed_us = 0, other_us = 0;
};

// The critical rank: among the ranks whose step is within max(1 us, 1%) of the longest (ranks that
// leave a last collective together end together), the one that waited least for its peers: the
// rank the others waited for (the first on ties).
struct StepAccount {
  std::vector<RankAccount> ranks;  // in the order given
  int critical = 0;                // index into ranks
  double step_us = 0;              // the longest step (the step of the layer)
  // The critical rank's step in parts that add up to step_us: its compute, wait and transfer, and
  // other = step_us - the three (its own gaps, and its distance to the longest step).
  double compute_us = 0, wait_us = 0, transfer_us = 0, other_us = 0;
};

// Real runs. `ranks` holds every rank of `layout` (any order); rank_step_us each one's measured
// step. Throws std::invalid_argument when a group's members are missing or their schedules do not
// hold the same collectives in the same order.
StepAccount account_measured(const LayoutParams& layout, const std::vector<RankSteps>& ranks,
                             const std::vector<double>& rank_step_us);

// One rank alone (one emulated rank): every collective's duration is its transfer.
StepAccount account_single(const RankSteps& rank, double rank_step_us);

// Emulation and the cost model: compute steps take step_us, collectives step_us of transfer, and
// an a2a_wait its step_us after the exchanges are done. Same requirements as account_measured.
StepAccount simulate_timeline(const LayoutParams& layout, const std::vector<RankSteps>& ranks);

// Index of the critical rank of `ranks` (see StepAccount); -1 when empty.
int critical_index(const std::vector<RankAccount>& ranks);

}  // namespace helix
