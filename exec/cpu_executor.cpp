#include "exec/cpu_executor.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "comm/error.hpp"
#include "kernels/attention.hpp"
#include "kernels/combine.hpp"
#include "kernels/gemm.hpp"
#include "kernels/moe.hpp"
#include "kernels/norm.hpp"
#include "kernels/partials.hpp"
#include "kernels/rope.hpp"

namespace helix {

namespace {

using Clock = std::chrono::steady_clock;
double us_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

}  // namespace

CpuScratch cpu_scratch(const ModelSpec& m, const RankShard& r, int batch) {
  const int64_t B = batch, H = m.hidden;
  const int64_t widest =
      std::max<int64_t>({r.dense_cols.size(), r.expert_cols.size(), r.shared_cols.size(), 1});
  CpuScratch s;
  s.normed = B * H;
  s.ffn_in = B * H;
  s.ffn_work = 2 * B * widest + 2 * B * H + B;
  return s;
}

CpuExecutor::CpuExecutor(const ModelSpec& model, const RankShard& shard, CommGroups groups,
                         int batch, int64_t seq_len, int64_t max_positions, uint64_t seed)
    : m_(model), shard_(shard), groups_(std::move(groups)), batch_(batch) {
  weights_ = make_layer_weights(model, shard, seed);
  cache_ = make_kv_cache(model, shard, batch, seq_len, max_positions, seed);
  qk_dim_ = model.attn_qk_dim();
  out_dim_ = model.attn_out_dim();
  val_dim_ = model.attn_value_dim();
  const BufferTable table = activation_buffers(model, shard, batch);
  for (int b = 0; b < kNumBuffers; ++b)
    if (Buffer(b) != Buffer::route_expert) bufs_[size_t(b)].resize(size_t(table.elems[size_t(b)]));
  route_expert_.resize(size_t(table[Buffer::route_expert]));
  const CpuScratch s = cpu_scratch(model, shard, batch);
  normed_.resize(size_t(s.normed));
  ffn_in_.resize(size_t(s.ffn_in));
  ffn_work_.resize(size_t(s.ffn_work));
}

void CpuExecutor::set_input(const float* x) {
  std::memcpy(buf(Buffer::x), x, bufs_[size_t(Buffer::x)].size() * sizeof(float));
}

void CpuExecutor::get_output(float* out) {
  std::memcpy(out, buf(Buffer::out), bufs_[size_t(Buffer::out)].size() * sizeof(float));
}

bool CpuExecutor::get_routing(int32_t* experts) {
  if (shard_.layer != LayerKind::moe || !shard_.in_ffn) return false;
  std::copy(route_expert_.begin(), route_expert_.end(), experts);
  return true;
}

void CpuExecutor::step(const Schedule& schedule, StepTiming* timing) {
  StepTiming t;
  const int slow_step = timing ? delay_.last_step(schedule.steps) : -1;
  const double delay_us = delay_.next_us();
  t.chunk_us.assign(size_t(exchange_chunks(schedule)), {NAN, NAN, NAN, NAN});
  chunk_us_ = &t.chunk_us;
  step_start_ = Clock::now();
  for (size_t i = 0; i < schedule.steps.size(); ++i) {
    const Step& s = schedule.steps[i];
    const double t0 = us_since(step_start_);
    run_step(s, schedule);
    if (int(i) == slow_step && delay_us > 0) {  // test-only: inside the step's timing
      const double until = us_since(step_start_) + delay_us;
      while (us_since(step_start_) < until) {
      }
    }
    const double t1 = us_since(step_start_);
    t.steps_us.push_back(t1 - t0);
    // The wait is no phase of its own: the chunks' exchanges are timed (posting), and what the
    // wait adds to the step shows as exposed communication.
    if (s.op != Op::a2a_wait) t.phase_us[static_cast<int>(s.phase)] += t1 - t0;
    if (t.chunk_us.empty()) continue;  // tp: no exchange
    auto& row = t.chunk_us[size_t(std::min<int>(chunk_row(s), int(t.chunk_us.size()) - 1))];
    if (s.op == Op::attention) {
      row[kAttentionStart] = t0;
      row[kAttentionEnd] = t1;
    } else if (is_partials_exchange(s.op)) {
      row[kCommStart] = t0;
      if (s.op != Op::a2a_start) row[kCommEnd] = t1;  // a2a_start: stamped by progress()
    }
  }
  HELIX_CHECK(pending_.empty(), "schedule left a non-blocking exchange pending");
  chunk_us_ = nullptr;
  t.step_us = us_since(step_start_);
  t.exposed_comm_us = exposed_comm_us(t.phase_us, t.step_us);
  if (slow_step >= 0) delay_.observe(schedule.steps, t.steps_us, delay_us);
  if (timing) *timing = std::move(t);
}

void CpuExecutor::progress() {
  for (size_t i = 0; i < pending_.size(); ++i)
    if (pending_[i].pending() && pending_[i].test() && chunk_us_)
      (*chunk_us_)[size_t(pending_chunk_[i])][kCommEnd] = us_since(step_start_);
}

void CpuExecutor::prologue(int64_t pos) {
  const int64_t B = batch_, H = m_.hidden, qh = shard_.q_heads.size();
  float* hn = normed_.data();
  float* q = buf(Buffer::q);
  cpu::rmsnorm(buf(Buffer::x), weights_.attn_norm.data(), B, H, m_.rms_eps, hn);
  if (m_.is_mla()) {
    const auto& a = m_.mla;
    const int64_t qk = a.qk_nope + a.qk_rope, w = a.kv_lora + a.qk_rope;
    float* cq = buf(Buffer::q_latent);
    float* qfull = buf(Buffer::q_full);
    float* ckv = buf(Buffer::kv_latent);
    cpu::gemm(hn, H, weights_.wdq.data(), a.q_lora, cq, a.q_lora, B, H, a.q_lora, false);
    cpu::rmsnorm(cq, weights_.q_norm.data(), B, a.q_lora, m_.rms_eps, cq);
    cpu::gemm(cq, a.q_lora, weights_.wuq.data(), qh * qk, qfull, qh * qk, B, a.q_lora, qh * qk,
              false);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < qh; ++h) {
        const float* qn = qfull + (b * qh + h) * qk;
        float* dst = q + (b * qh + h) * qk_dim_;
        // Absorb W_uk: latent query = W_uk[h] q_nope.
        cpu::gemm(qn, a.qk_nope, &weights_.wuk_t[size_t(h * a.qk_nope * a.kv_lora)], a.kv_lora, dst,
                  a.kv_lora, 1, a.qk_nope, a.kv_lora, false);
        std::memcpy(dst + a.kv_lora, qn + a.qk_nope, size_t(a.qk_rope) * sizeof(float));
        cpu::rope(dst + a.kv_lora, a.qk_rope, pos, m_.rope_theta);
      }
    cpu::gemm(hn, H, weights_.wdkv.data(), w, ckv, w, B, H, w, false);
    for (int64_t b = 0; b < B; ++b) {
      float* row = ckv + b * w;
      cpu::rmsnorm(row, weights_.kv_norm.data(), 1, a.kv_lora, m_.rms_eps, row);
      cpu::rope(row + a.kv_lora, a.qk_rope, pos, m_.rope_theta);
    }
  } else {
    const int64_t D = m_.head_dim, kvh = shard_.kv_heads.size();
    float* k_new = buf(Buffer::k_new);
    cpu::gemm(hn, H, weights_.wq.data(), qh * D, q, qh * D, B, H, qh * D, false);
    cpu::gemm(hn, H, weights_.wk.data(), kvh * D, k_new, kvh * D, B, H, kvh * D, false);
    cpu::gemm(hn, H, weights_.wv.data(), kvh * D, buf(Buffer::v_new), kvh * D, B, H, kvh * D,
              false);
    for (int64_t i = 0; i < B * qh; ++i) cpu::rope(q + i * D, D, pos, m_.rope_theta);
    for (int64_t i = 0; i < B * kvh; ++i) cpu::rope(k_new + i * D, D, pos, m_.rope_theta);
  }
}

