#include "bench/commands/calibrate_cmd.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <fstream>

#include "analytic/hardware.hpp"
#include "bench/commands/cli_util.hpp"
#include "bench/micro/collectives.hpp"
#include "bench/micro/kernel_runner.hpp"
#include "bench/micro/micro_options.hpp"
#include "bench/trace/metadata.hpp"
#include "bench/trace/output_path.hpp"
#include "bench/version.hpp"
#include "comm/error.hpp"

namespace helix {

using namespace helix::micro;

namespace {

// The decode GEMM of the rate sweep: Llama-3.1-405B's FFN up-projection shard at TP 8
// (K = hidden 16384, N = 53248 / 8 = 6656), scaled down by the weight cap like helix-micro's.
constexpr int64_t kGemmK = 16384, kGemmN = 6656;
// Decode attention of the CUDA backend: KV per shape at most this (the larger shapes are skipped).
constexpr int64_t kCudaAttentionKvCap = int64_t(4) << 30;

std::string utc_date() {
  char buf[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%d", std::gmtime(&now));
  return buf;
}

std::string host_name() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return host;
}

// The built-in profile of this device (by its name), whose cited link figures stand in for what
// one rank cannot measure; the emulation's default where none matches.
std::string fallback_profile(const std::string& device) {
  std::string d = device;
  for (char& ch : d) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  if (d.find("gb200") != std::string::npos) return "gb200-nvl72";
  if (d.find("b200") != std::string::npos) return "b200";
  if (d.find("h200") != std::string::npos) return "h200";
  if (d.find("h100") != std::string::npos) return "h100-sxm";
  return "gb200-nvl72";
}

// Group sizes measured on `world` ranks: 2, 4, 8, ... dividing the world, and the world.
std::vector<int> group_sizes(int world) {
  std::vector<int> g;
  for (int s = 2; s < world; s *= 2)
    if (world % s == 0) g.push_back(s);
  if (world > 1) g.push_back(world);
  return g;
}

// Every collective's curve over groups of `g` consecutive ranks, all groups measuring at once (as
// the groups of a layout run at once). Every rank calls this; the result is the group of rank 0.
std::vector<CollectiveMeasurement> measure_curves(const std::string& backend, MPI_Comm world, int g,
                                                  const std::vector<int64_t>& sizes, int warmup,
                                                  int iters, bool print) {
  int rank = 0;
  MPI_Comm_rank(world, &rank);
  MPI_Comm sub = MPI_COMM_NULL;
  HELIX_MPI_CHECK(MPI_Comm_split(world, rank / g, rank, &sub));
  std::vector<CollectiveMeasurement> out;
  {
    std::unique_ptr<CollectiveBackend> cb = make_collective_backend(backend, sub);
    for (Collective c : kMeasuredCollectives) {
      std::vector<CollResult> rows;
      for (int64_t s : sizes) {
        if (op_count_for_size(c, g, s, DType::fp32) == 0) continue;
        rows.push_back(measure_collective(*cb, sub, c, DType::fp32, s, false, warmup, iters));
        HELIX_CHECK(rows.back().wrong == 0,
                    std::string(to_string(c)) + " returned wrong elements during calibration");
      }
      if (rows.empty()) continue;
      if (print) {
        print_collective_table(stdout, c, g, cb->name(), rows);
        std::fflush(stdout);
      }
      CollectiveMeasurement m;
      m.collective = c;
      m.group_size = g;
      m.latency_us = rows.front().time_us_median;
      m.busbw_gbps = rows.back().busbw_gbps;
      for (const CollResult& r : rows) m.points.push_back({double(r.size_bytes), r.time_us_median});
      out.push_back(m);
    }
  }
  MPI_Comm_free(&sub);
  return out;
}

const CollectiveMeasurement* find(const std::vector<CollectiveMeasurement>& list, Collective c,
                                  int g) {
  for (const auto& m : list)
    if (m.collective == c && m.group_size == g) return &m;
  return nullptr;
}

// Decode attention at the shapes the layouts give one rank (GQA: 1, 8 or 16 query heads per KV
// head, 1 or 8 KV heads; MLA: 16 to 128 heads; 1 or 8 requests; 16K, 128K and 1M tokens), each
// shape's KV under `cap` bytes (fewer tokens on a capped machine).
std::vector<std::pair<CasePtr, AttentionPoint>> attention_cases(bool quick, int64_t cap,
                                                                int64_t es) {
  const std::vector<int64_t> tokens =
      quick ? std::vector<int64_t>{16384, 1 << 20} : std::vector<int64_t>{16384, 131072, 1 << 20};
  const std::vector<int64_t> batches = quick ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 8};
  auto fit = [&](int64_t t, double per_token) {
    if (cap > 0 && per_token * double(t) > double(cap)) t = int64_t(double(cap) / per_token);
    return std::max<int64_t>(64, t / 64 * 64);
  };
  std::vector<std::pair<CasePtr, AttentionPoint>> out;
  std::vector<std::vector<int64_t>> seen;
  for (int64_t b : batches) {
    for (int64_t q : quick ? std::vector<int64_t>{8, 16} : std::vector<int64_t>{1, 8, 16})
      for (int64_t kvh : {int64_t(1), int64_t(8)})
        for (int64_t t0 : tokens) {
          const int64_t t = fit(t0, double(2 * b * kvh * 128 * es));
          if (std::find(seen.begin(), seen.end(), std::vector<int64_t>{0, b, q, kvh, t}) !=
              seen.end())
            continue;
          seen.push_back({0, b, q, kvh, t});
          AttentionPoint p;
          p.q_per_kv = int(q);
          p.kv_heads = int(kvh);
          p.batch = int(b);
          p.kv_bytes = double(2 * b * kvh * 128 * es) * double(t);
          out.emplace_back(attention_case(GqaDecodeShape{b, q * kvh, kvh, 128, t}), p);
        }
    for (int64_t h : quick ? std::vector<int64_t>{16, 128} : std::vector<int64_t>{16, 32, 64, 128})
      for (int64_t t0 : tokens) {
        const int64_t t = fit(t0, double(b * 576 * es));
        if (std::find(seen.begin(), seen.end(), std::vector<int64_t>{1, b, h, 1, t}) != seen.end())
          continue;
        seen.push_back({1, b, h, 1, t});
        AttentionPoint p;
        p.mla = true;
        p.q_per_kv = int(h);
        p.batch = int(b);
        p.kv_bytes = double(b * 576 * es) * double(t);
        out.emplace_back(attention_case(MlaDecodeShape{b, h, 512, 64, t}), p);
      }
  }
  return out;
}

// The profile under the output-path policy: "<path>.tmp.<pid>", removed when interrupted,
// renamed when complete.
void write_profile(const std::string& path, const HardwareProfile& p) {
  AtomicOutput file(path);
  {
    std::ofstream out(file.tmp());
    if (!out) throw UsageError("--out: cannot create '" + path + "'");
    out << hardware_to_json(p);
    out.close();
    if (!out) throw UsageError("--out: cannot write '" + path + "'");
  }
  if (!file.commit()) throw UsageError("--out: cannot rename the temporary file to '" + path + "'");
}

}  // namespace

