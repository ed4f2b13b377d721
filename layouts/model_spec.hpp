// Model specifications: the dimensions of one decoder layer, read from the cited JSON data files
// in layouts/models/ (built into the binary; a path to a .json file works as well).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace helix {

enum class AttnKind { gqa, mla };

// Bounds of a model file's fields (far beyond any published model; a file outside them is
// refused, so products of dimensions stay far inside int64).
constexpr int kMaxModelLayers = 1024;
constexpr int kMaxModelWidth = 65536;   // hidden, mla.q_lora, mla.kv_lora
constexpr int kMaxModelHeads = 4096;    // q_heads, kv_heads
constexpr int kMaxModelHeadDim = 1024;  // head_dim, mla.qk_nope, mla.qk_rope, mla.v_head
constexpr int kMaxModelFfn = 262144;    // ffn, moe.expert_ffn
constexpr int kMaxModelExperts = 4096;  // moe.routed_experts, top_k, shared_experts
constexpr int kMaxModelVocab = 1 << 22;

// Reads a user data file (a model or hardware JSON): a regular file of at most 1 MiB, never a
// directory, device or FIFO. Returns "" on success, otherwise why it cannot be read.
std::string read_small_file(const std::string& path, std::string* text);

// Multi-head latent attention (DeepSeek-V2/V3). Decode runs in the absorbed form: the cache holds
// one latent of kv_lora values plus a qk_rope-wide rotary key per token, shared by every head.
struct MlaSpec {
  int q_lora = 0;   // rank of the query down-projection
  int kv_lora = 0;  // latent width (cached)
  int qk_nope = 0;  // per-head query/key width without rotary part
  int qk_rope = 0;  // per-head rotary width (cached once per token)
  int v_head = 0;   // per-head value width
};

struct MoeSpec {
  int routed_experts = 0;
  int top_k = 0;
  int shared_experts = 0;
  int expert_ffn = 0;          // intermediate width of one expert
  int first_dense_layers = 0;  // leading layers with a dense FFN of width `ffn`
  float routed_scale = 1.0f;   // scale applied to the normalized routing weights
};

enum class LayerKind { dense, moe };

struct ModelSpec {
  std::string name;
  std::string source;
  AttnKind attn = AttnKind::gqa;
  int layers = 0;
  int hidden = 0;
  int q_heads = 0;
  int kv_heads = 0;  // 1 for MLA (one latent shared by all heads)
  int head_dim = 0;  // GQA head size; for MLA the value head size (v_head)
  int ffn = 0;       // dense FFN intermediate width
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  int vocab = 0;
  MlaSpec mla;
  MoeSpec moe;

  bool is_mla() const { return attn == AttnKind::mla; }
  bool has_moe() const { return moe.routed_experts > 0; }
  // Group size: query heads per KV head (MLA: all heads share the latent).
  int group() const { return q_heads / kv_heads; }
  // Width of one query head as used by the decode attention kernel.
  //   GQA: head_dim; MLA absorbed: kv_lora + qk_rope (the latent query plus its rotary part).
  int attn_qk_dim() const { return is_mla() ? mla.kv_lora + mla.qk_rope : head_dim; }
  // Width of one head's output of the decode attention kernel
  //   GQA: head_dim; MLA absorbed: kv_lora (the latent, up-projected by W_uv right after).
  int attn_out_dim() const { return is_mla() ? mla.kv_lora : head_dim; }
  // Width of one head's partial output as exchanged between KVP ranks, combined and fed to W_O:
  //   GQA: head_dim; MLA: v_head (each KV shard's latent partial is up-projected by W_uv before
  //   the exchange; the LSE combine is linear per head, so this is exact and moves v_head instead
  //   of kv_lora values per head).
  int attn_value_dim() const { return is_mla() ? mla.v_head : head_dim; }
  // Cached values per token and per KV head (K and V for GQA; latent + rope key for MLA).
  int64_t kv_elems_per_token_per_head() const {
    return is_mla() ? int64_t(mla.kv_lora + mla.qk_rope) : int64_t(2) * head_dim;
  }
  // Cached values per token for the whole layer (all KV heads).
  int64_t kv_elems_per_token() const { return kv_elems_per_token_per_head() * kv_heads; }
  // Softmax scale 1/sqrt(d) with d the query-key width of the unabsorbed head.
  float softmax_scale() const;
  // Number of layers of each kind.
  int dense_layers() const { return has_moe() ? moe.first_dense_layers : layers; }
  int moe_layers() const { return has_moe() ? layers - moe.first_dense_layers : 0; }
  LayerKind default_layer_kind() const { return has_moe() ? LayerKind::moe : LayerKind::dense; }
  // Parameters of one layer of the given kind (weights only; norms included).
  int64_t layer_params(LayerKind kind) const;
};

// Names of the built-in models, in a stable order.
std::vector<std::string> builtin_model_names();

// Loads a built-in model by name, or a JSON file when `name_or_path` ends in ".json".
// Throws std::invalid_argument with a one-line message naming the problem.
ModelSpec load_model(const std::string& name_or_path);

// Parses a model from JSON text (the data-file format). Throws std::invalid_argument.
ModelSpec parse_model_json(const std::string& text, const std::string& origin);

const char* to_string(AttnKind kind);
const char* to_string(LayerKind kind);

}  // namespace helix
