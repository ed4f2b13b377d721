// helix-micro: kernel and collective micro-benchmarks on Google Benchmark, over MPI ranks.
//
// MPI is initialized first, then Google Benchmark. Every rank runs every benchmark with a fixed
// iteration count (collectives inside the loop never deadlock); each iteration is timed on every
// rank by the backend's timer and the maximum over ranks is fed to SetIterationTime (manual time).
// Only rank 0 reports; the other ranks use a reporter that prints nothing.
#include <benchmark/benchmark.h>
#include <mpi.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <ostream>

#include "bench/commands/cli_util.hpp"
#include "bench/micro/collectives.hpp"
#include "bench/micro/kernel_runner.hpp"
#include "bench/micro/kernel_verify.hpp"
#include "bench/micro/micro_options.hpp"
#include "bench/micro/micro_report.hpp"
#include "bench/trace/h5.hpp"
#include "bench/trace/metadata.hpp"
#include "bench/version.hpp"
#include "comm/error.hpp"
#include "comm/mpi_comm.hpp"

namespace {

using namespace helix;
using namespace helix::micro;

// Decided before MPI_Init (a singleton MPI start sets the launcher variables itself).
bool g_output_is_terminal = false;

bool output_is_terminal() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_STEP_ID",
                        "MPI_LOCALNRANKS", "NO_COLOR"})
    if (std::getenv(v)) return false;
  const char* term = std::getenv("TERM");
  return isatty(STDOUT_FILENO) && term && *term && std::strcmp(term, "dumb") != 0;
}

class NullReporter final : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

// What the registered benchmarks share. Results are merged by name (repetitions append
// iterations) and kept on rank 0.
struct Context {
  MpiComm* world = nullptr;
  MicroBackend* backend = nullptr;
  CollectiveBackend* comm = nullptr;
  MicroConfig cfg;
  uint64_t seed = 0;
  double ceiling_gbps = 0;
  std::vector<CasePtr> cases;
  std::vector<KernelResult> kernels;
  std::map<std::string, size_t> kernel_index;
  std::vector<CollResult> colls;
  std::map<std::string, size_t> coll_index;
  std::map<std::string, int> verified;  // verify_key -> 1 ok, 0 failed (same on every rank)
  int verify_failures = 0;
};

// The correctness check of a case (once per verify_key, outside any timed region, every rank on
// its own device): 1 ok, 0 mismatch on some rank, -1 not checked.
int verify_once(Context* ctx, const KernelCase& c, uint64_t seed) {
  if (!ctx->cfg.verify || !verifiable(c)) return -1;
  const std::string key = c.verify_key();
  auto it = ctx->verified.find(key);
  if (it != ctx->verified.end()) return it->second;
  const VerifyResult v = verify_case(*ctx->backend, c, seed);
  const MPI_Comm comm = ctx->world->raw();
  if (!v.ok)
    std::fprintf(stderr, "helix-micro: rank %d: VERIFY MISMATCH %s: %s\n", ctx->world->rank(),
                 key.c_str(), v.detail.c_str());
  int ok = v.ok ? 1 : 0;
  HELIX_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, comm));
  if (ctx->world->rank() == 0)
    std::fprintf(stderr, "verify %s: %s: %s\n", key.c_str(), v.detail.c_str(),
                 ok ? "ok" : "MISMATCH (exit code 3)");
  if (!ok) ++ctx->verify_failures;
  ctx->verified.emplace(key, ok);
  return ok;
}

