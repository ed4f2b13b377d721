// The kernel cases of the micro-benchmarks: shapes derived from the model specs and the per-rank
// shards of each layout (layouts/rank_shard.hpp), the operands each case needs, and the
// bytes and FLOPs of one launch (the compulsory traffic: every operand read or written once).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/micro/micro_backend.hpp"

namespace helix::micro {

enum class KernelKind {
  stream,
  attn_gqa,
  attn_mla,
  lse_combine,
  gemm,
  moe_experts,
  kv_append,
  kv_pack
};
const char* kernel_name(KernelKind k);  // "stream", "attn_gqa", ...

struct KernelCase {
  std::string
      name;  // unique benchmark name, e.g. "attn_gqa/llama-3.1-405b/B1_q16_kv1_d128/T131072"
  KernelKind kind = KernelKind::stream;
  std::string shape;  // the dimensions and where they come from (model, layouts, ops, scaling)
  GqaDecodeShape gqa;
  MlaDecodeShape mla;
  CombineShape combine;
  GemmShape gemm;
  MoeShape moe;
  KvAppendShape kv;
  KvPackShape pack;
  int64_t stream_bytes = 0;
};

struct Operand {
  int64_t bytes = 0;
  Elem elem = Elem::storage;
};

// Operands of one launch, in the order the backend entry point takes them.
std::vector<Operand> case_operands(const KernelCase& c, const MicroBackend& backend);
// Bytes moved by one launch with `storage_bytes`-byte storage elements, and its FLOPs.
double case_bytes(const KernelCase& c, int64_t storage_bytes);
double case_flops(const KernelCase& c);
// Launches the case on operand pointers as returned for case_operands.
void launch_case(MicroBackend& backend, const KernelCase& c, const std::vector<void*>& ops);

struct CaseOptions {
  std::vector<std::string> models = {"llama-3.1-405b", "deepseek-r1"};
  // Per-rank KV slice lengths of decode attention (tokens), before scaling.
  std::vector<int64_t> slice_tokens = {131072, 262144, 524288, 1048576};
  // Pool sizes N whose per-rank shards give the attention heads, GEMM and expert shapes.
  std::vector<int> ranks = {8, 16};
  // Pool sizes whose Helix KVP width gives the LSE-combine shapes.
  std::vector<int> combine_ranks = {8, 16, 64};
  std::vector<int64_t> attn_batch = {1};
  std::vector<int64_t> gemm_rows = {1, 8, 64};
  std::vector<int64_t> moe_rows = {1, 8, 64};  // tokens per expert
  std::vector<int64_t> combine_batch = {1, 64, 512};
  std::vector<int64_t> append_batch = {1, 64};
  // KV blocks (16 tokens of one head and layer) packed for one peer per kv_pack launch.
  std::vector<int64_t> pack_blocks = {1024, 8192};
  // Caps for small machines (0: none). KV: every slice length of a (model, head shape) is scaled
  // by the one factor that brings its longest slice under the cap, so the sweep keeps its ratios.
  // Weights: the larger of a GEMM's K and N is halved, an expert group's expert count (then
  // columns) reduced, until the weights fit.
  int64_t max_kv_bytes = 0;
  int64_t max_weight_bytes = 0;
  int64_t storage_bytes = 4;
  // Explicit GQA decode shapes (--gqa-shapes), named attn_gqa/custom/B<b>_q<q>_kv<kv>_d<d>/T<t>;
  // each scaled down alone by max_kv_bytes.
  std::vector<GqaDecodeShape> extra_gqa;
};

// Parses --gqa-shapes: comma-separated B<b>_q<q>_kv<kv>[_d128]_T<t> (t with an optional K or M
// suffix, binary: 128K = 131072). Throws UsageError naming `option`.
std::vector<GqaDecodeShape> parse_gqa_shapes(const std::string& text, const std::string& option);

// Every case for these options, deduplicated (one case per distinct shape, its description
// listing every layout and op that uses it). Throws UsageError for an unknown model.
std::vector<KernelCase> make_kernel_cases(const CaseOptions& o);

// Halves the larger of K and N (not below 64) until K x N weights fit in cap_bytes (0: no cap).
void fit_gemm_weights(int64_t* k, int64_t* n, int64_t cap_bytes, int64_t storage_bytes);

// The read-only stream case over `bytes`.
KernelCase stream_case(int64_t bytes);

}  // namespace helix::micro
