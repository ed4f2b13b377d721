// What one `helix-bench decode` job measured, self-contained: the job (model, layer, ceiling,
// environment) and one record per run (its layout, batch and sequence length, how it ran, its
// verification and every per-rank, per-phase timing). The table printer and the trace writer read
// only these records.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/decode/roofline.hpp"
#include "bench/trace/gpu_telemetry.hpp"
#include "bench/trace/metadata.hpp"
#include "exec/decode_backend.hpp"
#include "exec/reference.hpp"
#include "layouts/layout.hpp"

namespace helix {

struct RunRecord {
  // The run.
  LayoutParams layout;
  int batch = 1;
  int64_t seq = 1;
  // How it ran.
  std::string backend;  // cpu | cuda
  LayerExecutorInfo info;
  int iters = 0, warmup = 0, decode_steps = 0;
  bool cuda_graph = false;  // every rank replayed its steps as CUDA graphs (--cuda-graph)
  uint64_t seed = 0;
  double tolerance = 0;
  // Outcome.
  std::string status = "ok";  // ok | refused | profiled (--profile-once: nothing measured)
  std::string message;
  bool verified = false;
  bool verify_ran = false;
  double max_rel_err = NAN;
  std::vector<double> step_rel_err;  // [decode_steps]
  // MoE layers: the error against the reference's own routing (differs from step_rel_err only at
  // steps with routing flips), the flips, and whether every rank running a router agreed.
  std::vector<double> step_rel_err_own_routing;  // [decode_steps]
  double max_rel_err_own_routing = NAN;
  std::vector<RoutingFlip> flips;
  int routing_flips = 0, routing_flips_rejected = 0;
  bool routing_consistent = true;
  int ranks = 0;                        // ranks timed (rows of the per-rank arrays)
  std::vector<double> phase_us;         // [iters, ranks, phases]
  std::vector<double> rank_step_us;     // [iters, ranks]
  std::vector<double> rank_exposed_us;  // [iters, ranks]
  std::vector<double> step_us;          // [iters] max over ranks
  std::vector<double> exposed_us;       // [iters] max over ranks
  // Accounting of every step across the ranks (analytic/timeline.hpp, bench/decode/accounting.hpp):
  // how it was made ("min_duration_rule" on real runs, "simulated" when one GPU emulated every
  // rank, "single_rank" for one rank), each rank's wait for its peers and transfer per phase, the
  // critical rank of each iteration and its step in four parts (compute, wait, transfer, other).
  std::string accounting;
  std::vector<double> wait_us, transfer_us;  // [iters, ranks, phases]
  std::vector<int> critical_row;             // [iters] row of the critical rank
  std::vector<double> breakdown_us;          // [iters, 4]
  // Layout rank of each row of the per-rank arrays, and the rank whose compute was run for it
  // (they differ only when one GPU emulated every rank and ranks with the same work shared a run).
  std::vector<int> row_rank, row_measured_as;
  // MoE layers: each row's routed load in the timed steps ((token, expert) assignments to its
  // experts, experts with at least one token); empty for dense layers.
  std::vector<double> routed_rows, routed_experts;
  std::string comm_dtype = "fp32";  // the precision the executors send (every buffer is fp32)
  // Per-chunk timestamps of the partials exchange (exec/executor.hpp, ChunkColumn), us from the
  // start of each rank's step: [iters, ranks, chunks, kChunkColumns]; chunks = 0 (tp): none.
  int chunks = 0;
  std::vector<double> chunk_us;
  int64_t weight_bytes = 0, kv_bytes = 0, needed_bytes = 0, available_bytes = 0;
  double attn_kv_bytes = 0;        // KV bytes rank 0's attention reads per step
  double attn_flops = 0;           // FLOPs of rank 0's attention per step
  bool has_gpu_telemetry = false;  // cuda backend: clocks, power, throttling before and after
  GpuTelemetry gpu;
  // The roofline's work (bench/decode/roofline.hpp), per rank and phase ([ranks, phases]): bytes
  // and FLOPs of the compute steps; MoE layers: per rank, the held experts that received tokens
  // in the timed step and their (token, expert) assignments (-1: the rank ran no router).
  std::vector<double> work_bytes, work_flops;
  std::vector<int64_t> moe_touched_experts, moe_assignments;

  bool ok() const { return status == "ok"; }
  // Median over iterations of the max over ranks of one phase, and of rank 0's time in it.
  double phase_median(int phase) const;
  // Median over iterations of the critical rank's time in one phase (of `what`: phase_us,
  // wait_us or transfer_us), and of one part of the breakdown (0 compute, 1 wait, 2 transfer,
  // 3 other); the critical rank of most iterations.
  double critical_median(const std::vector<double>& what, int phase) const;
  double breakdown_median(int part) const;
  int usual_critical_rank() const;
  double rank0_phase_median(int phase) const;
  // Rank 0's attention bandwidth (KV bytes read / attention time), decimal GB/s.
  double attention_gbps_rank0() const;
  // Median over iterations of one rank's time in a phase, and in its compute phases together.
  double rank_phase_median(int rank, int phase) const;
  double rank_compute_median(int rank) const;
};

struct DecodeJobRecord {
  RunEnvironment environment;  // the root attributes: versions, command line, hosts, devices
  std::string model, model_source;
  LayerKind layer = LayerKind::dense;
  int layout_ranks = 1;
  std::string backend_description;
  ReadCeiling stream;           // measured in the same job
  GemmCeiling gemm;             // measured in the same job
  ElemBytes elem;               // the element sizes the roofline prices the work at
  std::string test_slow_phase;  // HELIX_TEST_SLOW_PHASE when set (exec/slow_phase.hpp)
  std::vector<RunRecord> runs;
  Ceilings ceilings() const { return {stream.gbps, gemm.tflops}; }
};

}  // namespace helix
