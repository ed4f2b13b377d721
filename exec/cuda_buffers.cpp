#include "exec/cuda_buffers.hpp"

#include <algorithm>

#include "exec/layer_data.hpp"

namespace helix {

namespace {

// Split-KV workspace large enough for any batch chunk of up to `batch` requests (smaller chunks
// take more splits).
int64_t attention_workspace_max(const ModelSpec& m, const RankShard& s, int64_t batch,
                                int64_t capacity) {
  int64_t most = 0;
  for (int64_t nb = 1; nb <= batch; ++nb) {
    const cuda::DecodeAttention a = attention_shape(m, s, nb, capacity, capacity);
    most = std::max(most, cuda::attention_workspace_floats(a, cuda::attention_splits(a)));
  }
  return most;
}

}  // namespace

int cuda_elem_bytes(Buffer b) {
  return b == Buffer::combined ? 2 : 4;
}

std::optional<cuda::MoeFfnShape> grouped_moe_shape(const ModelSpec& m, const RankShard& s,
                                                   int batch) {
  if (s.layer != LayerKind::moe || !s.in_ffn || !cuda::MoeFfn::enabled()) return std::nullopt;
  cuda::MoeFfnShape g;
  g.hidden = m.hidden;
  g.experts = m.moe.routed_experts;
  g.top_k = m.moe.top_k;
  g.expert_begin = s.experts.begin;
  g.expert_end = s.experts.end;
  g.cols = s.expert_cols.size();
  g.shared_cols = s.shared_cols.size();
  g.routed_scale = m.moe.routed_scale;
  g.max_tokens = batch;
  if (!cuda::MoeFfn::unsupported(g).empty()) return std::nullopt;
  return g;
}

std::array<ScratchEntry, kNumScratch> cuda_scratch(const ModelSpec& m, const RankShard& s,
                                                   int batch, int64_t capacity) {
  const int64_t B = batch, H = m.hidden, qh = s.q_heads.size();
  const int64_t widest =
      std::max<int64_t>({s.dense_cols.size(), s.expert_cols.size(), s.shared_cols.size(), 1});
  const std::optional<cuda::MoeFfnShape> grouped = grouped_moe_shape(m, s, batch);
  const int64_t assignments = s.layer == LayerKind::moe && !grouped ? B * m.moe.top_k : 0;
  const int64_t rows = grouped ? 0 : std::max(B, assignments);
  std::array<ScratchEntry, kNumScratch> t{};
  auto set = [&](Scratch k, const char* name, int64_t elems, int bytes) {
    t[size_t(k)] = {name, elems, bytes};
  };
  set(Scratch::normed_bf, "normed_bf", B * H, 2);
  if (m.is_mla()) {
    set(Scratch::q_latent_bf, "q_latent_bf", B * m.mla.q_lora, 2);
    set(Scratch::q_full_bf, "q_full_bf", B * qh * (m.mla.qk_nope + m.mla.qk_rope), 2);
    set(Scratch::latent_bf, "latent_bf", B * qh * m.attn_out_dim(), 2);
  }
  set(Scratch::ffn_in_bf, "ffn_in_bf", B * H, 2);
  set(Scratch::gate, "gate", rows * widest, 4);
  set(Scratch::up, "up", rows * widest, 4);
  set(Scratch::act_bf, "act_bf", rows * widest, 2);
  set(Scratch::expert_rows, "expert_rows", assignments, 4);
  set(Scratch::expert_wts, "expert_wts", assignments, 4);
  set(Scratch::expert_in, "expert_in", assignments * H, 2);
  set(Scratch::expert_out, "expert_out", assignments * H, 4);
  set(Scratch::attn_split, "attn_split", attention_workspace_max(m, s, B, capacity), 4);
  if (grouped) set(Scratch::moe_work, "moe_work", cuda::MoeFfn::workspace_bytes(*grouped), 1);
  return t;
}

CudaFootprint cuda_footprint(const ModelSpec& m, const RankShard& s, int batch,
                             int64_t max_positions) {
  CudaFootprint f;
  f.weights = 2 * weight_elements(m, s);
  f.kv = 2 * cache_elements(m, s, batch, max_positions);
  const BufferTable table = activation_buffers(m, s, batch);
  for (int b = 0; b < kNumBuffers; ++b)
    f.activations += table.elems[size_t(b)] * cuda_elem_bytes(Buffer(b));
  const int64_t capacity = std::max<int64_t>(1, s.local_tokens(max_positions));
  for (const ScratchEntry& e : cuda_scratch(m, s, batch, capacity)) f.workspace += e.bytes();
  f.workspace += kGemmWorkspaceBytes;
  return f;
}

cuda::DecodeAttention attention_shape(const ModelSpec& m, const RankShard& s, int64_t batch,
                                      int64_t tokens, int64_t capacity) {
  cuda::DecodeAttention a;
  a.mla = m.is_mla();
  a.batch = batch;
  a.heads = s.q_heads.size();
  a.q_begin = s.q_heads.begin;
  a.kv_begin = m.is_mla() ? 0 : s.kv_heads.begin;
  a.kv_heads = m.is_mla() ? 1 : s.kv_heads.size();
  a.group = m.is_mla() ? s.q_heads.size() : m.group();
  a.tokens = tokens;
  a.capacity = capacity;
  a.scale = m.softmax_scale();
  a.reserved_sms = attention_reserved_sms(s.layout);
  return a;
}

}  // namespace helix
