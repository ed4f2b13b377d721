// The partials exchange of a helix rank, at each model's helix shard shapes for pool sizes of 8 to
// 64 (kernels/partials.hpp): the pack of a batch's partials into one row (values, LSE) per request
// and head, one block per peer (each HOP-B chunk's send block is one such launch), and the LSE
// combine reading the rows in place as the All-to-All leaves them (one region per source rank).
// Checked against the CPU backend on at most 4 requests or 64 rows.
#include <algorithm>
#include <memory>

#include "bench/micro/cases/case_util.hpp"
#include "bench/micro/cases/combine_case.hpp"
#include "bench/micro/kernel_case.hpp"

namespace helix::micro {

namespace {

constexpr int64_t kVerifyPackBatch = 4;

struct PackCase final : KernelCase {
  PackShape s;
  const char* kernel() const override { return "partials_pack"; }
  std::vector<Operand> operands(const MicroBackend&) const override {
    return {{s.batch * s.heads * s.dim * 4, Elem::fp32},
            {s.batch * s.heads * 4, Elem::fp32},
            {s.batch * s.heads * (s.dim + 1) * 4, Elem::fp32}};
  }
  double bytes(int64_t) const override {  // every row read once and written once
    return 2.0 * 4.0 * double(s.batch * s.heads * (s.dim + 1));
  }
  double flops() const override { return 0; }
  void launch(MicroBackend& b, const std::vector<void*>& p) const override {
    b.pack_partials(s, static_cast<float*>(p[0]), static_cast<float*>(p[1]),
                    static_cast<float*>(p[2]));
  }
  std::unique_ptr<KernelCase> small() const override {
    auto c = std::make_unique<PackCase>(*this);
    c->s.batch = std::min(s.batch, kVerifyPackBatch);
    return c;
  }
  CheckSpec check_spec(int64_t) const override {
    return {{2},
            0.0,
            0.0,
            "batch=" + std::to_string(s.batch) + " heads=" + std::to_string(s.heads) +
                " dim=" + std::to_string(s.dim) + " peers=" + std::to_string(s.peers)};
  }
};

struct CombineRowsCase final : CombineCaseBase<CombineRowsCase> {
  const char* kernel() const override { return "lse_combine_rows"; }
  std::vector<Operand> operands(const MicroBackend&) const override {
    return {{s.parts * s.rows * (s.dim + 1) * 4, Elem::fp32},
            {s.rows * s.dim * 4, Elem::fp32},
            {s.rows * 4, Elem::fp32}};
  }
  void launch(MicroBackend& b, const std::vector<void*>& p) const override {
    b.lse_combine_rows(s, static_cast<float*>(p[0]), static_cast<float*>(p[1]),
                       static_cast<float*>(p[2]));
  }
  CheckSpec check_spec(int64_t) const override { return combine_check({1, 2}); }
};

void generate(const ModelSpec* m, const CaseOptions& o, CaseSet& set) {
  if (!m) return;
  for (const LayoutShard& s :
       layout_shards(*m, m->default_layer_kind(), o.combine_ranks, {LayoutKind::helix})) {
    const int64_t parts = s.layout.kvp, qh = s.shard.q_heads.size(), oh = s.shard.o_heads.size();
    if (parts < 2 || oh < 1) continue;
    const int64_t dim = m->attn_value_dim();
    for (int64_t b : o.combine_batch) {
      auto p = std::make_shared<PackCase>();
      p->s = {b, qh, dim, parts};
      p->name = "partials_pack/" + m->name + "/B" + std::to_string(b) + "_heads" +
                std::to_string(qh) + "_d" + std::to_string(dim) + "_peers" + std::to_string(parts);
      p->shape = "pack of B=" + std::to_string(b) + " x " + std::to_string(qh) +
                 " heads' partials (dim " + std::to_string(dim) + " + LSE) for " +
                 std::to_string(parts) + " peers";
      set.add(p, s.origin);
      auto c = std::make_shared<CombineRowsCase>();
      c->s = {parts, b * oh, dim};
      c->name = "lse_combine_rows/" + m->name + "/parts" + std::to_string(parts) + "_rows" +
                std::to_string(b * oh) + "_d" + std::to_string(dim);
      c->shape = "LSE combine over exchanged rows parts=" + std::to_string(parts) +
                 " rows=" + std::to_string(b * oh) + " (B=" + std::to_string(b) + " x " +
                 std::to_string(oh) + " heads) dim=" + std::to_string(dim) + " + LSE";
      set.add(c, s.origin);
    }
  }
}

}  // namespace

HELIX_MICRO_CASES(partials, 25, generate);

}  // namespace helix::micro
