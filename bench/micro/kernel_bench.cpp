// helix-kernel-bench: the Hopper decode kernels against the ceilings measured in the same run, on
// one GPU (no MPI). Prints one table last and writes it as JSON (--json).
//
//   ceilings: read-only stream over 4 GiB (GB/s) and a dense bf16 GEMM 8192^3 through cuBLASLt
//             (TFLOP/s), medians of --iters runs;
//   attn_mla: absorbed MLA decode attention (latent 512 + rope 64, bf16 KV, natural-log LSE) at
//             B = 8: 128 heads (the Helix shard: compute-bound, bar 0.60 of the GEMM rate) and 16
//             or 32 heads (TP shards: memory-bound, bar 0.85 of the stream ceiling), 128K..1M
//             tokens; the default kernel (the wgmma one on Hopper) and the mma.sync one it
//             replaced, whose outputs must agree (every head, relative error per row);
//   moe_ffn:  DeepSeek-R1's MoE FFN of one rank (hidden 7168, 256 experts top-8, expert FFN 2048,
//             one shared expert) at EP = 1 and 4, B = 1, 8, 32, random routing that changes every
//             iteration: plan + grouped launch (bar 0.75 of the stream ceiling over the bytes of
//             the experts that received tokens plus the shared slice; its output checked against
//             a per-expert cuBLAS recomputation with the routing weights and the shared expert),
//             the same with the router GEMM, and the per-expert cuBLAS path for comparison.
// Cases can be chosen (--mla-cases, --moe-cases), so that a script runs each in its own process
// (a kernel fault ends only its process), takes the ceilings of one measurement (--ceilings-from)
// and prints one table from the processes' JSON files (--table).
// Exit code 0 when every case ran (bars missed are reported, not failed), 1 on a mismatch (between
// the attention kernels, or of the MoE output against the per-expert cuBLAS recomputation), 2 on
// bad arguments.
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "bench/commands/cli_util.hpp"
#include "bench/micro/kernel_bench.hpp"
#include "bench/trace/output_path.hpp"
#include "comm/cuda_check.hpp"
#include "comm/error.hpp"
#include "kernels/attention_mla_sm90.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/gemm_cuda.hpp"
#include "kernels/moe_cuda.hpp"
namespace {

using namespace helix;
using namespace helix::kbench;

nlohmann::json row_json(const Row& r) {
  return {{"kernel", r.kernel},   {"shape", r.shape},
          {"variant", r.variant}, {"time_us", r.us},
          {"tflops", r.tflops},   {"gbps", r.gbps},
          {"ceiling", r.ceiling}, {"fraction_of_ceiling", r.fraction},
          {"bar", r.bar},         {"note", r.note}};
}

Row row_of(const nlohmann::json& j) {
  Row r;
  r.kernel = j.at("kernel").get<std::string>();
  r.shape = j.at("shape").get<std::string>();
  r.variant = j.at("variant").get<std::string>();
  r.us = j.at("time_us").get<double>();
  r.tflops = j.at("tflops").get<double>();
  r.gbps = j.at("gbps").get<double>();
  r.ceiling = j.at("ceiling").get<std::string>();
  r.fraction = j.at("fraction_of_ceiling").get<double>();
  r.bar = j.at("bar").get<double>();
  r.note = j.at("note").get<std::string>();
  return r;
}

// The table on stdout; returns the number of rows that report a mismatch.
int print_table(const std::vector<Row>& rows, const Ceilings& c, const std::string& device) {
  std::printf("ceilings: stream %.0f GB/s, bf16 GEMM %.0f TFLOP/s (%s)\n", c.stream_gbps,
              c.gemm_tflops, device.c_str());
  std::printf("%-9s %-30s %-36s %10s %8s %8s %9s %6s  %s\n", "kernel", "shape", "variant",
              "time_us", "TFLOP/s", "GB/s", "fraction", "bar", "result");
  int missed = 0, mismatches = 0;
  for (const Row& r : rows) {
    std::string res = "-";
    if (r.bar > 0) {
      const bool ok = r.fraction >= r.bar;
      missed += !ok;
      char b[64];
      std::snprintf(b, sizeof b, "MISS (short by %.0f%%)", 100 * (1 - r.fraction / r.bar));
      res = ok ? "pass" : b;
    }
    mismatches += r.note.find("MISMATCH") != std::string::npos;
    char bar[16] = "";
    if (r.bar > 0) std::snprintf(bar, sizeof bar, ">=%.2f", r.bar);
    std::printf("%-9s %-30s %-36s %10.1f %8.1f %8.0f %7.3f %-1s %6s  %s%s%s\n", r.kernel.c_str(),
                r.shape.c_str(), r.variant.c_str(), r.us, r.tflops, r.gbps, r.fraction,
                r.ceiling == "gemm" ? "G" : "S", bar, res.c_str(), r.note.empty() ? "" : "; ",
                r.note.c_str());
  }
  std::printf(
      "fraction: of the GEMM rate (G) or of the stream ceiling (S); %d bar(s) missed, %d "
      "mismatch(es) against the reference kernels\n",
      missed, mismatches);
  return mismatches;
}

// Splits "A:B[:C]" into exactly `n` fields (empty on any other count).
std::vector<std::string> fields(const std::string& t, size_t n) {
  std::vector<std::string> v;
  for (size_t a = 0, b; a <= t.size(); a = b + 1) {
    b = std::min(t.find(':', a), t.size());
    v.push_back(t.substr(a, b - a));
  }
  return v.size() == n ? v : std::vector<std::string>{};
}

// "8:128:128K" -> batch 8, 128 heads, 131072 tokens (K = 1024, M = 1048576). Throws UsageError
// naming --mla-cases (the one integer parser, with limits).
MlaShape parse_mla_case(const std::string& t) {
  const std::vector<std::string> f = fields(t, 3);
  if (f.empty())
    throw UsageError("--mla-cases: '" + t + "' is not BATCH:HEADS:TOKENS (e.g. 8:128:128K)");
  return {parse_int(f[0], "--mla-cases", 1, 4096), parse_int(f[1], "--mla-cases", 1, 128),
          parse_int(f[2], "--mla-cases", 1, kMaxTokens, Suffix::tokens)};
}

// "4:32" -> EP 4, batch 32.
MoeBenchShape parse_moe_case(const std::string& t) {
  const std::string rule =
      "--moe-cases: '" + t + "' is not EP:BATCH (EP dividing 256, BATCH * 8 <= 4096; e.g. 4:32)";
  const std::vector<std::string> f = fields(t, 2);
  if (f.empty()) throw UsageError(rule);
  const int64_t ep = parse_int(f[0], "--moe-cases", 1, 256);
  const int64_t b = parse_int(f[1], "--moe-cases", 1, 512);
  if (256 % ep != 0) throw UsageError(rule);
  return {int(ep), b};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "helix-kernel-bench: the Hopper decode kernels (MLA attention, MoE FFN) against the stream "
      "and bf16 GEMM ceilings measured in the same run, on one GPU"};
  int iters = 10;
  bool quick = false;
  std::string json_path, only = "attn,moe", mla_cases, moe_cases, ceilings_from;
  std::vector<std::string> tables;
  add_int_option(&app, "--iters", iters, 1, 1000, "Timed runs per case (median)");
  app.add_flag("--quick", quick, "Fewer and shorter shapes (a smoke run)");
  app.add_option("--json", json_path, "Write the rows (and the ceilings) as JSON to this file");
  app.add_option("--kernels", only, "Comma-separated: attn, moe")->capture_default_str();
  app.add_option("--mla-cases", mla_cases,
                 "MLA shapes instead of the default list, comma-separated BATCH:HEADS:TOKENS "
                 "(TOKENS may end in K or M), e.g. 8:128:128K,1:128:256K");
  app.add_option("--moe-cases", moe_cases,
                 "MoE shapes instead of the default list, comma-separated EP:BATCH, e.g. 1:8,4:32");
  app.add_option("--ceilings-from", ceilings_from,
                 "Take the stream and GEMM ceilings from an earlier --json file of the same job "
                 "instead of measuring them");
  app.add_option("--table", tables,
                 "Print one table from these --json files (no GPU work) and exit; the ceilings are "
                 "the first file's");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(stderr, "helix-kernel-bench: error: %s (run with --help for usage)\n", e.what());
    return 2;
  }
  auto fail_arg = [](const std::string& what) {
    std::fprintf(stderr, "helix-kernel-bench: error: %s\n", what.c_str());
    return 2;
  };
  // The output-path policy (a regular file or none, never one of the inputs), before any work.
  std::vector<PathArg> inputs{{"--ceilings-from", ceilings_from}};
  for (const std::string& t : tables) inputs.push_back({"--table", t});
  std::vector<MlaShape> mla_shapes;
  std::vector<MoeBenchShape> moe_shapes;
  try {
    check_output_paths({{"--json", json_path}}, inputs);
    if (!mla_cases.empty())
      for (const std::string& t : split_list(mla_cases)) mla_shapes.push_back(parse_mla_case(t));
    if (!moe_cases.empty())
      for (const std::string& t : split_list(moe_cases)) moe_shapes.push_back(parse_moe_case(t));
  } catch (const UsageError& e) {
    return fail_arg(e.what());
  }
  auto read_json = [](const std::string& path, nlohmann::json& doc) {
    std::ifstream f(path);
    if (!f) return false;
    try {
      f >> doc;
      return doc.contains("stream_gbps") && doc.contains("gemm_tflops") && doc.contains("rows");
    } catch (const nlohmann::json::exception&) {
      return false;
    }
  };
  if (!tables.empty()) {
    std::vector<Row> rows;
    Ceilings c;
    std::string device;
    for (size_t i = 0; i < tables.size(); ++i) {
      nlohmann::json doc;
      if (!read_json(tables[i], doc))
        return fail_arg("--table: " + tables[i] + " is not a helix-kernel-bench --json file");
      if (i == 0) {
        c.stream_gbps = doc["stream_gbps"].get<double>();
        c.gemm_tflops = doc["gemm_tflops"].get<double>();
        device = doc.value("device", std::string("?"));
      }
      try {
        for (const auto& r : doc["rows"]) rows.push_back(row_of(r));
      } catch (const nlohmann::json::exception& e) {
        return fail_arg("--table: " + tables[i] + ": " + e.what());
      }
    }
    return print_table(rows, c, device) > 0 ? 1 : 0;
  }
  for (const std::string& k : split_list(only))
    if (k != "attn" && k != "moe") return fail_arg("--kernels: '" + k + "' is not attn or moe");
  if (mla_shapes.empty())
    mla_shapes = quick
                     ? std::vector<MlaShape>{{8, 128, 65536}, {8, 32, 131072}, {8, 16, 131072}}
                     : std::vector<MlaShape>{{8, 128, 131072}, {8, 128, 262144}, {8, 128, 1048576},
                                             {8, 32, 131072},  {8, 32, 1048576}, {8, 16, 131072},
                                             {8, 16, 1048576}, {1, 128, 262144}};
  if (moe_shapes.empty())
    moe_shapes = quick
                     ? std::vector<MoeBenchShape>{{4, 1}, {4, 8}}
                     : std::vector<MoeBenchShape>{{1, 1}, {1, 8}, {1, 32}, {4, 1}, {4, 8}, {4, 32}};
  Ceilings c;
  if (!ceilings_from.empty()) {
    nlohmann::json doc;
    if (!read_json(ceilings_from, doc))
      return fail_arg("--ceilings-from: " + ceilings_from +
                      " is not a helix-kernel-bench --json file");
    c.stream_gbps = doc["stream_gbps"].get<double>();
    c.gemm_tflops = doc["gemm_tflops"].get<double>();
  }
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::fprintf(stderr, "helix-kernel-bench: no GPU visible\n");
    return 1;
  }
  cudaDeviceProp p{};
  HELIX_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
  cudaStream_t s;
  HELIX_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  std::fprintf(stderr, "helix-kernel-bench: %s, %d SMs, compute capability %d.%d\n", p.name,
               p.multiProcessorCount, p.major, p.minor);
  // What the compiler gave the two Hopper kernels in this binary.
  for (const auto& k : {std::make_pair("attn_mla wgmma kernel", cuda::detail::mla_sm90_kernel()),
                        std::make_pair("moe_ffn grouped kernel", cuda::MoeFfn::ffn_kernel())}) {
    cudaFuncAttributes fa{};
    HELIX_CUDA_CHECK(cudaFuncGetAttributes(&fa, k.second));
    std::fprintf(stderr,
                 "  %s: %d registers/thread at entry, %zu bytes local memory (spills: must be 0), "
                 "binary sm_%d\n",
                 k.first, fa.numRegs, fa.localSizeBytes, fa.binaryVersion);
  }
  if (ceilings_from.empty()) {
    c = measure_ceilings(iters, s);
    std::fprintf(stderr, "  ceilings: stream %.0f GB/s, bf16 GEMM 8192^3 %.0f TFLOP/s\n",
                 c.stream_gbps, c.gemm_tflops);
  } else {
    std::fprintf(stderr, "  ceilings (from %s): stream %.0f GB/s, bf16 GEMM %.0f TFLOP/s\n",
                 ceilings_from.c_str(), c.stream_gbps, c.gemm_tflops);
  }
  std::vector<Row> rows;
  int mismatches = 0;
  const std::vector<std::string> kinds = split_list(only);
  auto wants = [&](const char* k) {
    return std::find(kinds.begin(), kinds.end(), k) != kinds.end();
  };
  if (wants("attn")) mismatches += bench_mla(mla_shapes, c, iters, s, rows);
  if (wants("moe")) mismatches += bench_moe(moe_shapes, c, iters, s, rows);
  print_table(rows, c, p.name);
  if (!json_path.empty()) {  // written as PATH.tmp.PID, then renamed: never half-written
    nlohmann::json out = nlohmann::json::array();
    for (const Row& r : rows) out.push_back(row_json(r));
    const nlohmann::json doc = {{"device", p.name},
                                {"stream_gbps", c.stream_gbps},
                                {"gemm_tflops", c.gemm_tflops},
                                {"rows", out}};
    AtomicOutput ao(json_path);
    std::ofstream f(ao.tmp());
    f << doc.dump(2) << "\n";
    f.close();
    if (!f || !ao.commit()) {
      std::fprintf(stderr, "helix-kernel-bench: cannot write %s\n", json_path.c_str());
      return 2;
    }
  }
  cudaStreamDestroy(s);
  return mismatches > 0 ? 1 : 0;
}
