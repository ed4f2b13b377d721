#include "bench/cpu_executor.hpp"

#include <algorithm>
#include <chrono>
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
#include "kernels/rope.hpp"

namespace helix {

namespace {

using Clock = std::chrono::steady_clock;
double us_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

}  // namespace

CpuExecutor::CpuExecutor(const ModelSpec& model, const RankPlan& plan, CommGroups groups, int batch,
                         int64_t seq_len, int64_t max_positions, uint64_t seed)
    : m_(model), plan_(plan), groups_(std::move(groups)), batch_(batch) {
  shard_ = make_layer_shard(model, plan, seed);
  cache_ = make_kv_cache(model, plan, batch, seq_len, max_positions, seed);
  qk_dim_ = model.attn_qk_dim();
  out_dim_ = model.attn_out_dim();
  val_dim_ = model.attn_value_dim();
  const LayoutParams& L = plan.layout;
  peer_heads_ = peer_head_ranges(model, plan);
  const int64_t B = batch, H = model.hidden, qh = plan.q_heads.size();
  const int64_t oh = plan.o_heads.size();
  x_.resize(size_t(B * H));
  out_.resize(size_t(B * H));
  hn_.resize(size_t(B * H));
  q_.resize(size_t(B * qh * qk_dim_));
  if (model.is_mla()) {
    cq_.resize(size_t(B * model.mla.q_lora));
    qfull_.resize(size_t(B * qh * (model.mla.qk_nope + model.mla.qk_rope)));
    ckv_.resize(size_t(B * (model.mla.kv_lora + model.mla.qk_rope)));
    part_v_.resize(size_t(B * qh * val_dim_));
  } else {
    k_new_.resize(size_t(B * plan.kv_heads.size() * model.head_dim));
    v_new_.resize(k_new_.size());
  }
  part_o_.resize(size_t(B * qh * out_dim_));
  part_lse_.resize(size_t(B * qh));
  send_.resize(size_t(B * qh * (val_dim_ + 1)));
  const int64_t recv_heads = L.kind == LayoutKind::kvp ? qh : oh;
  recv_.resize(size_t(L.kvp * B * recv_heads * (val_dim_ + 1)));
  combined_.resize(size_t(B * std::max(oh, recv_heads) * val_dim_));
  attn_out_.resize(size_t(B * H));
  x1_.resize(size_t(B * H));
  h2_.resize(size_t(B * H));
  ffn_part_.resize(size_t(B * H));
  gathered_.resize(size_t(L.ep * B * H));
  if (plan.layer == LayerKind::moe) {
    const int64_t E = model.moe.routed_experts, k = model.moe.top_k;
    logits_.resize(size_t(B * E));
    route_e_.resize(size_t(B * k));
    route_w_.resize(size_t(B * k));
  }
  const int64_t widest = std::max<int64_t>(
      {plan.dense_cols.size(), plan.expert_cols.size(), plan.shared_cols.size(), 1});
  scratch_.resize(size_t(2 * B * widest + 2 * B * H + B));
}

void CpuExecutor::set_input(const float* x) {
  std::memcpy(x_.data(), x, x_.size() * sizeof(float));
}

void CpuExecutor::get_output(float* out) {
  std::memcpy(out, out_.data(), out_.size() * sizeof(float));
}

bool CpuExecutor::get_routing(int32_t* experts) {
  if (plan_.layer != LayerKind::moe || !plan_.in_ffn) return false;
  std::copy(route_e_.begin(), route_e_.end(), experts);
  return true;
}

void CpuExecutor::step(const std::vector<Step>& schedule, int64_t pos, StepTiming* timing) {
  StepTiming t;
  float* out = out_.data();
  const auto t_step = Clock::now();
  combined_valid_ = false;
  for (const Step& s : schedule) {
    const auto t0 = Clock::now();
    switch (s.op) {
      case Op::attn_prologue:
        prologue(pos);
        break;
      case Op::kv_append:
        kv_append(pos);
        break;
      case Op::attention:
        attention(s.batch, pos, &pending_);
        break;
      case Op::v_up:
        v_up(s.batch, &pending_);
        break;
      case Op::a2a:
        exchange(s, true);
        break;
      case Op::a2a_start:
        exchange(s, false);
        break;
      case Op::a2a_wait:
        wait_all(pending_);
        pending_.clear();
        break;
      case Op::gather_partials:
        gather_partials();
        break;
      case Op::combine:
        combine_chunk({0, batch_});
        break;
      case Op::o_proj:
        o_proj();
        break;
      case Op::o_allreduce:
        groups_.get(s.group).all_reduce_sum(attn_out_.data(), attn_out_.size());
        break;
      case Op::ffn_compute:
        ffn_compute();
        break;
      case Op::ffn_allreduce:
        groups_.tpf.all_reduce_sum(ffn_part_.data(), ffn_part_.size());
        break;
      case Op::ffn_allgather:
        groups_.ep.all_gather(ffn_part_.data(), ffn_part_.size(), gathered_.data());
        break;
      case Op::ffn_reduce:
        ffn_reduce(out);
        break;
      case Op::out_bcast:
        groups_.kvp.bcast(out, size_t(batch_) * m_.hidden, 0);
        break;
    }
    t.phase_us[static_cast<int>(s.phase)] += us_since(t0);
  }
  HELIX_CHECK(pending_.empty(), "schedule left a non-blocking exchange pending");
  t.step_us = us_since(t_step);
  double compute_us = 0;
  for (int p = 0; p < kNumPhases; ++p)
    if (!phase_is_comm(static_cast<Phase>(p))) compute_us += t.phase_us[p];
  t.exposed_comm_us = std::max(0.0, t.step_us - compute_us);
  if (timing) *timing = t;
}

void CpuExecutor::prologue(int64_t pos) {
  const int64_t B = batch_, H = m_.hidden, qh = plan_.q_heads.size();
  cpu::rmsnorm(x_.data(), shard_.attn_norm.data(), B, H, m_.rms_eps, hn_.data());
  if (m_.is_mla()) {
    const auto& a = m_.mla;
    const int64_t qk = a.qk_nope + a.qk_rope, w = a.kv_lora + a.qk_rope;
    cpu::gemm(hn_.data(), H, shard_.wdq.data(), a.q_lora, cq_.data(), a.q_lora, B, H, a.q_lora,
              false);
    cpu::rmsnorm(cq_.data(), shard_.q_norm.data(), B, a.q_lora, m_.rms_eps, cq_.data());
    cpu::gemm(cq_.data(), a.q_lora, shard_.wuq.data(), qh * qk, qfull_.data(), qh * qk, B, a.q_lora,
              qh * qk, false);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < qh; ++h) {
        const float* qn = &qfull_[size_t((b * qh + h) * qk)];
        float* dst = &q_[size_t((b * qh + h) * qk_dim_)];
        // Absorb W_uk: latent query = W_uk[h] q_nope.
        cpu::gemm(qn, a.qk_nope, &shard_.wuk_t[size_t(h * a.qk_nope * a.kv_lora)], a.kv_lora, dst,
                  a.kv_lora, 1, a.qk_nope, a.kv_lora, false);
        std::memcpy(dst + a.kv_lora, qn + a.qk_nope, size_t(a.qk_rope) * sizeof(float));
        cpu::rope(dst + a.kv_lora, a.qk_rope, pos, m_.rope_theta);
      }
    cpu::gemm(hn_.data(), H, shard_.wdkv.data(), w, ckv_.data(), w, B, H, w, false);
    for (int64_t b = 0; b < B; ++b) {
      float* row = &ckv_[size_t(b * w)];
      cpu::rmsnorm(row, shard_.kv_norm.data(), 1, a.kv_lora, m_.rms_eps, row);
      cpu::rope(row + a.kv_lora, a.qk_rope, pos, m_.rope_theta);
    }
  } else {
    const int64_t D = m_.head_dim, kvh = plan_.kv_heads.size();
    cpu::gemm(hn_.data(), H, shard_.wq.data(), qh * D, q_.data(), qh * D, B, H, qh * D, false);
    cpu::gemm(hn_.data(), H, shard_.wk.data(), kvh * D, k_new_.data(), kvh * D, B, H, kvh * D,
              false);
    cpu::gemm(hn_.data(), H, shard_.wv.data(), kvh * D, v_new_.data(), kvh * D, B, H, kvh * D,
              false);
    for (int64_t i = 0; i < B * qh; ++i) cpu::rope(&q_[size_t(i * D)], D, pos, m_.rope_theta);
    for (int64_t i = 0; i < B * kvh; ++i) cpu::rope(&k_new_[size_t(i * D)], D, pos, m_.rope_theta);
  }
}

