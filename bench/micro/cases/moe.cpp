// Routed-expert cases: the SwiGLU experts one rank holds at each layout's shard (experts x columns)
// with 1 to 64 tokens per expert. The CUDA backend runs them through the grouped MoE kernel on
// Hopper (up to 32 tokens per expert; HELIX_MOE_GROUPED=0: per-expert cuBLASLt GEMMs and
// silu_mul). No CPU reference check here (the grouped kernel is checked against cpu::moe_ffn in
// tests/cuda/test_moe_cuda.cpp, the executors' experts end to end by decode).
#include <algorithm>
#include <memory>

#include "bench/micro/cases/case_util.hpp"
#include "bench/micro/kernel_case.hpp"

namespace helix::micro {

namespace {

struct MoeCase final : KernelCase {
  MoeShape s;
  const char* kernel() const override { return "moe_experts"; }
  std::vector<Operand> operands(const MicroBackend& b) const override {
    const int64_t es = b.storage_bytes();
    const int64_t w = s.experts * s.hidden * s.cols * es;
    const int64_t act = s.experts * s.rows_per_expert * s.hidden * es;
    return {{act, Elem::storage}, {w, Elem::storage},   {w, Elem::storage},
            {w, Elem::storage},   {act, Elem::storage}, {b.moe_scratch_bytes(s), Elem::fp32}};
  }
  double bytes(int64_t es) const override {
    return double(es) * double(s.experts) *
           (3.0 * double(s.hidden * s.cols) + 2.0 * double(s.rows_per_expert * s.hidden));
  }
  double flops() const override {
    return 6.0 * double(s.experts * s.rows_per_expert) * double(s.hidden) * double(s.cols);
  }
  void launch(MicroBackend& b, const std::vector<void*>& p) const override {
    b.moe_experts(s, p[0], p[1], p[2], p[3], p[4], p[5]);
  }
};

void generate(const ModelSpec* mp, const CaseOptions& o, CaseSet& set) {
  if (!mp || !mp->has_moe()) return;
  const ModelSpec& m = *mp;
  const int64_t H = m.hidden, es = o.storage_bytes;
  for (const LayoutShard& s :
       layout_shards(m, LayerKind::moe, o.ranks, {LayoutKind::tp, LayoutKind::helix})) {
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
      auto c = std::make_shared<MoeCase>();
      c->s = {e, rows, H, cols};
      c->name = "moe_experts/" + m.name + "/E" + std::to_string(e) + "_rows" +
                std::to_string(rows) + "_H" + std::to_string(H) + "_cols" + std::to_string(cols);
      c->shape =
          "SwiGLU experts=" + std::to_string(e) + " rows_per_expert=" + std::to_string(rows) +
          " hidden=" + std::to_string(H) + " cols=" + std::to_string(cols) +
          scaled_note(scaled, std::to_string(e0) + " experts x " + std::to_string(c0) + " columns");
      set.add(c, s.origin);
    }
  }
}

}  // namespace

HELIX_MICRO_CASES(moe_experts, 40, generate);

}  // namespace helix::micro
