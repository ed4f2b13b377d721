// Layouts and their parameters: how N ranks share one decode layer.
//   tp          attention heads and FFN sharded N ways (KV duplicated once N exceeds the KV heads)
//   kvp         Medha-style KV parallelism: KV sharded over KVP x TPA for attention, partial
//               outputs gathered onto the TPA group of KVP rank 0, which runs the output
//               projection and the FFN (TPF x EP = TPA) while the other ranks wait
//   helix       Helix: attention over KVP x TPA, All-to-All + exact LSE combine, then the output
//               projection and FFN over all N ranks as TPF x EP
//   helix-hopb  Helix with HOP-B: attention in batch chunks, each chunk's All-to-All started as
//               soon as its attention is done, overlapping the next chunk
//   ep          data-parallel attention (each rank attends for its B / N requests with the whole
//               attention) and an all-gather of the tokens before the expert-parallel FFN over
//               all N ranks; priced by the cost model only (no executor runs it)
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "layouts/model_spec.hpp"

namespace helix {

enum class LayoutKind { tp, kvp, helix, helix_hopb, ep };

const char* to_string(LayoutKind kind);
// Parses a layout name; std::nullopt when unknown.
std::optional<LayoutKind> parse_layout(const std::string& name);
// Whether the executors run this layout (every kind but ep).
bool runs_on_executors(LayoutKind kind);
// Names of the layouts the executors run.
std::vector<std::string> layout_names();
// The baselines the Helix paper compares against (tp, ep, kvp).
bool is_baseline(LayoutKind kind);
// "baseline" or "helix".
const char* family_of(LayoutKind kind);

// HOP-B batch chunks run for `requested` chunks at `batch` requests: a chunk holds at least one
// request, so more chunks than requests are clamped to the batch.
int hopb_chunks_at(int requested, int batch);

// SMs HOP-B's chunked attention leaves free for the exchange by default. An attention CTA of the
// MLA kernel with 64 heads per CTA holds 246 of an SM's 255 registers per thread over 256 threads
// (62,976 of 65,536), so no communication kernel fits beside it: without free SMs a chunk's
// exchange would start only when the next chunk's attention ends. Four SMs are 3% of an H100 or
// H200 (132 SMs).
constexpr int kDefaultHopbCommSms = 4;
constexpr int kMaxHopbCommSms = 64;

struct LayoutParams {
  LayoutKind kind = LayoutKind::helix;
  int n = 1;            // ranks in the pool
  int kvp = 1;          // KV-parallel width of attention (tp: 1)
  int tpa = 1;          // tensor-parallel width of attention (tp: N)
  int tpf = 1;          // tensor-parallel width of each FFN / expert
  int ep = 1;           // expert-parallel width
  int hopb_chunks = 1;  // HOP-B batch chunks (helix-hopb only)
  // HOP-B: SMs each chunk's attention leaves to the chunk exchanges running beside it (the split
  // count fills the others; the KVP communicator runs at most this many CTAs), so that an exchange
  // kernel finds an SM while the next chunk computes (helix-hopb with more than one chunk only).
  int hopb_comm_sms = 0;
  int kv_block = 16;  // tokens per round-robin KV block (decode steps per KVP rank)

  // Ranks that run the FFN (kvp: the TPA group of KVP rank 0; others: all N).
  int ffn_ranks() const { return kind == LayoutKind::kvp ? tpa : n; }
};

// SMs a layout's attention launches leave free: hopb_comm_sms for helix-hopb with more than one
// chunk, else 0.
int attention_reserved_sms(const LayoutParams& p);

// Values given on the command line; unset fields take the layout's defaults.
struct LayoutRequest {
  std::optional<int> kvp, tpa, tpf, ep, hopb_chunks, hopb_comm_sms;
  int kv_block = 16;
};

// Default parameters for `n` ranks (the paper's choices, made to divide evenly):
//   TPA = gcd(K, N) (= min(K, N) whenever one divides the other), KVP = N / TPA;
//   EP = gcd(FFN ranks, routed experts) for MoE layers (1 for dense), TPF = FFN ranks / EP;
//   HOP-B chunks = hopb_chunks_at(requested or 4, batch), SMs left to its exchanges =
//   requested or kDefaultHopbCommSms.
// Explicit values in `req` override the defaults; the result is not validated. KVP and TPA do not
// apply to tp (KVP = 1, TPA = N); TPF and EP do not apply to kvp (its FFN group is the TPA group).
LayoutParams make_layout(LayoutKind kind, int n, const ModelSpec& model, LayerKind layer, int batch,
                         const LayoutRequest& req);

// Checks a layout against the model and rank count. Returns an empty string when valid, otherwise
// one line naming the parameter and the rule it breaks.
std::string validate_layout(const LayoutParams& p, const ModelSpec& model, LayerKind layer,
                            int batch);

// "KVP x TPA" and "TPF x EP" as printed in tables, e.g. "4x2".
std::string attn_shape(const LayoutParams& p);
std::string ffn_shape(const LayoutParams& p);

}  // namespace helix
