#include "tests/fuzz/fuzz_exercise.hpp"

#include <stdexcept>

#include "analytic/cost_model.hpp"
#include "comm/error.hpp"
#include "exec/layer_data.hpp"
#include "layouts/layout.hpp"
#include "layouts/rank_shard.hpp"
#include "layouts/schedule.hpp"

namespace helix::fuzz {

namespace {

void price_layouts(const ModelSpec& m, const HardwareProfile& hw, DType dtype) {
  CostOptions co;
  co.dtype = dtype;
  const CostModel cm(hw, co);
  for (LayerKind layer : {LayerKind::dense, LayerKind::moe}) {
    if (layer == LayerKind::moe && !m.has_moe()) continue;
    (void)m.layer_params(layer);
    for (int n = 1; n <= 8; ++n)
      for (int batch : {1, 8})
        for (LayoutKind kind :
             {LayoutKind::tp, LayoutKind::kvp, LayoutKind::helix, LayoutKind::helix_hopb}) {
          const LayoutParams p = make_layout(kind, n, m, layer, batch, LayoutRequest{});
          if (!validate_layout(p, m, layer, batch).empty()) continue;
          for (int r = 0; r < n; ++r) {
            const RankShard shard = rank_shard(m, layer, p, r);
            (void)weight_elements(m, shard);
            (void)cache_elements(m, shard, batch, 4096 + 17);
            const auto steps = build_schedule(m, shard, batch, 4096).steps;
            (void)price_schedule(cm, steps, groups_leaving_domain(p, r, hw.nvlink.domain_gpus));
          }
        }
  }
}

}  // namespace

void exercise_model(const ModelSpec& m, const HardwareProfile& hw) {
  (void)m.kv_elems_per_token();
  (void)m.softmax_scale();
  (void)m.attn_qk_dim();
  price_layouts(m, hw, DType::fp8);
}

void exercise_hardware(const HardwareProfile& hw) {
  (void)hw.effective_mem_bw_gbps();
  for (double m : {0.5, 1.0, 3.0, 64.0, 1e6}) (void)hw.gemm_efficiency_at(m);
  DType usable = DType::fp32;
  bool any = false;
  for (DType d : {DType::fp32, DType::bf16, DType::fp8, DType::fp4}) {
    try {
      (void)hw.flops_tflops_for(d);
      (void)hw.prefill_gemm_tflops(d, 4096);
      (void)hw.prefill_attention_tflops(d);
      usable = d;
      any = true;
    } catch (const UsageError&) {
    }
  }
  if (!any) return;
  CostOptions co;
  co.dtype = usable;
  const CostModel cm(hw, co);
  for (Collective c : kMeasuredCollectives)
    for (int g : {1, 2, 8, 72})
      for (bool net : {false, true}) (void)cm.collective_us(c, g, 1 << 20, net);
  price_layouts(load_model("tiny-gqa"), hw, usable);
}

}  // namespace helix::fuzz