void CpuExecutor::kv_append(int64_t pos) {
  if (!plan_.owns_position(pos)) return;
  const int64_t li = plan_.placement.local_index(pos);
  HELIX_CHECK(li < cache_.capacity, "KV cache full: position " + std::to_string(pos));
  const size_t row_bytes = size_t(cache_.width) * sizeof(float);
  for (int64_t b = 0; b < batch_; ++b) {
    if (m_.is_mla()) {
      std::memcpy(&cache_.k[size_t((b * cache_.capacity + li) * cache_.width)],
                  &ckv_[size_t(b * cache_.width)], row_bytes);
    } else {
      for (int64_t h = 0; h < cache_.heads; ++h) {
        const size_t dst = size_t(((b * cache_.heads + h) * cache_.capacity + li) * cache_.width);
        const size_t src = size_t((b * cache_.heads + h) * cache_.width);
        std::memcpy(&cache_.k[dst], &k_new_[src], row_bytes);
        std::memcpy(&cache_.v[dst], &v_new_[src], row_bytes);
      }
    }
  }
}

void CpuExecutor::attention(Range batch, int64_t pos, std::vector<MpiRequest>* progress) {
  const int64_t tokens = plan_.local_tokens(pos + 1);
  const int64_t qh = plan_.q_heads.size();
  // One request at a time, driving the progress of earlier chunks' exchanges in between so that
  // HOP-B's communication really overlaps this computation.
  for (int64_t b = batch.begin; b < batch.end; ++b) {
    if (m_.is_mla()) {
      cpu::MlaAttention a;
      a.batch = 1;
      a.heads = qh;
      a.kv_lora = m_.mla.kv_lora;
      a.rope = m_.mla.qk_rope;
      a.tokens = tokens;
      a.capacity = cache_.capacity;
      a.scale = m_.softmax_scale();
      a.q = &q_[size_t(b * qh * qk_dim_)];
      a.kv = &cache_.k[size_t(b * cache_.capacity * cache_.width)];
      a.out = &part_o_[size_t(b * qh * out_dim_)];
      a.lse = &part_lse_[size_t(b * qh)];
      cpu::attention_mla(a);
    } else {
      cpu::GqaAttention a;
      a.batch = 1;
      a.q_heads = qh;
      a.q_begin = plan_.q_heads.begin;
      a.kv_begin = plan_.kv_heads.begin;
      a.kv_heads = cache_.heads;
      a.group = m_.group();
      a.head_dim = m_.head_dim;
      a.tokens = tokens;
      a.capacity = cache_.capacity;
      a.scale = m_.softmax_scale();
      const size_t kv_off = size_t(b * cache_.heads * cache_.capacity * cache_.width);
      a.q = &q_[size_t(b * qh * qk_dim_)];
      a.k = &cache_.k[kv_off];
      a.v = &cache_.v[kv_off];
      a.out = &part_o_[size_t(b * qh * out_dim_)];
      a.lse = &part_lse_[size_t(b * qh)];
      cpu::attention_gqa(a);
    }
    if (progress && !progress->empty()) test_all(*progress);
  }
}

