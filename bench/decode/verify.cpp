#include "bench/decode/verify.hpp"

#include <algorithm>
#include <vector>

#include "comm/error.hpp"
#include "exec/layer_data.hpp"
#include "layouts/schedule.hpp"

namespace helix {

void verify_run(const ModelSpec& m, LayerKind layer, const RankShard& shard, ReferenceRun* ref,
                const MpiComm& world, LayerExecutor& ex, RunRecord* r) {
  const int decode_steps = r->decode_steps;
  const uint64_t seed = r->seed;
  const int rank = world.rank();
  const int64_t H = m.hidden, K = layer == LayerKind::moe ? m.moe.top_k : 0;
  std::vector<float> out(size_t(r->batch * H)), expect(out.size()), own(out.size());
  // Per rank: a flag (1: ran a router) and its [B, top_k] choice.
  const int width = int(1 + r->batch * K);
  std::vector<int32_t> mine(static_cast<size_t>(width));
  std::vector<int32_t> all(rank == 0 ? static_cast<size_t>(width) * size_t(world.size()) : 0);
  r->verify_ran = true;
  for (int t = 0; t < decode_steps; ++t) {
    const std::vector<float> x = make_decode_input(m, r->batch, t, seed);
    ex.set_input(x.data());
    ex.step(build_schedule(m, shard, r->batch, r->seq + t), nullptr);
    ex.get_output(out.data());
    const int32_t* chosen = nullptr;
    if (K > 0) {
      mine[0] = ex.get_routing(mine.data() + 1) ? 1 : 0;
      HELIX_MPI_CHECK(
          MPI_Gather(mine.data(), width, MPI_INT, all.data(), width, MPI_INT, 0, world.raw()));
      for (int k = 0; rank == 0 && k < world.size(); ++k) {
        const int32_t* row = all.data() + size_t(k) * size_t(width);
        if (!row[0]) continue;
        if (!chosen)
          chosen = row + 1;
        else if (!std::equal(row + 1, row + width, chosen))
          r->routing_consistent = false;
      }
    }
    if (rank == 0) {
      expect = ref->output_for(t, chosen, &r->flips);
      own = ref->own_output(t);
    }
    world.bcast(expect.data(), expect.size(), 0);
    world.bcast(own.data(), own.size(), 0);
    double err[2] = {relative_error(out, expect), relative_error(out, own)};
    world.all_reduce_max(err, 2);
    r->step_rel_err.push_back(err[0]);
    r->step_rel_err_own_routing.push_back(err[1]);
  }
  r->max_rel_err = *std::max_element(r->step_rel_err.begin(), r->step_rel_err.end());
  r->max_rel_err_own_routing =
      *std::max_element(r->step_rel_err_own_routing.begin(), r->step_rel_err_own_routing.end());
  int counts[3] = {0, 0, r->routing_consistent ? 1 : 0};
  for (const RoutingFlip& f : r->flips) ++counts[f.accepted ? 0 : 1];
  HELIX_MPI_CHECK(MPI_Bcast(counts, 3, MPI_INT, 0, world.raw()));
  r->routing_flips = counts[0];
  r->routing_flips_rejected = counts[1];
  r->routing_consistent = counts[2] != 0;
  r->verified =
      r->max_rel_err <= r->tolerance && r->routing_flips_rejected == 0 && r->routing_consistent;
}

}  // namespace helix
