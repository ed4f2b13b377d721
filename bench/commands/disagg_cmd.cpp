#include "bench/commands/disagg_cmd.hpp"

#include <chrono>
#include <cstdio>

#include "analytic/disagg.hpp"
#include "analytic/reproductions.hpp"
#include "bench/commands/cli_util.hpp"
#include "bench/trace/h5.hpp"
#include "bench/trace/metadata.hpp"
#include "comm/error.hpp"

namespace helix {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void write_points(hid_t g, const ModelSpec& m, const DisaggResult& r) {
  std::vector<std::string> mode, playout, dlayout;
  std::vector<int64_t> p_tp, p_pp, p_batch, p_chunk, p_gpus, d_gpus, d_tp, d_pp, d_kvp, d_tpa,
      d_tpf, d_ep, d_hopb, d_batch, on_f, kv_ok, ftl_ok;
  std::vector<double> ratio, ftl, ttl, user, gpu, egress, ingress;
  for (const ServePoint& s : r.points) {
    mode.emplace_back(to_string(s.mode));
    const bool dis = s.mode == ServeMode::disagg;
    const PrefillConfig pc = dis ? r.prefill[size_t(s.prefill)].cfg : PrefillConfig{};
    playout.emplace_back(dis ? to_string(pc.scheme) : "");
    p_tp.push_back(dis ? pc.tp : 0);
    p_pp.push_back(dis ? pc.pp : 0);
    p_batch.push_back(dis ? pc.batch : 0);
    p_chunk.push_back(dis ? pc.chunk : 0);
    p_gpus.push_back(dis ? pc.gpus() : 0);
    const DesignPoint& d = r.decode[size_t(s.decode)];
    dlayout.emplace_back(to_string(d.cfg.layout));
    d_gpus.push_back(d.cfg.gpus());
    d_tp.push_back(d.cfg.n);
    d_pp.push_back(d.cfg.pp);
    d_kvp.push_back(d.cfg.kvp);
    d_tpa.push_back(d.cfg.tpa);
    d_tpf.push_back(d.cfg.tpf);
    d_ep.push_back(d.cfg.ep);
    d_hopb.push_back(d.cfg.hopb_chunks_run(d.batch));
    d_batch.push_back(d.batch);
    ratio.push_back(s.ratio);
    ftl.push_back(s.ftl_s);
    ttl.push_back(s.ttl_us);
    user.push_back(s.tokens_per_s_per_user);
    gpu.push_back(s.tokens_per_s_per_gpu);
    egress.push_back(s.kv_egress_gbps_per_prefill_gpu);
    ingress.push_back(s.kv_ingress_gbps_per_decode_gpu);
    on_f.push_back(s.on_frontier);
    kv_ok.push_back(s.kv_ok);
    ftl_ok.push_back(s.ftl_ok);
  }
  const hsize_t n = r.points.size();
  h5::write(g, "mode", mode);
  h5::write(g, "prefill_layout", playout);
  h5::write(g, "prefill_tp", p_tp, "");
  h5::write(g, "prefill_pp", p_pp, "");
  h5::write(g, "prefill_batch", p_batch, "requests");
  h5::write(g, "prefill_chunk", p_chunk, "tokens");
  h5::write(g, "prefill_gpus", p_gpus, "");
  h5::write(g, "decode_layout", dlayout);
  h5::write(g, "decode_gpus", d_gpus, "");
  h5::write(g, "decode_tp", d_tp, "");
  h5::write(g, "decode_pp", d_pp, "");
  h5::write(g, "decode_kvp", d_kvp, "");
  h5::write(g, "decode_tpa", d_tpa, "");
  h5::write(g, "decode_tpf", d_tpf, "");
  h5::write(g, "decode_ep", d_ep, "");
  h5::write(g, "decode_hopb", d_hopb, "");
  h5::write(g, "decode_batch", d_batch, "requests");
  h5::write(g, "ratio", {n}, ratio.data(), "prefill GPUs / decode GPUs");
  h5::write(g, "ftl_s", {n}, ftl.data(), "s");
  h5::write(g, "ttl_us", {n}, ttl.data(), "us");
  h5::write(g, "tokens_per_s_per_user", {n}, user.data(), "tokens/s/user");
  h5::write(g, "tokens_per_s_per_gpu", {n}, gpu.data(), "tokens/s/GPU");
  h5::write(g, "kv_egress_gbps_per_prefill_gpu", {n}, egress.data(), "GB/s");
  h5::write(g, "kv_ingress_gbps_per_decode_gpu", {n}, ingress.data(), "GB/s");
  h5::write(g, "on_frontier", on_f, "");
  h5::write(g, "kv_ok", kv_ok, "");
  h5::write(g, "ftl_ok", ftl_ok, "");
  (void)m;
}

void write_curve(hid_t loc, const std::string& path, const std::vector<double>& u,
                 const std::vector<double>& t, const std::vector<double>* ratio = nullptr) {
  h5::Group g(loc, path);
  h5::write(g.id(), "tokens_per_s_per_user", {hsize_t(u.size())}, u.data(), "tokens/s/user");
  h5::write(g.id(), "tokens_per_s_per_gpu", {hsize_t(t.size())}, t.data(), "tokens/s/GPU");
  if (ratio) h5::write(g.id(), "ratio", {hsize_t(ratio->size())}, ratio->data(), "");
}

}  // namespace

