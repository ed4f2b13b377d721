#include <memory>

#include "bench/comm_groups.hpp"
#include "bench/cpu_executor.hpp"
#include "bench/decode.hpp"
#include "bench/decode_backend.hpp"
#include "bench/layer_data.hpp"
#include "bench/metadata.hpp"
#include "bench/reference.hpp"
#include "comm/error.hpp"

namespace helix {

namespace {

class CpuBackend final : public DecodeBackend {
 public:
  explicit CpuBackend(const MpiComm& world)
      : world_(world), local_ranks_(local_rank_count(world)) {}

  std::string description() const override { return "cpu (fp32 kernels, MPI over host memory)"; }
  std::string device_description() const override { return "cpu"; }

  MemoryPlan plan_memory(const ModelSpec& m, const RankPlan& plan, int batch,
                         int64_t max_positions) const override {
    MemoryPlan p;
    p.needed_bytes = cpu_rank_bytes(m, plan, batch, max_positions);
    p.available_bytes = host_available_bytes() / std::max(1, local_ranks_);
    p.fits = p.needed_bytes < p.available_bytes;
    return p;
  }

  std::unique_ptr<LayerExecutor> make_executor(const ModelSpec& m, const RankPlan& plan, int batch,
                                               int64_t seq_len, int64_t max_positions,
                                               uint64_t seed) override {
    return std::make_unique<CpuExecutor>(m, plan, make_comm_groups(world_, plan.layout), batch,
                                         seq_len, max_positions, seed);
  }

  LayerExecutorInfo info() const override { return {}; }
  double tolerance() const override { return 1e-5; }

 private:
  const MpiComm& world_;
  int local_ranks_;
};

}  // namespace

int64_t cpu_rank_bytes(const ModelSpec& m, const RankPlan& plan, int batch, int64_t max_positions) {
  const int64_t B = batch, H = m.hidden;
  const int64_t act =
      B * (16 * H + 4 * plan.q_heads.size() * (m.attn_qk_dim() + 1) +
           4 * plan.layout.kvp * plan.q_heads.size() * (m.attn_out_dim() + 1) + plan.layout.ep * H);
  return int64_t(sizeof(float)) *
         (shard_elements(m, plan) + cache_elements(m, plan, batch, max_positions) + act);
}

std::unique_ptr<DecodeBackend> make_cpu_backend(const MpiComm& world) {
  return std::make_unique<CpuBackend>(world);
}

std::unique_ptr<DecodeBackend> make_decode_backend(const DecodeOptions& o, const MpiComm& world) {
  if (o.backend == "cuda") {
#if defined(HELIX_CUDA_BACKEND)
    return make_cuda_backend(o, world);
#else
    throw UsageError("--backend cuda: this build has no CUDA backend (configure with nvcc found)");
#endif
  }
  if (o.backend != "cpu")
    throw UsageError("--backend: must be 'cpu' or 'cuda', got '" + o.backend + "'");
  if (o.emulate != 0) throw UsageError("--emulate: needs --backend cuda");
  return make_cpu_backend(world);
}

}  // namespace helix
