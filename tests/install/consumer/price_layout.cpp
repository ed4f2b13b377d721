// Uses the installed helix::analytic and helix::layouts libraries: the schedule of rank 0 of a
// Helix layout and its price on a built-in hardware profile. Usage: price_layout MODEL HARDWARE N
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "analytic/cost_model.hpp"
#include "analytic/hardware.hpp"
#include "layouts/layout.hpp"
#include "layouts/model_spec.hpp"
#include "layouts/rank_shard.hpp"
#include "layouts/schedule.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: price_layout MODEL HARDWARE N\n");
    return 2;
  }
  try {
    const helix::ModelSpec model = helix::load_model(argv[1]);
    const int n = std::atoi(argv[3]);
    const helix::LayerKind layer = model.default_layer_kind();
    const int batch = 8;
    const int64_t seq = 1 << 20;
    const helix::LayoutParams p =
        helix::make_layout(helix::LayoutKind::helix, n, model, layer, batch, {});
    const std::string err = helix::validate_layout(p, model, layer, batch);
    if (!err.empty()) {
      std::fprintf(stderr, "price_layout: %s\n", err.c_str());
      return 2;
    }
    const helix::RankShard shard = helix::rank_shard(model, layer, p, 0);
    const std::vector<helix::Step> steps = helix::build_schedule(model, shard, batch, seq).steps;
    helix::CostOptions opt;
    opt.dtype = helix::DType::bf16;
    const helix::CostModel cm(helix::load_hardware(argv[2]), opt);
    const helix::ScheduleTime t =
        helix::price_schedule(cm, steps, helix::groups_leaving_domain(p, 0, n));
    std::printf("%s on %s, helix N=%d: %zu steps, KVPxTPA %s, TTL %.1f us per layer\n",
                model.name.c_str(), argv[2], n, steps.size(), helix::attn_shape(p).c_str(),
                t.total_us);
    return t.total_us > 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "price_layout: %s\n", e.what());
    return 1;
  }
}
