// Decode traces read as input (`helix-bench model --validate`): every run's layout, sizes and
// timings, checked as they are read. A file that is not an HDF5 decode trace, or that has a
// missing, mistyped, out-of-range or inconsistent piece, is bad input: UsageError naming the
// option, the file and the object, never an abort.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "layouts/layout.hpp"

namespace helix {

struct TraceRun {
  std::string name;    // e.g. "run_0003"
  std::string status;  // "ok" or "refused"; the fields below are read for "ok" runs only
  std::string model, layer_kind, layout, dtype;
  int64_t n_ranks = 0, kvp = 0, tpa = 0, tpf = 0, ep = 0, hopb_chunks = 0, kv_block = 0;
  int64_t hopb_comm_sms = 0;  // 0 in traces written before the attribute existed
  int64_t batch = 0, seq_len = 0;
  int64_t iters = 0, ranks = 0;
  std::vector<double> phase_us;  // [iters, ranks, kNumPhases], finite and >= 0
  std::vector<double> step_us;   // [iters], finite and >= 0
  // Optional pieces (empty or defaults in traces written before they existed); each checked
  // against the shapes above, ranks within [0, n_ranks).
  std::string comm_dtype = "fp32";  // precision of the exchanged data
  int64_t seed = 0;
  int64_t emulated_ranks = 0, emulated_rank = 0;
  std::vector<double> rank_of_row;        // [ranks]: the rank each row of phase_us measured
  std::vector<double> critical_rank;      // [iters]
  std::vector<double> rank_step_us;       // [iters, ranks]
  std::vector<double> routed_rows;        // [ranks]
  std::vector<double> routed_experts;     // [ranks]
  std::vector<double> step_breakdown_us;  // [iters, 4]: compute, wait, transfer, other
};

// The layout a run ran: its kind (nullopt for an unknown name) and widths from its attributes.
std::optional<LayoutParams> layout_of(const TraceRun& run);

// Reads every /decode/run_* group of the trace at `path`. Throws UsageError("<option>: ...").
std::vector<TraceRun> read_decode_trace(const std::string& path, const std::string& option);
// The same from an open file (`path` names it in messages).
std::vector<TraceRun> read_decode_trace(hid_t file, const std::string& path,
                                        const std::string& option);

}  // namespace helix
