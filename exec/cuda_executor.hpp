// CUDA executor: interprets a rank's schedule of one decode layer on its GPU with the bf16 kernels
// of kernels/ and the device communicators of its groups (NCCL, MPI with host staging, or the
// emulated communicator of one rank of a larger layout: the executor does not know which), timing
// every step with CUDA events on the stream that runs it. A non-blocking exchange (HOP-B's
// a2a_start) runs on a second stream, created with the highest priority, when its communicator is
// stream-ordered: it waits for its chunk's pack on the compute stream and no more, and its kernels
// take SMs ahead of the next chunk's attention, which the compute stream runs meanwhile; everything
// else runs in schedule order on the compute stream.
// Chunks, exchange layouts, combine blocks and the buffers each step reads all come from the
// schedule; the buffers and scratch are allocated from the one table of exec/cuda_buffers.hpp.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "comm/cuda_timer.hpp"
#include "comm/device_buffer.hpp"
#include "comm/device_comm.hpp"
#include "comm/emulated_comm.hpp"
#include "exec/comm_groups.hpp"
#include "exec/cuda_buffers.hpp"
#include "exec/device_weights.hpp"
#include "exec/executor.hpp"
#include "exec/slow_phase.hpp"
#include "kernels/gemm_cuda.hpp"
#include "kernels/moe_cuda.hpp"
#include "layouts/schedule.hpp"

namespace helix {

using DeviceGroups = GroupComms<DeviceComm>;

class CudaExecutor final : public LayerExecutor, StepInterpreter {
 public:
  CudaExecutor(const ModelSpec& model, const RankShard& shard, std::shared_ptr<DeviceGroups> groups,
               int batch, int64_t seq_len, int64_t max_positions, uint64_t seed);
  ~CudaExecutor() override;

  void set_input(const float* x) override;
  void step(const Schedule& schedule, StepTiming* timing) override;
  void get_output(float* out) override;
  bool get_routing(int32_t* experts) override;
  bool graph_replay() const override { return graph_replayed_; }
  // --cuda-graph: each distinct schedule (position, timed or not) is captured once as a CUDA
  // graph and replayed, where capturable(); elsewhere the steps are enqueued one by one.
  void use_graphs(bool on) { graphs_ = on; }
  // Whether a step only enqueues work: every group's communicator is stream-ordered (NCCL, the
  // emulation; not host-staged MPI) and the MoE FFN has no host round trip (the grouped launch).
  bool capturable() const;
  int64_t weight_bytes() const override { return weights_.bytes(); }
  int64_t kv_bytes() const override { return cache_.bytes(); }

 private:
  template <class T>
  T* buf(Buffer b) const {
    return reinterpret_cast<T*>(bufs_[size_t(b)].get());
  }
  float* f32(Buffer b) const { return buf<float>(b); }
  template <class T>
  T* scratch(Scratch s) const {
    return reinterpret_cast<T*>(scratch_[size_t(s)].get());
  }
  // Enqueues the schedule once (timed: events around every step) and waits for it; with graphs,
  // replays its captured graph (captured at the first call for this schedule).
  void run(const Schedule& schedule, bool timed);
  // MLA under HOP-B: keeps W_uv in L2 through a step (a persisting access window on the compute
  // stream), so that the chunks after the first find it there instead of reading it again.
  void keep_wuv_in_l2();
  void enqueue(const Schedule& schedule, bool timed, bool in_graph);
  cudaStream_t stream_of(const Step& s) const;
  void ffn_experts();
  void ffn_grouped();

  // StepInterpreter (exec/cuda_layer_ops.cpp: the per-rank compute; exec/cuda_executor.cpp: the
  // exchange and the collectives, on stream_, the stream of the step being run).
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
  std::shared_ptr<DeviceGroups> groups_;
  int batch_;
  int64_t qk_dim_, out_dim_, val_dim_;  // query, attention output, exchanged widths

  cudaStream_t s_compute_ = nullptr, s_comm_ = nullptr;
  cudaStream_t stream_ = nullptr;  // the stream of the step being run
  std::unique_ptr<cuda::Gemm> gemm_;
  DeviceWeights weights_;
  DeviceCache cache_;
  std::array<DeviceBuffer<unsigned char>, kNumBuffers> bufs_;
  std::array<DeviceBuffer<unsigned char>, kNumScratch> scratch_;
  int64_t l2_wuv_bytes_ = 0;  // bytes of W_uv under the persisting window (0: none)
  // MoE: the grouped launch (grouped_moe_shape), or else the per-expert path's pinned buffers:
  // the routing copied back, then the held experts' rows.
  std::unique_ptr<cuda::MoeFfn> moe_;
  int32_t* host_route_e_ = nullptr;
  float* host_route_w_ = nullptr;

  // Per step of the schedule: begin and end events on the step's stream, and (for a step on the
  // communication stream) the point of the compute stream it waits for.
  std::vector<CudaEvent> begin_, end_, ready_;
  CudaEvent step0_, step1_, join_{false};
  // Test-only slowdown of one phase (exec/slow_phase.hpp): the delay of the step being timed and
  // the clock that realises it on the GPU (made when the variable is set).
  PhaseDelay delay_{slow_phase_from_env()};
  std::unique_ptr<EmulationClock> delay_clock_;
  double delay_applied_us_ = 0;
  bool graphs_ = false, graph_replayed_ = false;
  std::map<std::tuple<int64_t, bool, size_t>, cudaGraphExec_t> graph_cache_;
};

}  // namespace helix
