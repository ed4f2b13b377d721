#include "bench/decode/record.hpp"

#include <algorithm>

#include "bench/commands/cli_util.hpp"

namespace helix {

double RunRecord::phase_median(int phase) const {
  std::vector<double> v(static_cast<size_t>(iters));
  for (int i = 0; i < iters; ++i) {
    double mx = 0;
    for (int k = 0; k < ranks; ++k)
      mx = std::max(mx, phase_us[size_t((i * ranks + k) * kNumPhases + phase)]);
    v[size_t(i)] = mx;
  }
  return median(v);
}

double RunRecord::critical_median(const std::vector<double>& what, int phase) const {
  if (critical_row.size() != size_t(iters) || what.size() != phase_us.size()) return NAN;
  std::vector<double> v(static_cast<size_t>(iters));
  for (int i = 0; i < iters; ++i)
    v[size_t(i)] = what[size_t((i * ranks + critical_row[size_t(i)]) * kNumPhases + phase)];
  return median(v);
}

double RunRecord::breakdown_median(int part) const {
  if (breakdown_us.size() != size_t(iters) * 4) return NAN;
  std::vector<double> v(static_cast<size_t>(iters));
  for (int i = 0; i < iters; ++i) v[size_t(i)] = breakdown_us[size_t(i * 4 + part)];
  return median(v);
}

int RunRecord::usual_critical_rank() const {
  std::vector<int> count(size_t(std::max(ranks, 1)), 0);
  for (int c : critical_row)
    if (c >= 0 && c < ranks) ++count[size_t(c)];
  const int row = int(std::max_element(count.begin(), count.end()) - count.begin());
  return size_t(row) < row_rank.size() ? row_rank[size_t(row)] : row;
}

double RunRecord::rank0_phase_median(int phase) const {
  return rank_phase_median(0, phase);
}

double RunRecord::rank_phase_median(int rank, int phase) const {
  std::vector<double> v(static_cast<size_t>(iters));
  for (int i = 0; i < iters; ++i)
    v[size_t(i)] = phase_us[size_t((i * ranks + rank) * kNumPhases + phase)];
  return median(v);
}

double RunRecord::rank_compute_median(int rank) const {
  std::vector<double> v(static_cast<size_t>(iters), 0.0);
  for (int i = 0; i < iters; ++i)
    for (int p = 0; p < kNumPhases; ++p)
      if (!phase_is_comm(static_cast<Phase>(p)))
        v[size_t(i)] += phase_us[size_t((i * ranks + rank) * kNumPhases + p)];
  return median(v);
}

double RunRecord::attention_gbps_rank0() const {
  const double us = rank0_phase_median(static_cast<int>(Phase::attention));
  return us > 0 ? attn_kv_bytes / (us * 1e3) : 0.0;
}

}  // namespace helix
