#include "bench/commands/calibrate_cmd.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "bench/commands/cli_util.hpp"
#include "bench/micro/collectives.hpp"
#include "bench/micro/kernel_runner.hpp"
#include "bench/micro/micro_options.hpp"
#include "bench/micro/profile.hpp"
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

struct CollFigures {
  std::vector<CollectiveFigure> list;
  LinkFigures link;  // all_reduce: busbw at the largest size, time at the smallest
};

// Sweeps every collective over `comm` (every rank of it calls this).
CollFigures measure_link(const std::string& backend, MPI_Comm comm,
                         const std::vector<int64_t>& sizes, int warmup, int iters, bool print) {
  std::unique_ptr<CollectiveBackend> cb = make_collective_backend(backend, comm);
  CollFigures f;
  const int n = cb->size();
  for (Collective c : kMeasuredCollectives) {
    std::vector<CollResult> rows;
    for (int64_t s : sizes) {
      if (op_count_for_size(c, n, s, DType::fp32) == 0) continue;
      rows.push_back(measure_collective(*cb, comm, c, DType::fp32, s, false, warmup, iters));
      HELIX_CHECK(rows.back().wrong == 0,
                  std::string(to_string(c)) + " returned wrong elements during calibration");
    }
    if (rows.empty()) continue;
    if (print) print_collective_table(stdout, c, n, cb->name(), rows);
    CollectiveFigure fig;
    fig.collective = to_string(c);
    fig.group_size = n;
    fig.latency_us = rows.front().time_us_median;
    fig.busbw_gbps = rows.back().busbw_gbps;
    f.list.push_back(fig);
    if (c == Collective::all_reduce) {
      f.link.bw_gbps = fig.busbw_gbps;
      f.link.latency_us = fig.latency_us;
    }
  }
  return f;
}

}  // namespace

CLI::App* add_calibrate_command(CLI::App& app, CalibrateOptions& o) {
  CLI::App* c = app.add_subcommand(
      "calibrate",
      "Measure this machine (read-only stream bandwidth, GEMM rates at decode shapes, and with "
      "several ranks collective latency and bus bandwidth) and write a hardware profile JSON "
      "for the cost model.");
  c->add_option("--out", o.out, "Hardware profile to write (FILE.json; written atomically)")
      ->required();
  c->add_option("--backend", o.backend, "cpu (host memory, MPI) or cuda (GPU, NCCL)")
      ->capture_default_str();
  c->add_option("--name", o.name, "Profile name (default: calibrated-<host>-<backend>)");
  c->add_flag("--quick", o.quick, "Smaller buffers and sweeps, fewer iterations (CI)");
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
  c->footer(
      "\nThe profile's mem_bw_gbps and stream_gbps are the read-only stream bandwidth of one "
      "rank with every rank reading at once; flops_tflops.bf16 is the highest GEMM rate of the "
      "M sweep (on cpu the fp32 rate, also under 'fp32'); nvlink is the all-reduce over the "
      "ranks of one node (bus bandwidth at the largest size, time of the smallest); network the "
      "same over all ranks (equal to nvlink on one node). With one rank no collectives are "
      "measured and the link figures are 0.\n"
      "\nExample:\n  mpirun -np 8 build/bin/helix-bench calibrate --backend cuda --out h100.json");
  return c;
}

