// One decode layer as a schedule: the ordered steps one rank runs, each a compute op with the work
// it does or a collective with its group and size, and everything an executor needs to run them:
// the requests each step covers (HOP-B chunks), the buffers it reads, the layout of the partials
// exchange (what is packed for each peer, counts, displacements, receive blocks), the blocks the
// combine reads, and the named activation buffers with their sizes. The CPU executor, the CUDA
// executor and the cost model all read this same schedule; the executors interpret its steps and
// never ask which layout they run.
#pragma once

#include <array>
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
  pack,       // the partials of the step's requests packed into the send buffer, one row of
              // (values, LSE) per (request, head) in peer order (timed in the attn_comm phase:
              // it is the exchange's own work, on the compute stream)
  a2a,        // blocking All-to-All of the packed rows inside the KVP group
  a2a_start,  // HOP-B: non-blocking All-to-All of one batch chunk's packed rows, started as soon
              // as they are packed, on a communication stream (GPU) or as a non-blocking MPI call
  a2a_wait,   // HOP-B: the compute stream waits for every chunk's All-to-All (not timed in a
              // phase: the chunks' All-to-Alls are; what the wait adds to the step is exposed
              // communication)
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
  // Launches the CUDA executor issues for the step (the cost model's fixed cost per launch):
  // cuBLASLt GEMMs, and other kernels and copies (norms, RoPE, conversions, routing, packing).
  double gemm_launches = 0, kernel_launches = 0;
  // Attention steps: query heads reading each KV head (MLA: every head reads the one latent
  // cache), for the measured attention efficiency of a hardware profile.
  int attn_q_per_kv = 0, attn_kv_heads = 0;
  bool attn_mla = false;
};

// Routed-expert load of one rank in one decode step: (token, expert) assignments to the experts it
// holds, and how many of them received at least one token.
struct ExpertLoad {
  double rows = 0;
  double experts = 0;
};

// The activation buffers the steps read and write, by name (fp32 elements unless an executor
// stores one narrower; see activation_buffers for the sizes).
enum class Buffer : int {
  none,
  x,  // [B, H] layer input
  q,  // [B, q_heads, qk] queries (MLA: absorbed latent + rope part)
  k_new,
  v_new,          // GQA: [B, kv_heads, head_dim] the new token's K and V
  q_latent,       // MLA: [B, q_lora] query down-projection
  q_full,         // MLA: [B, q_heads, nope + rope] query up-projection
  kv_latent,      // MLA: [B, kv_lora + rope] the new token's latent and rope key
  part_o,         // [B, q_heads, out_dim] attention partial outputs (MLA: in the latent space)
  part_lse,       // [B, q_heads] their LSE
  part_v,         // MLA: [B, q_heads, v_head] partial outputs after W_uv
  send,           // the partials packed for the exchange
  recv,           // the partials received, one block per source rank and chunk
  combined,       // [B, o_heads, value dim] the output projection's input
  attn_out,       // [B, H] attention output (after the output projection and its all-reduce)
  x1,             // [B, H] residual after attention
  ffn_part,       // [B, H] this rank's FFN partial sum
  gathered,       // [EP, B, H] the EP group's partial sums (EP > 1)
  router_logits,  // MoE: [B, routed experts]
  route_expert,   // MoE: [B, top_k] expert ids (int32)
  route_weight,   // MoE: [B, top_k] routing weights
  out,            // [B, H] layer output
};
constexpr int kNumBuffers = int(Buffer::out) + 1;
const char* buffer_name(Buffer b);

// Elements of every named buffer a rank's steps use (0: unused), for `batch` requests. The
// executors allocate exactly these and the memory planners count exactly these.
struct BufferTable {
  std::array<int64_t, kNumBuffers> elems{};
  int64_t operator[](Buffer b) const { return elems[size_t(b)]; }
  int64_t& operator[](Buffer b) { return elems[size_t(b)]; }
  int64_t total() const;
};
BufferTable activation_buffers(const ModelSpec& model, const RankShard& shard, int batch);

