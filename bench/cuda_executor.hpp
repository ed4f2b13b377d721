// CUDA executor: runs a rank's schedule of one decode layer on its GPU with the bf16 kernels of
// kernels/ and a device communicator (NCCL, or MPI with host staging), timing every step with CUDA
// events. In emulation (`--emulate N`) it runs the compute of one rank of an N-rank layout at that
// rank's shard shapes and prices every communication step from link figures instead of running it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "bench/executor.hpp"
#include "comm/device_comm.hpp"
#include "kernels/gemm_cuda.hpp"
#include "layouts/schedule.hpp"

namespace helix {

// Device communicators of one rank's groups (null where the rank is not a member).
struct DeviceGroups {
  std::unique_ptr<DeviceComm> world, kvp, tpa, ffn, tpf, ep;
  DeviceComm& get(Group g) const;
};

// Link figures that price communication in emulation: time = latency + S * factor / bandwidth,
// with S and factor as nccl-tests define them for each collective (algbw -> busbw).
struct LinkModel {
  double bw_gbps = 900.0;   // per-GPU, per-direction bus bandwidth
  double latency_us = 3.0;  // per collective
  double collective_us(const Work& w, int64_t elem_bytes) const;
};

// Bytes a rank's executor allocates (the memory planner reads the same figures).
struct CudaFootprint {
  int64_t weights = 0, kv = 0, activations = 0, workspace = 0;
  int64_t total() const { return weights + kv + activations + workspace; }
};
CudaFootprint cuda_footprint(const ModelSpec& model, const RankPlan& plan, int batch,
                             int64_t max_positions);

template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(int64_t n) { resize(n); }
  DeviceArray(DeviceArray&& o) noexcept : p_(o.p_), n_(o.n_) {
    o.p_ = nullptr;
    o.n_ = 0;
  }
  DeviceArray& operator=(DeviceArray&& o) noexcept;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { release(); }
  void resize(int64_t n);
  T* get() const { return p_; }
  int64_t size() const { return n_; }
  int64_t bytes() const { return n_ * int64_t(sizeof(T)); }

 private:
  void release();
  T* p_ = nullptr;
  int64_t n_ = 0;
};

using bf16 = __nv_bfloat16;

// One rank's weights on the device: bf16 matrices, fp32 norm weights, generated on the GPU from
// the counter-based RNG (the same values as make_layer_shard, rounded to bf16).
struct DeviceShard {
  DeviceArray<float> attn_norm, q_norm, kv_norm, ffn_norm;
  DeviceArray<bf16> wq, wk, wv, wdq, wuq, wdkv, wuk_t, wuv, wo;
  DeviceArray<bf16> w_gate, w_up, w_down, router, e_gate, e_up, e_down, s_gate, s_up, s_down;
  int64_t bytes() const;
};
DeviceShard make_device_shard(const ModelSpec& model, const RankPlan& plan, uint64_t seed,
                              cudaStream_t stream);

class CudaExecutor final : public LayerExecutor {
 public:
  // groups: null in emulation (every communication step is priced by `link`).
  CudaExecutor(const ModelSpec& model, const RankPlan& plan, std::shared_ptr<DeviceGroups> groups,
               const LinkModel& link, int batch, int64_t seq_len, int64_t max_positions,
               uint64_t seed);
  ~CudaExecutor() override;

  void set_input(const float* x) override;
  void step(const std::vector<Step>& schedule, int64_t pos, StepTiming* timing) override;
  void get_output(float* out) override;
  bool get_routing(int32_t* experts) override;
  int64_t weight_bytes() const override { return shard_.bytes(); }
  int64_t kv_bytes() const override { return k_cache_.bytes() + v_cache_.bytes(); }

 private:
  // Runs the schedule once; fills per-step times (us) after synchronizing.
  void run(const std::vector<Step>& schedule, int64_t pos, bool skip_comm,
           std::vector<float>* step_ms, float* total_ms);
  void exec(const Step& s, int64_t pos, bool skip_comm);
  void prologue(int64_t pos);
  void kv_append(int64_t pos);
  void attention(Range batch, int64_t pos);
  void v_up(Range batch);
  // Partial outputs as exchanged, fp32 [B, q_heads, val_dim] (MLA: after W_uv; GQA: part_o_).
  float* partials() const { return m_.is_mla() ? part_v_.get() : part_o_.get(); }
  void pack_chunk(Range batch, cudaStream_t stream);
  void exchange(const Step& s, cudaStream_t stream, bool skip_comm);
  void gather_partials(bool skip_comm);
  void combine();
  void o_proj();
  void ffn_compute();
  void ffn_experts();
  void ffn_reduce();
  cudaStream_t stream_of(const Step& s) const;

  const ModelSpec& m_;
  RankPlan plan_;
  std::shared_ptr<DeviceGroups> groups_;
  LinkModel link_;
  bool emulated_;
  bool stream_ordered_comm_;  // NCCL: HOP-B exchanges overlap on a second stream
  int batch_;
  int64_t qk_dim_, out_dim_, val_dim_, capacity_;  // query, attention output, exchanged widths
  std::vector<Range> peer_heads_;

  cudaStream_t s_compute_ = nullptr, s_comm_ = nullptr;
  std::unique_ptr<cuda::Gemm> gemm_;
  DeviceShard shard_;
  DeviceArray<bf16> k_cache_, v_cache_;

  DeviceArray<float> x_, out_, q_, k_new_, v_new_, cq_, qfull_, ckv_;
  DeviceArray<bf16> hn_bf_, cq_bf_, qfull_bf_, comb_bf_, lat_bf_, h2_bf_, act_bf_;
  DeviceArray<float> part_o_, part_lse_, part_v_, attn_ws_, send_, recv_;
  DeviceArray<float> attn_out_, x1_, g_, u_, ffn_part_, gathered_, logits_, route_w_;
  DeviceArray<int32_t> route_e_, exp_rows_;
  DeviceArray<float> exp_w_;
  DeviceArray<bf16> xe_bf_;
  DeviceArray<float> ye_;
  int32_t* host_route_e_ = nullptr;
  float* host_route_w_ = nullptr;
  bool combined_valid_ = false;
  std::vector<cudaEvent_t> ev_begin_, ev_end_, ev_chunk_;
  cudaEvent_t ev_step0_ = nullptr, ev_step1_ = nullptr, ev_join_ = nullptr;
};

}  // namespace helix