int run_calibrate(const CalibrateOptions& o, const MpiComm& world, int argc, char** argv) {
  (void)argc;
  (void)argv;
  const bool root = world.rank() == 0;
  check_output_paths(world, {{"--out", o.out}}, {});
  std::unique_ptr<MicroBackend> backend = make_micro_backend(o.backend);
  MicroOptions mo;
  mo.backend = o.backend;
  mo.quick = o.quick;
  mo.stream_bytes = o.stream_bytes;
  mo.max_weight_bytes = o.max_weight_bytes;
  mo.max_bytes = o.max_bytes;
  mo.iters = o.iters;
  mo.coll_iters = o.coll_iters;
  const MicroConfig cfg = resolve_micro_options(mo, backend->storage_bytes());
  if (o.out.empty()) throw UsageError("--out: give the profile file to write");
  check_cases_fit(*backend, {stream_case(cfg.stream_bytes)}, world.raw());

  RunEnvironment env =
      collect_environment(world, argc, argv, o.backend, backend->device_description());
  env.cuda_version = backend->cuda_version();
  env.nccl_version = backend->nccl_version();
  const MPI_Comm comm = world.raw();
  const int warmup = cfg.warmup;

  // 1. Stream bandwidth.
  const KernelResult stream =
      measure_kernel(*backend, comm, *stream_case(cfg.stream_bytes), warmup, cfg.iters, 0.0, 11);
  if (root) {
    std::printf("calibrate: stream %.2f GB/s per rank (%s, %d ranks reading at once)\n",
                stream.gbps, format_bytes(double(cfg.stream_bytes)).c_str(), world.size());
    std::fflush(stdout);
  }

  // 2. GEMM rates over the decode M sweep.
  int64_t k = kGemmK, n = kGemmN;
  const int64_t cap = cfg.cases.max_weight_bytes, es = backend->storage_bytes();
  fit_gemm_weights(&k, &n, cap, es);
  const std::vector<int64_t> ms =
      o.quick ? std::vector<int64_t>{1, 8, 64} : std::vector<int64_t>{1, 2, 4, 8, 16, 32, 64, 128};
  std::vector<double> rates;
  for (int64_t m : ms) {
    const CasePtr c = gemm_case(GemmShape::packed(m, k, n), "gemm/M" + std::to_string(m));
    const KernelResult r = measure_kernel(*backend, comm, *c, warmup, cfg.iters, stream.gbps, 17);
    rates.push_back(r.tflops);
    if (root) {
      std::printf("calibrate: gemm M=%lld K=%lld N=%lld: %.1f us, %.4f TFLOP/s, %.1f GB/s\n",
                  (long long)m, (long long)k, (long long)n, r.time_us_median, r.tflops, r.gbps);
      std::fflush(stdout);
    }
  }
  const double peak = *std::max_element(rates.begin(), rates.end());

  // 3. Collectives (several ranks): over one node's ranks (nvlink) and over all (network).
  CollFigures node, all;
  MPI_Comm node_comm = MPI_COMM_NULL;
  HELIX_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node_comm));
  int local = 1;
  MPI_Comm_size(node_comm, &local);
  int min_local = local;
  HELIX_MPI_CHECK(MPI_Allreduce(&local, &min_local, 1, MPI_INT, MPI_MIN, comm));
  const bool one_node = local == world.size();
  if (world.size() > 1) {
    all = measure_link(o.backend, comm, cfg.sizes, warmup, cfg.coll_iters, root);
    if (one_node)
      node = all;
    else if (min_local > 1)
      node = measure_link(o.backend, node_comm, cfg.sizes, warmup, cfg.coll_iters, false);
  }
  MPI_Comm_free(&node_comm);

  if (root) {
    HardwareProfile p;
    const std::string date = utc_date();
    p.name = o.name.empty() ? "calibrated-" + host_name() + "-" + o.backend : o.name;
    p.description = "hosts " + env.hosts + "; device " + backend->device_description() + " (" +
                    backend->storage_dtype() + "); " + std::to_string(world.size()) + " ranks; " +
                    env.utc_time;
    if (world.size() == 1)
      p.description += "; one rank: no collectives measured, link figures are 0";
    else if (one_node)
      p.description += "; one node: network figures equal the nvlink figures";
    if (o.backend == "cpu")
      p.description +=
          "; cpu backend: host memory, fp32 GEMMs (flops_tflops.bf16 holds the fp32 "
          "rate), MPI over host memory";
    p.memory_bytes = backend->memory_bytes();
    p.mem_bw_gbps = stream.gbps;
    p.mem_bw_efficiency = 1.0;
    p.stream_gbps = stream.gbps;
    p.flops_tflops["bf16"] = peak;
    if (o.backend == "cpu") p.flops_tflops["fp32"] = peak;
    for (size_t i = 0; i < ms.size(); ++i)
      p.gemm_efficiency.push_back({ms[i], peak > 0 ? rates[i] / peak : 0.0});
    p.nvlink = node.link;
    p.nvlink.domain_gpus = local;
    p.network = all.link;
    p.network.domain_gpus = 0;
    p.collectives = all.list;
    p.sources["*"] = std::string("measured by helix-bench calibrate ") + suite_version() + " (" +
                     git_sha() + ") on " + date;
    write_profile(o.out, p);
    std::printf("profile: %s (stream %.2f GB/s, GEMM %.4f TFLOP/s, all-reduce busbw %.3f GB/s)\n",
                o.out.c_str(), p.stream_gbps, peak, p.network.bw_gbps);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace helix