void run_kernel(benchmark::State& st, Context* ctx, size_t i) {
  const KernelCase& c = *ctx->cases[i];
  MicroBackend& b = *ctx->backend;
  const int verified = verify_once(ctx, c, ctx->seed + 104729 + i * 31);
  PreparedKernel k(b, c, rotate_bytes_for(c, b), ctx->seed + i * 7919);
  for (int w = 0; w < ctx->cfg.warmup; ++w) k.launch();
  b.synchronize();
  KernelResult r = kernel_result(c, b);
  r.verified = verified;
  for (auto _ : st) {
    const double us = timed_iteration_us([&] { return k.time_once_us(); }, ctx->world->raw());
    st.SetIterationTime(us * 1e-6);
    r.time_us.push_back(us);
  }
  finish(r, ctx->ceiling_gbps);
  st.counters["bytes_per_second"] = r.gbps * 1e9;
  st.counters["FLOP/s"] = r.tflops * 1e12;
  st.counters["fraction_of_ceiling"] = r.fraction_of_ceiling;
  if (verified >= 0) st.counters["verified"] = verified;
  if (ctx->world->rank() != 0) return;
  auto it = ctx->kernel_index.find(r.name);
  if (it == ctx->kernel_index.end()) {
    ctx->kernel_index.emplace(r.name, ctx->kernels.size());
    ctx->kernels.push_back(r);
  } else {
    KernelResult& m = ctx->kernels[it->second];
    m.time_us.insert(m.time_us.end(), r.time_us.begin(), r.time_us.end());
    finish(m, ctx->ceiling_gbps);
  }
}

void run_collective(benchmark::State& st, Context* ctx, Collective c, int64_t op_count,
                    bool in_place) {
  CollectiveBackend& cb = *ctx->comm;
  const MPI_Comm comm = ctx->world->raw();
  CollResult r;
  r.coll = c;
  r.dtype = ctx->cfg.dtype;
  r.group_size = cb.size();
  r.in_place = in_place;
  r.size_bytes = size_for_op_count(c, cb.size(), op_count, r.dtype);
  r.count = op_count;
  PreparedCollective pc(cb, c, r.dtype, op_count, in_place);
  r.wrong = checked_wrong(pc, comm);
  for (int w = 0; w < ctx->cfg.warmup; ++w) pc.launch();
  for (auto _ : st) {
    const double us = timed_iteration_us([&] { return pc.time_once_us(); }, comm);
    st.SetIterationTime(us * 1e-6);
    r.time_us.push_back(us);
  }
  finish(r);
  st.counters["size_bytes"] = double(r.size_bytes);
  st.counters["bytes_per_second"] = r.algbw_gbps * 1e9;
  st.counters["algbw_gbps"] = r.algbw_gbps;
  st.counters["busbw_gbps"] = r.busbw_gbps;
  st.counters["wrong"] = double(r.wrong);
  if (ctx->world->rank() != 0) return;
  const std::string key =
      std::string(to_string(c)) + "/" + std::to_string(r.size_bytes) + (in_place ? "/ip" : "/oop");
  auto it = ctx->coll_index.find(key);
  if (it == ctx->coll_index.end()) {
    ctx->coll_index.emplace(key, ctx->colls.size());
    ctx->colls.push_back(r);
  } else {
    CollResult& m = ctx->colls[it->second];
    m.time_us.insert(m.time_us.end(), r.time_us.begin(), r.time_us.end());
    if (m.wrong >= 0 && r.wrong >= 0) m.wrong += r.wrong;
    finish(m);
  }
}