CLI::App* add_disagg_command(CLI::App& app, DisaggCmdOptions& o) {
  CLI::App* c = app.add_subcommand(
      "disagg",
      "Disaggregated against co-located serving, priced by the cost model: prefill layouts (TP, "
      "TEP, PP, chunked pipeline CPP) x decode layouts (the decode design space, Helix included) "
      "x pool ratio with dynamic rate matching, an FTL cutoff and the KV transfer bandwidth each "
      "point needs; both Pareto frontiers, the best ratio per interactivity level, fixed-ratio "
      "curves.");
  c->add_option("--hardware", o.hardware, "Hardware profile name or .json")->capture_default_str();
  c->add_option("--model", o.model, "Model name or .json");
  c->add_option("--isl", o.isl, "Input (prompt) length in tokens (K = 1024, M = 1048576)")
      ->capture_default_str();
  c->add_option("--osl", o.osl, "Output length in tokens")->capture_default_str();
  c->add_option("--ftl-max", o.ftl_max_s, "First-token latency cutoff, s")->capture_default_str();
  c->add_option("--domain", o.domain,
                "NVLink domain size in GPUs, e.g. 8 or 72 (default: profile)");
  c->add_option("--nic-gbps", o.nic_gbps, "NIC bandwidth per GPU for the KV transfer, GB/s")
      ->capture_default_str();
  c->add_option("--fixed-ratio", o.fixed_ratio,
                "Comma-separated fixed prefill:decode GPU ratios whose curves are also written");
  c->add_option("--dtype", o.dtype, "Precision of weights, KV and arithmetic: bf16, fp8, fp4")
      ->capture_default_str();
  c->add_option("--gpus", o.gpus,
                "Largest GPU count of one decode instance (and of one prefill "
                "instance unless --prefill-gpus is given)")
      ->capture_default_str();
  c->add_option("--prefill-gpus", o.prefill_gpus,
                "Largest GPU count of one prefill instance (TP x PP; TP stays <= 16 and inside "
                "the NVLink domain, PP stages may span domains over the network; default: --gpus)");
  c->add_option("--reproduce", o.reproduce,
                "beyond-the-buzz: the paper's findings (GB200 NVL72 profile unless --hardware), "
                "stored under /reproduce/beyond-the-buzz");
  c->add_option("--out", o.out, "HDF5 file to write (FILE.tmp.PID, renamed when complete)");
  c->add_flag("--quiet", o.quiet, "No progress lines");
  c->add_flag("--frontiers-only", o.frontiers_only,
              "Write the frontiers, best ratios and fixed-ratio curves but not /disagg/points");
  c->footer(
      "\nExamples:\n"
      "  helix-bench disagg --hardware gb200-nvl72 --model deepseek-r1 --isl 16K --osl 2K \\\n"
      "      --fixed-ratio 3.5,0.5 --out results/disagg_deepseek.h5\n"
      "  helix-bench disagg --reproduce beyond-the-buzz --out results/beyond_the_buzz.h5\n"
      "\nExit codes: 0 done; 2 bad input (nothing written).");
  return c;
}

