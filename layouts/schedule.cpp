#include "layouts/schedule.hpp"

#include <cmath>

namespace helix {

const char* phase_name(Phase p) {
  static const char* names[kNumPhases] = {"qkv",      "kv_append", "attention", "attn_comm",
                                          "combine",  "o_proj",    "o_comm",    "ffn",
                                          "ffn_comm", "out_comm"};
  return names[static_cast<int>(p)];
}

bool phase_is_comm(Phase p) {
  return p == Phase::attn_comm || p == Phase::o_comm || p == Phase::ffn_comm ||
         p == Phase::out_comm;
}

std::vector<std::string> phase_names() {
  std::vector<std::string> v;
  for (int i = 0; i < kNumPhases; ++i) v.emplace_back(phase_name(static_cast<Phase>(i)));
  return v;
}

const char* op_name(Op op) {
  switch (op) {
    case Op::attn_prologue:
      return "attn_prologue";
    case Op::kv_append:
      return "kv_append";
    case Op::attention:
      return "attention";
    case Op::v_up:
      return "v_up";
    case Op::pack:
      return "pack";
    case Op::a2a:
      return "a2a";
    case Op::a2a_start:
      return "a2a_start";
    case Op::a2a_wait:
      return "a2a_wait";
    case Op::gather_partials:
      return "gather_partials";
    case Op::combine:
      return "combine";
    case Op::o_proj:
      return "o_proj";
    case Op::o_allreduce:
      return "o_allreduce";
    case Op::ffn_compute:
      return "ffn_compute";
    case Op::ffn_allreduce:
      return "ffn_allreduce";
    case Op::ffn_allgather:
      return "ffn_allgather";
    case Op::ffn_reduce:
      return "ffn_reduce";
    case Op::out_bcast:
      return "out_bcast";
  }
  return "?";
}

bool reads_attention_weights(Op op) {
  return op == Op::attn_prologue || op == Op::v_up || op == Op::o_proj;
}

bool is_weight_gemm(Op op) {
  return reads_attention_weights(op) || op == Op::ffn_compute;
}

const char* buffer_name(Buffer b) {
  static const char* names[kNumBuffers] = {
      "none",         "x",        "q",         "k_new",         "v_new",
      "q_latent",     "q_full",   "kv_latent", "part_o",        "part_lse",
      "part_v",       "send",     "recv",      "combined",      "attn_out",
      "x1",           "ffn_part", "gathered",  "router_logits", "route_expert",
      "route_weight", "out"};
  return names[static_cast<int>(b)];
}

int64_t BufferTable::total() const {
  int64_t n = 0;
  for (int64_t e : elems) n += e;
  return n;
}

std::vector<Range> batch_chunks(int batch, int chunks) {
  std::vector<Range> v;
  for (int c = 0; c < chunks; ++c) v.push_back(balanced_range(batch, chunks, c));
  return v;
}

namespace {

bool exchanges_partials(const LayoutParams& p) {
  return p.kind != LayoutKind::tp;
}

// Partial outputs as exchanged and projected: after W_uv for MLA, straight from attention for GQA.
Buffer partials_buffer(const ModelSpec& m) {
  return m.is_mla() ? Buffer::part_v : Buffer::part_o;
}

// Rows of the partials a rank receives: its owned heads (helix), every query head of the TPA
// group (kvp, on KVP rank 0 only, which combines them).
int64_t received_heads(const RankShard& r) {
  if (r.layout.kind == LayoutKind::kvp) return r.kvp_index == 0 ? r.q_heads.size() : 0;
  return r.o_heads.size();
}

// The helix All-to-All of one chunk: every peer gets the rows of its owned heads for the chunk's
// requests; this rank receives the rows of its owned heads from every peer, in that peer's region
// of the receive buffer at the chunk's requests.
Exchange all_to_all_exchange(const ModelSpec& m, const RankShard& r,
                             const std::vector<Range>& peer_heads, Range chunk, int batch) {
  Exchange x;
  x.peer_heads = peer_heads;
  x.dim = m.attn_value_dim();
  x.row = x.dim + 1;
  const int64_t W = x.row, qh = r.q_heads.size(), oh = r.o_heads.size(), nb = chunk.size();
  const int kvp = r.layout.kvp;
  x.send_offset = chunk.begin * qh * W;
  x.recv_offset = chunk.begin * oh * W;
  int64_t off = 0;
  for (int j = 0; j < kvp; ++j) {
    x.send_counts.push_back(nb * x.peer_heads[size_t(j)].size() * W);
    x.send_displs.push_back(off);
    off += x.send_counts.back();
    x.recv_counts.push_back(nb * oh * W);
    x.recv_displs.push_back(j * batch * oh * W);
  }
  return x;
}

// The kvp gather: every rank sends the rows of all its query heads to KVP rank 0.
Exchange gather_exchange(const ModelSpec& m, const RankShard& r, int batch) {
  Exchange x;
  const int64_t qh = r.q_heads.size();
  x.peer_heads = {Range{0, qh}};
  x.dim = m.attn_value_dim();
  x.row = x.dim + 1;
  const int64_t n = batch * qh * x.row;
  x.send_counts = {n};
  x.send_displs = {0};
  x.root = 0;
  const bool root = r.kvp_index == 0;  // the others receive nothing
  for (int j = 0; j < r.layout.kvp; ++j) {
    x.recv_counts.push_back(root ? n : 0);
    x.recv_displs.push_back(root ? j * n : 0);
  }
  return x;
}

// The combine's one block: every source rank's region of `recv` holds the rows of the received
// heads for the whole batch (HOP-B's chunks land at their requests' rows).
std::vector<CombineBlock> combine_blocks(const ModelSpec& m, const RankShard& r, int batch) {
  CombineBlock b;
  const int64_t D = m.attn_value_dim(), heads = received_heads(r);
  b.parts = r.layout.kvp;
  b.rows = batch * heads;
  b.dim = D;
  b.row_stride = D + 1;
  b.o_offset = 0;
  b.lse_offset = D;
  b.part_stride = b.rows * b.row_stride;
  b.out_offset = 0;
  return {b};
}

Step compute_step(Op op, Phase phase, Range batch, Work w, int chunk = -1) {
  return Step{op, phase, Group::none, chunk, batch, w};
}

Step comm_step(Op op, Phase phase, Group group, Collective coll, int group_size, double comm_elems,
               Range batch, int chunk = -1) {
  Work w;
  w.coll = coll;
  w.group_size = group_size;
  w.comm_elems = comm_elems;
  return Step{op, phase, group, chunk, batch, w};
}

}  // namespace

BufferTable activation_buffers(const ModelSpec& m, const RankShard& r, int batch) {
  BufferTable t;
  const int64_t B = batch, H = m.hidden, qh = r.q_heads.size();
  const int64_t D = m.attn_value_dim();
  for (Buffer b : {Buffer::x, Buffer::attn_out, Buffer::x1, Buffer::ffn_part, Buffer::out})
    t[b] = B * H;
  t[Buffer::q] = B * qh * m.attn_qk_dim();
  if (m.is_mla()) {
    t[Buffer::q_latent] = B * m.mla.q_lora;
    t[Buffer::q_full] = B * qh * (m.mla.qk_nope + m.mla.qk_rope);
    t[Buffer::kv_latent] = B * (m.mla.kv_lora + m.mla.qk_rope);
    t[Buffer::part_v] = B * qh * D;
  } else {
    t[Buffer::k_new] = t[Buffer::v_new] = B * r.kv_heads.size() * m.head_dim;
  }
  t[Buffer::part_o] = B * qh * m.attn_out_dim();
  t[Buffer::part_lse] = B * qh;
  if (exchanges_partials(r.layout)) {
    t[Buffer::send] = B * qh * (D + 1);
    t[Buffer::recv] = int64_t(r.layout.kvp) * B * received_heads(r) * (D + 1);
  }
  // What the output projection reads (tp: the local partials, complete, in the executor's GEMM
  // input type; the other layouts: the combined partials).
  const bool projects = r.layout.kind != LayoutKind::kvp || r.kvp_index == 0;
  if (projects) t[Buffer::combined] = B * r.o_heads.size() * D;
  if (r.layout.ep > 1) t[Buffer::gathered] = int64_t(r.layout.ep) * B * H;
  if (r.layer == LayerKind::moe) {
    t[Buffer::router_logits] = B * m.moe.routed_experts;
    t[Buffer::route_expert] = t[Buffer::route_weight] = B * m.moe.top_k;
  }
  return t;
}

Work moe_ffn_work(const ModelSpec& m, const RankShard& r, int batch, double touched,
                  double assignments) {
  const double B = batch, H = m.hidden, E = m.moe.routed_experts;
  const double cols = double(r.expert_cols.size()), shared = double(r.shared_cols.size());
  Work w;
  w.weight_elems = H * E + 3 * H * shared + touched * 3 * H * cols + H;
  w.flops = 2 * B * (H * E + 3 * H * shared) + 2 * assignments * 3 * H * cols;
  w.act_elems = 4 * B * H;
  return w;
}

Work ffn_compute_work(const ModelSpec& m, const RankShard& r, int batch, const ExpertLoad* load) {
  Work w;
  const double B = batch, H = m.hidden;
  if (r.layer == LayerKind::dense) {
    w.weight_elems = 3 * H * double(r.dense_cols.size()) + H;
    w.flops = 2 * B * w.weight_elems;
    w.gemm_launches = 3;    // gate, up, down
    w.kernel_launches = 4;  // residual add, RMSNorm, zeroing the partial sum, SiLU x up
  } else {
    const double E = m.moe.routed_experts, k = m.moe.top_k, El = double(r.experts.size());
    const double shared = double(r.shared_cols.size());
    const double touched = load ? load->experts : El * (1.0 - std::pow(1.0 - k / E, B));
    const double assignments = load ? load->rows : B * k * El / E;
    w = moe_ffn_work(m, r, batch, touched, assignments);
    // Router GEMM; per expert with tokens three GEMMs and gather, SiLU, scatter-add; the shared
    // experts' three GEMMs and SiLU; residual add, RMSNorm, zeroing, routing, and the copies of
    // the routing to the host and of the held experts' rows back.
    w.gemm_launches = 1 + 3 * touched + (shared > 0 ? 3 : 0);
    w.kernel_launches = 4 + 4 + 3 * touched + (shared > 0 ? 1 : 0);
  }
  w.act_elems = 4 * B * H;
  return w;
}

Schedule build_schedule(const ModelSpec& m, const RankShard& r, int batch, int64_t seq_len) {
  const LayoutParams& p = r.layout;
  Schedule sched;
  sched.batch = batch;
  sched.position = seq_len;
  sched.buffers = activation_buffers(m, r, batch);
  std::vector<Step>& s = sched.steps;
  const Buffer partials = partials_buffer(m);
  const double B = batch, H = m.hidden;
  const double qh = double(r.q_heads.size()), kvh = double(r.kv_heads.size());
  const double oh = double(r.o_heads.size());
  const double out_dim = m.attn_out_dim();  // attention kernel output (MLA: latent)
  const double vdim = m.attn_value_dim();   // exchanged, combined, projected (MLA: after W_uv)
  const Range all{0, batch};

  // 1-2. Projections of the new token, and its KV written on the owning KVP rank.
  {
    Work w;
    if (m.is_mla()) {
      const auto& a = m.mla;
      w.weight_elems = H * a.q_lora + a.q_lora + a.q_lora * qh * (a.qk_nope + a.qk_rope) +
                       H * (a.kv_lora + a.qk_rope) + a.kv_lora + qh * a.kv_lora * a.qk_nope + H;
      w.act_elems = B * (H + a.q_lora + qh * (a.qk_nope + a.qk_rope) + qh * m.attn_qk_dim() +
                         a.kv_lora + a.qk_rope);
    } else {
      w.weight_elems = H * (qh + 2 * kvh) * m.head_dim + H;
      w.act_elems = B * (H + (qh + 2 * kvh) * m.head_dim);
    }
    w.flops = 2 * B * w.weight_elems;
    // MLA: W_dq, W_uq, the W_uk absorb (one batched GEMM) and W_dkv; RMSNorm twice, a conversion
    // and RoPE. GQA: Q, K and V; RMSNorm and RoPE of Q and K.
    w.gemm_launches = m.is_mla() ? 4 : 3;
    w.kernel_launches = m.is_mla() ? 4 : 3;
    s.push_back(compute_step(Op::attn_prologue, Phase::qkv, all, w));
    Work a;
    if (r.owns_position(seq_len)) {
      a.kv_elems = B * kvh * double(m.kv_elems_per_token_per_head());
      a.kernel_launches = 1;
    }
    s.push_back(compute_step(Op::kv_append, Phase::kv_append, all, a));
    if (r.owns_position(seq_len)) s.back().append_index = r.placement.local_index(seq_len);
  }

  // 3-4. Attention over the local shard (MLA: then W_uv per head, so that the partials are in the
  // value space), then the pack and the exchange of partials: one row of vdim values + 1 LSE per
  // (request, head).
  const double tokens = double(r.local_tokens(seq_len + 1));
  auto attention_work = [&](Range b) {
    Work w;
    const double nb = double(b.size());
    w.kv_elems = nb * kvh * tokens * double(m.kv_elems_per_token_per_head());
    w.flops = 2.0 * nb * qh * tokens * (m.attn_qk_dim() + out_dim);
    w.act_elems = nb * qh * (m.attn_qk_dim() + out_dim + 1);
    w.kernel_launches = nb > 0 && qh > 0 ? 1 : 0;
    w.attn_mla = m.is_mla();
    w.attn_q_per_kv = int(m.is_mla() || kvh == 0 ? qh : qh / kvh);
    w.attn_kv_heads = int(m.is_mla() ? 1 : kvh);
    return w;
  };
  // Each KV shard's partial o_k is up-projected on its own: sum_k w_k (o_k W_uv) = (sum_k w_k o_k)
  // W_uv, since the combine weights w_k are scalars per (request, head). HOP-B runs it per chunk
  // (a chunk's value-space partials exist only after it), reading W_uv from memory once per step:
  // the later chunks find it in L2, where the CUDA executor keeps it for the step (a persisting
  // access window), so only the first chunk's GEMM counts its weight bytes.
  auto v_up_work = [&](Range b, int chunk) {
    Work w;
    const double nb = double(b.size());
    if (nb == 0) return w;  // an empty HOP-B chunk runs no GEMM
    const double weights = qh * m.mla.kv_lora * m.mla.v_head;
    w.weight_elems = chunk <= 0 ? weights : 0.0;
    w.flops = 2.0 * nb * weights;
    w.act_elems = nb * qh * (m.mla.kv_lora + m.mla.v_head);
    w.gemm_launches = 1;    // per-head GEMMs, one strided batch
    w.kernel_launches = 1;  // conversion of the partials to bf16
    return w;
  };
  auto attend = [&](Range b, int chunk) {
    s.push_back(compute_step(Op::attention, Phase::attention, b, attention_work(b), chunk));
    s.back().kv_tokens = r.local_tokens(seq_len + 1);
    s.back().reserved_sms = attention_reserved_sms(p);
    if (m.is_mla())
      s.push_back(compute_step(Op::v_up, Phase::o_proj, b, v_up_work(b, chunk), chunk));
  };
  const bool helix = p.kind == LayoutKind::helix || p.kind == LayoutKind::helix_hopb;
  const std::vector<Range> peers = helix ? peer_head_ranges(m, r) : std::vector<Range>{};
  // The pack of an exchange's rows (values + LSE per request and head) into the send buffer.
  auto pack = [&](const Exchange& x, Range b, int chunk) {
    Work w;
    w.act_elems = 2.0 * double(b.size()) * qh * double(x.row);  // read, then written packed
    // One launch for every peer's rows; none when there are no rows to send.
    bool rows = false;
    for (const Range& h : x.peer_heads) rows = rows || !h.empty();
    w.kernel_launches = !b.empty() && rows ? 1 : 0;
    s.push_back(compute_step(Op::pack, Phase::attn_comm, b, w, chunk));
    s.back().input = partials;
    s.back().exchange = x;
  };
  if (p.kind == LayoutKind::helix_hopb) {
    // Per chunk only what the chunk's exchange needs: its attention (and W_uv), its pack and the
    // start of its All-to-All; everything from the combine on runs once for the batch.
    const auto chunks = batch_chunks(batch, p.hopb_chunks);
    for (int c = 0; c < int(chunks.size()); ++c) {
      attend(chunks[c], c);
      const Exchange x = all_to_all_exchange(m, r, peers, chunks[c], batch);
      pack(x, chunks[c], c);
      s.push_back(comm_step(Op::a2a_start, Phase::attn_comm, Group::kvp, Collective::all_to_all,
                            p.kvp, double(chunks[c].size()) * qh * double(x.row), chunks[c], c));
      s.back().input = partials;
      s.back().exchange = x;
    }
    s.push_back(comm_step(Op::a2a_wait, Phase::attn_comm, Group::kvp, Collective::all_to_all, p.kvp,
                          0, all));
  } else {
    attend(all, -1);
    if (helix) {
      const Exchange x = all_to_all_exchange(m, r, peers, all, batch);
      pack(x, all, -1);
      s.push_back(comm_step(Op::a2a, Phase::attn_comm, Group::kvp, Collective::all_to_all, p.kvp,
                            B * qh * double(x.row), all));
      s.back().input = partials;
      s.back().exchange = x;
    } else if (p.kind == LayoutKind::kvp) {
      const Exchange x = gather_exchange(m, r, batch);
      pack(x, all, -1);
      s.push_back(comm_step(Op::gather_partials, Phase::attn_comm, Group::kvp, Collective::gather,
                            p.kvp, p.kvp * B * qh * double(x.row), all));
      s.back().input = partials;
      s.back().exchange = x;
    }
  }

  // 5. Exact combine of the KVP partials (none for tp: its attention is already complete).
  const bool combines = exchanges_partials(p) && !r.o_heads.empty();
  if (combines) {
    Work w;
    w.act_elems = p.kvp * B * oh * (vdim + 1) + B * oh * vdim;
    w.flops = 3.0 * p.kvp * B * oh * vdim;
    s.push_back(compute_step(Op::combine, Phase::combine, all, w));
    s.back().combine_blocks = combine_blocks(m, r, batch);
    s.back().work.kernel_launches = double(s.back().combine_blocks.size());
  }

  // 6. Output projection of the owned heads, all-reduce over the attention-output group.
  const bool projects = p.kind != LayoutKind::kvp || r.kvp_index == 0;
  if (projects) {
    Work w;
    w.weight_elems = oh * vdim * H;
    w.flops = 2 * B * w.weight_elems;
    w.act_elems = B * (oh * vdim + H);
    // The GEMM, and a conversion of partials that were not combined (tp); nothing but zeroing
    // the output on a rank without heads.
    w.gemm_launches = oh > 0 ? 1 : 0;
    w.kernel_launches = oh > 0 ? (combines ? 0 : 1) : 1;
    s.push_back(compute_step(Op::o_proj, Phase::o_proj, all, w));
    s.back().input = combines ? Buffer::combined : partials;
    const Group g = p.kind == LayoutKind::kvp ? Group::tpa : Group::world;
    const int gsize = p.kind == LayoutKind::kvp ? p.tpa : p.n;
    s.push_back(
        comm_step(Op::o_allreduce, Phase::o_comm, g, Collective::all_reduce, gsize, B * H, all));
  }

  // 7. FFN on the FFN group: partial sums, all-reduce in TPF groups, all-gather across EP groups,
  // local reduction.
  if (r.in_ffn) {
    const Work w = ffn_compute_work(m, r, batch, nullptr);
    s.push_back(compute_step(Op::ffn_compute, Phase::ffn, all, w));
    if (p.tpf > 1)
      s.push_back(comm_step(Op::ffn_allreduce, Phase::ffn_comm, Group::tpf, Collective::all_reduce,
                            p.tpf, B * H, all));
    if (p.ep > 1)
      s.push_back(comm_step(Op::ffn_allgather, Phase::ffn_comm, Group::ep, Collective::all_gather,
                            p.ep, p.ep * B * H, all));
    Work red;
    red.act_elems = (p.ep + 2) * B * H;
    red.flops = (p.ep + 1) * B * H;
    red.kernel_launches = 1;
    s.push_back(compute_step(Op::ffn_reduce, Phase::ffn, all, red));
    s.back().input = p.ep > 1 ? Buffer::gathered : Buffer::ffn_part;
    s.back().parts = p.ep > 1 ? p.ep : 1;
  }

  // kvp: the layer output goes back from the FFN group to every KVP rank.
  if (p.kind == LayoutKind::kvp && p.kvp > 1)
    s.push_back(comm_step(Op::out_bcast, Phase::out_comm, Group::kvp, Collective::broadcast, p.kvp,
                          B * H, all));
  return sched;
}

}  // namespace helix