// The partials exchange of one step (pack, a2a, a2a_start, gather_partials), in elements of
// `send` and `recv`. Every (request, head) travels as one row of `row` = dim + 1 floats: its dim
// partial output values, then its LSE (kernels/partials.hpp). Packing (the pack step): from
// send_offset, for each destination in group order, the rows [batch, heads of its range]
// (relative to this rank's query heads), read from the step's input buffer and part_lse. The
// collective then moves send_counts[j] elements from send + send_offset + send_displs[j] to peer
// j, and receives recv_counts[j] from peer j at recv + recv_offset + recv_displs[j] (gather: every
// rank sends its whole block to `root`, which receives one block per rank; the others receive
// nothing). The receive buffer holds one region per source rank, [batch, received heads] rows for
// the whole batch, so that a HOP-B chunk's rows land where one combine over the batch reads them.
struct Exchange {
  std::vector<Range> peer_heads;
  int64_t dim = 0;  // values per head (the value width)
  int64_t row = 0;  // floats per exchanged row: dim + 1
  int64_t send_offset = 0, recv_offset = 0;
  std::vector<int64_t> send_counts, send_displs, recv_counts, recv_displs;
  int root = -1;  // gather: the receiving group rank (-1: all-to-all)
};

// One block of received partials that the combine reads in place: `parts` partials of `rows` rows
// of `dim` values; part i's row r at recv + o_offset + i * part_stride + r * row_stride, its LSE at
// recv + lse_offset + i * part_stride + r * row_stride; the combined rows [rows, dim] go to
// combined + out_offset. The exchanges of every layout (HOP-B's chunks included) leave one block
// covering the whole batch: one combine.
struct CombineBlock {
  int parts = 1;
  int64_t rows = 0, dim = 0;
  int64_t o_offset = 0, lse_offset = 0, part_stride = 0, row_stride = 0, out_offset = 0;
};

struct Step {
  Step() = default;
  Step(Op o, Phase ph, Group g, int c, Range b, Work w)
      : op(o), phase(ph), group(g), chunk(c), batch(b), work(w) {}

  Op op = Op::attn_prologue;
  Phase phase = Phase::qkv;
  Group group = Group::none;
  int chunk = -1;  // HOP-B chunk index (-1: whole batch)
  Range batch;     // requests the step covers
  Work work;
  Buffer input = Buffer::none;  // o_proj, the exchanges and ffn_reduce: the buffer they read
  int parts = 1;                // ffn_reduce: partial sums added (EP)
  int64_t kv_tokens = 0;        // attention: tokens of this rank's KV shard it reads
  int reserved_sms = 0;         // attention: SMs left to the exchanges beside it (HOP-B)
  int64_t append_index = -1;    // kv_append: cache index of the new token (-1: another rank's)
  Exchange exchange;            // a2a, a2a_start, gather_partials
  std::vector<CombineBlock> combine_blocks;  // combine
};

// One rank's schedule of one decode step: the new token of every request is at `position` (its
// K/V appended there, RoPE at that position; attention reads position + 1 tokens).
struct Schedule {
  int batch = 0;
  int64_t position = 0;
  std::vector<Step> steps;
  BufferTable buffers;
};

// The work of the FFN compute step (ffn_compute) of rank `shard.rank` for `batch` requests. MoE
// layers: at `load`, or (null) at the expected load of uniform routing (distinct experts
// E_l (1 - (1 - k/E)^B), assignments B k E_l / E); dense layers ignore it.
Work ffn_compute_work(const ModelSpec& model, const RankShard& shard, int batch,
                      const ExpertLoad* load);

// Batch chunks of HOP-B (balanced contiguous ranges of requests).
std::vector<Range> batch_chunks(int batch, int chunks);

// The work of a rank's MoE FFN compute step for `batch` requests when `touched` of its held
// experts receive tokens in `assignments` (token, held expert) pairs: the router over every
// routed expert, the shared expert's slice, each touched expert's gate/up/down slices read once,
// and 2 x 3 x H x cols FLOPs per assignment. build_schedule uses the expected counts under
// uniform routing; the roofline of a run the counts of the executor's actual routing.
Work moe_ffn_work(const ModelSpec& model, const RankShard& shard, int batch, double touched,
                  double assignments);

// The schedule of one decode step of one layer on `shard.rank`, for `batch` requests whose caches
// hold `seq_len` tokens before the step (the new token at position seq_len).
Schedule build_schedule(const ModelSpec& model, const RankShard& shard, int batch, int64_t seq_len);

}  // namespace helix