void CpuExecutor::kv_append(int64_t li, int64_t) {
  if (li < 0) return;  // another KVP rank owns the position
  HELIX_CHECK(li < cache_.capacity, "KV cache full: local index " + std::to_string(li));
  const size_t row_bytes = size_t(cache_.width) * sizeof(float);
  for (int64_t b = 0; b < batch_; ++b) {
    if (m_.is_mla()) {
      std::memcpy(&cache_.k[size_t((b * cache_.capacity + li) * cache_.width)],
                  buf(Buffer::kv_latent) + b * cache_.width, row_bytes);
    } else {
      for (int64_t h = 0; h < cache_.heads; ++h) {
        const size_t dst = size_t(((b * cache_.heads + h) * cache_.capacity + li) * cache_.width);
        const int64_t src = (b * cache_.heads + h) * cache_.width;
        std::memcpy(&cache_.k[dst], buf(Buffer::k_new) + src, row_bytes);
        std::memcpy(&cache_.v[dst], buf(Buffer::v_new) + src, row_bytes);
      }
    }
  }
}

void CpuExecutor::attention(const Step& s) {
  const int64_t qh = shard_.q_heads.size();
  const float* q = buf(Buffer::q);
  float* part_o = buf(Buffer::part_o);
  float* part_lse = buf(Buffer::part_lse);
  // One request at a time, driving the progress of earlier chunks' exchanges in between so that
  // HOP-B's communication really overlaps this computation.
  for (int64_t b = s.batch.begin; b < s.batch.end; ++b) {
    if (m_.is_mla()) {
      cpu::MlaAttention a;
      a.batch = 1;
      a.heads = qh;
      a.kv_lora = m_.mla.kv_lora;
      a.rope = m_.mla.qk_rope;
      a.tokens = s.kv_tokens;
      a.capacity = cache_.capacity;
      a.scale = m_.softmax_scale();
      a.q = q + b * qh * qk_dim_;
      a.kv = &cache_.k[size_t(b * cache_.capacity * cache_.width)];
      a.out = part_o + b * qh * out_dim_;
      a.lse = part_lse + b * qh;
      cpu::attention_mla(a);
    } else {
      cpu::GqaAttention a;
      a.batch = 1;
      a.q_heads = qh;
      a.q_begin = shard_.q_heads.begin;
      a.kv_begin = shard_.kv_heads.begin;
      a.kv_heads = cache_.heads;
      a.group = m_.group();
      a.head_dim = m_.head_dim;
      a.tokens = s.kv_tokens;
      a.capacity = cache_.capacity;
      a.scale = m_.softmax_scale();
      const size_t kv_off = size_t(b * cache_.heads * cache_.capacity * cache_.width);
      a.q = q + b * qh * qk_dim_;
      a.k = &cache_.k[kv_off];
      a.v = &cache_.v[kv_off];
      a.out = part_o + b * qh * out_dim_;
      a.lse = part_lse + b * qh;
      cpu::attention_gqa(a);
    }
    progress();
  }
}

