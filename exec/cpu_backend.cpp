#include <memory>

#include "comm/error.hpp"
#include "comm/node.hpp"
#include "exec/comm_groups.hpp"
#include "exec/cpu_executor.hpp"
#include "exec/decode_backend.hpp"
#include "exec/layer_data.hpp"
#include "exec/reference.hpp"
#include "kernels/ceilings.hpp"

namespace helix {

namespace {

class CpuBackend final : public DecodeBackend {
 public:
  explicit CpuBackend(const MpiComm& world)
      : world_(world), local_ranks_(local_rank_count(world)) {}

  std::string description() const override { return "cpu (fp32 kernels, MPI over host memory)"; }
  std::string device_description() const override { return "cpu"; }

  MemoryCheck check_memory(const ModelSpec& m, const RankShard& shard, int batch,
                           int64_t max_positions) const override {
    MemoryCheck p;
    p.needed_bytes = cpu_rank_bytes(m, shard, batch, max_positions);
    p.available_bytes = host_available_bytes() / std::max(1, local_ranks_);
    p.fits = p.needed_bytes < p.available_bytes;
    return p;
  }

  std::unique_ptr<LayerExecutor> make_executor(const ModelSpec& m, const RankShard& shard,
                                               int batch, int64_t seq_len, int64_t max_positions,
                                               uint64_t seed) override {
    return std::make_unique<CpuExecutor>(m, shard, make_comm_groups(world_, shard.layout), batch,
                                         seq_len, max_positions, seed);
  }

  LayerExecutorInfo info() const override { return {}; }
  double tolerance() const override { return 1e-5; }
  // One thread per rank, as the executor: 64 MiB of floats (beyond most last-level caches) and
  // cpu::gemm at 256 x 256 x 256 (in cache: the reference GEMM's best rate), medians of 3.
  ReadCeiling read_ceiling() override {
    const int64_t bytes = int64_t(64) << 20;
    return {cpu::stream_read_gbps(bytes, 3), bytes};
  }
  GemmCeiling gemm_ceiling() override {
    return {cpu::gemm_rate_tflops(256, 3),
            "fp32 256 x 256 x 256, cpu::gemm on one thread, median of 3"};
  }

 private:
  const MpiComm& world_;
  int local_ranks_;
};

}  // namespace

int64_t cpu_rank_bytes(const ModelSpec& m, const RankShard& shard, int batch,
                       int64_t max_positions) {
  return int64_t(sizeof(float)) *
         (weight_elements(m, shard) + cache_elements(m, shard, batch, max_positions) +
          activation_buffers(m, shard, batch).total() + cpu_scratch(m, shard, batch).total());
}

std::unique_ptr<DecodeBackend> make_cpu_backend(const MpiComm& world) {
  return std::make_unique<CpuBackend>(world);
}

std::unique_ptr<DecodeBackend> make_decode_backend(const BackendOptions& o, const MpiComm& world) {
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
  if (o.cuda_graph) throw UsageError("--cuda-graph: needs --backend cuda");
  return make_cpu_backend(world);
}

}  // namespace helix
