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
#include "layouts/rank_shard.hpp"

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

// Batch chunks of HOP-B (balanced contiguous ranges of requests).
std::vector<Range> batch_chunks(int batch, int chunks);

// The schedule of one decode step of one layer on `shard.rank`, for `batch` requests whose caches
// hold `seq_len` tokens before the step (attention reads seq_len + 1 tokens).
std::vector<Step> build_schedule(const ModelSpec& model, const RankShard& shard, int batch,
                                 int64_t seq_len);

}  // namespace helix
