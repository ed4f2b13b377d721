// CPU executor: runs a rank's schedule of one decode layer with the fp32 reference kernels and the
// MPI communicator over host memory, timing every phase with the host clock.
#pragma once

#include <cstdint>
#include <vector>

#include "bench/comm_groups.hpp"
#include "bench/executor.hpp"
#include "bench/layer_data.hpp"
#include "comm/mpi_comm.hpp"
#include "layouts/schedule.hpp"

namespace helix {

class CpuExecutor final : public LayerExecutor {
 public:
  // Holds the shard of `plan` and a KV cache for positions [0, max_positions) filled up to seq_len.
  CpuExecutor(const ModelSpec& model, const RankPlan& plan, CommGroups groups, int batch,
              int64_t seq_len, int64_t max_positions, uint64_t seed);

  void set_input(const float* x) override;
  void step(const std::vector<Step>& schedule, int64_t pos, StepTiming* timing) override;
  void get_output(float* out) override;
  bool get_routing(int32_t* experts) override;
  int64_t weight_bytes() const override { return shard_.elements() * int64_t(sizeof(float)); }
  int64_t kv_bytes() const override {
    return int64_t((cache_.k.size() + cache_.v.size()) * sizeof(float));
  }

 private:
  void prologue(int64_t pos);
  void kv_append(int64_t pos);
  void attention(Range batch, int64_t pos, std::vector<MpiRequest>* progress);
  void v_up(Range batch, std::vector<MpiRequest>* progress);
  // Partial outputs as exchanged: [B, q_heads, val_dim] (MLA: after W_uv; GQA: part_o_).
  const float* partials() const { return m_.is_mla() ? part_v_.data() : part_o_.data(); }
  void pack_chunk(Range batch);
  void exchange(const Step& s, bool blocking);
  void gather_partials();
  void combine_chunk(Range batch);
  void o_proj();
  void ffn_compute();
  void ffn_reduce(float* out);

  const ModelSpec& m_;
  RankPlan plan_;
  CommGroups groups_;
  int batch_;
  LayerShard shard_;
  KvCache cache_;

  // Peers' owned-head ranges inside this rank's query heads (KVP group order).
  std::vector<Range> peer_heads_;
  int64_t qk_dim_, out_dim_, val_dim_;  // query, attention-kernel output, exchanged widths

  std::vector<float> x_, out_, hn_, q_, k_new_, v_new_, cq_, qfull_, ckv_;
  std::vector<float> part_o_, part_lse_;  // [B, q_heads, out_dim], [B, q_heads]
  std::vector<float> part_v_;             // MLA: [B, q_heads, val_dim] = part_o_ @ W_uv per head
  std::vector<float> send_, recv_;        // packed per chunk and peer: O block then LSE block
  std::vector<float> combined_;           // [B, o_heads, val_dim]
  std::vector<float> attn_out_, x1_, h2_, logits_, ffn_part_, gathered_, scratch_;
  std::vector<int32_t> route_e_;
  std::vector<float> route_w_;
  std::vector<MpiRequest> pending_;
  bool combined_valid_ = false;
};

}  // namespace helix