CLI::App* add_calibrate_command(CLI::App& app, CalibrateOptions& o) {
  CLI::App* c = app.add_subcommand(
      "calibrate",
      "Measure this machine (read-only stream bandwidth, GEMM rates at decode shapes, the fixed "
      "cost of a kernel launch, decode attention efficiency, and with several ranks collective "
      "latency and bus-bandwidth curves for every group size the layouts use) and write a "
      "hardware profile JSON that `model`, `model --validate` and `decode --emulate` read.");
  c->add_option("--out", o.out, "Hardware profile to write (FILE.json; written atomically)")
      ->required();
  c->add_option("--backend", o.backend, "cpu (host memory, MPI) or cuda (GPU, NCCL)")
      ->capture_default_str();
  c->add_option("--name", o.name, "Profile name (default: calibrated-<host>-<backend>)");
  c->add_flag("--quick", o.quick,
              "Smaller buffers and sweeps, fewer iterations and attention shapes (CI, short "
              "studies)");
  c->add_option("--stream-bytes", o.stream_bytes,
                "Stream buffer per rank (default: cpu 1G, quick 128M; cuda 4G)");
  c->add_option("--max-weight-bytes", o.max_weight_bytes,
                "Cap on the GEMM weights (the larger of K = 16384 and N = 6656 halved until under "
                "it; default: cpu 16M, "
                "quick 1M; cuda 0 = none)");
  c->add_option("--max-bytes", o.max_bytes,
                "Largest collective size S (default 64M; cpu quick 1M)");
  add_int_option(c, "--iters", o.iters, 0, kMaxIters,
                 "Timed iterations per kernel (default 10; quick 3)", false);
  add_int_option(c, "--coll-iters", o.coll_iters, 0, kMaxIters,
                 "Timed iterations per collective size (default 20; quick 5)", false);
  c->add_option("--link-fallback", o.link_fallback,
                "Built-in profile whose cited NVLink and network figures a one-rank profile takes "
                "(default: the one matching the device name: h100-sxm, h200, b200, gb200-nvl72; "
                "else gb200-nvl72)");
  c->footer(
      "\nThe profile's mem_bw_gbps and stream_gbps are the read-only stream bandwidth of one "
      "rank with every rank reading at once; flops_tflops.bf16 is the highest GEMM rate of the "
      "M sweep, launch cost removed (on cpu the fp32 rate, also under 'fp32'); launch_us the "
      "time of one GEMM and of one other kernel on a tiny operand; decode_attention the "
      "achieved fraction of stream_gbps of the decode attention kernel per shape; collectives a "
      "curve (time per size) per collective and group size 2, 4, ... and all ranks, each group "
      "size measured by consecutive groups of ranks all at once; nvlink is the all-reduce over "
      "the ranks of one node (bus bandwidth at the largest size, time of the smallest); network "
      "the same over all ranks (equal to nvlink on one node). With one rank no collective is "
      "measured: nvlink and network come from a built-in profile (--link-fallback), named in "
      "the profile's sources.\n"
      "\nExample:\n  mpirun -np 4 build/bin/helix-bench calibrate --backend cuda --out "
      "h200x4.json");
  return c;
}

