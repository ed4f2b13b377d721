#include "bench/commands/decode_cmd.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <vector>

#include "bench/commands/cli_util.hpp"
#include "bench/decode/record.hpp"
#include "bench/decode/run.hpp"
#include "bench/decode/table.hpp"
#include "bench/decode/trace_writer.hpp"
#include "bench/trace/h5.hpp"
#include "bench/trace/metadata.hpp"
#include "bench/trace/output_path.hpp"
#include "comm/error.hpp"
#include "comm/node.hpp"
#include "exec/decode_backend.hpp"
#include "exec/reference.hpp"
#include "exec/slow_phase.hpp"
#include "layouts/layout.hpp"

namespace helix {

namespace {

// Throws UsageError on every rank (the checks only read options and the model, which every rank
// sees identically).
struct RunGrid {
  ModelSpec model;
  LayerKind layer = LayerKind::dense;
  std::vector<LayoutKind> layouts;
  std::vector<int64_t> seqs, batches;
  int decode_steps = 0;
  std::vector<RunSpec> runs;  // ordered by S, then B, then layout
};

RunGrid make_run_grid(const DecodeOptions& o, int world_size, const DecodeBackend& backend) {
  RunGrid p;
  try {
    p.model = load_model(o.model);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  for (const std::string& name : split_list(o.layouts)) {
    const auto k = parse_layout(name);
    std::string known;
    for (const auto& n : layout_names()) known += (known.empty() ? "" : ", ") + n;
    if (!k) throw UsageError("--layouts: unknown layout '" + name + "' (known: " + known + ")");
    if (!runs_on_executors(*k))
      throw UsageError("--layouts: layout '" + name +
                       "' is priced by the cost model only (helix-bench model); the executors "
                       "run " +
                       known);
    p.layouts.push_back(*k);
  }
  p.seqs = parse_positive_list(o.seq, "--seq");
  p.batches = parse_positive_list(o.batch, "--batch", kMaxBatch);
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
  req.hopb_comm_sms = o.hopb_comm_sms;
  req.kv_block = o.kv_block;
  for (const char* name : {"--kvp", "--tpa", "--tpf", "--ep"}) {
    const std::optional<int>* v = name == std::string("--kvp")   ? &o.kvp
                                  : name == std::string("--tpa") ? &o.tpa
                                  : name == std::string("--tpf") ? &o.tpf
                                                                 : &o.ep;
    if (*v && **v < 1) throw UsageError(std::string(name) + ": must be a positive integer");
  }
  // Sizes no machine holds are bad input (and keep the planners' byte counts within int64).
  for (int64_t s : p.seqs)
    for (int64_t b : p.batches) {
      const double kv =
          4.0 * double(b) * double(s + p.decode_steps) * double(p.model.kv_elems_per_token());
      if (kv > kMaxLayerKvBytes)
        throw UsageError("--seq: S = " + std::to_string(s) + " at B = " + std::to_string(b) +
                         " needs " + format_bytes(kv) + " of KV cache for one layer (at most " +
                         format_bytes(kMaxLayerKvBytes) + ")");
    }
  // HOP-B chunk counts: one helix-hopb run per count (clamped to the batch, each count once).
  std::vector<std::optional<int>> chunk_counts = {std::nullopt};
  if (o.hopb_chunks) {
    chunk_counts.clear();
    for (int64_t c : parse_positive_list(*o.hopb_chunks, "--hopb-chunks", kMaxBatch))
      chunk_counts.push_back(int(c));
  }
  for (int64_t s : p.seqs)
    for (int64_t b : p.batches)
      for (LayoutKind k : p.layouts) {
        std::vector<int> done;  // chunk counts already run at this (S, B)
        for (const auto& chunks : k == LayoutKind::helix_hopb
                                      ? chunk_counts
                                      : std::vector<std::optional<int>>{std::nullopt}) {
          LayoutRequest rq = req;
          rq.hopb_chunks = chunks;
          RunSpec r;
          r.layout = make_layout(k, n, p.model, p.layer, int(b), rq);
          r.batch = int(b);
          r.seq = s;
          const std::string err = validate_layout(r.layout, p.model, p.layer, int(b));
          if (!err.empty()) throw UsageError(err);
          if (std::find(done.begin(), done.end(), r.layout.hopb_chunks) != done.end()) continue;
          done.push_back(r.layout.hopb_chunks);
          p.runs.push_back(r);
        }
      }
  return p;
}

// The single-rank reference runs on rank 0 in host memory (fp32 weights and cache; a MoE layer's
// routed experts generated as the tokens choose them): a (B, S) whose reference does not fit is
// bad input, found before any work, on every rank.
void check_reference_fits(const RunGrid& grid, const MpiComm& world) {
  check_on_root(world, [&] {
    const ModelSpec& m = grid.model;
    const double avail = double(host_available_bytes());
    double routed = 0;  // parameters of one routed expert
    if (grid.layer == LayerKind::moe) routed = 3.0 * double(m.hidden) * double(m.moe.expert_ffn);
    const double fixed = double(m.layer_params(grid.layer)) -
                         (grid.layer == LayerKind::moe ? routed * m.moe.routed_experts : 0.0);
    for (int64_t s : grid.seqs)
      for (int64_t b : grid.batches) {
        const double experts =
            std::min(double(m.moe.routed_experts),
                     double(b) * double(grid.decode_steps) * double(m.moe.top_k));
        const double need =
            4.0 * (fixed + experts * routed +
                   double(b) * double(s + grid.decode_steps) * double(m.kv_elems_per_token()));
        if (need > avail)
          throw UsageError("--seq: verifying S = " + std::to_string(s) +
                           " at B = " + std::to_string(b) + " needs a single-rank reference of " +
                           format_bytes(need) + " in rank 0's host memory, " + format_bytes(avail) +
                           " available (give a smaller --seq or --batch, or --no-verify)");
      }
  });
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
  add_int_option(c, "--kvp", o.kvp, 1, kMaxRanks,
                 "KV-parallel width of attention in kvp, helix, helix-hopb (default: N / TPA)");
  add_int_option(c, "--tpa", o.tpa, 1, kMaxRanks,
                 "Tensor-parallel width of attention in kvp, helix, helix-hopb, <= KV heads "
                 "(default: gcd(KV heads, N))");
  add_int_option(c, "--tpf", o.tpf, 1, kMaxRanks,
                 "Tensor-parallel width of the FFN / each expert, for the layouts whose FFN spans "
                 "all N ranks (default: N / EP)");
  add_int_option(c, "--ep", o.ep, 1, kMaxRanks,
                 "Expert-parallel width, for the layouts whose FFN spans all N ranks (default: "
                 "gcd(N, experts); 1 for dense)");
  c->add_option("--hopb-chunks", o.hopb_chunks,
                "HOP-B batch chunks, a comma list: one helix-hopb run per count, clamped to the "
                "batch (default: min(B, 4))");
  add_int_option(c, "--hopb-comm-sms", o.hopb_comm_sms, 0, kMaxHopbCommSms,
                 "HOP-B: SMs each chunk's attention leaves free for the chunk exchanges running "
                 "beside it; the KVP communicator runs at most this many CTAs (default: " +
                     std::to_string(kDefaultHopbCommSms) + "; 0: none)");
  add_int_option(c, "--kv-block", o.kv_block, 1, kMaxKvBlock,
                 "Tokens per round-robin KV block across KVP ranks");
  add_int_option(c, "--decode-steps", o.decode_steps, 0, kMaxDecodeSteps,
                 "Verified decode steps per run (default: kv-block + 1, so appends cross a block "
                 "boundary)",
                 false);
  add_int_option(c, "--iters", o.iters, 1, kMaxIters, "Timed iterations per run");
  add_int_option(c, "--warmup", o.warmup, 0, kMaxIters, "Untimed warm-up iterations per run");
  add_int_option(c, "--seed", o.seed, 0, INT64_MAX, "Seed of the random weights, KV and inputs");
  c->add_option("--backend", o.exec.backend, "Executor: cpu (fp32, MPI over host memory) or cuda")
      ->capture_default_str();
  add_int_option(c, "--emulate", o.exec.emulate, 0, kMaxRanks,
                 "cuda: run the work of one rank of an N-rank layout on this GPU; every "
                 "collective fills its receive buffers with this rank's data and takes the time "
                 "the cost model prices it at, on the GPU (0: off)",
                 false);
  c->add_option("--emulate-rank", o.emulate_rank,
                "cuda: which rank --emulate runs, or 'all': the compute of every distinct rank "
                "runs in turn on this GPU and the step is simulated across the ranks (each "
                "collective completes when its last member arrives plus its priced transfer), so "
                "the slowest rank (e.g. MoE imbalance) sets the step")
      ->capture_default_str();
  c->add_option("--hardware", o.exec.hardware,
                "cuda --emulate: hardware profile whose links price the collectives: h100-sxm, "
                "h200, b200, gb200-nvl72 or a .json file (e.g. from helix-bench calibrate); "
                "default gb200-nvl72 (NVLink 900 GB/s, 3 us per collective)");
  add_real_option(c, "--link-gbps", o.exec.link_gbps, 0, 1e6, true,
                  "cuda --emulate: override the profile's NVLink bus bandwidth per GPU and "
                  "direction, GB/s (also sets aside the profile's measured collectives)");
  add_real_option(c, "--link-latency-us", o.exec.link_latency_us, 0, 1e6, false,
                  "cuda --emulate: override the profile's NVLink latency of one collective, us "
                  "(also sets aside the profile's measured collectives)");
  c->add_flag("--cuda-graph", o.exec.cuda_graph,
              "cuda: capture each decode step once as a CUDA graph and replay it, so launch gaps "
              "leave the timings; runs whose communicators or MoE path need the host (MPI host "
              "staging, the per-expert MoE path) run step by step as before (run attribute "
              "cuda_graph)");
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

int run_decode(const DecodeOptions& opt, const MpiComm& world, int argc, char** argv) {
  const int rank = world.rank();
  if (opt.profile_once && !opt.out.empty())
    throw UsageError("--out: --profile-once measures nothing and writes no trace");
  check_output_paths(world, {{"--out", opt.out}},
                     {{"--model", opt.model}, {"--hardware", opt.exec.hardware}});
  DecodeOptions o = opt;
  if (o.emulate_rank == "all")
    o.exec.emulate_rank = kEmulateEveryRank;
  else
    o.exec.emulate_rank = int(parse_int(o.emulate_rank, "--emulate-rank", 0, kMaxRanks - 1));
  const std::string slow_phase = slow_phase_from_env().text;  // test-only; checked here
  std::unique_ptr<DecodeBackend> backend = make_decode_backend(o.exec, world);
  const RunGrid grid = make_run_grid(o, world.size(), *backend);
  const ModelSpec& m = grid.model;
  const bool verify = !o.no_verify && backend->can_verify() && !o.profile_once;
  if (verify) check_reference_fits(grid, world);

  DecodeJobRecord job;
  job.environment =
      collect_environment(world, argc, argv, o.exec.backend, backend->device_description());
  job.environment.cuda_version = backend->cuda_version();
  job.environment.nccl_version = backend->nccl_version();
  job.model = m.name;
  job.model_source = m.source;
  job.layer = grid.layer;
  job.layout_ranks = backend->layout_ranks(world.size());
  job.backend_description = backend->description();
  job.test_slow_phase = slow_phase;
  if (rank == 0 && !slow_phase.empty())
    std::fprintf(
        stderr, "helix-bench: HELIX_TEST_SLOW_PHASE=%s: a phase is slowed on purpose (test only)\n",
        slow_phase.c_str());
  if (rank == 0) {
    std::printf("helix-bench decode: model %s (%s layer), %d ranks, backend %s, %zu runs\n",
                m.name.c_str(), to_string(grid.layer), job.layout_ranks,
                job.backend_description.c_str(), grid.runs.size());
    std::fflush(stdout);
  }

  // The ceilings of this device (read-only stream, dense GEMM), measured in the same job as the
  // runs, and the element sizes at which the roofline prices each rank's work.
  job.stream = backend->read_ceiling();
  job.gemm = backend->gemm_ceiling();
  job.elem = {backend->weight_elem_bytes(), backend->kv_elem_bytes(), backend->act_elem_bytes()};
  if (rank == 0 && job.stream.gbps > 0 && !o.quiet) {
    std::fprintf(stderr, "read-only stream ceiling: %.0f GB/s (%.2f GiB buffer, median)\n",
                 job.stream.gbps, double(job.stream.bytes) / double(int64_t(1) << 30));
    std::fflush(stderr);
  }
  if (rank == 0 && job.gemm.tflops > 0 && !o.quiet) {
    std::fprintf(stderr, "dense GEMM ceiling: %.3g TFLOP/s (%s)\n", job.gemm.tflops,
                 job.gemm.what.c_str());
    std::fflush(stderr);
  }
  RunSettings settings;
  settings.backend = o.exec.backend;
  settings.iters = o.iters;
  settings.warmup = o.warmup;
  settings.decode_steps = grid.decode_steps;
  settings.seed = o.seed;
  settings.profile_once = o.profile_once;
  settings.elem = job.elem;
  // Rank 0's reference for the current (B, S): runs are ordered by S, then B, and layout.
  std::pair<int, int64_t> ref_key{-1, -1};
  std::unique_ptr<ReferenceRun> ref;
  bool all_verified = true;
  // Fault injection for the tests of the abort path: HELIX_BENCH_FAIL_AT=RANK:RUN makes that
  // rank fail at the start of that run while the others wait in a collective.
  int fail_rank = -1, fail_run = -1;
  if (const char* f = std::getenv("HELIX_BENCH_FAIL_AT"))
    std::sscanf(f, "%d:%d", &fail_rank, &fail_run);
  for (size_t index = 0; index < grid.runs.size(); ++index) {
    const RunSpec& spec = grid.runs[index];
    if (rank == fail_rank && int(index) == fail_run)
      fatal("injected failure (HELIX_BENCH_FAIL_AT=" +
            std::string(std::getenv("HELIX_BENCH_FAIL_AT")) + ")");
    if (rank == 0 && !o.quiet) {
      std::fprintf(stderr, "[%zu/%zu] %s N=%d KVPxTPA=%s TPFxEP=%s B=%d S=%lld\n", index + 1,
                   grid.runs.size(), to_string(spec.layout.kind), spec.layout.n,
                   attn_shape(spec.layout).c_str(), ffn_shape(spec.layout).c_str(), spec.batch,
                   static_cast<long long>(spec.seq));
      std::fflush(stderr);
    }
    // The reference for (B, S), computed once on rank 0 (fp64) and kept for every layout.
    if (verify && rank == 0 && ref_key != std::make_pair(spec.batch, spec.seq)) {
      ref.reset();
      ref = std::make_unique<ReferenceRun>(m, grid.layer, spec.batch, spec.seq, grid.decode_steps,
                                           o.seed);
      ref_key = {spec.batch, spec.seq};
    }
    RunRecord r =
        run_decode_point(spec, m, grid.layer, settings, verify, ref.get(), world, *backend);
    if (r.verify_ran && !r.verified) all_verified = false;
    if (rank == 0 && r.has_gpu_telemetry && !r.gpu.warning().empty())
      std::fprintf(stderr, "[%zu/%zu] %s\n", index + 1, grid.runs.size(), r.gpu.warning().c_str());
    if (rank == 0) job.runs.push_back(std::move(r));
  }

  if (o.profile_once) {
    if (rank == 0)
      std::printf("profile-once: %zu run(s), one step each inside the profiler capture range\n",
                  job.runs.size());
    return 0;
  }

  if (rank == 0) {
    print_decode_table(job);
    if (!o.out.empty()) {
      write_decode_trace(o.out, job);
      std::printf("trace: %s\n", o.out.c_str());
    }
    std::fflush(stdout);
  }
  return all_verified ? 0 : 3;
}

}  // namespace helix
