// Options of helix-micro and their defaults per backend (CPU runs are scaled down so that CI
// finishes in seconds; see --help).
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "bench/micro/collective_backend.hpp"
#include "bench/micro/kernel_case.hpp"

namespace helix::micro {

struct MicroOptions {
  std::string backend = "cpu";
  std::string out;
  bool quick = false;
  std::string models = "llama-3.1-405b,deepseek-r1";
  std::string stream_bytes;      // default: cpu 1G (quick 128M); cuda 4G
  std::string max_kv_bytes;      // default: cpu 16M (quick 1M); cuda 0 (no cap)
  std::string max_weight_bytes;  // default: cpu 16M (quick 1M); cuda 0 (no cap)
  std::string min_bytes = "8";
  std::string max_bytes;  // default: 64M (cpu quick 1M)
  int size_factor = 0;    // default: 2 (cpu quick 8)
  std::string collectives = "all_reduce,all_gather,reduce_scatter,all_to_all,send_recv";
  std::string dtype = "float";
  int iters = 0;       // kernel iterations; default 10 (quick 3)
  int coll_iters = 0;  // collective iterations; default 20 (quick 5)
  int warmup = 2;
  uint64_t seed = 1234;
  std::string gqa_shapes;  // explicit GQA decode shapes, e.g. "B1_q64_kv8_T1M,B8_q64_kv8_T128K"
  bool verify = false;     // default: on for cuda, off for cpu
  bool no_verify = false;
};

// What the options resolve to (defaults filled in, lists parsed, bounds checked).
struct MicroConfig {
  int64_t stream_bytes = 0;
  CaseOptions cases;
  std::vector<Collective> colls;
  DType dtype = DType::fp32;
  std::vector<int64_t> sizes;
  int iters = 0, coll_iters = 0, warmup = 0;
  bool verify = false;  // check attention and LSE-combine cases against the CPU reference
};

void add_micro_options(CLI::App& app, MicroOptions& o);
// Throws UsageError naming the option on bad input.
MicroConfig resolve_micro_options(const MicroOptions& o, int64_t storage_bytes);

// A byte count with an optional binary suffix: 4096, 64K, 16M, 1G (also KiB, MiB, GiB).
// Throws UsageError naming `option` unless it is a positive integer (or zero when allow_zero).
int64_t parse_bytes(const std::string& text, const std::string& option, bool allow_zero = false);

}  // namespace helix::micro
