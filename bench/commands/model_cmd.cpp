#include "bench/commands/model_cmd.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>

#include "analytic/cost_model.hpp"
#include "analytic/design_space.hpp"
#include "analytic/hardware.hpp"
#include "analytic/reproductions.hpp"
#include "bench/commands/cli_util.hpp"
#include "bench/commands/model_validate.hpp"
#include "bench/trace/h5.hpp"
#include "bench/trace/metadata.hpp"
#include "bench/trace/output_path.hpp"
#include "bench/trace/trace_input.hpp"
#include "comm/error.hpp"
#include "exec/layer_data.hpp"
#include "layouts/layout.hpp"
#include "layouts/model_spec.hpp"
#include "layouts/schedule.hpp"

namespace helix {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

ModelSpec model_or_usage(const std::string& name) {
  try {
    return load_model(name);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
}

DType dtype_or_usage(const std::string& name) {
  const auto d = parse_dtype(name);
  if (!d) throw UsageError("--dtype: must be fp32, bf16, fp8 or fp4, got '" + name + "'");
  return *d;
}

// "1-64" or "64" (= 1-64).
std::pair<int, int> parse_gpus(const std::string& s) {
  const auto dash = s.find('-');
  const std::string lo = dash == std::string::npos ? "1" : s.substr(0, dash);
  const std::string hi = dash == std::string::npos ? s : s.substr(dash + 1);
  const auto a = parse_positive_list(lo, "--gpus");
  const auto b = parse_positive_list(hi, "--gpus");
  if (a.size() != 1 || b.size() != 1 || a[0] > b[0] || b[0] > 4096)
    throw UsageError("--gpus: must be MIN-MAX or MAX with 1 <= MIN <= MAX <= 4096, got '" + s +
                     "'");
  return {int(a[0]), int(b[0])};
}

void progress_line(const char* what, size_t done, size_t total, size_t points, double s) {
  std::fprintf(stderr, "[%s] %zu/%zu configurations, %zu design points, %.1f s\n", what, done,
               total, points, s);
  std::fflush(stderr);
}

// The table of design points, one 1-D dataset per column.
void write_points(hid_t loc, const std::vector<DesignPoint>& pts, const std::vector<size_t>& idx) {
  const hsize_t n = idx.size();
  std::vector<std::string> layout, family;
  std::map<std::string, std::vector<int64_t>> ints;
  std::map<std::string, std::vector<double>> dbl;
  const auto phases = model_phase_names();
  for (size_t i : idx) {
    const DesignPoint& p = pts[i];
    layout.emplace_back(to_string(p.cfg.layout));
    family.emplace_back(family_of(p.cfg.layout));
    ints["n_gpus"].push_back(p.cfg.gpus());
    ints["tp"].push_back(p.cfg.n);
    ints["pp"].push_back(p.cfg.pp);
    ints["ep"].push_back(p.cfg.ep);
    ints["kvp"].push_back(p.cfg.kvp);
    ints["tpa"].push_back(p.cfg.tpa);
    ints["tpf"].push_back(p.cfg.tpf);
    ints["hopb"].push_back(p.cfg.hopb_chunks_run(p.batch));
    ints["batch"].push_back(p.batch);
    ints["feasible"].push_back(p.feasible);
    ints["on_frontier"].push_back(p.on_frontier);
    dbl["ttl_us"].push_back(p.ttl_us);
    dbl["tokens_per_s_per_user"].push_back(p.tokens_per_s_per_user);
    dbl["tokens_per_s_per_gpu"].push_back(p.tokens_per_s_per_gpu);
    dbl["mem_bytes_per_gpu"].push_back(p.mem_bytes_per_gpu);
    for (size_t k = 0; k < phases.size(); ++k) dbl[phases[k] + "_us"].push_back(p.phase_us[k]);
  }
  h5::write(loc, "layout", layout);
  h5::write(loc, "family", family);
  for (const auto& [name, v] : ints) h5::write(loc, name, v, name == "batch" ? "requests" : "");
  for (const auto& [name, v] : dbl) {
    std::string units = "us";
    if (name == "tokens_per_s_per_user") units = "tokens/s/user";
    if (name == "tokens_per_s_per_gpu") units = "tokens/s/GPU";
    if (name == "mem_bytes_per_gpu") units = "bytes";
    h5::write(loc, name, {n}, v.data(), units);
  }
}

void print_frontier(const std::vector<DesignPoint>& pts, const std::vector<size_t>& f,
                    int max_rows) {
  std::printf("%-10s %5s %3s %8s %7s %4s %5s %10s %12s %12s %9s\n", "layout", "gpus", "pp",
              "KVPxTPA", "TPFxEP", "hopb", "B", "ttl_us", "tok/s/user", "tok/s/gpu", "mem_GB");
  // Evenly thinned when the frontier is longer than max_rows (ends kept).
  const size_t n = f.size();
  const size_t rows = max_rows > 0 ? std::min(n, size_t(max_rows)) : n;
  for (size_t r = 0; r < rows; ++r) {
    const size_t j = rows == 1 ? 0 : r * (n - 1) / (rows - 1);
    const DesignPoint& p = pts[f[j]];
    std::printf("%-10s %5d %3d %4dx%-3d %3dx%-3d %4d %5d %10.1f %12.1f %12.1f %9.1f\n",
                to_string(p.cfg.layout), p.cfg.gpus(), p.cfg.pp, p.cfg.kvp, p.cfg.tpa, p.cfg.tpf,
                p.cfg.ep, p.cfg.hopb_chunks_run(p.batch), p.batch, p.ttl_us,
                p.tokens_per_s_per_user, p.tokens_per_s_per_gpu, p.mem_bytes_per_gpu / 1e9);
  }
  if (rows < n) std::printf("(%zu of %zu frontier points shown)\n", rows, n);
}

void write_sweep_attrs(hid_t g, const ModelSpec& m, const HardwareProfile& hw,
                       const SweepOptions& so, const SweepResult& r, double seconds) {
  h5::attr(g, "hardware", hw.name);
  h5::attr(g, "hardware_kind", hw.kind);
  h5::attr(g, "model", m.name);
  h5::attr(g, "model_source", m.source);
  h5::attr(g, "seq_len", so.seq_len);
  h5::attr(g, "dtype", to_string(so.cost.dtype));
  h5::attr(g, "act_bytes", so.cost.act_bytes);
  h5::attr(g, "min_gpus", so.min_gpus);
  h5::attr(g, "max_gpus", so.max_gpus);
  h5::attr(g, "max_batch", so.max_batch);
  h5::attr(g, "workspace_bytes", so.workspace_bytes);
  h5::attr(g, "n_points", int64_t(r.points.size()));
  h5::attr(g, "n_configs", int64_t(r.configs));
  h5::attr(g, "sweep_s", seconds);
  h5::attr(g, "phases", model_phase_names());
}

struct Timed {
  SweepResult result;
  double seconds = 0;
};

Timed timed_sweep(const ModelSpec& m, const HardwareProfile& hw, const SweepOptions& so,
                  bool quiet) {
  const auto t0 = Clock::now();
  size_t last_report = 0;
  Timed t;
  t.result = sweep(m, hw, so, [&](size_t done, size_t total) {
    if (quiet) return;
    if (done == total || done - last_report >= total / 10) {
      last_report = done;
      progress_line(("model " + m.name).c_str(), done, total, 0, seconds_since(t0));
    }
  });
  t.seconds = seconds_since(t0);
  if (!quiet)
    std::fprintf(stderr, "[model %s] %zu design points priced in %.2f s\n", m.name.c_str(),
                 t.result.points.size(), t.seconds);
  return t;
}

// ---- the Helix paper's reproduction -----------------------------------------------------------

int run_reproduce(const ModelOptions& o, const RunEnvironment& env) {
  const HardwareProfile hw = load_hardware(o.hardware.empty() ? "gb200-nvl72" : o.hardware);
  SweepOptions so;
  so.cost.dtype = DType::fp4;
  so.seq_len = 1 << 20;
  so.min_gpus = 1;
  so.max_gpus = 64;
  so.workspace_bytes = o.workspace_gib * double(1 << 30);
  std::printf(
      "helix-bench model --reproduce helix-paper: %s, fp4, S = 1M, 1 to 64 GPUs, batch 1..%d\n",
      hw.name.c_str(), so.max_batch);
  std::map<std::string, Timed> sweeps;
  for (const char* name : {"deepseek-r1", "llama-3.1-405b"}) {
    const ModelSpec m = model_or_usage(name);
    sweeps[name] = timed_sweep(m, hw, so, o.quiet);
    const auto& r = sweeps[name];
    std::printf("\n%s: %zu configurations, %zu design points in %.2f s; frontier (all layouts):\n",
                name, r.result.configs, r.result.points.size(), r.seconds);
    print_frontier(r.result.points, pareto_frontier(r.result.points, {}), 12);
  }
  const auto rows =
      helix_paper_rows(sweeps["deepseek-r1"].result.points, sweeps["llama-3.1-405b"].result.points);
  std::printf("\n%-80s %8s %8s  %s\n", "quantity", "paper", "ours", "holds");
  for (const auto& r : rows)
    std::printf("%-80s %8.2f %8.2f  %s (%s)\n", r.quantity.c_str(), r.paper, r.ours,
                r.holds ? "yes" : "NO", r.bar.c_str());
  if (!o.out.empty()) {
    h5::File out(o.out);
    write_root_attributes(out.id(), env, "model");
    h5::Group g(out.id(), "/reproduce/helix-paper");
    h5::attr(g.id(), "paper", "Bhatia et al., Helix Parallelism, arXiv 2507.07120");
    h5::attr(g.id(), "hardware", hw.name);
    h5::attr(g.id(), "dtype", "fp4");
    h5::attr(g.id(), "seq_len", so.seq_len);
    std::vector<std::string> q, bar;
    std::vector<double> paper, ours;
    std::vector<int64_t> holds;
    for (const auto& r : rows) {
      q.push_back(r.quantity);
      bar.push_back(r.bar);
      paper.push_back(r.paper);
      ours.push_back(r.ours);
      holds.push_back(r.holds);
    }
    h5::write(g.id(), "quantity", q);
    h5::write(g.id(), "bar", bar);
    h5::write(g.id(), "paper", {hsize_t(rows.size())}, paper.data(), "");
    h5::write(g.id(), "ours", {hsize_t(rows.size())}, ours.data(), "");
    h5::write(g.id(), "holds", holds, "");
    // The frontier of every layout (the union holds every family's frontier) for the plots.
    for (const auto& [name, t] : sweeps) {
      std::vector<size_t> idx;
      for (LayoutKind k : kDesignLayouts) {
        const auto f = pareto_frontier(t.result.points,
                                       [k](const DesignPoint& p) { return p.cfg.layout == k; });
        idx.insert(idx.end(), f.begin(), f.end());
      }
      h5::Group fg(out.id(), "/reproduce/helix-paper/" + name + "/points");
      SweepOptions so_m = so;
      write_sweep_attrs(fg.id(), model_or_usage(name), hw, so_m, t.result, t.seconds);
      h5::attr(fg.id(), "subset", "the Pareto frontier of each layout");
      write_points(fg.id(), t.result.points, idx);
    }
    out.commit();
    std::printf("written: %s\n", o.out.c_str());
  }
  return 0;
}

}  // namespace

namespace {
int run_sweep(const ModelOptions& o, const ModelSpec& m, const HardwareProfile& hw, DType dtype,
              int64_t seq, int min_gpus, int max_gpus, const RunEnvironment& env);
}  // namespace

CLI::App* add_model_command(CLI::App& app, ModelOptions& o) {
  CLI::App* c = app.add_subcommand(
      "model",
      "Price the decode design space with the cost model (no GPU needed): every layout (tp, ep, "
      "kvp, helix, helix-hopb, each with pipeline parallelism) at every GPU count, split and "
      "batch; drop points that do not fit in memory; write every point and the Pareto frontier "
      "of tokens/s/user against tokens/s/GPU to HDF5. Also reproduces the Helix paper's "
      "headline figures and validates the model against a decode trace.");
  c->add_option("--hardware", o.hardware,
                "Hardware profile: h100-sxm, h200, b200, gb200-nvl72, or a path to a profile "
                ".json (e.g. written by `helix-bench calibrate`)");
  c->add_option(
      "--model", o.model,
      "Model: llama-3.1-8b, llama-3.1-70b, llama-3.1-405b, deepseek-r1, or a model .json");
  c->add_option("--seq", o.seq, "KV length in tokens (K = 1024, M = 1048576)")
      ->capture_default_str();
  c->add_option("--gpus", o.gpus, "GPU counts to sweep, MIN-MAX or MAX (total GPUs incl. PP)")
      ->capture_default_str();
  c->add_option("--dtype", o.dtype,
                "Precision of weights, KV cache and arithmetic: bf16, fp8, fp4 (fp32 for CPU "
                "profiles); activations and communication stay BF16")
      ->capture_default_str();
  add_int_option(c, "--max-batch", o.max_batch, 1, kMaxBatch,
                 "Largest batch (requests) in the sweep");
  add_real_option(c, "--workspace-gib", o.workspace_gib, 0, 1e4, false,
                  "Memory per GPU reserved beyond weights and KV cache (activations, "
                  "communication buffers, runtime), GiB");
  add_int_option(c, "--frontier-rows", o.frontier_rows, 0, 1000000,
                 "Frontier rows printed (evenly thinned; 0: all)");
  c->add_option("--reproduce", o.reproduce,
                "helix-paper: the paper's comparisons (FP4, S = 1M, 1-64 GPUs, on gb200-nvl72 "
                "unless --hardware names another profile) printed and stored under "
                "/reproduce/helix-paper");
  c->add_option("--validate", o.validate,
                "A decode trace (HDF5): predicted vs measured time per phase and step of every "
                "run, with the relative error (needs --hardware)");
  c->add_option("--out", o.out, "HDF5 file to write (FILE.tmp.PID, renamed when complete)");
  c->add_flag("--quiet", o.quiet, "No progress lines");
  c->footer(
      "\nExamples:\n"
      "  helix-bench model --hardware gb200-nvl72 --model deepseek-r1 --seq 1M --gpus 1-64 \\\n"
      "      --dtype fp4 --out results/model_deepseek.h5\n"
      "  helix-bench model --reproduce helix-paper --out results/helix_paper.h5\n"
      "  helix-bench model --validate results/quickstart.h5 --hardware my-calibrated.json\n"
      "\nExit codes: 0 done; 2 bad input (nothing written).");
  return c;
}

int run_model(const ModelOptions& o, const MpiComm& world, int argc, char** argv) {
  check_output_paths(
      world, {{"--out", o.out}},
      {{"--validate", o.validate}, {"--hardware", o.hardware}, {"--model", o.model}});
  // Every rank checks the input (same result everywhere); rank 0 does the work.
  if (o.reproduce.empty() && o.validate.empty()) {
    if (o.hardware.empty()) throw UsageError("--hardware: required (a profile name or .json)");
    if (o.model.empty()) throw UsageError("--model: required (a model name or .json)");
  }
  if (!o.reproduce.empty() && o.reproduce != "helix-paper")
    throw UsageError("--reproduce: only 'helix-paper' is known, got '" + o.reproduce + "'");
  if (!o.reproduce.empty() && !o.validate.empty())
    throw UsageError("--reproduce: cannot be combined with --validate");
  if (!o.validate.empty() && o.hardware.empty())
    throw UsageError("--hardware: --validate needs a hardware profile");
  if (o.max_batch < 1 || o.max_batch > 65536)
    throw UsageError("--max-batch: must be between 1 and 65536 requests");
  if (!(o.workspace_gib >= 0) || o.workspace_gib > 1e4)
    throw UsageError("--workspace-gib: must be >= 0 GiB");
  const DType dtype = dtype_or_usage(o.dtype);
  const auto seqs = parse_positive_list(o.seq, "--seq", kMaxTokens);
  if (seqs.size() != 1) throw UsageError("--seq: give one KV length");
  const std::pair<int, int> gpus = parse_gpus(o.gpus);
  const int min_gpus = gpus.first, max_gpus = gpus.second;
  HardwareProfile hw;
  ModelSpec m;
  if (!o.hardware.empty()) hw = load_hardware(o.hardware);
  if (!o.model.empty()) m = model_or_usage(o.model);
  if (o.reproduce.empty() && o.validate.empty()) hw.flops_tflops_for(dtype);  // names --dtype
  const RunEnvironment env = collect_environment(world, argc, argv, "model", "none");
  // Rank 0 does the work; every rank exits with its code (bad input found on the way included).
  return run_on_root(world, [&] {
    if (!o.validate.empty()) return run_validate(o, hw, env);
    if (!o.reproduce.empty()) return run_reproduce(o, env);
    return run_sweep(o, m, hw, dtype, seqs[0], min_gpus, max_gpus, env);
  });
}

namespace {

int run_sweep(const ModelOptions& o, const ModelSpec& m, const HardwareProfile& hw, DType dtype,
              int64_t seq, int min_gpus, int max_gpus, const RunEnvironment& env) {
  SweepOptions so;
  so.cost.dtype = dtype;
  so.seq_len = seq;
  so.min_gpus = min_gpus;
  so.max_gpus = max_gpus;
  so.max_batch = o.max_batch;
  so.workspace_bytes = o.workspace_gib * double(1 << 30);
  std::printf("helix-bench model: %s on %s (%s), %s, S = %lld, %d-%d GPUs, batch 1..%d\n",
              m.name.c_str(), hw.name.c_str(), hw.kind.c_str(), to_string(dtype),
              static_cast<long long>(so.seq_len), min_gpus, max_gpus, so.max_batch);
  std::fflush(stdout);
  const Timed t = timed_sweep(m, hw, so, o.quiet);
  const auto& pts = t.result.points;
  size_t feasible = 0;
  for (const auto& p : pts) feasible += p.feasible;
  const auto f = pareto_frontier(pts, {});
  std::printf("%zu configurations x batches = %zu design points (%zu fit in memory) in %.2f s\n",
              t.result.configs, pts.size(), feasible, t.seconds);
  std::printf("Pareto frontier (%zu points):\n", f.size());
  print_frontier(pts, f, o.frontier_rows);
  if (!o.out.empty()) {
    h5::File out(o.out);
    write_root_attributes(out.id(), env, "model");
    h5::Group g(out.id(), "/model/points");
    write_sweep_attrs(g.id(), m, hw, so, t.result, t.seconds);
    std::vector<size_t> all(pts.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    write_points(g.id(), pts, all);
    out.commit();
    std::printf("written: %s\n", o.out.c_str());
  }
  return 0;
}

}  // namespace

}  // namespace helix