// MLA: each head's latent partial up-projected to the value width, part_v_[b, h] = part_o_[b, h]
// @ W_uv[h]. The combine weights are scalars per (request, head), so doing this on every KV shard
// before the exchange gives the same combined output as doing it once after the combine.
void CpuExecutor::v_up(Range batch, std::vector<MpiRequest>* progress) {
  const auto& a = m_.mla;
  const int64_t qh = plan_.q_heads.size();
  for (int64_t b = batch.begin; b < batch.end; ++b) {
    for (int64_t h = 0; h < qh; ++h)
      cpu::gemm(&part_o_[size_t((b * qh + h) * out_dim_)], a.kv_lora,
                &shard_.wuv[size_t(h * a.kv_lora * a.v_head)], a.v_head,
                &part_v_[size_t((b * qh + h) * val_dim_)], a.v_head, 1, a.kv_lora, a.v_head, false);
    if (progress && !progress->empty()) test_all(*progress);
  }
}

// Send layout of a chunk of requests [b0, b1): starting at b0 * q_heads * (D + 1), one message
// per peer j in KVP order: O block [nb, heads_j, D] then LSE block [nb, heads_j] (D: the value
// width).
void CpuExecutor::pack_chunk(Range batch) {
  const int64_t D = val_dim_, qh = plan_.q_heads.size(), nb = batch.size();
  const float* part = partials();
  float* dst = &send_[size_t(batch.begin * qh * (D + 1))];
  for (const Range& hr : peer_heads_) {
    for (int64_t b = batch.begin; b < batch.end; ++b)
      for (int64_t h = hr.begin; h < hr.end; ++h) {
        std::memcpy(dst, &part[size_t((b * qh + h) * D)], size_t(D) * sizeof(float));
        dst += D;
      }
    for (int64_t b = batch.begin; b < batch.end; ++b)
      for (int64_t h = hr.begin; h < hr.end; ++h) *dst++ = part_lse_[size_t(b * qh + h)];
  }
  (void)nb;
}

