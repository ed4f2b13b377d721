// GEMM cases: the weight GEMMs of each layout's shards (projections, MLA's per-head W_uk absorb and
// W_uv as strided batches, the FFN or the router and shared experts) at decode row counts. No CPU
// reference check here (cuBLASLt; the executors' GEMMs are verified end to end by decode).
#include <algorithm>
#include <memory>

#include "bench/micro/cases/case_util.hpp"
#include "bench/micro/kernel_case.hpp"

namespace helix::micro {

namespace {

struct GemmCase final : KernelCase {
  GemmShape s;
  const char* kernel() const override { return "gemm"; }
  std::vector<Operand> operands(const MicroBackend& b) const override {
    const int64_t es = b.storage_bytes();
    return {{s.batch * s.m * s.k * es, Elem::storage},
            {s.batch * s.k * s.n * es, Elem::storage},
            {s.batch * s.m * s.n * es, Elem::storage}};
  }
  double bytes(int64_t es) const override {
    return double(es) * double(s.batch) * double(s.m * s.k + s.k * s.n + s.m * s.n);
  }
  double flops() const override {
    return 2.0 * double(s.batch) * double(s.m) * double(s.k) * double(s.n);
  }
  void launch(MicroBackend& b, const std::vector<void*>& p) const override {
    b.gemm(s, p[0], p[1], p[2]);
  }
};

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
    auto c = std::make_shared<GemmCase>();
    c->s = GemmShape::packed(m, k, n, int(batch));
    c->name = "gemm/" + model + "/M" + std::to_string(m) + "_K" + std::to_string(k) + "_N" +
              std::to_string(n) + batched;
    c->shape = "GEMM M=" + std::to_string(m) + " K=" + std::to_string(k) +
               " N=" + std::to_string(n) +
               (batch0 > 1 ? " x " + std::to_string(batch) + " heads" : std::string()) +
               scaled_note(scaled, (batch0 > 1 ? std::to_string(batch0) + " x " : std::string()) +
                                       std::to_string(k0) + "x" + std::to_string(n0));
    set.add(c, op + " of " + origin);
  }
}

void generate(const ModelSpec* mp, const CaseOptions& o, CaseSet& set) {
  if (!mp) return;
  const ModelSpec& m = *mp;
  std::vector<LayerKind> layers = {LayerKind::dense};
  if (m.has_moe()) layers.push_back(LayerKind::moe);
  const int64_t H = m.hidden;
  for (LayerKind layer : layers)
    for (const LayoutShard& s :
         layout_shards(m, layer, o.ranks, {LayoutKind::tp, LayoutKind::helix})) {
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

}  // namespace

CasePtr gemm_case(const GemmShape& shape, const std::string& name) {
  auto c = std::make_shared<GemmCase>();
  c->s = shape;
  c->name = name;
  c->shape = "GEMM M=" + std::to_string(shape.m) + " K=" + std::to_string(shape.k) +
             " N=" + std::to_string(shape.n);
  return c;
}

HELIX_MICRO_CASES(gemm, 30, generate);

}  // namespace helix::micro
