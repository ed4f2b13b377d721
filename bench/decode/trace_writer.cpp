#include "bench/decode/trace_writer.hpp"

#include <cstdio>
#include <vector>

#include "bench/commands/cli_util.hpp"
#include "bench/decode/roofline.hpp"
#include "bench/trace/h5.hpp"
#include "bench/trace/metadata.hpp"
#include "exec/executor.hpp"

namespace helix {

namespace {

void write_emulation(hid_t id, const LayerExecutorInfo& e) {
  h5::attr(id, "link_gbps", e.link_gbps);
  h5::attr(id, "link_latency_us", e.link_latency_us);
  h5::attr(id, "emulation_hardware", e.emulation_hardware);
  h5::attr(id, "emulation_hardware_kind", e.emulation_hardware_kind);
  h5::attr(id, "network_gbps", e.network_gbps);
  h5::attr(id, "network_latency_us", e.network_latency_us);
  h5::attr(id, "nvlink_domain_gpus", e.nvlink_domain_gpus);
  h5::attr(id, "emulation_measured_collectives", e.measured_collectives);
  h5::attr(id, "emulation_floor_us", e.emulation_floor_us);
}

// The accounting of the steps across the ranks (bench/decode/accounting.hpp), the rows' ranks and
// the MoE load of every row.
void write_accounting(hid_t id, const RunRecord& r) {
  const hsize_t it = hsize_t(r.iters), rk = hsize_t(r.ranks), ph = kNumPhases;
  std::vector<int64_t> rows(r.row_rank.begin(), r.row_rank.end());
  std::vector<int64_t> as(r.row_measured_as.begin(), r.row_measured_as.end());
  if (!rows.empty()) {
    h5::write(id, "rank_of_row", rows, "");
    h5::write(id, "rank_measured_as", as, "");
  }
  if (!r.routed_rows.empty()) {
    h5::write(id, "routed_rows", {rk}, r.routed_rows.data(), "assignments");
    h5::write(id, "routed_experts", {rk}, r.routed_experts.data(), "experts");
  }
  if (r.wait_us.empty()) return;
  h5::attr(id, "accounting", r.accounting);
  h5::write(id, "wait_us", {it, rk, ph}, r.wait_us.data(), "us");
  h5::write(id, "transfer_us", {it, rk, ph}, r.transfer_us.data(), "us");
  std::vector<int64_t> crit;
  for (int row : r.critical_row)
    crit.push_back(size_t(row) < r.row_rank.size() ? r.row_rank[size_t(row)] : row);
  h5::write(id, "critical_rank", crit, "");
  const hid_t bd = h5::dataset(id, "step_breakdown_us", {it, 4}, r.breakdown_us.data(), "us");
  h5::attr(bd, "columns", std::vector<std::string>{"compute", "wait", "transfer", "other"});
  H5Dclose(bd);
  h5::attr(id, "critical_rank_usual", r.usual_critical_rank());
  const char* parts[4] = {"compute", "wait", "transfer", "other"};
  for (int k = 0; k < 4; ++k)
    h5::attr(id, std::string("critical_") + parts[k] + "_us_median", r.breakdown_median(k));
}

// /decode/run_N/chunks: [iters, ranks, chunks, 4] timestamps of each chunk's attention and
// exchange, us from the start of the rank's step.
void write_chunks(hid_t run, const RunRecord& r) {
  if (r.chunks <= 0) return;
  const hid_t ds =
      h5::dataset(run, "chunks",
                  {hsize_t(r.iters), hsize_t(r.ranks), hsize_t(r.chunks), hsize_t(kChunkColumns)},
                  r.chunk_us.data(), "us");
  h5::attr(ds, "columns", chunk_column_names());
  h5::attr(ds, "origin", "start of the rank's step");
  H5Dclose(ds);
}

// Every rank against its roofline (bench/decode/roofline.hpp): per rank and phase the work, the
// roofline time and the fraction; per rank the compute step; rank 0's summary as attributes.
void write_roofline(hid_t id, const DecodeJobRecord& job, const RunRecord& r) {
  if (r.work_bytes.empty()) return;
  const Ceilings c = job.ceilings();
  const hsize_t rk = hsize_t(r.ranks), ph = kNumPhases;
  std::vector<double> roof, frac, step_roof, step_meas, step_frac;
  std::vector<RankRoofline> ranks;
  for (int k = 0; k < r.ranks; ++k) {
    ranks.push_back(rank_roofline(r, k, c));
    for (const PhaseRoofline& p : ranks.back().phase) {
      roof.push_back(p.roofline_us);
      frac.push_back(p.fraction);
    }
    step_roof.push_back(ranks.back().step_roofline_us);
    step_meas.push_back(ranks.back().step_measured_us);
    step_frac.push_back(ranks.back().step_fraction);
  }
  h5::write(id, "roofline_bytes", {rk, ph}, r.work_bytes.data(), "bytes");
  h5::write(id, "roofline_flops", {rk, ph}, r.work_flops.data(), "FLOP");
  h5::write(id, "roofline_us", {rk, ph}, roof.data(), "us");
  h5::write(id, "roofline_fraction", {rk, ph}, frac.data(), "");
  h5::write(id, "compute_us_median", {rk}, step_meas.data(), "us");
  h5::write(id, "roofline_step_us", {rk}, step_roof.data(), "us");
  h5::write(id, "roofline_step_fraction", {rk}, step_frac.data(), "");
  const RankRoofline& r0 = ranks.front();
  h5::attr(id, "roofline_step_us_rank0", r0.step_roofline_us);
  h5::attr(id, "compute_us_rank0_median", r0.step_measured_us);
  h5::attr(id, "roofline_fraction_rank0", r0.step_fraction);
  h5::attr(id, "roofline_limiter_rank0",
           r0.limiter >= 0 ? phase_name(static_cast<Phase>(r0.limiter)) : "");
  if (r.moe_touched_experts.empty()) return;
  h5::write(id, "moe_touched_experts", r.moe_touched_experts, "experts");
  h5::write(id, "moe_assignments", r.moe_assignments, "assignments");
}

void write_run(hid_t file, int index, const DecodeJobRecord& job, const RunRecord& r) {
  char name[32];
  std::snprintf(name, sizeof name, "/decode/run_%04d", index);
  h5::Group g(file, name);
  const hid_t id = g.id();
  h5::attr(id, "model", job.model);
  h5::attr(id, "layer_kind", to_string(job.layer));
  h5::attr(id, "layout", to_string(r.layout.kind));
  h5::attr(id, "n_ranks", r.layout.n);
  h5::attr(id, "kvp", r.layout.kvp);
  h5::attr(id, "tpa", r.layout.tpa);
  h5::attr(id, "tpf", r.layout.tpf);
  h5::attr(id, "ep", r.layout.ep);
  h5::attr(id, "hopb_chunks", r.layout.hopb_chunks);
  h5::attr(id, "hopb_comm_sms", r.layout.hopb_comm_sms);
  h5::attr(id, "kv_block", r.layout.kv_block);
  h5::attr(id, "batch", r.batch);
  h5::attr(id, "seq_len", r.seq);
  h5::attr(id, "backend", r.backend);
  h5::attr(id, "dtype", r.info.dtype);
  h5::attr(id, "comm_backend", r.info.comm_backend);
  h5::attr(id, "link_representative", r.info.link_representative);
  h5::attr(id, "emulated_ranks", r.info.emulated_ranks);
  h5::attr(id, "emulated_rank", r.info.emulated_rank);
  h5::attr(id, "cuda_graph", r.cuda_graph);
  if (r.info.emulated_ranks > 0) write_emulation(id, r.info);
  h5::attr(id, "status", r.status);
  h5::attr(id, "message", r.message);
  h5::attr(id, "verified", r.verified);
  h5::attr(id, "verify_ran", r.verify_ran);
  h5::attr(id, "max_rel_err", r.max_rel_err);
  h5::attr(id, "tolerance", r.tolerance);
  h5::attr(id, "decode_steps", r.decode_steps);
  h5::attr(id, "iters", r.iters);
  h5::attr(id, "warmup", r.warmup);
  h5::attr(id, "seed", int64_t(r.seed));
  h5::attr(id, "weight_bytes_per_rank", r.weight_bytes);
  h5::attr(id, "kv_bytes_per_rank", r.kv_bytes);
  h5::attr(id, "needed_bytes_per_rank", r.needed_bytes);
  h5::attr(id, "available_bytes_per_rank", r.available_bytes);
  if (!r.ok()) return;
  h5::attr(id, "step_us_median", median(r.step_us));
  h5::attr(id, "exposed_comm_us_median", median(r.exposed_us));
  h5::attr(id, "exposed_comm_definition", kExposedCommDefinition);
  // Attention bandwidth of rank 0 (KV bytes its attention reads / its attention time), and its
  // fraction of the read-only stream ceiling measured at the start of the job.
  const double attn_gbps = r.attention_gbps_rank0();
  h5::attr(id, "attention_kv_bytes_rank0", r.attn_kv_bytes);
  h5::attr(id, "attention_flops_rank0", r.attn_flops);
  h5::attr(id, "attention_us_rank0_median", r.rank0_phase_median(int(Phase::attention)));
  h5::attr(id, "attention_gbps_rank0", attn_gbps);
  h5::attr(id, "attention_fraction_of_ceiling",
           job.stream.gbps > 0 ? attn_gbps / job.stream.gbps : 0.0);
  const hsize_t it = hsize_t(r.iters), rk = hsize_t(r.ranks), ph = kNumPhases;
  const hid_t ds = h5::dataset(id, "phase_us", {it, rk, ph}, r.phase_us.data(), "us");
  h5::attr(ds, "phases", phase_names());
  std::vector<int64_t> comm;
  for (int p = 0; p < kNumPhases; ++p) comm.push_back(phase_is_comm(static_cast<Phase>(p)));
  h5::attr(ds, "phase_is_comm", comm);
  std::vector<int64_t> modeled(r.info.phase_modeled.begin(), r.info.phase_modeled.end());
  h5::attr(ds, "modeled", modeled);
  H5Dclose(ds);
  h5::write(id, "step_us", {it}, r.step_us.data(), "us");
  h5::write(id, "exposed_comm_us", {it}, r.exposed_us.data(), "us");
  h5::write(id, "rank_step_us", {it, rk}, r.rank_step_us.data(), "us");
  h5::write(id, "rank_exposed_comm_us", {it, rk}, r.rank_exposed_us.data(), "us");
  h5::attr(id, "comm_dtype", r.comm_dtype);
  h5::attr(id, "test_slow_phase", job.test_slow_phase);
  write_accounting(id, r);
  write_chunks(id, r);
  write_roofline(id, job, r);
  if (r.has_gpu_telemetry) write_gpu_telemetry(id, r.gpu);
  if (!r.verify_ran) return;
  h5::write(id, "step_rel_err", {hsize_t(r.step_rel_err.size())}, r.step_rel_err.data(), "");
  h5::attr(id, "routing_flips", r.routing_flips);
  h5::attr(id, "routing_flips_rejected", r.routing_flips_rejected);
  h5::attr(id, "routing_consistent", r.routing_consistent);
  if (job.layer != LayerKind::moe) return;
  h5::attr(id, "max_rel_err_own_routing", r.max_rel_err_own_routing);
  h5::write(id, "step_rel_err_own_routing", {hsize_t(r.step_rel_err_own_routing.size())},
            r.step_rel_err_own_routing.data(), "");
  // One row per expert an executor chose that the reference did not.
  std::vector<double> rows;
  for (const RoutingFlip& f : r.flips)
    rows.insert(rows.end(),
                {double(f.step), double(f.token), double(f.executor_expert),
                 double(f.reference_expert), f.logit_gap, f.bound, f.accepted ? 1.0 : 0.0});
  const hid_t fd = h5::dataset(id, "routing_flips", {hsize_t(r.flips.size()), 7}, rows.data(), "");
  h5::attr(fd, "columns",
           std::vector<std::string>{"step", "token", "executor_expert", "reference_expert",
                                    "logit_gap", "bound", "accepted"});
  H5Dclose(fd);
}

}  // namespace

void write_decode_trace(const std::string& path, const DecodeJobRecord& job) {
  h5::File file(path);
  write_root_attributes(file.id(), job.environment, "decode");
  {
    h5::Group g(file.id(), "/decode");
    h5::attr(g.id(), "model", job.model);
    h5::attr(g.id(), "model_source", job.model_source);
    h5::attr(g.id(), "layer_kind", to_string(job.layer));
    h5::attr(g.id(), "phases", phase_names());
    h5::attr(g.id(), "stream_gbps", job.stream.gbps);
    h5::attr(g.id(), "stream_bytes", job.stream.bytes);
    h5::attr(g.id(), "gemm_tflops", job.gemm.tflops);
    h5::attr(g.id(), "gemm_ceiling", job.gemm.what);
    h5::attr(g.id(), "weight_elem_bytes", job.elem.weight);
    h5::attr(g.id(), "kv_elem_bytes", job.elem.kv);
    h5::attr(g.id(), "act_elem_bytes", job.elem.act);
  }
  for (size_t i = 0; i < job.runs.size(); ++i) write_run(file.id(), int(i), job, job.runs[i]);
  file.commit();
}

}  // namespace helix
