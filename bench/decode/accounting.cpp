#include "bench/decode/accounting.hpp"

#include <algorithm>
#include <stdexcept>

#include "analytic/timeline.hpp"
#include "exec/executor.hpp"

namespace helix {

void account_decode_run(const LayoutParams& layout, const TimedSteps& t, Accounting how,
                        RunRecord& r) {
  const size_t rows = t.row_rank.size(), P = kNumPhases, S = size_t(t.max_steps);
  if (rows != size_t(r.ranks) || t.schedules.size() != rows ||
      t.steps_us.size() != size_t(r.iters) * rows * S)
    throw std::invalid_argument("accounting: timed steps do not match the record");
  r.accounting = how == Accounting::measured      ? "min_duration_rule"
                 : how == Accounting::single_rank ? "single_rank"
                                                  : "simulated";
  r.wait_us.assign(size_t(r.iters) * rows * P, 0.0);
  r.transfer_us.assign(r.wait_us.size(), 0.0);
  r.critical_row.assign(size_t(r.iters), 0);
  r.breakdown_us.assign(size_t(r.iters) * 4, 0.0);
  if (how == Accounting::simulated) {
    r.step_us.assign(size_t(r.iters), 0.0);
    r.exposed_us.assign(size_t(r.iters), 0.0);
  }
  for (size_t i = 0; i < size_t(r.iters); ++i) {
    std::vector<RankSteps> ranks(rows);
    std::vector<double> rank_step(rows);
    for (size_t k = 0; k < rows; ++k) {
      RankSteps& rs = ranks[k];
      rs.rank = t.row_rank[k];
      rs.steps = t.schedules[k];
      const double* d = &t.steps_us[(i * rows + k) * S];
      rs.step_us.assign(d, d + rs.steps.size());
      if (how == Accounting::simulated)  // the join is simulated, not measured
        for (size_t j = 0; j < rs.steps.size(); ++j)
          if (rs.steps[j].op == Op::a2a_wait) rs.step_us[j] = 0;
      rank_step[k] = r.rank_step_us[i * rows + k];
    }
    const StepAccount acc = how == Accounting::measured ? account_measured(layout, ranks, rank_step)
                            : how == Accounting::single_rank
                                ? account_single(ranks[0], rank_step[0])
                                : simulate_timeline(layout, ranks);
    for (size_t k = 0; k < rows; ++k) {
      const RankAccount& a = acc.ranks[k];
      for (size_t p = 0; p < P; ++p) {
        r.wait_us[(i * rows + k) * P + p] = a.wait_us[p];
        r.transfer_us[(i * rows + k) * P + p] = a.transfer_us[p];
        if (how == Accounting::simulated) r.phase_us[(i * rows + k) * P + p] = a.phase_us[p];
      }
      if (how == Accounting::simulated) {
        r.rank_step_us[i * rows + k] = a.step_us;
        r.rank_exposed_us[i * rows + k] = exposed_comm_us(a.phase_us, a.step_us);
        r.step_us[i] = std::max(r.step_us[i], a.step_us);
        r.exposed_us[i] = std::max(r.exposed_us[i], r.rank_exposed_us[i * rows + k]);
      }
    }
    r.critical_row[i] = acc.critical;
    r.breakdown_us[i * 4 + 0] = acc.compute_us;
    r.breakdown_us[i * 4 + 1] = acc.wait_us;
    r.breakdown_us[i * 4 + 2] = acc.transfer_us;
    r.breakdown_us[i * 4 + 3] = acc.other_us;
  }
}

}  // namespace helix
