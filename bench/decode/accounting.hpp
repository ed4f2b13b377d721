// The accounting of a decode run's timed steps across its ranks (analytic/timeline.hpp), written
// into its record: each rank's wait for its peers and transfer per phase, the critical rank of
// every iteration and its step in four parts that add up to the step time.
#pragma once

#include <vector>

#include "bench/decode/record.hpp"
#include "layouts/schedule.hpp"

namespace helix {

// The timed steps of one run, on rank 0: the rows (layout ranks) with their schedules, and per
// iteration and row each step's duration ([iters, rows, max_steps]; entries beyond a row's
// schedule are unused).
struct TimedSteps {
  std::vector<int> row_rank;
  std::vector<std::vector<Step>> schedules;
  int max_steps = 0;
  std::vector<double> steps_us;
};

enum class Accounting {
  measured,     // every rank ran at once (real runs): the shortest-duration rule
  single_rank,  // one rank (one emulated rank of a larger layout): collectives are all transfer
  simulated,    // one GPU ran every rank in turn: the ranks' timelines simulated
};

// Fills r.accounting, wait_us, transfer_us, critical_row and breakdown_us from `t` (r.iters,
// r.ranks, r.phase_us and r.rank_step_us already set). `simulated` also replaces phase_us,
// rank_step_us, rank_exposed_us, step_us and exposed_us by the simulated timelines (collectives
// wait for the slowest member of their group; a2a_wait's measured time is replaced by the
// simulated wait for the exchanges). Throws std::invalid_argument when the schedules do not match.
void account_decode_run(const LayoutParams& layout, const TimedSteps& t, Accounting how,
                        RunRecord& r);

}  // namespace helix