int run_disagg(const DisaggCmdOptions& o, const MpiComm& world, int argc, char** argv) {
  if (!o.reproduce.empty() && o.reproduce != "beyond-the-buzz")
    throw UsageError("--reproduce: only 'beyond-the-buzz' is known, got '" + o.reproduce + "'");
  if (o.reproduce.empty() && o.model.empty())
    throw UsageError("--model: required (a model name or .json)");
  const auto isl = parse_positive_list(o.isl, "--isl");
  const auto osl = parse_positive_list(o.osl, "--osl");
  if (isl.size() != 1 || osl.size() != 1) throw UsageError("--isl/--osl: give one length each");
  if (osl[0] < 2) throw UsageError("--osl: must be at least 2 tokens");
  if (!(o.ftl_max_s > 0)) throw UsageError("--ftl-max: must be > 0 s");
  if (!(o.nic_gbps > 0)) throw UsageError("--nic-gbps: must be > 0 GB/s");
  if (o.domain < 0 || o.domain > 4096) throw UsageError("--domain: must be 1 to 4096 GPUs");
  const auto dt = parse_dtype(o.dtype);
  if (!dt || *dt == DType::fp32) throw UsageError("--dtype: must be bf16, fp8 or fp4");
  const auto gpus = parse_positive_list(o.gpus, "--gpus");
  if (gpus.size() != 1 || gpus[0] > 4096) throw UsageError("--gpus: give one count <= 4096");
  int64_t prefill_gpus = gpus[0];
  if (!o.prefill_gpus.empty()) {
    const auto pg = parse_positive_list(o.prefill_gpus, "--prefill-gpus");
    if (pg.size() != 1 || pg[0] > 4096) throw UsageError("--prefill-gpus: give one count <= 4096");
    prefill_gpus = pg[0];
  }
  std::vector<double> fixed;
  if (!o.fixed_ratio.empty())
    for (const std::string& s : split_list(o.fixed_ratio)) {
      char* end = nullptr;
      const double v = std::strtod(s.c_str(), &end);
      if (s.empty() || *end != '\0' || !(v > 0))
        throw UsageError("--fixed-ratio: '" + s + "' is not a positive number");
      fixed.push_back(v);
    }
  HardwareProfile hw = load_hardware(o.hardware);
  if (o.domain > 0) hw.nvlink.domain_gpus = o.domain;
  hw.flops_tflops_for(*dt);
  ModelSpec m;
  if (!o.model.empty()) {
    try {
      m = load_model(o.model);
    } catch (const std::invalid_argument& e) {
      throw UsageError(e.what());
    }
  }
  if (world.rank() == 0 && !o.out.empty()) h5::File probe(o.out);
  const RunEnvironment env = collect_environment(world, argc, argv, "model", "none");
  if (world.rank() != 0) return 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto progress = [&](const std::string& s) {
    if (!o.quiet) std::fprintf(stderr, "[disagg %.1f s] %s\n", seconds_since(t0), s.c_str());
  };

  if (!o.reproduce.empty()) {
    std::vector<BuzzCurve> curves;
    const auto rows = beyond_the_buzz_rows(hw, progress, &curves);
    const double secs = seconds_since(t0);
    std::printf(
        "helix-bench disagg --reproduce beyond-the-buzz: %s, fp4, FTL <= 10 s, instances of <= 64 "
        "decode / %d prefill GPUs (%.1f s)\n",
        hw.name.c_str(), kBuzzPrefillGpus, secs);
    std::printf("%-100s %-26s %-40s %s\n", "finding", "paper", "ours", "holds");
    for (const auto& r : rows)
      std::printf("%-100s %-26s %-40s %s\n", r.finding.c_str(), r.paper.c_str(), r.ours.c_str(),
                  r.holds ? "yes" : "NO");
    if (!o.out.empty()) {
      h5::File f(o.out);
      write_root_attributes(f.id(), env, "disagg");
      h5::Group g(f.id(), "/reproduce/beyond-the-buzz");
      h5::attr(g.id(), "paper", "Mitra et al., Beyond the Buzz, arXiv 2506.05508");
      h5::attr(g.id(), "hardware", hw.name);
      h5::attr(g.id(), "seconds", secs);
      std::vector<std::string> fi, pa, ou;
      std::vector<int64_t> ho;
      for (const auto& r : rows) {
        fi.push_back(r.finding);
        pa.push_back(r.paper);
        ou.push_back(r.ours);
        ho.push_back(r.holds);
      }
      h5::write(g.id(), "finding", fi);
      h5::write(g.id(), "paper", pa);
      h5::write(g.id(), "ours", ou);
      h5::write(g.id(), "holds", ho, "");
      h5::attr(g.id(), "max_prefill_gpus", kBuzzPrefillGpus);
      for (const BuzzCurve& c : curves) {
        const std::string path = "/reproduce/beyond-the-buzz/ratio/" + c.model;
        write_curve(f.id(), path, c.tokens_per_s_per_user, c.tokens_per_s_per_gpu, &c.ratio);
        h5::Group cg(f.id(), path);
        h5::attr(cg.id(), "isl", int64_t(16384));
        h5::attr(cg.id(), "osl", int64_t(2048));
        h5::attr(cg.id(), "nvlink_domain_gpus", 72);
      }
      f.commit();
      std::printf("written: %s\n", o.out.c_str());
    }
    return 0;
  }

  DisaggOptions d;
  d.w = {isl[0], osl[0]};
  d.ftl_max_s = o.ftl_max_s;
  d.nic_gbps = o.nic_gbps;
  d.max_gpus = int(gpus[0]);
  d.max_prefill_gpus = int(prefill_gpus);
  d.fixed_ratios = fixed;
  d.dtype = *dt;
  std::printf(
      "helix-bench disagg: %s on %s (NVLink domain %d), %s, ISL %lld / OSL %lld, FTL <= "
      "%.1f s, NIC %.0f GB/s per GPU, instances of <= %d decode / %d prefill GPUs\n",
      m.name.c_str(), hw.name.c_str(), hw.nvlink.domain_gpus, to_string(*dt),
      static_cast<long long>(isl[0]), static_cast<long long>(osl[0]), o.ftl_max_s, o.nic_gbps,
      d.max_gpus, d.max_prefill_gpus);
  const DisaggResult r = disagg_sweep(m, hw, d, progress);
  const double secs = seconds_since(t0);
  std::printf(
      "%zu prefill points (%zu candidates), %zu decode points, %zu serving points in %.2f "
      "s; disaggregated over co-located: %.2fx (geo-mean at equal tokens/s/user)\n",
      r.prefill.size(), r.prefill_candidates, r.decode.size(), r.points.size(), secs,
      disagg_gain(r));
  std::printf("%-20s %12s %12s %8s %8s %10s %10s %8s\n", "frontier", "tok/s/user", "tok/s/gpu",
              "ratio", "ftl_s", "decode", "prefill", "kv_gbps");
  auto show = [&](const char* name, const std::vector<size_t>& f) {
    const size_t rows = std::min<size_t>(f.size(), 12);
    for (size_t k = 0; k < rows; ++k) {
      const ServePoint& s = r.points[f[rows == 1 ? 0 : k * (f.size() - 1) / (rows - 1)]];
      const DesignPoint& dp = r.decode[size_t(s.decode)];
      std::printf("%-20s %12.1f %12.1f %8.2f %8.2f %6s/%-3d %6s/%-3d %8.2f\n", name,
                  s.tokens_per_s_per_user, s.tokens_per_s_per_gpu, s.ratio, s.ftl_s,
                  to_string(dp.cfg.layout), dp.cfg.gpus(),
                  s.prefill >= 0 ? to_string(r.prefill[size_t(s.prefill)].cfg.scheme) : "-",
                  s.prefill >= 0 ? r.prefill[size_t(s.prefill)].cfg.gpus() : 0,
                  std::max(s.kv_egress_gbps_per_prefill_gpu, s.kv_ingress_gbps_per_decode_gpu));
    }
  };
  show("disaggregated", r.disagg_frontier);
  show(to_string(ServeMode::colocated), r.colocated_frontier);
  if (!o.out.empty()) {
    h5::File f(o.out);
    write_root_attributes(f.id(), env, "disagg");
    if (!o.frontiers_only) {
      h5::Group g(f.id(), "/disagg/points");
      h5::attr(g.id(), "hardware", hw.name);
      h5::attr(g.id(), "model", m.name);
      h5::attr(g.id(), "isl", isl[0]);
      h5::attr(g.id(), "osl", osl[0]);
      h5::attr(g.id(), "dtype", to_string(*dt));
      h5::attr(g.id(), "nvlink_domain_gpus", hw.nvlink.domain_gpus);
      h5::attr(g.id(), "ftl_max_s", o.ftl_max_s);
      h5::attr(g.id(), "nic_gbps", o.nic_gbps);
      h5::attr(g.id(), "sweep_s", secs);
      write_points(g.id(), m, r);
    }
    {
      h5::Group g(f.id(), "/disagg");
      h5::attr(g.id(), "hardware", hw.name);
      h5::attr(g.id(), "model", m.name);
      h5::attr(g.id(), "isl", isl[0]);
      h5::attr(g.id(), "osl", osl[0]);
      h5::attr(g.id(), "nvlink_domain_gpus", hw.nvlink.domain_gpus);
      h5::attr(g.id(), "max_gpus", int64_t(d.max_gpus));
      h5::attr(g.id(), "max_prefill_gpus", int64_t(d.max_prefill_gpus));
      h5::attr(g.id(), "gain_geomean", disagg_gain(r));
    }
    const std::pair<const char*, const std::vector<size_t>*> frontiers[] = {
        {"disagg", &r.disagg_frontier}, {"colocated", &r.colocated_frontier}};
    for (const auto& [name, fr] : frontiers) {
      std::vector<double> u, t, q;
      for (size_t i : *fr) {
        u.push_back(r.points[i].tokens_per_s_per_user);
        t.push_back(r.points[i].tokens_per_s_per_gpu);
        q.push_back(r.points[i].ratio);
      }
      write_curve(f.id(), std::string("/disagg/frontier/") + name, u, t);
      if (std::string(name) == "disagg") write_curve(f.id(), "/disagg/best_ratio", u, t, &q);
    }
    for (size_t k = 0; k < fixed.size(); ++k) {
      std::vector<double> u, t;
      for (const auto& [a, b] : r.fixed_curves[k]) {
        u.push_back(a);
        t.push_back(b);
      }
      char name[64];
      std::snprintf(name, sizeof name, "/disagg/fixed_ratio/%g", fixed[k]);
      write_curve(f.id(), name, u, t);
      h5::Group g(f.id(), name);
      h5::attr(g.id(), "ratio", fixed[k]);
    }
    f.commit();
    std::printf("written: %s\n", o.out.c_str());
  }
  return 0;
}

}  // namespace helix