int run_calibrate(const CalibrateOptions& o, const MpiComm& world, int argc, char** argv) {
  const bool root = world.rank() == 0;
  check_output_paths(world, {{"--out", o.out}}, {{"--link-fallback", o.link_fallback}});
  std::unique_ptr<MicroBackend> backend = make_micro_backend(o.backend);
  MicroOptions mo;
  mo.backend = o.backend;
  mo.quick = o.quick;
  mo.stream_bytes = o.stream_bytes;
  mo.max_weight_bytes = o.max_weight_bytes;
  mo.max_bytes = o.max_bytes;
  mo.iters = o.iters;
  mo.coll_iters = o.coll_iters;
  if (o.backend == "cuda" && o.quick) mo.size_factor = 4;
  const MicroConfig cfg = resolve_micro_options(mo, backend->storage_bytes());
  if (o.out.empty()) throw UsageError("--out: give the profile file to write");
  check_cases_fit(*backend, {stream_case(cfg.stream_bytes)}, world.raw());
  const std::string fallback_name =
      o.link_fallback.empty() ? fallback_profile(backend->device_description()) : o.link_fallback;
  HardwareProfile fallback;
  try {
    fallback = load_hardware(fallback_name);
  } catch (const UsageError& e) {
    throw UsageError(std::string("--link-fallback: ") + e.what());
  }

  RunEnvironment env =
      collect_environment(world, argc, argv, o.backend, backend->device_description());
  env.cuda_version = backend->cuda_version();
  env.nccl_version = backend->nccl_version();
  const MPI_Comm comm = world.raw();
  const int warmup = cfg.warmup;
  auto say = [&](const char* fmt, auto... args) {
    if (!root) return;
    std::printf(fmt, args...);
    std::fflush(stdout);
  };

  // 1. Stream bandwidth.
  const KernelResult stream =
      measure_kernel(*backend, comm, *stream_case(cfg.stream_bytes), warmup, cfg.iters, 0.0, 11);
  say("calibrate: stream %.2f GB/s per rank (%s, %d ranks reading at once)\n", stream.gbps,
      format_bytes(double(cfg.stream_bytes)).c_str(), world.size());

  // 2. Fixed cost of a launch: a GEMM and a reduction on tiny operands.
  const KernelResult tiny_gemm =
      measure_kernel(*backend, comm, *gemm_case(GemmShape::packed(1, 256, 256), "gemm/launch"),
                     warmup, cfg.iters, stream.gbps, 13);
  const KernelResult tiny_kernel =
      measure_kernel(*backend, comm, *stream_case(4096), warmup, cfg.iters, stream.gbps, 15);
  say("calibrate: launch: GEMM M=1 K=N=256 %.2f us, read of 4 KiB %.2f us\n",
      tiny_gemm.time_us_median, tiny_kernel.time_us_median);

  // 3. GEMM rates over the decode M sweep (the launch cost taken out of each time).
  int64_t k = kGemmK, n = kGemmN;
  const int64_t cap = cfg.cases.max_weight_bytes, es = backend->storage_bytes();
  fit_gemm_weights(&k, &n, cap, es);
  const std::vector<int64_t> ms =
      o.quick ? std::vector<int64_t>{1, 8, 64} : std::vector<int64_t>{1, 2, 4, 8, 16, 32, 64, 128};
  std::vector<double> rates;
  for (int64_t m : ms) {
    const CasePtr c = gemm_case(GemmShape::packed(m, k, n), "gemm/M" + std::to_string(m));
    const KernelResult r = measure_kernel(*backend, comm, *c, warmup, cfg.iters, stream.gbps, 17);
    const double us = r.time_us_median > 2 * tiny_gemm.time_us_median
                          ? r.time_us_median - tiny_gemm.time_us_median
                          : r.time_us_median;
    rates.push_back(r.flops / us / 1e6);
    say("calibrate: gemm M=%lld K=%lld N=%lld: %.1f us, %.4f TFLOP/s without the launch, %.1f "
        "GB/s\n",
        (long long)m, (long long)k, (long long)n, r.time_us_median, rates.back(), r.gbps);
  }
  const double peak = *std::max_element(rates.begin(), rates.end());

  // 4. Decode attention efficiency.
  std::vector<AttentionPoint> attention;
  const int64_t kv_cap = o.backend == "cuda" ? kCudaAttentionKvCap : cfg.cases.max_kv_bytes;
  for (const auto& [c, point] : attention_cases(o.quick, kv_cap, es)) {
    const KernelResult r = measure_kernel(*backend, comm, *c, warmup, cfg.iters, stream.gbps, 19);
    AttentionPoint p = point;
    p.efficiency = std::min(1.0, p.kv_bytes / r.time_us_median / 1e3 / stream.gbps);
    attention.push_back(p);
    say("calibrate: %s: %.1f us, %.0f GB/s of KV, %.3f of the stream\n", c->name.c_str(),
        r.time_us_median, p.kv_bytes / r.time_us_median / 1e3, p.efficiency);
  }

  // 5. Collective curves per group size (several ranks): over one node's ranks (nvlink) and over
  // all (network).
  MPI_Comm node_comm = MPI_COMM_NULL;
  HELIX_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node_comm));
  int local = 1;
  MPI_Comm_size(node_comm, &local);
  MPI_Comm_free(&node_comm);
  int min_local = local;
  HELIX_MPI_CHECK(MPI_Allreduce(&local, &min_local, 1, MPI_INT, MPI_MIN, comm));
  const bool one_node = local == world.size();
  std::vector<CollectiveMeasurement> curves;
  for (int g : group_sizes(world.size())) {
    say("calibrate: collectives over groups of %d consecutive ranks, all groups at once\n", g);
    for (auto& m : measure_curves(o.backend, comm, g, cfg.sizes, warmup, cfg.coll_iters, root))
      curves.push_back(m);
  }

  if (root) {
    HardwareProfile p;
    const std::string date = utc_date();
    p.name = o.name.empty() ? "calibrated-" + host_name() + "-" + o.backend : o.name;
    p.kind = "calibrated";
    p.description = "hosts " + env.hosts + "; device " + backend->device_description() + " (" +
                    backend->storage_dtype() + "); " + std::to_string(world.size()) + " ranks; " +
                    env.utc_time;
    if (world.size() == 1)
      p.description += "; one rank: no collectives measured, nvlink and network from " +
                       fallback.name + " (sources)";
    else if (one_node)
      p.description += "; one node: network figures equal the nvlink figures";
    if (o.backend == "cpu")
      p.description +=
          "; cpu backend: host memory, fp32 GEMMs (flops_tflops.bf16 holds the fp32 "
          "rate), MPI over host memory";
    p.memory_bytes = double(backend->memory_bytes());
    p.mem_bw_gbps = stream.gbps;
    p.mem_bw_efficiency = 1.0;
    p.stream_gbps = stream.gbps;
    p.flops_tflops[DType::bf16] = peak;
    if (o.backend == "cpu") p.flops_tflops[DType::fp32] = peak;
    for (size_t i = 0; i < ms.size(); ++i)
      p.gemm_efficiency.push_back({double(ms[i]), peak > 0 ? rates[i] / peak : 0.0});
    p.gemm_launch_us = tiny_gemm.time_us_median;
    p.kernel_launch_us = tiny_kernel.time_us_median;
    p.decode_attention = attention;
    p.collectives = curves;
    p.sources["*"] = std::string("measured by helix-bench calibrate ") + suite_version() + " (" +
                     git_sha() + ") on " + date;
    const int node_g = one_node ? world.size() : (min_local > 1 ? min_local : 0);
    const CollectiveMeasurement* nv = find(curves, Collective::all_reduce, node_g);
    const CollectiveMeasurement* net = find(curves, Collective::all_reduce, world.size());
    p.nvlink.domain_gpus = local;
    p.network.domain_gpus = 1;
    for (auto [spec, m, key, fb] :
         {std::tuple<LinkSpec*, const CollectiveMeasurement*, std::string, const LinkSpec*>{
              &p.nvlink, nv, "nvlink", &fallback.nvlink},
          {&p.network, net, "network", &fallback.network}}) {
      if (m) {
        spec->bw_gbps = m->busbw_gbps;
        spec->latency_us = m->latency_us;
        continue;
      }
      spec->bw_gbps = fb->bw_gbps;
      spec->latency_us = fb->latency_us;
      for (const char* f : {".bw_gbps", ".latency_us"}) {
        const auto it = fallback.sources.find(key + f);
        p.sources[key + f] = "fallback (not measured: " +
                             std::string(world.size() == 1 ? "one rank" : "one rank per node") +
                             "): built-in profile " + fallback.name + ", " +
                             (it != fallback.sources.end() ? it->second : "no citation");
      }
    }
    if (!nv) {
      p.nvlink.domain_gpus = std::max(local, fallback.nvlink.domain_gpus);
      p.sources["nvlink.domain_gpus"] =
          "fallback: the larger of this node's ranks and " + fallback.name + "'s NVLink domain";
    }
    write_profile(o.out, p);
    std::printf(
        "profile: %s (stream %.2f GB/s, GEMM %.4f TFLOP/s, launch %.2f / %.2f us, %zu attention "
        "points, %zu collective curves, all-reduce busbw %.3f GB/s%s)\n",
        o.out.c_str(), p.stream_gbps, peak, p.gemm_launch_us, p.kernel_launch_us, attention.size(),
        curves.size(), p.network.bw_gbps,
        world.size() == 1 ? (", link figures from " + fallback.name).c_str() : "");
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace helix
