#include "bench/micro/kernel_cases.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <stdexcept>

#include "comm/error.hpp"
#include "layouts/layout.hpp"
#include "layouts/model_spec.hpp"
#include "layouts/schedule.hpp"

namespace helix::micro {

const char* kernel_name(KernelKind k) {
  switch (k) {
    case KernelKind::stream:
      return "stream";
    case KernelKind::attn_gqa:
      return "attn_gqa";
    case KernelKind::attn_mla:
      return "attn_mla";
    case KernelKind::lse_combine:
      return "lse_combine";
    case KernelKind::gemm:
      return "gemm";
    case KernelKind::moe_experts:
      return "moe_experts";
    case KernelKind::kv_append:
      return "kv_append";
    case KernelKind::kv_pack:
      return "kv_pack";
  }
  return "?";
}

std::vector<Operand> case_operands(const KernelCase& c, const MicroBackend& backend) {
  const int64_t es = backend.storage_bytes();
  const Elem S = Elem::storage, F = Elem::fp32;
  switch (c.kind) {
    case KernelKind::stream:
      return {{c.stream_bytes, S}, {4, F}};
    case KernelKind::attn_gqa: {
      const auto& g = c.gqa;
      const int64_t kv = g.batch * g.kv_heads * g.tokens * g.head_dim * es;
      return {{g.batch * g.q_heads * g.head_dim * 4, F},
              {kv, S},
              {kv, S},
              {g.batch * g.q_heads * g.head_dim * 4, F},
              {g.batch * g.q_heads * 4, F}};
    }
    case KernelKind::attn_mla: {
      const auto& m = c.mla;
      const int64_t w = m.kv_lora + m.rope;
      return {{m.batch * m.heads * w * 4, F},
              {m.batch * m.tokens * w * es, S},
              {m.batch * m.heads * m.kv_lora * 4, F},
              {m.batch * m.heads * 4, F}};
    }
    case KernelKind::lse_combine: {
      const auto& k = c.combine;
      return {{k.parts * k.rows * k.dim * 4, F},
              {k.parts * k.rows * 4, F},
              {k.rows * k.dim * 4, F},
              {k.rows * 4, F}};
    }
    case KernelKind::gemm: {
      const auto& g = c.gemm;
      return {{g.batch * g.m * g.k * es, S},
              {g.batch * g.k * g.n * es, S},
              {g.batch * g.m * g.n * es, S}};
    }
    case KernelKind::moe_experts: {
      const auto& m = c.moe;
      const int64_t w = m.experts * m.hidden * m.cols * es;
      const int64_t act = m.experts * m.rows_per_expert * m.hidden * es;
      return {{act, S}, {w, S}, {w, S}, {w, S}, {act, S}, {backend.moe_scratch_bytes(m), F}};
    }
    case KernelKind::kv_append: {
      const auto& k = c.kv;
      return {{k.batch * k.kv_heads * k.width * es, S},
              {k.batch * k.kv_heads * k.capacity * k.width * es, S}};
    }
    case KernelKind::kv_pack:
      return {{2 * c.pack.blocks * c.pack.block_bytes, S}, {c.pack.blocks * c.pack.block_bytes, S}};
  }
  return {};
}

double case_bytes(const KernelCase& c, int64_t es) {
  const double e = double(es);
  switch (c.kind) {
    case KernelKind::stream:
      return double(c.stream_bytes);
    case KernelKind::attn_gqa: {
      const auto& g = c.gqa;
      const double bq = double(g.batch * g.q_heads);
      return e * double(g.batch * g.kv_heads * g.tokens * g.head_dim) * 2 +
             4.0 * bq * double(g.head_dim) + 4.0 * bq * double(g.head_dim + 1);
    }
    case KernelKind::attn_mla: {
      const auto& m = c.mla;
      const double bh = double(m.batch * m.heads);
      return e * double(m.batch * m.tokens * (m.kv_lora + m.rope)) +
             4.0 * bh * double(m.kv_lora + m.rope) + 4.0 * bh * double(m.kv_lora + 1);
    }
    case KernelKind::lse_combine: {
      const auto& k = c.combine;
      return 4.0 * double(k.parts + 1) * double(k.rows) * double(k.dim + 1);
    }
    case KernelKind::gemm: {
      const auto& g = c.gemm;
      return e * double(g.batch) * double(g.m * g.k + g.k * g.n + g.m * g.n);
    }
    case KernelKind::moe_experts: {
      const auto& m = c.moe;
      return e * double(m.experts) *
             (3.0 * double(m.hidden * m.cols) + 2.0 * double(m.rows_per_expert * m.hidden));
    }
    case KernelKind::kv_append: {
      const auto& k = c.kv;
      return 2.0 * e * double(k.batch * k.kv_heads * k.width);
    }
    case KernelKind::kv_pack:  // each packed block read once and written once
      return 2.0 * double(c.pack.blocks) * double(c.pack.block_bytes);
  }
  return 0;
}

double case_flops(const KernelCase& c) {
  switch (c.kind) {
    case KernelKind::stream:
      return double(c.stream_bytes) / 4.0;  // one add per fp32 element
    case KernelKind::attn_gqa: {            // Q.K and P.V: 2 FLOPs per multiply-add
      const auto& g = c.gqa;
      return 4.0 * double(g.batch * g.q_heads) * double(g.tokens) * double(g.head_dim);
    }
    case KernelKind::attn_mla: {
      const auto& m = c.mla;
      return 2.0 * double(m.batch * m.heads) * double(m.tokens) *
             double(m.kv_lora + m.rope + m.kv_lora);
    }
    case KernelKind::lse_combine: {
      const auto& k = c.combine;
      return 3.0 * double(k.parts * k.rows * k.dim);
    }
    case KernelKind::gemm:
      return 2.0 * double(c.gemm.batch) * double(c.gemm.m) * double(c.gemm.k) * double(c.gemm.n);
    case KernelKind::moe_experts: {
      const auto& m = c.moe;
      return 6.0 * double(m.experts * m.rows_per_expert) * double(m.hidden) * double(m.cols);
    }
    case KernelKind::kv_append:
    case KernelKind::kv_pack:
      return 0;
  }
  return 0;
}

void launch_case(MicroBackend& b, const KernelCase& c, const std::vector<void*>& p) {
  auto f = [&](size_t i) { return static_cast<float*>(p[i]); };
  switch (c.kind) {
    case KernelKind::stream:
      b.stream_read(p[0], c.stream_bytes, f(1));
      break;
    case KernelKind::attn_gqa:
      b.attention_gqa(c.gqa, p[0], p[1], p[2], f(3), f(4));
      break;
    case KernelKind::attn_mla:
      b.attention_mla(c.mla, p[0], p[1], f(2), f(3));
      break;
    case KernelKind::lse_combine:
      b.lse_combine(c.combine, f(0), f(1), f(2), f(3));
      break;
    case KernelKind::gemm:
      b.gemm(c.gemm, p[0], p[1], p[2]);
      break;
    case KernelKind::moe_experts:
      b.moe_experts(c.moe, p[0], p[1], p[2], p[3], p[4], p[5]);
      break;
    case KernelKind::kv_append:
      b.kv_append(c.kv, p[0], p[1]);
      break;
    case KernelKind::kv_pack:
      b.kv_pack(c.pack, p[0], p[1]);
      break;
  }
}

void fit_gemm_weights(int64_t* k, int64_t* n, int64_t cap_bytes, int64_t storage_bytes) {
  if (cap_bytes <= 0) return;
  while (*k * *n * storage_bytes > cap_bytes && (*n > 64 || *k > 64)) {
    if (*n >= *k)
      *n = (*n + 1) / 2;
    else
      *k = (*k + 1) / 2;
  }
}

KernelCase stream_case(int64_t bytes) {
  KernelCase c;
  c.kind = KernelKind::stream;
  c.stream_bytes = bytes;
  c.name = "stream/read_only/" + std::to_string(bytes) + "B";
  c.shape = "read-only reduction over " + std::to_string(bytes) + " bytes (the ceiling)";
  return c;
}

namespace {

// Cases keyed by name: a shape met again adds its origin to the description.
class CaseSet {
 public:
  void add(KernelCase c, const std::string& origin) {
    auto it = index_.find(c.name);
    if (it == index_.end()) {
      c.shape += "; used by: " + origin;
      index_.emplace(c.name, cases_.size());
      cases_.push_back(std::move(c));
      return;
    }
    std::string& s = cases_[it->second].shape;
    if (s.find(origin) == std::string::npos) s += ", " + origin;
  }
  std::vector<KernelCase> take() { return std::move(cases_); }

