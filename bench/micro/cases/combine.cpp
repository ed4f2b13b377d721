// LSE combine cases: the exact merge of the KVP partials (Helix step 5; also the merge of
// flash-decoding splits) at each model's helix shard shapes for pool sizes of 8 to 64, with the
// partials as exchanged (value width: MLA's after W_uv). Checked against the CPU backend
// (cpu::lse_combine) on at most 64 rows.
#include <algorithm>
#include <memory>

#include "bench/micro/cases/case_util.hpp"
#include "bench/micro/cases/combine_case.hpp"
#include "bench/micro/kernel_case.hpp"

namespace helix::micro {

namespace {

struct CombineCase final : CombineCaseBase<CombineCase> {
  const char* kernel() const override { return "lse_combine"; }
  std::vector<Operand> operands(const MicroBackend&) const override {
    return {{s.parts * s.rows * s.dim * 4, Elem::fp32},
            {s.parts * s.rows * 4, Elem::fp32},
            {s.rows * s.dim * 4, Elem::fp32},
            {s.rows * 4, Elem::fp32}};
  }
  void launch(MicroBackend& b, const std::vector<void*>& p) const override {
    b.lse_combine(s, static_cast<float*>(p[0]), static_cast<float*>(p[1]),
                  static_cast<float*>(p[2]), static_cast<float*>(p[3]));
  }
  CheckSpec check_spec(int64_t) const override { return combine_check({2, 3}); }
};

void generate(const ModelSpec* m, const CaseOptions& o, CaseSet& set) {
  if (!m) return;
  for (const LayoutShard& s :
       layout_shards(*m, m->default_layer_kind(), o.combine_ranks, {LayoutKind::helix})) {
    const int64_t parts = s.layout.kvp, oh = s.shard.o_heads.size();
    if (parts < 2 || oh < 1) continue;
    for (int64_t b : o.combine_batch) {
      auto c = std::make_shared<CombineCase>();
      const int64_t dim = m->attn_value_dim();
      c->s = {parts, b * oh, dim};
      c->name = "lse_combine/" + m->name + "/parts" + std::to_string(parts) + "_rows" +
                std::to_string(b * oh) + "_d" + std::to_string(dim);
      c->shape = "LSE combine parts=" + std::to_string(parts) + " rows=" + std::to_string(b * oh) +
                 " (B=" + std::to_string(b) + " x " + std::to_string(oh) +
                 " heads) dim=" + std::to_string(dim);
      set.add(c, s.origin);
    }
  }
}

}  // namespace

HELIX_MICRO_CASES(lse_combine, 20, generate);

}  // namespace helix::micro