const char* kGoogleBenchmarkHelp =
    "\nGoogle Benchmark flags (passed through; use the --flag=value form):\n"
    "  --benchmark_filter=REGEX        run only the matching benchmarks (the stream ceiling is\n"
    "                                  always measured first)\n"
    "  --benchmark_out=FILE.json       also write the results to FILE (rank 0)\n"
    "  --benchmark_out_format=json|console|csv\n"
    "  --benchmark_repetitions=N       repeat every benchmark N times (aggregates: mean, median,\n"
    "                                  stddev, cv); HDF5 rows pool the iterations of all\n"
    "  --benchmark_format=console|json|csv   format of the standard output\n"
    "  --benchmark_list_tests=true     list the benchmark names and exit\n"
    "  --benchmark_counters_tabular=true\n"
    "Iteration counts are fixed by --iters and --coll-iters (--benchmark_min_time has no effect).\n"
    "\nBenchmarks:\n"
    "  stream/read_only/<bytes>B                read-only reduction: the bandwidth ceiling\n"
    "  attn_gqa|attn_mla/<model>/<shape>/T<n>   decode attention, per-rank shard shapes\n"
    "  attn_gqa/custom/B<b>_q<q>_kv<kv>_d128/T<n>  shapes given with --gqa-shapes\n"
    "  lse_combine/<model>/...                  exact LSE combine of Helix KVP partials\n"
    "  gemm/<model>/M<m>_K<k>_N<n>              GEMM shapes of each layout's shards\n"
    "  moe_experts/<model>/...                  expert FFNs (SwiGLU) of one rank\n"
    "  kv_append/<model>/...                    the new token's KV written into the cache\n"
    "  kv_pack/<model>/blocks<n>_bytes<b>       KV blocks packed for one peer (KV transfer)\n"
    "  coll/<collective>/<type>/<oop|ip>/<S>B   collectives over all ranks, nccl-tests sizes\n"
    "Counters: bytes_per_second, FLOP/s, fraction_of_ceiling (kernels); size_bytes, algbw_gbps,\n"
    "busbw_gbps, wrong (collectives). Decimal GB/s; busbw factors as nccl-tests.\n"
    "\nCPU backend: one thread per rank, fp32; sequence lengths and weights are scaled down by\n"
    "--max-kv-bytes and --max-weight-bytes (names show the sizes actually run).\n"
    "\nExamples:\n"
    "  mpirun -np 4 build/bin/helix-micro --backend cpu --quick --out micro.h5\n"
    "  mpirun -np 8 build/bin/helix-micro --backend cuda --benchmark_filter='attn|coll' \\\n"
    "      --benchmark_out=micro.json --out micro.h5\n"
    "\nVerification (--verify, default on cuda): before timing, every decode-attention and\n"
    "LSE-combine shape runs once on small fresh random data against the fp32 CPU reference\n"
    "(counter 'verified', HDF5 column 'verified').\n"
    "\nExit codes: 0 ok; 2 bad input (nothing written); 3 a collective returned wrong elements\n"
    "or a kernel missed the verification tolerance.\n";

