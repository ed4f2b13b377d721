// Decode attention cases: GQA (one or more KV heads, each read by its group of query heads) and
// absorbed MLA (every head reads one latent + rope cache), at the per-rank shard shapes of tp and
// helix for each model, over KV slices of 128K to 1M tokens; explicit GQA shapes (--gqa-shapes).
// Checked against the CPU backend (cpu::attention_gqa / attention_mla) on at most 4037 (GQA) or
// 2053 (MLA) tokens, so the split path and a partial last tile are exercised.
#include <algorithm>
#include <memory>

#include "bench/micro/cases/case_util.hpp"
#include "bench/micro/kernel_case.hpp"

namespace helix::micro {

namespace {

constexpr int64_t kVerifyGqaTokens = 4037;
constexpr int64_t kVerifyMlaTokens = 2053;

// bf16 storage: the kernels round queries and probabilities to bf16 for the tensor cores.
double attention_tolerance(int64_t storage_bytes) {
  return storage_bytes < 4 ? 2e-2 : 1e-4;
}

// The name without its /T<tokens> suffix, then the tokens of the checked case.
std::string key_with_tokens(const std::string& name, int64_t tokens) {
  return name.substr(0, name.rfind('/')) + "/T" + std::to_string(tokens);
}

struct GqaCase final : KernelCase {
  GqaDecodeShape s;
  const char* kernel() const override { return "attn_gqa"; }
  std::vector<Operand> operands(const MicroBackend& b) const override {
    const int64_t kv = s.batch * s.kv_heads * s.tokens * s.head_dim * b.storage_bytes();
    return {{s.batch * s.q_heads * s.head_dim * 4, Elem::fp32},
            {kv, Elem::storage},
            {kv, Elem::storage},
            {s.batch * s.q_heads * s.head_dim * 4, Elem::fp32},
            {s.batch * s.q_heads * 4, Elem::fp32}};
  }
  double bytes(int64_t es) const override {
    const double bq = double(s.batch * s.q_heads);
    return double(es) * double(s.batch * s.kv_heads * s.tokens * s.head_dim) * 2 +
           4.0 * bq * double(s.head_dim) + 4.0 * bq * double(s.head_dim + 1);
  }
  double flops() const override {  // Q.K and P.V: 2 FLOPs per multiply-add
    return 4.0 * double(s.batch * s.q_heads) * double(s.tokens) * double(s.head_dim);
  }
  void launch(MicroBackend& b, const std::vector<void*>& p) const override {
    b.attention_gqa(s, p[0], p[1], p[2], static_cast<float*>(p[3]), static_cast<float*>(p[4]));
  }
  std::unique_ptr<KernelCase> small() const override {
    auto c = std::make_unique<GqaCase>(*this);
    c->s.tokens = std::min(s.tokens, kVerifyGqaTokens);
    return c;
  }
  std::string verify_key() const override {
    return key_with_tokens(name, std::min(s.tokens, kVerifyGqaTokens));
  }
  CheckSpec check_spec(int64_t es) const override {
    return {{3, 4},
            attention_tolerance(es),
            attention_tolerance(es),
            "B=" + std::to_string(s.batch) + " q_heads=" + std::to_string(s.q_heads) +
                " kv_heads=" + std::to_string(s.kv_heads) + " tokens=" + std::to_string(s.tokens)};
  }
};

struct MlaCase final : KernelCase {
  MlaDecodeShape s;
  const char* kernel() const override { return "attn_mla"; }
  std::vector<Operand> operands(const MicroBackend& b) const override {
    const int64_t w = s.kv_lora + s.rope;
    return {{s.batch * s.heads * w * 4, Elem::fp32},
            {s.batch * s.tokens * w * b.storage_bytes(), Elem::storage},
            {s.batch * s.heads * s.kv_lora * 4, Elem::fp32},
            {s.batch * s.heads * 4, Elem::fp32}};
  }
  double bytes(int64_t es) const override {
    const double bh = double(s.batch * s.heads);
    return double(es) * double(s.batch * s.tokens * (s.kv_lora + s.rope)) +
           4.0 * bh * double(s.kv_lora + s.rope) + 4.0 * bh * double(s.kv_lora + 1);
  }
  double flops() const override {
    return 2.0 * double(s.batch * s.heads) * double(s.tokens) *
           double(s.kv_lora + s.rope + s.kv_lora);
  }
  void launch(MicroBackend& b, const std::vector<void*>& p) const override {
    b.attention_mla(s, p[0], p[1], static_cast<float*>(p[2]), static_cast<float*>(p[3]));
  }
  std::unique_ptr<KernelCase> small() const override {
    auto c = std::make_unique<MlaCase>(*this);
    c->s.tokens = std::min(s.tokens, kVerifyMlaTokens);
    return c;
  }
  std::string verify_key() const override {
    return key_with_tokens(name, std::min(s.tokens, kVerifyMlaTokens));
  }
  CheckSpec check_spec(int64_t es) const override {
    return {{2, 3},
            attention_tolerance(es),
            attention_tolerance(es),
            "B=" + std::to_string(s.batch) + " heads=" + std::to_string(s.heads) +
                " tokens=" + std::to_string(s.tokens)};
  }
};

std::shared_ptr<KernelCase> gqa_case(const GqaDecodeShape& g, const std::string& source,
                                     const std::string& note) {
  auto c = std::make_shared<GqaCase>();
  c->s = g;
  c->name = "attn_gqa/" + source + "/B" + std::to_string(g.batch) + "_q" +
            std::to_string(g.q_heads) + "_kv" + std::to_string(g.kv_heads) + "_d" +
            std::to_string(g.head_dim) + "/T" + std::to_string(g.tokens);
  c->shape = "GQA decode B=" + std::to_string(g.batch) + " q_heads=" + std::to_string(g.q_heads) +
             " kv_heads=" + std::to_string(g.kv_heads) + " head_dim=" + std::to_string(g.head_dim) +
             " tokens=" + std::to_string(g.tokens) + note;
  return c;
}

std::shared_ptr<KernelCase> mla_case(const MlaDecodeShape& s, const std::string& model,
                                     const std::string& note) {
  auto c = std::make_shared<MlaCase>();
  c->s = s;
  c->name = "attn_mla/" + model + "/B" + std::to_string(s.batch) + "_h" + std::to_string(s.heads) +
            "_lora" + std::to_string(s.kv_lora) + "_rope" + std::to_string(s.rope) + "/T" +
            std::to_string(s.tokens);
  c->shape = "MLA decode B=" + std::to_string(s.batch) + " heads=" + std::to_string(s.heads) +
             " kv_lora=" + std::to_string(s.kv_lora) + " rope=" + std::to_string(s.rope) +
             " tokens=" + std::to_string(s.tokens) + note;
  return c;
}

// Explicit GQA shapes (model null) and each model's shard shapes, every slice length of a (model,
// head shape) scaled by the one factor that brings its longest slice under the KV cap.
void generate(const ModelSpec* m, const CaseOptions& o, CaseSet& set) {
  if (!m) {
    for (const GqaDecodeShape& g0 : o.extra_gqa) {
      GqaDecodeShape g = g0;
      const double kv = double(2 * g.batch * g.kv_heads * g.head_dim * o.storage_bytes);
      const bool scaled = o.max_kv_bytes > 0 && kv * double(g.tokens) > double(o.max_kv_bytes);
      if (scaled) g.tokens = round_tokens(double(o.max_kv_bytes) / kv);
      set.add(gqa_case(g, "custom", scaled_note(scaled, std::to_string(g0.tokens) + " tokens")),
              "--gqa-shapes");
    }
    return;
  }
  const int64_t max_t = *std::max_element(o.slice_tokens.begin(), o.slice_tokens.end());
  for (const LayoutShard& s :
       layout_shards(*m, m->default_layer_kind(), o.ranks, {LayoutKind::tp, LayoutKind::helix})) {
    const int64_t qh = s.shard.q_heads.size(), kvh = s.shard.kv_heads.size();
    const double per_token = double(m->kv_elems_per_token_per_head() * kvh * o.storage_bytes);
    double factor = 1.0;
    if (o.max_kv_bytes > 0 && per_token * double(max_t) > double(o.max_kv_bytes))
      factor = double(o.max_kv_bytes) / (per_token * double(max_t));
    for (int64_t b : o.attn_batch)
      for (int64_t t0 : o.slice_tokens) {
        const int64_t t = factor < 1.0 ? round_tokens(double(t0) * factor) : t0;
        const std::string note = scaled_note(factor < 1.0, std::to_string(t0) + " tokens");
        if (m->is_mla())
          set.add(mla_case({b, qh, m->mla.kv_lora, m->mla.qk_rope, t}, m->name, note), s.origin);
        else
          set.add(gqa_case({b, qh, kvh, m->head_dim, t}, m->name, note), s.origin);
      }
  }
}

}  // namespace

HELIX_MICRO_CASES(attention, 10, generate);

CasePtr attention_case(const GqaDecodeShape& shape) {
  return gqa_case(shape, "calibrate", "");
}

CasePtr attention_case(const MlaDecodeShape& shape) {
  return mla_case(shape, "calibrate", "");
}

}  // namespace helix::micro