// Receive layout of a chunk: starting at b0 * KVP * heads * (D + 1), one block per source peer
// i: O [nb, heads, D] then LSE [nb, heads]; lse_combine reads it in place.
void CpuExecutor::exchange(const Step& s, bool blocking) {
  const int64_t D = val_dim_, qh = plan_.q_heads.size(), oh = plan_.o_heads.size();
  const int64_t nb = s.batch.size();
  const int kvp = plan_.layout.kvp;
  pack_chunk(s.batch);
  const size_t np = static_cast<size_t>(kvp);
  std::vector<int> sc(np), sd(np), rc(np), rd(np);
  int64_t off = 0;
  for (int j = 0; j < kvp; ++j) {
    sc[j] = int(nb * peer_heads_[j].size() * (D + 1));
    sd[j] = int(off);
    off += sc[j];
    rc[j] = int(nb * oh * (D + 1));
    rd[j] = int(j * rc[j]);
  }
  const float* send = &send_[size_t(s.batch.begin * qh * (D + 1))];
  float* recv = &recv_[size_t(s.batch.begin * kvp * oh * (D + 1))];
  if (blocking)
    groups_.kvp.all_to_all_v(send, sc, sd, recv, rc, rd);
  else
    pending_.push_back(groups_.kvp.iall_to_all_v(send, sc, sd, recv, rc, rd));
}

void CpuExecutor::gather_partials() {
  const int64_t D = val_dim_, qh = plan_.q_heads.size();
  const size_t n_o = size_t(batch_ * qh * D);
  // Each rank sends all its query heads: one O block then one LSE block (the layout of a single
  // peer in pack_chunk with heads_j = all).
  float* dst = send_.data();
  std::memcpy(dst, partials(), n_o * sizeof(float));
  std::memcpy(dst + n_o, part_lse_.data(), part_lse_.size() * sizeof(float));
  groups_.kvp.gather(send_.data(), size_t(batch_ * qh * (D + 1)), recv_.data(), 0);
}

void CpuExecutor::combine_chunk(Range all) {
  const int64_t D = val_dim_, oh = plan_.o_heads.size();
  const int kvp = plan_.layout.kvp;
  // HOP-B chunks each have their own receive block; the whole batch is one chunk otherwise.
  const auto chunks = plan_.layout.kind == LayoutKind::helix_hopb
                          ? batch_chunks(batch_, plan_.layout.hopb_chunks)
                          : std::vector<Range>{all};
  for (const Range& c : chunks) {
    const int64_t nb = c.size(), rows = nb * oh, stride = rows * (D + 1);
    const float* base = &recv_[size_t(c.begin * kvp * oh * (D + 1))];
    cpu::lse_combine(kvp, rows, D, base, stride, base + rows * D, stride,
                     &combined_[size_t(c.begin * oh * D)], nullptr);
  }
  combined_valid_ = true;
}