// MLA: each head's latent partial up-projected to the value width, part_v[b, h] = part_o[b, h]
// @ W_uv[h]. The combine weights are scalars per (request, head), so doing this on every KV shard
// before the exchange gives the same combined output as doing it once after the combine.
void CpuExecutor::v_up(Range batch) {
  const auto& a = m_.mla;
  const int64_t qh = shard_.q_heads.size();
  const float* part_o = buf(Buffer::part_o);
  float* part_v = buf(Buffer::part_v);
  for (int64_t b = batch.begin; b < batch.end; ++b) {
    for (int64_t h = 0; h < qh; ++h)
      cpu::gemm(part_o + (b * qh + h) * out_dim_, a.kv_lora,
                &weights_.wuv[size_t(h * a.kv_lora * a.v_head)], a.v_head,
                part_v + (b * qh + h) * val_dim_, a.v_head, 1, a.kv_lora, a.v_head, false);
    progress();
  }
}

// The step's rows (values then LSE per request and head), for each peer in group order.
void CpuExecutor::pack(const Step& s) {
  const Exchange& x = s.exchange;
  const int64_t qh = shard_.q_heads.size();
  std::vector<cpu::HeadRange> heads;
  for (const Range& r : x.peer_heads) heads.push_back({r.begin, r.end});
  cpu::pack_partials(buf(s.input) + s.batch.begin * qh * x.dim, qh * x.dim,
                     buf(Buffer::part_lse) + s.batch.begin * qh, qh, s.batch.size(), x.dim,
                     heads.data(), int(heads.size()), buf(Buffer::send) + x.send_offset);
}

