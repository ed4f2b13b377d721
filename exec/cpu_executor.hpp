// CPU executor: interprets a rank's schedule of one decode layer with the fp32 reference kernels
// and the MPI communicator over host memory, timing every phase with the host clock. Everything
// that depends on the layout (chunks, exchange layouts, combine blocks, the buffers each step
// reads) comes from the schedule.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <vector>

#include "comm/mpi_comm.hpp"
#include "exec/comm_groups.hpp"
#include "exec/executor.hpp"
#include "exec/layer_data.hpp"
#include "exec/slow_phase.hpp"
#include "layouts/schedule.hpp"

namespace helix {

// Host scratch of the CPU executor beyond the schedule's buffers, in fp32 elements.
struct CpuScratch {
  int64_t normed = 0;    // RMSNorm output of the layer input [B, H]
  int64_t ffn_in = 0;    // RMSNorm output of the residual [B, H]
  int64_t ffn_work = 0;  // SwiGLU and expert gather/scatter work space
  int64_t total() const { return normed + ffn_in + ffn_work; }
};
CpuScratch cpu_scratch(const ModelSpec& model, const RankShard& shard, int batch);

class CpuExecutor final : public LayerExecutor, StepInterpreter {
 public:
  // Holds the weights of `shard` and a KV cache for positions [0, max_positions) filled up to
  // seq_len; buffers as activation_buffers(model, shard, batch).
  CpuExecutor(const ModelSpec& model, const RankShard& shard, CommGroups groups, int batch,
              int64_t seq_len, int64_t max_positions, uint64_t seed);

  void set_input(const float* x) override;
  void step(const Schedule& schedule, StepTiming* timing) override;
  void get_output(float* out) override;
  bool get_routing(int32_t* experts) override;
  int64_t weight_bytes() const override { return weights_.elements() * int64_t(sizeof(float)); }
  int64_t kv_bytes() const override {
    return int64_t((cache_.k.size() + cache_.v.size()) * sizeof(float));
  }

 private:
  float* buf(Buffer b) { return bufs_[size_t(b)].data(); }
  // Drives the pending exchanges (HOP-B) and stamps the completion time of each that finished.
  void progress();
  // StepInterpreter
  void prologue(int64_t pos) override;
  void kv_append(int64_t index, int64_t pos) override;
  void attention(const Step& s) override;
  void v_up(Range batch) override;
  void pack(const Step& s) override;
  void exchange(const Step& s) override;
  void exchange_wait() override;
  void gather_partials(const Step& s) override;
  void combine(const Step& s) override;
  void o_proj(const Step& s) override;
  void ffn_compute() override;
  void ffn_reduce(const Step& s) override;
  void all_reduce(const Step& s, Buffer b) override;
  void all_gather(const Step& s, Buffer from, Buffer to) override;
  void broadcast(const Step& s, Buffer b) override;

  const ModelSpec& m_;
  RankShard shard_;
  CommGroups groups_;
  int batch_;
  LayerWeights weights_;
  KvCache cache_;
  int64_t qk_dim_, out_dim_, val_dim_;  // query, attention-kernel output, exchanged widths

  std::array<std::vector<float>, kNumBuffers> bufs_;
  std::vector<int32_t> route_expert_;
  std::vector<float> normed_, ffn_in_, ffn_work_;
  // Non-blocking exchanges in flight and the chunk row of each; the step's start and its chunk
  // timestamps (the completion of a pending exchange is stamped when a poll first sees it).
  std::vector<MpiRequest> pending_;
  PhaseDelay delay_{slow_phase_from_env()};  // test-only (exec/slow_phase.hpp)
  std::vector<int> pending_chunk_;
  std::chrono::steady_clock::time_point step_start_;
  std::vector<std::array<double, kChunkColumns>>* chunk_us_ = nullptr;
};

}  // namespace helix
