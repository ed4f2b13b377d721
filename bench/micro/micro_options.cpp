#include "bench/micro/micro_options.hpp"

#include <cctype>

#include "bench/commands/cli_util.hpp"
#include "bench/micro/collectives.hpp"
#include "comm/error.hpp"

namespace helix::micro {

int64_t parse_bytes(const std::string& text, const std::string& option, bool allow_zero) {
  const std::string rule = option + ": '" + text + "' is not a " +
                           (allow_zero ? "non-negative" : "positive") +
                           " byte count (digits with an optional K, M or G suffix)";
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0 || i > 15) throw UsageError(rule);
  int64_t v = std::stoll(text.substr(0, i));
  std::string suffix = text.substr(i);
  int shift = 0;
  if (!suffix.empty()) {
    const char u = char(std::toupper(static_cast<unsigned char>(suffix[0])));
    const std::string rest = suffix.substr(1);
    if (rest != "" && rest != "B" && rest != "iB") throw UsageError(rule);
    if (u == 'K')
      shift = 10;
    else if (u == 'M')
      shift = 20;
    else if (u == 'G')
      shift = 30;
    else if (u == 'B' && rest.empty())
      shift = 0;
    else
      throw UsageError(rule);
  }
  if (v > (int64_t(1) << (62 - shift))) throw UsageError(rule);
  v <<= shift;
  if (v < 0 || (v == 0 && !allow_zero)) throw UsageError(rule);
  return v;
}

void add_micro_options(CLI::App& app, MicroOptions& o) {
  app.add_option("--backend", o.backend,
                 "Kernels and collectives: cpu (fp32 reference kernels, "
                 "MPI over host memory) or cuda (CUDA kernels, NCCL)")
      ->capture_default_str();
  app.add_option("--out", o.out,
                 "HDF5 trace to write (/micro group; written as FILE.tmp.PID, renamed when "
                 "complete)");
  app.add_flag("--quick", o.quick,
               "CI-sized sweep: fewer shapes and sizes, smaller caps, fewer iterations");
  app.add_option("--models", o.models,
                 "Comma-separated models whose per-rank shard shapes are benchmarked")
      ->capture_default_str();
  app.add_option("--stream-bytes", o.stream_bytes,
                 "Buffer of the read-only stream (the ceiling) per rank; must be much larger "
                 "than the last-level cache (default: cpu 1G, quick 128M; cuda 4G)");
  app.add_option("--max-kv-bytes", o.max_kv_bytes,
                 "Cap on the KV slice of one attention launch; longer slices are scaled down "
                 "(all slice lengths by one factor), 0 = no cap (default: cpu 16M, quick 1M; "
                 "cuda 0)");
  app.add_option(
      "--max-weight-bytes", o.max_weight_bytes,
      "Cap on the weights of one GEMM or expert group; larger shapes are scaled down "
      "(the larger of a GEMM's K and N halved; experts then columns reduced), 0 = no cap (default: "
      "cpu 16M, quick 1M; cuda 0)");
  app.add_option("--min-bytes", o.min_bytes, "Smallest collective size S")->capture_default_str();
  app.add_option("--max-bytes", o.max_bytes,
                 "Largest collective size S (default 64M; cpu quick 1M)");
  app.add_option("--size-factor", o.size_factor,
                 "Multiplier between collective sizes (default 2; cpu quick 8)");
  app.add_option("--collectives", o.collectives, "Comma-separated collectives to sweep")
      ->capture_default_str();
  app.add_option("--dtype", o.dtype, "Element type of the collectives: float, bfloat16, int32")
      ->capture_default_str();
  app.add_option("--iters", o.iters, "Timed iterations per kernel (default 10; quick 3)");
  app.add_option("--coll-iters", o.coll_iters,
                 "Timed iterations per collective size (default 20; quick 5)");
  app.add_option("--warmup", o.warmup, "Untimed launches before timing")->capture_default_str();
  app.add_option("--seed", o.seed, "Seed of the random operands")->capture_default_str();
  app.add_option("--gqa-shapes", o.gqa_shapes,
                 "Extra GQA decode-attention shapes, comma-separated B<b>_q<q>_kv<kv>_T<tokens> "
                 "(head dim 128; T with K or M suffix), benchmarked as "
                 "attn_gqa/custom/B<b>_q<q>_kv<kv>_d128/T<tokens>; with it, --models may be empty");
  app.add_flag("--verify", o.verify,
               "Before timing each decode-attention and LSE-combine case, run it once on small "
               "fresh random data and compare with the fp32 CPU reference (default on cuda; exit "
               "code 3 on a mismatch)");
  app.add_flag("--no-verify", o.no_verify, "Skip that check (default on cpu)");
}