void CpuExecutor::exchange(const Step& s) {
  const bool blocking = s.op != Op::a2a_start;
  const Exchange& x = s.exchange;
  const float* send = buf(Buffer::send) + x.send_offset;
  float* recv = buf(Buffer::recv) + x.recv_offset;
  const MpiComm& c = groups_.get(s.group);
  if (blocking) {
    c.all_to_all_v(send, mpi_counts(x.send_counts), mpi_counts(x.send_displs), recv,
                   mpi_counts(x.recv_counts), mpi_counts(x.recv_displs));
    return;
  }
  pending_.push_back(c.iall_to_all_v(send, mpi_counts(x.send_counts), mpi_counts(x.send_displs),
                                     recv, mpi_counts(x.recv_counts), mpi_counts(x.recv_displs)));
  pending_chunk_.push_back(chunk_row(s));
}

void CpuExecutor::exchange_wait() {
  for (size_t i = 0; i < pending_.size(); ++i) {
    if (!pending_[i].pending()) continue;
    pending_[i].wait();
    if (chunk_us_) (*chunk_us_)[size_t(pending_chunk_[i])][kCommEnd] = us_since(step_start_);
  }
  pending_.clear();
  pending_chunk_.clear();
}

void CpuExecutor::all_reduce(const Step& s, Buffer b) {
  groups_.get(s.group).all_reduce_sum(buf(b), size_t(batch_) * size_t(m_.hidden));
}

void CpuExecutor::all_gather(const Step& s, Buffer from, Buffer to) {
  groups_.get(s.group).all_gather(buf(from), size_t(batch_) * size_t(m_.hidden), buf(to));
}

void CpuExecutor::broadcast(const Step& s, Buffer b) {
  groups_.get(s.group).bcast(buf(b), size_t(batch_) * size_t(m_.hidden), 0);
}

void CpuExecutor::gather_partials(const Step& s) {
  const Exchange& x = s.exchange;
  groups_.get(s.group).gather(buf(Buffer::send) + x.send_offset, size_t(x.send_counts[0]),
                              buf(Buffer::recv) + x.recv_offset, x.root);
}

// The received rows combined in place (one block for the batch, HOP-B's chunks included).
void CpuExecutor::combine(const Step& s) {
  const float* recv = buf(Buffer::recv);
  for (const CombineBlock& b : s.combine_blocks)
    cpu::lse_combine_rows(b.parts, b.rows, b.dim, recv + b.o_offset, b.part_stride, b.row_stride,
                          recv + b.lse_offset, b.part_stride, b.row_stride,
                          buf(Buffer::combined) + b.out_offset, nullptr);
}

void CpuExecutor::o_proj(const Step& s) {
  const int64_t B = batch_, H = m_.hidden, oh = shard_.o_heads.size(), D = val_dim_;
  float* attn_out = buf(Buffer::attn_out);
  if (oh == 0) {
    std::fill(attn_out, attn_out + B * H, 0.0f);
    return;
  }
  cpu::gemm(buf(s.input), oh * D, weights_.wo.data(), H, attn_out, H, B, oh * D, H, false);
}

