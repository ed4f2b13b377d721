// One decode layer as a schedule: the ordered steps one rank runs, each a compute op with the work
// it does or a collective with its group and size. The CPU executor, the CUDA executor and the
// cost model all read this same schedule.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/collective.hpp"
#include "layouts/layout.hpp"
#include "layouts/model_spec.hpp"
#include "layouts/partition.hpp"

namespace helix {

// Timing phases, in trace order. The *_comm phases are communication.
enum class Phase : int {
  qkv,        // RMSNorm + Q/K/V projections (MLA: down/up projections and W_uk absorb) + RoPE
  kv_append,  // the new token's K/V (MLA: latent + rope key) written into the owner's cache
  attention,  // decode attention over the local KV shard: partial output + LSE
  attn_comm,  // All-to-All of partials (helix), gather of partials (kvp)
  combine,    // exact LSE combine of the KVP partials
  o_proj,     // output projection W_O (MLA: and the W_uv up-projection, which runs on each KV
              // shard's partials before attn_comm)
  o_comm,     // all-reduce after the output projection
  ffn,        // residual + RMSNorm + dense FFN or router + experts, local reduction
  ffn_comm,   // all-reduce inside TPF groups + all-gather across EP groups
  out_comm,   // broadcast of the layer output to the KVP group (kvp)
};
constexpr int kNumPhases = 10;
const char* phase_name(Phase p);
bool phase_is_comm(Phase p);
std::vector<std::string> phase_names();

// Communicator groups a step runs in (world ranks sharing the group of this rank).
enum class Group { none, world, kvp, tpa, ffn, tpf, ep };
const char* group_name(Group g);

enum class Op {
  attn_prologue,
  kv_append,
  attention,
  v_up,       // MLA: per-head W_uv up-projection of this rank's latent partials, before the
              // exchange (timed in the o_proj phase)
  a2a,        // blocking All-to-All of (partial output, LSE) inside the KVP group
  a2a_start,  // HOP-B: non-blocking All-to-All of one batch chunk
  a2a_wait,   // HOP-B: wait for every chunk's All-to-All
  gather_partials,
  combine,
  o_proj,
  o_allreduce,
  ffn_compute,
  ffn_allreduce,
  ffn_allgather,
  ffn_reduce,
  out_bcast,
};
const char* op_name(Op op);
// Steps that read the attention weights (projections, W_uv, W_O): every held attention weight is
// read by exactly one of them.
bool reads_attention_weights(Op op);
// Steps that are weight GEMMs (priced with the GEMM efficiency at their row count).
bool is_weight_gemm(Op op);

// What a step reads, writes and computes on this rank, in elements (the interpreter multiplies by
// its element sizes) and FLOPs. For collectives, comm_elems is the nccl-tests size S: the whole
// send buffer (all-to-all), the buffer (all-reduce, broadcast) or the gathered output (all-gather,
// gather).
struct Work {
  double weight_elems = 0;
  double kv_elems = 0;
  double act_elems = 0;
  double flops = 0;
  std::optional<Collective> coll;  // none: a compute step
  int group_size = 1;
  double comm_elems = 0;
};

struct Step {
  Op op;
  Phase phase;
  Group group = Group::none;
  int chunk = -1;  // HOP-B chunk index (-1: whole batch)
  Range batch;     // requests the step covers
  Work work;
};

// What one rank owns in a layout.
struct RankPlan {
  int rank = 0;
  LayoutParams layout;
  LayerKind layer = LayerKind::dense;
  // Attention coordinates: rank = k * TPA + t (tp: k = 0, t = rank).
  int k = 0, t = 0;
  Range kv_heads;            // KV heads whose cache this rank holds
  Range q_heads;             // query heads it attends for
  Range o_heads;             // heads whose combined output it projects (empty: none)
  BlockPlacement placement;  // token placement over the KVP group (tp: one rank holds all)
  // FFN coordinates: index g in the FFN group = e * TPF + f.
  bool in_ffn = false;
  int g = 0, e = 0, f = 0;
  Range dense_cols;   // dense FFN columns (dense layers)
  Range experts;      // routed experts held (MoE layers)
  Range expert_cols;  // columns of each held expert
  Range shared_cols;  // columns of the shared experts, concatenated into one FFN

  // Tokens of the first `positions` cached positions that live on this rank.
  int64_t local_tokens(int64_t positions) const { return placement.count(positions, k); }
  bool owns_position(int64_t pos) const { return placement.owner(pos) == k; }
};

RankPlan plan_rank(const ModelSpec& model, LayerKind layer, const LayoutParams& layout, int rank);

// Owned-head (o_heads) ranges of every peer of `plan`'s KVP group, in KVP order, relative to
// `plan`'s query heads: the head blocks of its attention partials that go to each peer.
std::vector<Range> peer_head_ranges(const ModelSpec& model, const RankPlan& plan);

// World ranks of `group` as seen from `rank`, in group-rank order; empty when the rank is not in
// the group (non-FFN ranks of the kvp layout for ffn/tpf/ep).
std::vector<int> group_members(const LayoutParams& layout, Group group, int rank);

// Batch chunks of HOP-B (balanced contiguous ranges of requests).
std::vector<Range> batch_chunks(int batch, int chunks);

// The schedule of one decode step of one layer on `plan.rank`, for `batch` requests whose caches
// hold `seq_len` tokens before the step (attention reads seq_len + 1 tokens).
std::vector<Step> build_schedule(const ModelSpec& model, const RankPlan& plan, int batch,
                                 int64_t seq_len);

}  // namespace helix