int run(int argc, char** argv) {
  MpiComm world = MpiComm::world();
  const bool root = world.rank() == 0;

  MicroOptions opt;
  CLI::App app{
      "helix-micro: micro-benchmarks of the decode kernels (attention, LSE combine, GEMMs, MoE "
      "experts, KV append) at the per-rank shard shapes of each layout, and of the collectives "
      "(nccl-tests sizes and bandwidths), against a read-only stream ceiling measured in the "
      "same run. Launch with mpirun or srun; rank 0 reports.",
      "helix-micro"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  add_micro_options(app, opt);
  app.set_help_flag();  // --help is handled below, before Google Benchmark sees it
  app.set_version_flag("--version", std::string(suite_version()) + " (" + git_sha() + ")");

  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      if (root) std::printf("%s%s", app.help().c_str(), kGoogleBenchmarkHelp);
      return 0;
    }

  // Only rank 0 writes Google Benchmark's output file.
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i)
    if (root || std::strncmp(argv[i], "--benchmark_out=", 16) != 0) args.push_back(argv[i]);
  // Colour only on a terminal: unless --benchmark_color is given, Google Benchmark's console
  // colours are switched off when stdout is not a terminal or the job was started by an MPI
  // launcher or srun (which forward the output through pipes or a pseudo-terminal of their own,
  // so a terminal here says nothing about where the output ends up), or NO_COLOR is set.
  static char no_color[] = "--benchmark_color=false";
  const bool color_given = std::any_of(argv + 1, argv + argc, [](const char* a) {
    return std::strncmp(a, "--benchmark_color", 17) == 0;
  });
  if (!color_given && !g_output_is_terminal) args.push_back(no_color);
  int gargc = int(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&gargc, args.data());

  try {
    app.parse(gargc, args.data());
  } catch (const CLI::CallForVersion& e) {
    return root ? app.exit(e) : 0;
  } catch (const CLI::ParseError& e) {
    if (root) {
      std::fprintf(stderr, "helix-micro: error: %s\n", e.what());
      std::fprintf(stderr, "Run with --help for usage.\n");
    }
    return 2;
  }

  Context ctx;
  std::unique_ptr<MicroBackend> backend;
  std::unique_ptr<CollectiveBackend> comm;
  try {
    backend = make_micro_backend(opt.backend);
    ctx.cfg = resolve_micro_options(opt, backend->storage_bytes());
    ctx.cases = make_kernel_cases(ctx.cfg.cases);
    comm = make_collective_backend(opt.backend, world.raw());
    if (!comm->supports(ctx.cfg.dtype))
      throw UsageError(std::string("--dtype: ") + nccl_tests_name(ctx.cfg.dtype) +
                       " is not supported by the " + comm->name() + " collectives");
    int ok = 1;
    std::string why;
    if (root && !opt.out.empty()) {
      try {
        h5::File probe(opt.out);  // removed uncommitted: only checks that it can be created
      } catch (const UsageError& e) {
        ok = 0;
        why = e.what();
      }
    }
    HELIX_MPI_CHECK(MPI_Bcast(&ok, 1, MPI_INT, 0, world.raw()));
    if (!ok) throw UsageError(root ? why : std::string());
  } catch (const UsageError& e) {
    if (root) std::fprintf(stderr, "helix-micro: error: %s\n", e.what());
    return 2;
  }

  ctx.world = &world;
  ctx.backend = backend.get();
  ctx.comm = comm.get();
  ctx.seed = opt.seed;
  RunEnvironment env =
      collect_environment(world, argc, argv, opt.backend, backend->device_description());
  env.cuda_version = backend->cuda_version();
  env.nccl_version = backend->nccl_version();

  // The ceiling first, with every rank reading at once (as every kernel below runs).
  const CasePtr stream = stream_case(ctx.cfg.stream_bytes);
  const KernelResult ceiling =
      measure_kernel(*backend, world.raw(), *stream, ctx.cfg.warmup, ctx.cfg.iters, 0.0, opt.seed);
  ctx.ceiling_gbps = ceiling.gbps;
  if (root) {
    std::printf("helix-micro: backend %s (%s storage), collectives %s, %d ranks\n",
                backend->name().c_str(), backend->storage_dtype().c_str(), comm->name().c_str(),
                world.size());
    std::printf(
        "ceiling: read-only stream over %s per rank, every rank at once: %.2f GB/s "
        "(median of %d)\n",
        format_bytes(double(ctx.cfg.stream_bytes)).c_str(), ctx.ceiling_gbps, ctx.cfg.iters);
    std::fflush(stdout);
  }
  benchmark::AddCustomContext("helix_backend", backend->name());
  benchmark::AddCustomContext("helix_storage_dtype", backend->storage_dtype());
  benchmark::AddCustomContext("helix_comm_backend", comm->name());
  benchmark::AddCustomContext("helix_world_size", std::to_string(world.size()));
  benchmark::AddCustomContext("helix_ceiling_gbps", std::to_string(ctx.ceiling_gbps));
  benchmark::AddCustomContext("helix_version", std::string(suite_version()) + " " + git_sha());

  ctx.cases.insert(ctx.cases.begin(), stream);
  for (size_t i = 0; i < ctx.cases.size(); ++i)
    benchmark::RegisterBenchmark(ctx.cases[i]->name.c_str(),
                                 [&ctx, i](benchmark::State& st) { run_kernel(st, &ctx, i); })
        ->UseManualTime()
        ->Iterations(ctx.cfg.iters)
        ->Unit(benchmark::kMicrosecond);
  const int n = world.size();
  for (Collective c : ctx.cfg.colls)
    for (int in_place = 0; in_place < 2; ++in_place) {
      int64_t last = -1;
      for (int64_t s : ctx.cfg.sizes) {
        const int64_t count = op_count_for_size(c, n, s, ctx.cfg.dtype);
        if (count == 0 || count == last) continue;
        last = count;
        const int64_t size = size_for_op_count(c, n, count, ctx.cfg.dtype);
        const std::string name = std::string("coll/") + to_string(c) + "/" +
                                 nccl_tests_name(ctx.cfg.dtype) + (in_place ? "/ip/" : "/oop/") +
                                 std::to_string(size) + "B";
        benchmark::RegisterBenchmark(name.c_str(),
                                     [&ctx, c, count, in_place](benchmark::State& st) {
                                       run_collective(st, &ctx, c, count, in_place != 0);
                                     })
            ->UseManualTime()
            ->Iterations(ctx.cfg.coll_iters)
            ->Unit(benchmark::kMicrosecond);
      }
    }

  if (root) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    std::ostream nowhere(nullptr);  // a stream without a buffer discards everything
    NullReporter quiet;
    quiet.SetOutputStream(&nowhere);
    quiet.SetErrorStream(&nowhere);
    benchmark::RunSpecifiedBenchmarks(&quiet);
  }
  benchmark::Shutdown();

  int64_t wrong = 0;
  if (root) {
    for (Collective c : ctx.cfg.colls) {
      const bool any = std::any_of(ctx.colls.begin(), ctx.colls.end(),
                                   [c](const CollResult& r) { return r.coll == c && !r.in_place; });
      if (any) print_collective_table(stdout, c, n, comm->name(), ctx.colls);
    }
    for (const CollResult& r : ctx.colls) wrong += std::max<int64_t>(0, r.wrong);
    if (!ctx.colls.empty())
      std::printf("# wrong elements in total: %lld%s\n", (long long)wrong,
                  comm->link_representative()
                      ? ""
                      : " (mpi-host: host-memory MPI, not a GPU interconnect)");
    if (!opt.out.empty()) {
      MicroReport rep;
      rep.backend = backend->name();
      rep.storage_dtype = backend->storage_dtype();
      rep.comm_backend = comm->name();
      rep.link_representative = comm->link_representative();
      rep.ceiling_gbps = ctx.ceiling_gbps;
      rep.stream_bytes = ctx.cfg.stream_bytes;
      rep.kernel_iters = ctx.cfg.iters;
      rep.coll_iters = ctx.cfg.coll_iters;
      rep.warmup = ctx.cfg.warmup;
      rep.kernels = ctx.kernels;
      rep.collectives = ctx.colls;
      write_micro_trace(opt.out, env, rep);
      std::printf("trace: %s\n", opt.out.c_str());
    }
    std::fflush(stdout);
  }
  HELIX_MPI_CHECK(MPI_Bcast(&wrong, 1, MPI_INT64_T, 0, world.raw()));
  if (root && ctx.cfg.verify)
    std::printf("# verification against the CPU reference: %d of %d checked shapes failed%s\n",
                ctx.verify_failures, int(ctx.verified.size()),
                ctx.verify_failures ? " (exit code 3)" : "");
  std::fflush(stdout);
  return wrong == 0 && ctx.verify_failures == 0 ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  g_output_is_terminal = output_is_terminal();
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  int rc = 0;
  try {
    rc = run(argc, argv);
  } catch (const helix::UsageError& e) {
    std::fprintf(stderr, "helix-micro: error: %s\n", e.what());
    rc = 2;
  } catch (const std::exception& e) {
    helix::fatal(e.what());
  }
  std::fflush(stdout);
  std::fflush(stderr);
  MPI_Finalize();
  return rc;
}