 private:
  std::map<std::string, size_t> index_;
  std::vector<KernelCase> cases_;
};

struct Shard {
  std::string origin;  // e.g. "helix N=16 (KVP 2 x TPA 8, TPF 16 x EP 1)"
  LayoutParams layout;
  RankShard shard;
};

// Rank 0's shard of each valid (layout, N) for one layer kind.
std::vector<Shard> shards(const ModelSpec& m, LayerKind layer, const std::vector<int>& ns,
                          const std::vector<LayoutKind>& kinds) {
  std::vector<Shard> v;
  for (LayoutKind k : kinds)
    for (int n : ns) {
      const LayoutParams p = make_layout(k, n, m, layer, 1, LayoutRequest{});
      if (!validate_layout(p, m, layer, 1).empty()) continue;
      Shard s;
      s.origin = std::string(to_string(k)) + " N=" + std::to_string(n) + " (KVPxTPA " +
                 attn_shape(p) + ", TPFxEP " + ffn_shape(p) + ")";
      s.layout = p;
      s.shard = rank_shard(m, layer, p, 0);
      v.push_back(s);
    }
  return v;
}

int64_t round_tokens(double t) {
  return std::max<int64_t>(64, int64_t(std::llround(t / 64)) * 64);
}

std::string scaled_note(bool scaled, const std::string& from) {
  return scaled ? " (scaled down from " + from + " by the memory caps)" : "";
}

void add_attention(CaseSet& set, const ModelSpec& m, const CaseOptions& o) {
  const std::vector<Shard> sh =
      shards(m, m.default_layer_kind(), o.ranks, {LayoutKind::tp, LayoutKind::helix});
  const int64_t es = o.storage_bytes;
  const int64_t max_t = *std::max_element(o.slice_tokens.begin(), o.slice_tokens.end());
  for (const Shard& s : sh) {
    const int64_t qh = s.shard.q_heads.size(), kvh = s.shard.kv_heads.size();
    const double per_token = double(m.kv_elems_per_token_per_head() * kvh * es);
    double factor = 1.0;
    if (o.max_kv_bytes > 0 && per_token * double(max_t) > double(o.max_kv_bytes))
      factor = double(o.max_kv_bytes) / (per_token * double(max_t));
    for (int64_t b : o.attn_batch)
      for (int64_t t0 : o.slice_tokens) {
        const int64_t t = factor < 1.0 ? round_tokens(double(t0) * factor) : t0;
        KernelCase c;
        const std::string note = scaled_note(factor < 1.0, std::to_string(t0) + " tokens");
        if (m.is_mla()) {
          c.kind = KernelKind::attn_mla;
          c.mla = {b, qh, m.mla.kv_lora, m.mla.qk_rope, t};
          c.name = "attn_mla/" + m.name + "/B" + std::to_string(b) + "_h" + std::to_string(qh) +
                   "_lora" + std::to_string(m.mla.kv_lora) + "_rope" +
                   std::to_string(m.mla.qk_rope) + "/T" + std::to_string(t);
          c.shape = "MLA decode B=" + std::to_string(b) + " heads=" + std::to_string(qh) +
                    " kv_lora=" + std::to_string(m.mla.kv_lora) +
                    " rope=" + std::to_string(m.mla.qk_rope) + " tokens=" + std::to_string(t) +
                    note;
        } else {
          c.kind = KernelKind::attn_gqa;
          c.gqa = {b, qh, kvh, m.head_dim, t};
          c.name = "attn_gqa/" + m.name + "/B" + std::to_string(b) + "_q" + std::to_string(qh) +
                   "_kv" + std::to_string(kvh) + "_d" + std::to_string(m.head_dim) + "/T" +
                   std::to_string(t);
          c.shape = "GQA decode B=" + std::to_string(b) + " q_heads=" + std::to_string(qh) +
                    " kv_heads=" + std::to_string(kvh) + " head_dim=" + std::to_string(m.head_dim) +
                    " tokens=" + std::to_string(t) + note;
        }
        set.add(c, s.origin);
      }
  }
}

void add_combine(CaseSet& set, const ModelSpec& m, const CaseOptions& o) {
  for (const Shard& s : shards(m, m.default_layer_kind(), o.combine_ranks, {LayoutKind::helix})) {
    const int64_t parts = s.layout.kvp, oh = s.shard.o_heads.size();
    if (parts < 2 || oh < 1) continue;
    for (int64_t b : o.combine_batch) {
      KernelCase c;
      c.kind = KernelKind::lse_combine;
      // The partials as exchanged: value width (MLA: up-projected by W_uv before the exchange).
      const int64_t dim = m.attn_value_dim();
      c.combine = {parts, b * oh, dim};
      c.name = "lse_combine/" + m.name + "/parts" + std::to_string(parts) + "_rows" +
               std::to_string(b * oh) + "_d" + std::to_string(dim);
      c.shape = "LSE combine parts=" + std::to_string(parts) + " rows=" + std::to_string(b * oh) +
                " (B=" + std::to_string(b) + " x " + std::to_string(oh) +
                " heads) dim=" + std::to_string(dim);
      set.add(c, s.origin);
    }
  }
}

// batch0 > 1: that many independent K x N GEMMs (per-head weights); under a weight cap the batch
// shrinks first, then K and N.
void add_gemm(CaseSet& set, const std::string& model, int64_t k0, int64_t n0, const std::string& op,
              const std::string& origin, const CaseOptions& o, int64_t batch0 = 1) {
  if (k0 < 1 || n0 < 1 || batch0 < 1) return;
  int64_t k = k0, n = n0, batch = batch0;
  fit_gemm_weights(&k, &n, o.max_weight_bytes, o.storage_bytes);
  if (o.max_weight_bytes > 0)
    batch = std::max<int64_t>(1, std::min(batch, o.max_weight_bytes / (k * n * o.storage_bytes)));
  const bool scaled = k != k0 || n != n0 || batch != batch0;
  const std::string batched = batch0 > 1 ? "_batch" + std::to_string(batch) : "";
  for (int64_t m : o.gemm_rows) {
    KernelCase c;
    c.kind = KernelKind::gemm;
    c.gemm = GemmShape::packed(m, k, n, int(batch));
    c.name = "gemm/" + model + "/M" + std::to_string(m) + "_K" + std::to_string(k) + "_N" +
             std::to_string(n) + batched;
    c.shape = "GEMM M=" + std::to_string(m) + " K=" + std::to_string(k) +
              " N=" + std::to_string(n) +
              (batch0 > 1 ? " x " + std::to_string(batch) + " heads" : std::string()) +
              scaled_note(scaled, (batch0 > 1 ? std::to_string(batch0) + " x " : std::string()) +
                                      std::to_string(k0) + "x" + std::to_string(n0));
    set.add(c, op + " of " + origin);
  }
}

void add_gemms(CaseSet& set, const ModelSpec& m, const CaseOptions& o) {
  std::vector<LayerKind> layers = {LayerKind::dense};
  if (m.has_moe()) layers.push_back(LayerKind::moe);
  const int64_t H = m.hidden;
  for (LayerKind layer : layers)
    for (const Shard& s : shards(m, layer, o.ranks, {LayoutKind::tp, LayoutKind::helix})) {
      const RankShard& p = s.shard;
      const int64_t qh = p.q_heads.size(), kvh = p.kv_heads.size(), oh = p.o_heads.size();
      const std::string& at = s.origin;
      if (layer == LayerKind::dense || !m.has_moe()) {  // attention projections once per model
        if (m.is_mla()) {
          const auto& a = m.mla;
          add_gemm(set, m.name, H, a.q_lora, "q_down", at, o);
          add_gemm(set, m.name, a.q_lora, qh * (a.qk_nope + a.qk_rope), "q_up", at, o);
          add_gemm(set, m.name, H, a.kv_lora + a.qk_rope, "kv_down", at, o);
          // Per attended head: the absorb of W_uk into the query and W_uv on the partial output
          // (applied on each KV shard before the exchange).
          add_gemm(set, m.name, a.qk_nope, a.kv_lora, "w_uk_absorb", at, o, qh);
          add_gemm(set, m.name, a.kv_lora, a.v_head, "w_uv", at, o, qh);
          add_gemm(set, m.name, oh * a.v_head, H, "o_proj", at, o);
        } else {
          add_gemm(set, m.name, H, (qh + 2 * kvh) * m.head_dim, "qkv_proj", at, o);
          add_gemm(set, m.name, oh * m.head_dim, H, "o_proj", at, o);
        }
      }
      if (layer == LayerKind::dense) {
        add_gemm(set, m.name, H, p.dense_cols.size(), "ffn_gate_up", at, o);
        add_gemm(set, m.name, p.dense_cols.size(), H, "ffn_down", at, o);
      } else {
        add_gemm(set, m.name, H, m.moe.routed_experts, "router", at, o);
        add_gemm(set, m.name, H, p.shared_cols.size(), "shared_gate_up", at, o);
        add_gemm(set, m.name, p.shared_cols.size(), H, "shared_down", at, o);
      }
    }
}

void add_moe(CaseSet& set, const ModelSpec& m, const CaseOptions& o) {
  if (!m.has_moe()) return;
  const int64_t H = m.hidden, es = o.storage_bytes;
  for (const Shard& s : shards(m, LayerKind::moe, o.ranks, {LayoutKind::tp, LayoutKind::helix})) {
    const int64_t e0 = s.shard.experts.size(), c0 = s.shard.expert_cols.size();
    if (e0 < 1 || c0 < 1) continue;
    int64_t e = e0, cols = c0;
    if (o.max_weight_bytes > 0) {
      const int64_t per_expert = 3 * H * cols * es;
      e = std::max<int64_t>(1, std::min(e, o.max_weight_bytes / per_expert));
      while (3 * H * cols * es * e > o.max_weight_bytes && cols > 64) cols = (cols + 1) / 2;
    }
    const bool scaled = e != e0 || cols != c0;
    for (int64_t rows : o.moe_rows) {
      KernelCase c;
      c.kind = KernelKind::moe_experts;
      c.moe = {e, rows, H, cols};
      c.name = "moe_experts/" + m.name + "/E" + std::to_string(e) + "_rows" + std::to_string(rows) +
               "_H" + std::to_string(H) + "_cols" + std::to_string(cols);
      c.shape =
          "SwiGLU experts=" + std::to_string(e) + " rows_per_expert=" + std::to_string(rows) +
          " hidden=" + std::to_string(H) + " cols=" + std::to_string(cols) +
          scaled_note(scaled, std::to_string(e0) + " experts x " + std::to_string(c0) + " columns");
      set.add(c, s.origin);
    }
  }
}

void add_append(CaseSet& set, const ModelSpec& m, const CaseOptions& o) {
  for (const Shard& s :
       shards(m, m.default_layer_kind(), o.ranks, {LayoutKind::tp, LayoutKind::helix})) {
    const int64_t kvh = s.shard.kv_heads.size(), w = m.kv_elems_per_token_per_head();
    for (int64_t b : o.append_batch) {
      KernelCase c;
      c.kind = KernelKind::kv_append;
      c.kv = {b, kvh, w, 16, 9};
      c.name = "kv_append/" + m.name + "/B" + std::to_string(b) + "_kv" + std::to_string(kvh) +
               "_w" + std::to_string(w);
      c.shape = "KV append B=" + std::to_string(b) + " kv_heads=" + std::to_string(kvh) +
                " width=" + std::to_string(w) +
                (m.is_mla() ? " (latent + rope key)" : " (K and V)") + " into a 16-token cache";
      set.add(c, s.origin);
    }
  }
}

// The pack of one request's KV blocks bound for one decode peer (helix-bench kv-transfer): blocks
// of 16 tokens of one (layer, KV head), every other block of the cache (two peers, round robin).
void add_pack(CaseSet& set, const ModelSpec& m, const CaseOptions& o) {
  const int64_t block_bytes = 16 * m.kv_elems_per_token_per_head() * o.storage_bytes;
  for (int64_t b0 : o.pack_blocks) {
    int64_t b = b0;
    if (o.max_kv_bytes > 0)
      b = std::max<int64_t>(1, std::min(b, o.max_kv_bytes / (2 * block_bytes)));
    KernelCase c;
    c.kind = KernelKind::kv_pack;
    c.pack = {b, block_bytes};
    c.name = "kv_pack/" + m.name + "/blocks" + std::to_string(b) + "_bytes" +
             std::to_string(block_bytes);
    c.shape = "KV pack for one peer: " + std::to_string(b) + " blocks of 16 tokens x " +
              std::to_string(m.kv_elems_per_token_per_head()) +
              " values (every other block of the cache)" +
              scaled_note(b != b0, std::to_string(b0) + " blocks");
    set.add(c, "KV transfer, prefill to decode layout");
  }
}

void add_custom_gqa(CaseSet& set, const CaseOptions& o) {
  for (const GqaDecodeShape& g0 : o.extra_gqa) {
    GqaDecodeShape g = g0;
    const double kv = double(2 * g.batch * g.kv_heads * g.head_dim * o.storage_bytes);
    const bool scaled = o.max_kv_bytes > 0 && kv * double(g.tokens) > double(o.max_kv_bytes);
    if (scaled) g.tokens = round_tokens(double(o.max_kv_bytes) / kv);
    KernelCase c;
    c.kind = KernelKind::attn_gqa;
    c.gqa = g;
    c.name = "attn_gqa/custom/B" + std::to_string(g.batch) + "_q" + std::to_string(g.q_heads) +
             "_kv" + std::to_string(g.kv_heads) + "_d" + std::to_string(g.head_dim) + "/T" +
             std::to_string(g.tokens);
    c.shape = "GQA decode B=" + std::to_string(g.batch) + " q_heads=" + std::to_string(g.q_heads) +
              " kv_heads=" + std::to_string(g.kv_heads) +
              " head_dim=" + std::to_string(g.head_dim) + " tokens=" + std::to_string(g.tokens) +
              scaled_note(scaled, std::to_string(g0.tokens) + " tokens");
    set.add(c, "--gqa-shapes");
  }
}

}  // namespace

std::vector<GqaDecodeShape> parse_gqa_shapes(const std::string& text, const std::string& option) {
  std::vector<GqaDecodeShape> v;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, end - start);
    start = end + 1;
    if (item.empty()) continue;
    const std::string rule = option + ": '" + item +
                             "' is not B<batch>_q<q heads>_kv<KV heads>[_d128]_T<tokens> (e.g. "
                             "B1_q16_kv1_T1M; q heads a multiple of KV heads)";
    // Fields: a letter prefix and digits (T: an optional K or M suffix), separated by '_'.
    std::vector<std::pair<std::string, std::string>> fields;
    size_t i = 0;
    while (i < item.size()) {
      size_t j = item.find('_', i);
      if (j == std::string::npos) j = item.size();
      const std::string f = item.substr(i, j - i);
      size_t k = 0;
      while (k < f.size() && std::isalpha(static_cast<unsigned char>(f[k]))) ++k;
      fields.emplace_back(f.substr(0, k), f.substr(k));
      i = j + 1;
    }
    auto number = [&](const std::string& digits, bool suffix) -> int64_t {
      size_t k = 0;
      while (k < digits.size() && std::isdigit(static_cast<unsigned char>(digits[k]))) ++k;
      if (k == 0 || k > 9) throw UsageError(rule);
      int64_t n = std::stoll(digits.substr(0, k));
      const std::string rest = digits.substr(k);
      if (suffix && (rest == "K" || rest == "k"))
        n <<= 10;
      else if (suffix && (rest == "M" || rest == "m"))
        n <<= 20;
      else if (!rest.empty())
        throw UsageError(rule);
      if (n < 1) throw UsageError(rule);
      return n;
    };
    GqaDecodeShape g;
    g.head_dim = 128;
    bool has_b = false, has_q = false, has_kv = false, has_t = false;
    for (const auto& f : fields) {
      if (f.first == "B" && !has_b) {
        g.batch = number(f.second, false);
        has_b = true;
      } else if (f.first == "q" && !has_q) {
        g.q_heads = number(f.second, false);
        has_q = true;
      } else if (f.first == "kv" && !has_kv) {
        g.kv_heads = number(f.second, false);
        has_kv = true;
      } else if (f.first == "d" && number(f.second, false) == 128) {
      } else if (f.first == "T" && !has_t) {
        g.tokens = number(f.second, true);
        has_t = true;
      } else {
        throw UsageError(rule);
      }
    }
    if (!(has_b && has_q && has_kv && has_t) || g.q_heads % g.kv_heads != 0) throw UsageError(rule);
    v.push_back(g);
  }
  return v;
}

std::vector<KernelCase> make_kernel_cases(const CaseOptions& o) {
  CaseSet set;
  add_custom_gqa(set, o);
  for (const std::string& name : o.models) {
    ModelSpec m;
    try {
      m = load_model(name);
    } catch (const std::invalid_argument& e) {
      std::string msg = e.what();
      if (msg.rfind("--model:", 0) == 0) msg = msg.substr(8);
      throw UsageError("--models:" + (msg[0] == ' ' ? msg : " " + msg));
    }
    add_attention(set, m, o);
    add_combine(set, m, o);
    add_gemms(set, m, o);
    add_moe(set, m, o);
    add_append(set, m, o);
    add_pack(set, m, o);
  }
  return set.take();
}

}  // namespace helix::micro
