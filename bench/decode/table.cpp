#include "bench/decode/table.hpp"

#include <cstdio>
#include <string>
#include <vector>

#include "bench/commands/cli_util.hpp"
#include "bench/decode/roofline.hpp"

namespace helix {

namespace {

void print_header() {
  std::printf("%-11s %3s %7s %6s %4s %8s %10s %4s |", "layout", "N", "KVPxTPA", "TPFxEP", "B", "S",
              "step_us", "crit");
  const char* short_names[kNumPhases] = {"qkv",    "kv_app", "attn", "a_comm", "combine",
                                         "o_proj", "o_comm", "ffn",  "f_comm", "out_comm"};
  for (const char* n : short_names) std::printf(" %8s", n);
  std::printf(" | %8s %8s %8s %8s | %10s  %s\n", "compute", "wait", "transfer", "other",
              "exposed_us", "verified (max rel err)");
}

void print_row(const RunRecord& r) {
  std::printf("%-11s %3d %7s %6s %4d %8lld ", to_string(r.layout.kind), r.layout.n,
              attn_shape(r.layout).c_str(), ffn_shape(r.layout).c_str(), r.batch,
              static_cast<long long>(r.seq));
  if (!r.ok()) {
    std::printf("%10s %4s | refused: %s\n", "-", "-", r.message.c_str());
    return;
  }
  // The critical rank's phases and its step in parts (they add up to the step); without the
  // accounting, the max of each phase over ranks.
  const bool crit = !r.critical_row.empty();
  std::printf("%10.1f %4s |", median(r.step_us),
              crit ? std::to_string(r.usual_critical_rank()).c_str() : "-");
  for (int p = 0; p < kNumPhases; ++p)
    std::printf(" %8.1f", crit ? r.critical_median(r.phase_us, p) : r.phase_median(p));
  std::printf(" |");
  for (int k = 0; k < 4; ++k) std::printf(" %8.1f", crit ? r.breakdown_median(k) : 0.0);
  std::printf(" | %10.1f  ", median(r.exposed_us));
  if (!r.verify_ran) {
    std::printf("skipped\n");
    return;
  }
  std::printf("%s (%.1e)", r.verified ? "yes" : "NO", r.max_rel_err);
  if (r.routing_flips > 0)
    std::printf(", %d routing flip%s within bf16 rounding", r.routing_flips,
                r.routing_flips == 1 ? "" : "s");
  if (r.routing_flips_rejected > 0)
    std::printf(", %d routing flip%s NOT explained by rounding", r.routing_flips_rejected,
                r.routing_flips_rejected == 1 ? "" : "s");
  if (!r.routing_consistent) std::printf(", ranks disagree on routing");
  std::printf("\n");
}

// Rank 0 of every run against its roofline: three rows per run (rank 0's measured medians, the
// roofline, the fraction) over the compute phases and their sum.
void print_roofline(const DecodeJobRecord& job) {
  const Ceilings c = job.ceilings();
  if (!(c.stream_gbps > 0) && !(c.gemm_tflops > 0)) return;
  std::printf(
      "\nroofline of rank 0: roofline_us = max(bytes / %.0f GB/s, FLOPs / %.3g TFLOP/s), the "
      "ceilings measured in this job; fraction = roofline_us / measured_us (rank 0's medians); * "
      "compute-bound\n",
      c.stream_gbps, c.gemm_tflops);
  std::printf("%-11s %3s %4s %8s %-12s |", "layout", "N", "B", "S", "");
  std::vector<int> compute;
  for (int p = 0; p < kNumPhases; ++p)
    if (!phase_is_comm(static_cast<Phase>(p))) compute.push_back(p);
  for (int p : compute) std::printf(" %9s ", phase_name(static_cast<Phase>(p)));
  std::printf("| %9s   %s\n", "compute", "limiter (us above roofline)");
  for (const RunRecord& r : job.runs) {
    if (!r.ok() || r.work_bytes.empty()) continue;
    const RankRoofline rr = rank_roofline(r, 0, c);
    for (int row = 0; row < 3; ++row) {
      if (row == 0)
        std::printf("%-11s %3d %4d %8lld ", to_string(r.layout.kind), r.layout.n, r.batch,
                    static_cast<long long>(r.seq));
      else
        std::printf("%-11s %3s %4s %8s ", "", "", "", "");
      std::printf("%-12s |", row == 0 ? "measured_us" : row == 1 ? "roofline_us" : "fraction");
      for (int p : compute) {
        const PhaseRoofline& ph = rr.phase[size_t(p)];
        if (row == 0) std::printf(" %9.1f ", ph.measured_us);
        if (row == 1) std::printf(" %9.1f%c", ph.roofline_us, ph.compute_bound ? '*' : ' ');
        if (row == 2) std::printf(" %9.2f ", ph.fraction);
      }
      if (row == 0) std::printf("| %9.1f\n", rr.step_measured_us);
      if (row == 1) std::printf("| %9.1f\n", rr.step_roofline_us);
      if (row == 2) {
        std::printf("| %9.2f", rr.step_fraction);
        if (rr.limiter >= 0) {
          const PhaseRoofline& lim = rr.phase[size_t(rr.limiter)];
          std::printf("  %s (+%.1f)", phase_name(static_cast<Phase>(rr.limiter)),
                      lim.measured_us - lim.roofline_us);
        }
        std::printf("\n");
      }
    }
  }
}

}  // namespace

void print_decode_table(const DecodeJobRecord& job) {
  const int iters = job.runs.empty() ? 0 : job.runs.front().iters;
  int graphs = 0;
  for (const RunRecord& r : job.runs) graphs += r.cuda_graph ? 1 : 0;
  std::printf(
      "\nmodel %s, %s layer; medians over %d iterations, in us: step = max over ranks; crit = "
      "the critical rank (the slowest, of most iterations); phases and compute + wait + transfer "
      "+ other = step, of the critical rank of each iteration%s\n",
      job.model.c_str(), to_string(job.layer), iters,
      graphs == 0 ? ""
      : graphs == int(job.runs.size())
          ? "; steps replayed as CUDA graphs"
          : "; some runs replayed as CUDA graphs (run attribute cuda_graph)");
  print_header();
  for (const RunRecord& r : job.runs) print_row(r);
  print_roofline(job);
  if (job.stream.gbps <= 0) return;
  std::printf(
      "\nattention of rank 0: KV bytes read / attention time, against the read-only stream "
      "ceiling of %.0f GB/s\n",
      job.stream.gbps);
  std::printf("%-11s %3s %4s %8s %12s %10s %9s %9s\n", "layout", "N", "B", "S", "kv_MiB", "attn_us",
              "GB/s", "fraction");
  for (const RunRecord& r : job.runs) {
    if (!r.ok()) continue;
    const double us = r.rank0_phase_median(static_cast<int>(Phase::attention));
    const double gbps = r.attention_gbps_rank0();
    std::printf("%-11s %3d %4d %8lld %12.1f %10.1f %9.0f %9.2f\n", to_string(r.layout.kind),
                r.layout.n, r.batch, static_cast<long long>(r.seq),
                r.attn_kv_bytes / double(1 << 20), us, gbps, gbps / job.stream.gbps);
  }
}

}  // namespace helix
