// The kernel cases of the micro-benchmarks. A case is one launch shape of one kernel: its operands
// (what the harness allocates and fills), the bytes and FLOPs of one launch (the compulsory
// traffic: every operand read or written once), how it launches on a backend and, for the kernels
// with a CPU reference, how a small case of the same shape is checked against it. Each kernel is
// one struct in bench/micro/cases/ deriving from KernelCase, with a generator of its cases from the
// model specs and the per-rank shards of each layout (layouts/rank_shard.hpp), registered with
// HELIX_MICRO_CASES: adding a kernel to helix-micro is one file there (plus its entry point in the
// backends of micro_backend.hpp when the op is new).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/micro/micro_backend.hpp"
#include "layouts/model_spec.hpp"

namespace helix::micro {

struct Operand {
  int64_t bytes = 0;
  Elem elem = Elem::storage;
};

// What a check against the CPU reference compares: the operands that hold the case's results
// (the first compared relatively, max |a - b| / max |b|; the others absolutely, e.g. LSE), their
// tolerances, and the shape checked in words.
struct CheckSpec {
  std::vector<size_t> outputs;
  double out_tol = 0, lse_tol = 0;
  std::string shape;
};

// Outcome of a check against the CPU reference.
struct VerifyResult {
  bool ok = true;
  double out_err = 0;  // max |out - ref| / max |ref|
  double lse_err = 0;  // max |lse - ref lse| (natural log)
  double out_tol = 0, lse_tol = 0;
  std::string detail;  // one line: shape checked, errors and tolerances
};

class KernelCase {
 public:
  virtual ~KernelCase() = default;
  std::string
      name;  // unique benchmark name, e.g. "attn_gqa/llama-3.1-405b/B1_q16_kv1_d128/T131072"
  std::string shape;  // the dimensions and where they come from (model, layouts, ops, scaling)

  // The kernel's name ("attn_gqa", "gemm", ...; the trace's `kernel` column).
  virtual const char* kernel() const = 0;
  // Operands of one launch, in the order launch() passes them to the backend.
  virtual std::vector<Operand> operands(const MicroBackend& backend) const = 0;
  // Bytes one launch moves with `storage_bytes`-byte storage elements, and its FLOPs.
  virtual double bytes(int64_t storage_bytes) const = 0;
  virtual double flops() const = 0;
  virtual void launch(MicroBackend& backend, const std::vector<void*>& ops) const = 0;
  // Whether timed launches rotate over operand sets larger than the caches (not the ceiling).
  virtual bool rotates() const { return true; }

  // The check against the CPU reference (kernels without one: small() is null): the same case
  // launched on the CPU backend (fp32 reference kernels) on the very same inputs, widened to fp32.
  // small(): the case the check runs (the same head shape, fewer tokens or rows); verify_key():
  // shared by the cases that reduce to the same small case; check_spec(): what is compared.
  virtual std::unique_ptr<KernelCase> small() const { return nullptr; }
  virtual std::string verify_key() const { return name; }
  virtual CheckSpec check_spec(int64_t storage_bytes) const;
};
using CasePtr = std::shared_ptr<const KernelCase>;

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

// Cases keyed by name: a shape met again adds its origin to the description.
class CaseSet {
 public:
  void add(std::shared_ptr<KernelCase> c, const std::string& origin);
  std::vector<CasePtr> take();

 private:
  std::map<std::string, size_t> index_;
  std::vector<std::shared_ptr<KernelCase>> cases_;
};

// A kernel's generator: adds its cases for one model (model null: the cases that come from the
// options alone, generated once before every model's).
using CaseGenerator = void (*)(const ModelSpec* model, const CaseOptions& o, CaseSet& set);
// Registers a generator; `order` places its cases among a model's (the sweep's order).
bool register_cases(const char* kernel, int order, CaseGenerator generate);
#define HELIX_MICRO_CASES(kernel, order, generate)                \
  [[maybe_unused]] static const bool helix_micro_cases_##kernel = \
      ::helix::micro::register_cases(#kernel, order, generate)

// Every case for these options, deduplicated (one case per distinct shape, its description
// listing every layout and op that uses it). Throws UsageError for an unknown model.
std::vector<CasePtr> make_kernel_cases(const CaseOptions& o);

// Parses --gqa-shapes: comma-separated B<b>_q<q>_kv<kv>[_d128]_T<t> (t with an optional K or M
// suffix, binary: 128K = 131072). Throws UsageError naming `option`.
std::vector<GqaDecodeShape> parse_gqa_shapes(const std::string& text, const std::string& option);

// Halves the larger of K and N (not below 64) until K x N weights fit in cap_bytes (0: no cap).
void fit_gemm_weights(int64_t* k, int64_t* n, int64_t cap_bytes, int64_t storage_bytes);

// The read-only stream case over `bytes` (the ceiling), a plain GEMM case, and decode attention
// cases of given shapes (calibrate).
CasePtr stream_case(int64_t bytes);
CasePtr gemm_case(const GemmShape& shape, const std::string& name);
CasePtr attention_case(const GqaDecodeShape& shape);
CasePtr attention_case(const MlaDecodeShape& shape);

}  // namespace helix::micro