MicroConfig resolve_micro_options(const MicroOptions& o, int64_t storage_bytes) {
  MicroConfig p;
  const bool cpu = o.backend == "cpu";
  const bool q = o.quick;
  auto bytes_or = [](const std::string& text, const std::string& opt, int64_t dflt,
                     bool allow_zero) {
    return text.empty() ? dflt : parse_bytes(text, opt, allow_zero);
  };
  p.stream_bytes =
      bytes_or(o.stream_bytes, "--stream-bytes",
               cpu ? (q ? int64_t(128) << 20 : int64_t(1) << 30) : int64_t(4) << 30, false);
  if (p.stream_bytes % 64 != 0) throw UsageError("--stream-bytes: must be a multiple of 64 bytes");
  const int64_t cap_default = cpu ? (q ? int64_t(1) << 20 : int64_t(16) << 20) : 0;
  p.cases.max_kv_bytes = bytes_or(o.max_kv_bytes, "--max-kv-bytes", cap_default, true);
  p.cases.max_weight_bytes = bytes_or(o.max_weight_bytes, "--max-weight-bytes", cap_default, true);
  p.cases.storage_bytes = storage_bytes;
  p.cases.models = split_list(o.models);
  p.cases.extra_gqa = parse_gqa_shapes(o.gqa_shapes, "--gqa-shapes");
  if (p.cases.models.empty() && p.cases.extra_gqa.empty())
    throw UsageError("--models: give at least one model (or --gqa-shapes)");
  if (o.verify && o.no_verify) throw UsageError("--verify: cannot be given with --no-verify");
  p.verify = o.verify || (!cpu && !o.no_verify);
  if (q) {
    p.cases.slice_tokens = {131072, 1048576};
    p.cases.ranks = {8};
    p.cases.combine_ranks = {8, 64};
    p.cases.combine_batch = {1, 64};
    p.cases.gemm_rows = {1, 8};
    p.cases.moe_rows = {1, 8};
    p.cases.append_batch = {1};
    p.cases.pack_blocks = {1024};
  }
  for (const std::string& c : split_list(o.collectives))
    p.colls.push_back(parse_measured_collective(c, "--collectives"));
  p.dtype = parse_element_type(o.dtype, "--dtype");
  const int64_t lo = parse_bytes(o.min_bytes, "--min-bytes");
  const int64_t hi =
      bytes_or(o.max_bytes, "--max-bytes", cpu && q ? int64_t(1) << 20 : int64_t(64) << 20, false);
  if (hi < lo)
    throw UsageError("--max-bytes: must be at least --min-bytes (" + std::to_string(lo) + ")");
  const int factor = o.size_factor != 0 ? o.size_factor : (cpu && q ? 8 : 2);
  if (factor < 2) throw UsageError("--size-factor: must be at least 2");
  p.sizes = size_sweep(lo, hi, factor);
  p.iters = o.iters != 0 ? o.iters : (q ? 3 : 10);
  p.coll_iters = o.coll_iters != 0 ? o.coll_iters : (q ? 5 : 20);
  if (p.iters < 1) throw UsageError("--iters: must be at least 1");
  if (p.coll_iters < 1) throw UsageError("--coll-iters: must be at least 1");
  if (o.warmup < 0) throw UsageError("--warmup: must be 0 or more");
  p.warmup = o.warmup;
  return p;
}

}  // namespace helix::micro