void CpuExecutor::o_proj() {
  const int64_t B = batch_, H = m_.hidden, oh = plan_.o_heads.size(), D = val_dim_;
  // tp: the local partials are complete (o_heads = q_heads); MLA's are already up-projected.
  const float* in = combined_valid_ ? combined_.data() : partials();
  if (oh == 0) {
    std::fill(attn_out_.begin(), attn_out_.end(), 0.0f);
    return;
  }
  cpu::gemm(in, oh * D, shard_.wo.data(), H, attn_out_.data(), H, B, oh * D, H, false);
}

void CpuExecutor::ffn_compute() {
  const int64_t B = batch_, H = m_.hidden;
  for (size_t i = 0; i < x1_.size(); ++i) x1_[i] = x_[i] + attn_out_[i];
  cpu::rmsnorm(x1_.data(), shard_.ffn_norm.data(), B, H, m_.rms_eps, h2_.data());
  std::fill(ffn_part_.begin(), ffn_part_.end(), 0.0f);
  if (plan_.layer == LayerKind::dense) {
    cpu::swiglu_ffn(h2_.data(), B, H, plan_.dense_cols.size(), shard_.w_gate.data(),
                    shard_.w_up.data(), shard_.w_down.data(), nullptr, ffn_part_.data(),
                    scratch_.data());
    return;
  }
  const int64_t E = m_.moe.routed_experts, K = m_.moe.top_k, cols = plan_.expert_cols.size();
  cpu::gemm(h2_.data(), H, shard_.router.data(), E, logits_.data(), E, B, H, E, false);
  // Fault injection for the tests of the verification: HELIX_TEST_ROUTER_BIAS=EXPERT:LOGITS adds
  // to one expert's router logit on every rank, a routing error no rounding explains.
  if (const char* bias = std::getenv("HELIX_TEST_ROUTER_BIAS")) {
    int e = -1;
    float d = 0;
    if (std::sscanf(bias, "%d:%f", &e, &d) == 2 && e >= 0 && e < E)
      for (int64_t t = 0; t < B; ++t) logits_[size_t(t * E + e)] += d;
  }
  cpu::moe_route(logits_.data(), B, E, K, m_.moe.routed_scale, route_e_.data(), route_w_.data());
  // Gather the tokens routed to each held expert, run its column slice, scatter-add the result.
  float* xe = scratch_.data() + 2 * B * cols;
  float* ye = xe + B * H;
  float* we = ye + B * H;
  std::vector<int64_t> rows;
  for (int64_t e = plan_.experts.begin; e < plan_.experts.end; ++e) {
    rows.clear();
    for (int64_t t = 0; t < B; ++t)
      for (int64_t i = 0; i < K; ++i)
        if (route_e_[size_t(t * K + i)] == e) {
          we[rows.size()] = route_w_[size_t(t * K + i)];
          rows.push_back(t);
        }
    if (rows.empty()) continue;
    const int64_t n = int64_t(rows.size());
    for (int64_t r = 0; r < n; ++r)
      std::memcpy(&xe[size_t(r * H)], &h2_[size_t(rows[r] * H)], size_t(H) * sizeof(float));
    std::fill(ye, ye + n * H, 0.0f);
    const int64_t le = e - plan_.experts.begin;
    cpu::swiglu_ffn(xe, n, H, cols, &shard_.e_gate[size_t(le * H * cols)],
                    &shard_.e_up[size_t(le * H * cols)], &shard_.e_down[size_t(le * cols * H)], we,
                    ye, scratch_.data());
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < H; ++j) ffn_part_[size_t(rows[r] * H + j)] += ye[r * H + j];
  }
  if (!shard_.s_gate.empty())
    cpu::swiglu_ffn(h2_.data(), B, H, plan_.shared_cols.size(), shard_.s_gate.data(),
                    shard_.s_up.data(), shard_.s_down.data(), nullptr, ffn_part_.data(),
                    scratch_.data());
}

void CpuExecutor::ffn_reduce(float* out) {
  const size_t n = x1_.size();
  const int ep = plan_.layout.ep;
  for (size_t i = 0; i < n; ++i) {
    float acc = 0.0f;
    if (ep > 1)
      for (int e = 0; e < ep; ++e) acc += gathered_[size_t(e) * n + i];
    else
      acc = ffn_part_[i];
    out[i] = x1_[i] + acc;
  }
}

}  // namespace helix
