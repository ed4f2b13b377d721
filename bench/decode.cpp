#include "bench/decode.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>

#include "bench/cli_util.hpp"
#include "bench/decode_backend.hpp"
#include "bench/gpu_telemetry.hpp"
#include "bench/h5.hpp"
#include "bench/layer_data.hpp"
#include "bench/metadata.hpp"
#include "bench/nvtx_range.hpp"
#include "bench/reference.hpp"
#include "comm/error.hpp"
#include "layouts/layout.hpp"
#include "layouts/schedule.hpp"

namespace helix {

namespace {

constexpr double kCpuTolerance = 1e-5;  // fp32 executor vs fp64 reference

struct RunSpec {
  LayoutParams layout;
  int batch = 1;
  int64_t seq = 1;
};

struct RunResult {
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
  int iters = 0, ranks = 0;
  std::vector<double> phase_us;         // [iters, ranks, phases]
  std::vector<double> rank_step_us;     // [iters, ranks]
  std::vector<double> rank_exposed_us;  // [iters, ranks]
  std::vector<double> step_us;          // [iters] max over ranks
  std::vector<double> exposed_us;       // [iters] max over ranks
  int64_t weight_bytes = 0, kv_bytes = 0, needed_bytes = 0, available_bytes = 0;
  double attn_kv_bytes = 0;  // KV bytes rank 0's attention reads per step
  LayerExecutorInfo info;
  bool has_gpu_telemetry = false;  // cuda backend: clocks, power, throttling before and after
  GpuTelemetry gpu;
};

// Median over iterations of rank 0's time in one phase.
double rank0_phase_median(const RunResult& r, int phase) {
  std::vector<double> v(size_t(r.iters));
  for (int i = 0; i < r.iters; ++i)
    v[size_t(i)] = r.phase_us[size_t(i * r.ranks * kNumPhases + phase)];
  return median(v);
}

// Median over iterations of the max over ranks of one phase.
double phase_median(const RunResult& r, int phase) {
  std::vector<double> v(size_t(r.iters));
  for (int i = 0; i < r.iters; ++i) {
    double mx = 0;
    for (int k = 0; k < r.ranks; ++k)
      mx = std::max(mx, r.phase_us[size_t((i * r.ranks + k) * kNumPhases + phase)]);
    v[size_t(i)] = mx;
  }
  return median(v);
}

void print_header() {
  std::printf("%-11s %3s %7s %6s %4s %8s %10s |", "layout", "N", "KVPxTPA", "TPFxEP", "B", "S",
              "step_us");
  const char* short_names[kNumPhases] = {"qkv",    "kv_app", "attn", "a_comm", "combine",
                                         "o_proj", "o_comm", "ffn",  "f_comm", "out_comm"};
  for (const char* n : short_names) std::printf(" %8s", n);
  std::printf(" | %10s  %s\n", "exposed_us", "verified (max rel err)");
}

void print_row(const RunSpec& s, const ModelSpec&, const RunResult& r) {
  std::printf("%-11s %3d %7s %6s %4d %8lld ", to_string(s.layout.kind), s.layout.n,
              attn_shape(s.layout).c_str(), ffn_shape(s.layout).c_str(), s.batch,
              static_cast<long long>(s.seq));
  if (r.status != "ok") {
    std::printf("%10s | refused: %s\n", "-", r.message.c_str());
    return;
  }
  std::printf("%10.1f |", median(r.step_us));
  for (int p = 0; p < kNumPhases; ++p) std::printf(" %8.1f", phase_median(r, p));
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

void write_run(hid_t file, int index, const RunSpec& s, const ModelSpec& m, LayerKind layer,
               const DecodeOptions& o, int decode_steps, double tolerance, double stream_gbps,
               const RunResult& r) {
  char name[32];
  std::snprintf(name, sizeof name, "/decode/run_%04d", index);
  h5::Group g(file, name);
  const hid_t id = g.id();
  h5::attr(id, "model", m.name);
  h5::attr(id, "layer_kind", to_string(layer));
  h5::attr(id, "layout", to_string(s.layout.kind));
  h5::attr(id, "n_ranks", s.layout.n);
  h5::attr(id, "kvp", s.layout.kvp);
  h5::attr(id, "tpa", s.layout.tpa);
  h5::attr(id, "tpf", s.layout.tpf);
  h5::attr(id, "ep", s.layout.ep);
  h5::attr(id, "hopb_chunks", s.layout.hopb_chunks);
  h5::attr(id, "kv_block", s.layout.kv_block);
  h5::attr(id, "batch", s.batch);
  h5::attr(id, "seq_len", s.seq);
  h5::attr(id, "backend", o.backend);
  h5::attr(id, "dtype", r.info.dtype);
  h5::attr(id, "comm_backend", r.info.comm_backend);
  h5::attr(id, "link_representative", r.info.link_representative);
  h5::attr(id, "emulated_ranks", r.info.emulated_ranks);
  h5::attr(id, "emulated_rank", r.info.emulated_rank);
  if (r.info.emulated_ranks > 0) {
    h5::attr(id, "link_gbps", r.info.link_gbps);
    h5::attr(id, "link_latency_us", r.info.link_latency_us);
  }
  h5::attr(id, "status", r.status);
  h5::attr(id, "message", r.message);
  h5::attr(id, "verified", r.verified);
  h5::attr(id, "verify_ran", r.verify_ran);
  h5::attr(id, "max_rel_err", r.max_rel_err);
  h5::attr(id, "tolerance", tolerance);
  h5::attr(id, "decode_steps", decode_steps);
  h5::attr(id, "iters", o.iters);
  h5::attr(id, "warmup", o.warmup);
  h5::attr(id, "seed", int64_t(o.seed));
  h5::attr(id, "weight_bytes_per_rank", r.weight_bytes);
  h5::attr(id, "kv_bytes_per_rank", r.kv_bytes);
  h5::attr(id, "needed_bytes_per_rank", r.needed_bytes);
  h5::attr(id, "available_bytes_per_rank", r.available_bytes);
  if (r.status != "ok") return;
  h5::attr(id, "step_us_median", median(r.step_us));
  h5::attr(id, "exposed_comm_us_median", median(r.exposed_us));
  // Attention bandwidth of rank 0 (KV bytes its attention reads / its attention time), and its
  // fraction of the read-only stream ceiling measured at the start of the job.
  const double attn_us = rank0_phase_median(r, static_cast<int>(Phase::attention));
  const double attn_gbps = attn_us > 0 ? r.attn_kv_bytes / (attn_us * 1e3) : 0.0;
  h5::attr(id, "attention_kv_bytes_rank0", r.attn_kv_bytes);
  h5::attr(id, "attention_us_rank0_median", attn_us);
  h5::attr(id, "attention_gbps_rank0", attn_gbps);
  h5::attr(id, "attention_fraction_of_ceiling", stream_gbps > 0 ? attn_gbps / stream_gbps : 0.0);
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
  if (r.has_gpu_telemetry) write_gpu_telemetry(id, r.gpu);
  if (!r.verify_ran) return;
  h5::write(id, "step_rel_err", {hsize_t(r.step_rel_err.size())}, r.step_rel_err.data(), "");
  h5::attr(id, "routing_flips", r.routing_flips);
  h5::attr(id, "routing_flips_rejected", r.routing_flips_rejected);
  h5::attr(id, "routing_consistent", r.routing_consistent);
  if (layer != LayerKind::moe) return;
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

// Gathers a per-rank [iters, width] array into [iters, ranks, width] on rank 0.
std::vector<double> gather_iter_major(const MpiComm& world, const std::vector<double>& mine,
                                      int iters, int width) {
  const int n = world.size();
  std::vector<double> all(size_t(world.rank() == 0 ? n * iters * width : 0));
  HELIX_MPI_CHECK(MPI_Gather(mine.data(), iters * width, MPI_DOUBLE, all.data(), iters * width,
                             MPI_DOUBLE, 0, world.raw()));
  std::vector<double> out;
  if (world.rank() != 0) return out;
  out.resize(all.size());
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < iters; ++i)
      for (int w = 0; w < width; ++w)
        out[size_t((i * n + r) * width + w)] = all[size_t((r * iters + i) * width + w)];
  return out;
}

// Verification, outside the timed loop: decode_steps consecutive steps with fresh inputs, KV
// appended at positions seq .. seq + decode_steps - 1 (crossing KV block boundaries). MoE layers:
// the reference follows the run's expert choice where it is explained by bf16 rounding of the
// router (ReferenceRun::output_for); every flip is counted, one that is not explained fails the
// run, as does a disagreement between the ranks that ran a router. `ref`: rank 0 only.
void verify_run(const RunSpec& spec, const ModelSpec& m, LayerKind layer, int decode_steps,
                double tolerance, uint64_t seed, ReferenceRun* ref, const MpiComm& world,
                LayerExecutor& ex, const RankPlan& plan, RunResult* r) {
  const int rank = world.rank();
  const int64_t H = m.hidden, K = layer == LayerKind::moe ? m.moe.top_k : 0;
  std::vector<float> out(size_t(spec.batch * H)), expect(out.size()), own(out.size());
  // Per rank: a flag (1: ran a router) and its [B, top_k] choice.
  const int width = int(1 + spec.batch * K);
  std::vector<int32_t> mine(static_cast<size_t>(width));
  std::vector<int32_t> all(rank == 0 ? static_cast<size_t>(width) * size_t(world.size()) : 0);
  r->verify_ran = true;
  for (int t = 0; t < decode_steps; ++t) {
    const std::vector<float> x = make_decode_input(m, spec.batch, t, seed);
    ex.set_input(x.data());
    ex.step(build_schedule(m, plan, spec.batch, spec.seq + t), spec.seq + t, nullptr);
    ex.get_output(out.data());
    const int32_t* chosen = nullptr;
    if (K > 0) {
      mine[0] = ex.get_routing(mine.data() + 1) ? 1 : 0;
      HELIX_MPI_CHECK(
          MPI_Gather(mine.data(), width, MPI_INT, all.data(), width, MPI_INT, 0, world.raw()));
      for (int k = 0; rank == 0 && k < world.size(); ++k) {
        const int32_t* row = all.data() + size_t(k) * size_t(width);
        if (!row[0]) continue;
        if (!chosen)
          chosen = row + 1;
        else if (!std::equal(row + 1, row + width, chosen))
          r->routing_consistent = false;
      }
    }
    if (rank == 0) {
      expect = ref->output_for(t, chosen, &r->flips);
      own = ref->own_output(t);
    }
    world.bcast(expect.data(), expect.size(), 0);
    world.bcast(own.data(), own.size(), 0);
    double err[2] = {relative_error(out, expect), relative_error(out, own)};
    world.all_reduce_max(err, 2);
    r->step_rel_err.push_back(err[0]);
    r->step_rel_err_own_routing.push_back(err[1]);
  }
  r->max_rel_err = *std::max_element(r->step_rel_err.begin(), r->step_rel_err.end());
  r->max_rel_err_own_routing =
      *std::max_element(r->step_rel_err_own_routing.begin(), r->step_rel_err_own_routing.end());
  int counts[3] = {0, 0, r->routing_consistent ? 1 : 0};
  for (const RoutingFlip& f : r->flips) ++counts[f.accepted ? 0 : 1];
  HELIX_MPI_CHECK(MPI_Bcast(counts, 3, MPI_INT, 0, world.raw()));
  r->routing_flips = counts[0];
  r->routing_flips_rejected = counts[1];
  r->routing_consistent = counts[2] != 0;
  r->verified =
      r->max_rel_err <= tolerance && r->routing_flips_rejected == 0 && r->routing_consistent;
}

RunResult run_one(const RunSpec& spec, const ModelSpec& m, LayerKind layer, const DecodeOptions& o,
                  int decode_steps, double tolerance, bool verify, ReferenceRun* ref,
                  const MpiComm& world, DecodeBackend& backend) {
  RunResult r;
  const int rank = world.rank();
  const RankPlan plan = plan_rank(m, layer, spec.layout, backend.plan_rank(rank));
  const int64_t max_positions = spec.seq + std::max(decode_steps, 1);

  // Memory planner: refuse (on every rank) a run that does not fit.
  r.info = backend.info();
  const MemoryPlan mem = backend.plan_memory(m, plan, spec.batch, max_positions);
  double worst[2] = {mem.fits ? 0.0 : 1.0, double(mem.needed_bytes)};
  world.all_reduce_max(worst, 2);
  r.needed_bytes = mem.needed_bytes;
  r.available_bytes = mem.available_bytes;
  if (worst[0] > 0) {
    r.status = "refused";
    std::ostringstream msg;
    msg << "needs " << format_bytes(worst[1]) << " per rank, "
        << format_bytes(double(mem.available_bytes)) << " free";
    r.message = msg.str();
    return r;
  }

  std::unique_ptr<LayerExecutor> ex =
      backend.make_executor(m, plan, spec.batch, spec.seq, max_positions, o.seed);
  r.weight_bytes = ex->weight_bytes();
  r.kv_bytes = ex->kv_bytes();

  if (verify)
    verify_run(spec, m, layer, decode_steps, tolerance, o.seed, ref, world, *ex, plan, &r);

  // Timing: every iteration is one decode step at position seq (the same slot is rewritten), so
  // every rank runs the same number of collectives.
  const std::vector<Step> sched = build_schedule(m, plan, spec.batch, spec.seq);
  for (const Step& st : sched)
    if (st.op == Op::attention) r.attn_kv_bytes += st.work.kv_elems * backend.kv_elem_bytes();
  const std::vector<float> x0 = make_decode_input(m, spec.batch, 0, o.seed);
  ex->set_input(x0.data());
  std::vector<double> phases(size_t(o.iters * kNumPhases)), steps(size_t(o.iters)),
      exposed(size_t(o.iters));
  const bool cuda = o.backend == "cuda";
  if (o.profile_once) {  // warm-up, then one step for ncu / nsys inside the capture range
    for (int i = 0; i < std::max(1, o.warmup); ++i) ex->step(sched, spec.seq, nullptr);
    world.barrier();
    ProfilerCapture capture(cuda);
    ex->step(sched, spec.seq, nullptr);
    r.status = "profiled";
    return r;
  }
  GpuSample gpu_before, gpu_after;
  std::string gpu_error;
  ProfilerCapture capture;  // around the timed iterations
  for (int i = 0; i < o.warmup + o.iters; ++i) {
    world.barrier();
    if (i == o.warmup) {
      if (cuda) gpu_before = sample_gpu(&gpu_error);
      capture.start(cuda);
    }
    StepTiming t;
    ex->step(sched, spec.seq, &t);
    if (i < o.warmup) continue;
    const int k = i - o.warmup;
    for (int p = 0; p < kNumPhases; ++p) phases[size_t(k * kNumPhases + p)] = t.phase_us[size_t(p)];
    steps[size_t(k)] = t.step_us;
    exposed[size_t(k)] = t.exposed_comm_us;
  }
  capture.stop();
  if (cuda) {
    gpu_after = sample_gpu(nullptr);
    r.gpu = gather_gpu_telemetry(world, gpu_before, gpu_after, gpu_error);
    r.has_gpu_telemetry = true;
  }
  r.iters = o.iters;
  r.ranks = world.size();
  r.phase_us = gather_iter_major(world, phases, o.iters, kNumPhases);
  r.rank_step_us = gather_iter_major(world, steps, o.iters, 1);
  r.rank_exposed_us = gather_iter_major(world, exposed, o.iters, 1);
  if (rank == 0) {
    for (int i = 0; i < o.iters; ++i) {
      double s = 0, e = 0;
      for (int k = 0; k < r.ranks; ++k) {
        s = std::max(s, r.rank_step_us[size_t(i * r.ranks + k)]);
        e = std::max(e, r.rank_exposed_us[size_t(i * r.ranks + k)]);
      }
      r.step_us.push_back(s);
      r.exposed_us.push_back(e);
    }
  }
  return r;
}

// Throws UsageError on every rank (the checks only read options and the model, which every rank
// sees identically).
struct Plan {
  ModelSpec model;
  LayerKind layer = LayerKind::dense;
  std::vector<LayoutKind> layouts;
  std::vector<int64_t> seqs, batches;
  int decode_steps = 0;
  std::vector<RunSpec> runs;
};

Plan make_plan(const DecodeOptions& o, int world_size, const DecodeBackend& backend) {
  Plan p;
  try {
    p.model = load_model(o.model);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  for (const std::string& name : split_list(o.layouts)) {
    const auto k = parse_layout(name);
    if (!k) {
      std::string known;
      for (const auto& n : layout_names()) known += (known.empty() ? "" : ", ") + n;
      throw UsageError("--layouts: unknown layout '" + name + "' (known: " + known + ")");
    }
    p.layouts.push_back(*k);
  }
  p.seqs = parse_positive_list(o.seq, "--seq");
  p.batches = parse_positive_list(o.batch, "--batch");
  for (int64_t b : p.batches)
    if (b > 65536) throw UsageError("--batch: " + std::to_string(b) + " exceeds 65536 requests");
  if (o.layer.empty())
    p.layer = p.model.default_layer_kind();
  else if (o.layer == "dense")
    p.layer = LayerKind::dense;
  else if (o.layer == "moe")
    p.layer = LayerKind::moe;
  else
    throw UsageError("--layer: must be 'dense' or 'moe', got '" + o.layer + "'");
  if (o.iters < 1) throw UsageError("--iters: must be at least 1");
  if (o.warmup < 0) throw UsageError("--warmup: must be 0 or more");
  if (o.kv_block < 1) throw UsageError("--kv-block: the KV block length must be at least 1 token");
  if (o.decode_steps < 0) throw UsageError("--decode-steps: must be 0 (default) or more");
  p.decode_steps = o.decode_steps > 0 ? o.decode_steps : o.kv_block + 1;
  const int n = backend.layout_ranks(world_size);
  LayoutRequest req;
  req.kvp = o.kvp;
  req.tpa = o.tpa;
  req.tpf = o.tpf;
  req.ep = o.ep;
  req.hopb_chunks = o.hopb_chunks;
  req.kv_block = o.kv_block;
  for (const char* name : {"--kvp", "--tpa", "--tpf", "--ep", "--hopb-chunks"}) {
    const std::optional<int>* v = name == std::string("--kvp")   ? &o.kvp
                                  : name == std::string("--tpa") ? &o.tpa
                                  : name == std::string("--tpf") ? &o.tpf
                                  : name == std::string("--ep")  ? &o.ep
                                                                 : &o.hopb_chunks;
    if (*v && **v < 1) throw UsageError(std::string(name) + ": must be a positive integer");
  }
  for (int64_t s : p.seqs)
    for (int64_t b : p.batches)
      for (LayoutKind k : p.layouts) {
        RunSpec r;
        r.layout = make_layout(k, n, p.model, p.layer, int(b), req);
        r.batch = int(b);
        r.seq = s;
        const std::string err = validate_layout(r.layout, p.model, p.layer, int(b));
        if (!err.empty()) throw UsageError(err);
        p.runs.push_back(r);
      }
  return p;
}

}  // namespace

CLI::App* add_decode_command(CLI::App& app, DecodeOptions& o) {
  CLI::App* c = app.add_subcommand(
      "decode",
      "Run full-layer decode steps (attention + FFN) of the chosen layouts on the MPI ranks of "
      "this job, verify every output against a single-rank reference, print one row per run and "
      "write per-rank, per-phase timings to HDF5.");
  c->add_option("--model", o.model,
                "Model: llama-3.1-8b, llama-3.1-70b, llama-3.1-405b, deepseek-r1, tiny-gqa, "
                "tiny-mla-moe, or a path to a model .json file")
      ->required();
  c->add_option("--layouts", o.layouts, "Comma-separated layouts: tp, kvp, helix, helix-hopb")
      ->capture_default_str();
  c->add_option("--seq", o.seq,
                "Comma-separated KV lengths in tokens before the step (K = 1024, M = 1048576)")
      ->capture_default_str();
  c->add_option("--batch", o.batch, "Comma-separated batch sizes (requests)")
      ->capture_default_str();
  c->add_option("--layer", o.layer, "Layer kind: dense or moe (default: moe for MoE models)");
  c->add_option("--kvp", o.kvp,
                "KV-parallel width of attention in kvp, helix, helix-hopb (default: N / TPA)");
  c->add_option("--tpa", o.tpa,
                "Tensor-parallel width of attention in kvp, helix, helix-hopb, <= KV heads "
                "(default: gcd(KV heads, N))");
  c->add_option("--tpf", o.tpf,
                "Tensor-parallel width of the FFN / each expert, for the layouts whose FFN spans "
                "all N ranks (default: N / EP)");
  c->add_option("--ep", o.ep,
                "Expert-parallel width, for the layouts whose FFN spans all N ranks (default: "
                "gcd(N, experts); 1 for dense)");
  c->add_option("--hopb-chunks", o.hopb_chunks, "HOP-B batch chunks (default: min(B, 4))");
  c->add_option("--kv-block", o.kv_block, "Tokens per round-robin KV block across KVP ranks")
      ->capture_default_str();
  c->add_option("--decode-steps", o.decode_steps,
                "Verified decode steps per run (default: kv-block + 1, so appends cross a block "
                "boundary)");
  c->add_option("--iters", o.iters, "Timed iterations per run")->capture_default_str();
  c->add_option("--warmup", o.warmup, "Untimed warm-up iterations per run")->capture_default_str();
  c->add_option("--seed", o.seed, "Seed of the random weights, KV and inputs")
      ->capture_default_str();
  c->add_option("--backend", o.backend, "Executor: cpu (fp32, MPI over host memory) or cuda")
      ->capture_default_str();
  c->add_option("--emulate", o.emulate,
                "cuda: run the work of one rank of an N-rank layout on this GPU, communication "
                "priced from link figures (0: off)");
  c->add_option("--emulate-rank", o.emulate_rank, "cuda: which rank --emulate runs")
      ->capture_default_str();
  c->add_option("--link-gbps", o.link_gbps,
                "cuda --emulate: per-GPU, per-direction link bandwidth in GB/s that prices the "
                "communication phases (default: NVLink 5 of GB200 NVL72, 900 GB/s)")
      ->capture_default_str();
  c->add_option("--link-latency-us", o.link_latency_us,
                "cuda --emulate: latency of one collective in microseconds")
      ->capture_default_str();
  c->add_option("--out", o.out,
                "HDF5 trace to write (written as FILE.tmp.PID, renamed when complete)");
  c->add_flag("--no-verify", o.no_verify, "Skip the check against the single-rank reference");
  c->add_flag("--quiet", o.quiet, "No progress lines");
  c->add_flag("--profile-once", o.profile_once,
              "For Nsight Compute / Systems: per run, the warm-up iterations, then one decode "
              "step inside cudaProfilerStart/Stop (NVTX ranges: step, and one per phase named as "
              "in the trace), then the next run; no verification, timing or trace");
  c->footer(
      "\nExamples:\n"
      "  mpirun -np 4 build/bin/helix-bench decode --model tiny-gqa --seq 1000 --batch 1,8 \\\n"
      "      --out results/quickstart.h5\n"
      "  mpirun -np 8 build/bin/helix-bench decode --model tiny-mla-moe --layouts helix,helix-hopb "
      "\\\n"
      "      --kvp 8 --tpa 1 --tpf 4 --ep 2 --seq 4K --batch 32\n"
      "\nExit codes: 0 every run verified; 2 bad input (nothing written); 3 a run failed "
      "verification.");
  return c;
}

int run_decode(const DecodeOptions& o, const MpiComm& world, int argc, char** argv) {
  const int rank = world.rank();
  std::unique_ptr<DecodeBackend> backend = make_decode_backend(o, world);
  const Plan plan = make_plan(o, world.size(), *backend);
  const ModelSpec& m = plan.model;
  const bool verify = !o.no_verify && backend->can_verify() && !o.profile_once;
  if (o.profile_once && !o.out.empty())
    throw UsageError("--out: --profile-once measures nothing and writes no trace");

  // Fail fast on an unwritable output path (every rank exits with code 2). The trace itself is
  // written at the end, under a temporary name renamed when complete, so a job that dies midway
  // leaves no file at all.
  int ok = 1;
  std::string why;
  if (rank == 0 && !o.out.empty()) {
    try {
      h5::File probe(o.out);  // destroyed uncommitted: the probe file is removed
    } catch (const UsageError& e) {
      ok = 0;
      why = e.what();
    }
  }
  HELIX_MPI_CHECK(MPI_Bcast(&ok, 1, MPI_INT, 0, world.raw()));
  if (!ok) throw UsageError(rank == 0 ? why : std::string());

  RunEnvironment env =
      collect_environment(world, argc, argv, o.backend, backend->device_description());
  env.cuda_version = backend->cuda_version();
  env.nccl_version = backend->nccl_version();
  if (rank == 0) {
    std::printf("helix-bench decode: model %s (%s layer), %d ranks, backend %s, %zu runs\n",
                m.name.c_str(), to_string(plan.layer), backend->layout_ranks(world.size()),
                backend->description().c_str(), plan.runs.size());
    std::fflush(stdout);
  }

  // The read-bandwidth ceiling of this device, measured in the same job as the runs.
  const ReadCeiling stream = backend->read_ceiling();
  if (rank == 0 && stream.gbps > 0 && !o.quiet) {
    std::fprintf(stderr, "read-only stream ceiling: %.0f GB/s (%.2f GiB buffer, median)\n",
                 stream.gbps, double(stream.bytes) / double(int64_t(1) << 30));
    std::fflush(stderr);
  }
  std::vector<std::pair<RunSpec, RunResult>> done;
  // Rank 0's reference for the current (B, S): runs are ordered by S, then B, and layout.
  std::pair<int, int64_t> ref_key{-1, -1};
  std::unique_ptr<ReferenceRun> ref;
  int index = 0;
  bool all_verified = true;
  // Fault injection for the tests of the abort path: HELIX_BENCH_FAIL_AT=RANK:RUN makes that
  // rank fail at the start of that run while the others wait in a collective.
  int fail_rank = -1, fail_run = -1;
  if (const char* f = std::getenv("HELIX_BENCH_FAIL_AT"))
    std::sscanf(f, "%d:%d", &fail_rank, &fail_run);
  for (const RunSpec& spec : plan.runs) {
    if (rank == fail_rank && index == fail_run)
      fatal("injected failure (HELIX_BENCH_FAIL_AT=" +
            std::string(std::getenv("HELIX_BENCH_FAIL_AT")) + ")");
    if (rank == 0 && !o.quiet) {
      std::fprintf(stderr, "[%d/%zu] %s N=%d KVPxTPA=%s TPFxEP=%s B=%d S=%lld\n", index + 1,
                   plan.runs.size(), to_string(spec.layout.kind), spec.layout.n,
                   attn_shape(spec.layout).c_str(), ffn_shape(spec.layout).c_str(), spec.batch,
                   static_cast<long long>(spec.seq));
      std::fflush(stderr);
    }
    // The reference for (B, S), computed once on rank 0 (fp64) and kept for every layout.
    if (verify && rank == 0 && ref_key != std::make_pair(spec.batch, spec.seq)) {
      ref.reset();
      ref = std::make_unique<ReferenceRun>(m, plan.layer, spec.batch, spec.seq, plan.decode_steps,
                                           o.seed);
      ref_key = {spec.batch, spec.seq};
    }
    RunResult r = run_one(spec, m, plan.layer, o, plan.decode_steps, backend->tolerance(), verify,
                          ref.get(), world, *backend);
    if (r.verify_ran && !r.verified) all_verified = false;
    if (rank == 0 && r.has_gpu_telemetry && !r.gpu.warning().empty())
      std::fprintf(stderr, "[%d/%zu] %s\n", index + 1, plan.runs.size(), r.gpu.warning().c_str());
    if (rank == 0) done.emplace_back(spec, std::move(r));
    ++index;
  }

  if (o.profile_once) {
    if (rank == 0)
      std::printf("profile-once: %zu run(s), one step each inside the profiler capture range\n",
                  done.size());
    return 0;
  }
  if (rank == 0) {
    std::printf("\nmodel %s, %s layer; medians over %d iterations of the max over ranks, in us\n",
                m.name.c_str(), to_string(plan.layer), o.iters);
    print_header();
    for (const auto& [spec, r] : done) print_row(spec, m, r);
    if (stream.gbps > 0) {
      std::printf(
          "\nattention of rank 0: KV bytes read / attention time, against the read-only "
          "stream ceiling of %.0f GB/s\n",
          stream.gbps);
      std::printf("%-11s %3s %4s %8s %12s %10s %9s %9s\n", "layout", "N", "B", "S", "kv_MiB",
                  "attn_us", "GB/s", "fraction");
      for (const auto& [spec, r] : done) {
        if (r.status != "ok") continue;
        const double us = rank0_phase_median(r, static_cast<int>(Phase::attention));
        const double gbps = us > 0 ? r.attn_kv_bytes / (us * 1e3) : 0;
        std::printf("%-11s %3d %4d %8lld %12.1f %10.1f %9.0f %9.2f\n", to_string(spec.layout.kind),
                    spec.layout.n, spec.batch, static_cast<long long>(spec.seq),
                    r.attn_kv_bytes / double(1 << 20), us, gbps, gbps / stream.gbps);
      }
    }
    if (!o.out.empty()) {
      h5::File file(o.out);
      write_root_attributes(file.id(), env, "decode");
      {
        h5::Group g(file.id(), "/decode");
        h5::attr(g.id(), "model", m.name);
        h5::attr(g.id(), "model_source", m.source);
        h5::attr(g.id(), "layer_kind", to_string(plan.layer));
        h5::attr(g.id(), "phases", phase_names());
        h5::attr(g.id(), "stream_gbps", stream.gbps);
        h5::attr(g.id(), "stream_bytes", stream.bytes);
      }
      for (size_t i = 0; i < done.size(); ++i)
        write_run(file.id(), int(i), done[i].first, m, plan.layer, o, plan.decode_steps,
                  backend->tolerance(), stream.gbps, done[i].second);
      file.commit();
      std::printf("trace: %s\n", o.out.c_str());
    }
    std::fflush(stdout);
  }
  (void)kCpuTolerance;
  return all_verified ? 0 : 3;
}

}  // namespace helix