void CpuExecutor::ffn_compute() {
  const int64_t B = batch_, H = m_.hidden;
  const float* x = buf(Buffer::x);
  const float* attn_out = buf(Buffer::attn_out);
  float* x1 = buf(Buffer::x1);
  float* h2 = ffn_in_.data();
  float* part = buf(Buffer::ffn_part);
  float* work = ffn_work_.data();
  for (int64_t i = 0; i < B * H; ++i) x1[i] = x[i] + attn_out[i];
  cpu::rmsnorm(x1, weights_.ffn_norm.data(), B, H, m_.rms_eps, h2);
  std::fill(part, part + B * H, 0.0f);
  if (shard_.layer == LayerKind::dense) {
    cpu::swiglu_ffn(h2, B, H, shard_.dense_cols.size(), weights_.w_gate.data(),
                    weights_.w_up.data(), weights_.w_down.data(), nullptr, part, work);
    return;
  }
  const int64_t E = m_.moe.routed_experts, K = m_.moe.top_k, cols = shard_.expert_cols.size();
  float* logits = buf(Buffer::router_logits);
  float* route_w = buf(Buffer::route_weight);
  cpu::gemm(h2, H, weights_.router.data(), E, logits, E, B, H, E, false);
  // Fault injection for the tests of the verification: HELIX_TEST_ROUTER_BIAS=EXPERT:LOGITS adds
  // to one expert's router logit on every rank, a routing error no rounding explains.
  if (const char* bias = std::getenv("HELIX_TEST_ROUTER_BIAS")) {
    int e = -1;
    float d = 0;
    if (std::sscanf(bias, "%d:%f", &e, &d) == 2 && e >= 0 && e < E)
      for (int64_t t = 0; t < B; ++t) logits[t * E + e] += d;
  }
  cpu::moe_route(logits, B, E, K, m_.moe.routed_scale, route_expert_.data(), route_w);
  // Gather the tokens routed to each held expert, run its column slice, scatter-add the result.
  float* xe = work + 2 * B * cols;
  float* ye = xe + B * H;
  float* we = ye + B * H;
  std::vector<int64_t> rows;
  for (int64_t e = shard_.experts.begin; e < shard_.experts.end; ++e) {
    rows.clear();
    for (int64_t t = 0; t < B; ++t)
      for (int64_t i = 0; i < K; ++i)
        if (route_expert_[size_t(t * K + i)] == e) {
          we[rows.size()] = route_w[t * K + i];
          rows.push_back(t);
        }
    if (rows.empty()) continue;
    const int64_t n = int64_t(rows.size());
    for (int64_t r = 0; r < n; ++r)
      std::memcpy(xe + r * H, h2 + rows[size_t(r)] * H, size_t(H) * sizeof(float));
    std::fill(ye, ye + n * H, 0.0f);
    const int64_t le = e - shard_.experts.begin;
    cpu::swiglu_ffn(xe, n, H, cols, &weights_.e_gate[size_t(le * H * cols)],
                    &weights_.e_up[size_t(le * H * cols)], &weights_.e_down[size_t(le * cols * H)],
                    we, ye, work);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < H; ++j) part[rows[size_t(r)] * H + j] += ye[r * H + j];
  }
  if (!weights_.s_gate.empty())
    cpu::swiglu_ffn(h2, B, H, shard_.shared_cols.size(), weights_.s_gate.data(),
                    weights_.s_up.data(), weights_.s_down.data(), nullptr, part, work);
}

// out = x1 + the sum of the step's partial sums (EP > 1: every EP rank's, gathered).
void CpuExecutor::ffn_reduce(const Step& s) {
  const int64_t n = int64_t(batch_) * m_.hidden;
  const float* x1 = buf(Buffer::x1);
  const float* parts = buf(s.input);
  float* out = buf(Buffer::out);
  for (int64_t i = 0; i < n; ++i) {
    float acc = 0.0f;
    for (int e = 0; e < s.parts; ++e) acc += parts[e * n + i];
    out[i] = x1[i] + acc;
  }
}

}  // namespace helix
