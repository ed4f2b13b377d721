#include "exec/reference.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace helix {

namespace {

using Vec = std::vector<double>;

// Work (multiply-adds) above which a loop of the reference is worth threads: the real models'
// layers, never the test models'.
constexpr int64_t kParallelWork = int64_t(1) << 22;

// y = x @ W for one row; W: [k, n] row-major (float), x: [k]. Large products split the columns
// over threads; every y[j] is still summed in the same order, so the result does not depend on
// the thread count.
Vec matvec(const double* x, const float* w, int64_t k, int64_t n) {
  Vec y(static_cast<size_t>(n), 0.0);
#pragma omp parallel if (k * n >= kParallelWork)
  {
    int64_t j0 = 0, j1 = n;
#if defined(_OPENMP)
    const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
    j0 = n * part / parts;
    j1 = n * (part + 1) / parts;
#endif
    for (int64_t i = 0; i < k; ++i) {
      const double a = x[i];
      const float* row = w + i * n;
      for (int64_t j = j0; j < j1; ++j) y[j] += a * row[j];
    }
  }
  return y;
}

// sqrt(sum_i (x_i W_ij)^2) for every column j: the scale of the rounding error of a
// low-precision x @ W whose products err independently.
Vec rss_matvec(const double* x, const float* w, int64_t k, int64_t n) {
  Vec y(static_cast<size_t>(n), 0.0);
  for (int64_t i = 0; i < k; ++i) {
    const float* row = w + i * n;
    for (int64_t j = 0; j < n; ++j) {
      const double p = x[i] * double(row[j]);
      y[j] += p * p;
    }
  }
  for (double& v : y) v = std::sqrt(v);
  return y;
}

Vec rms(const double* x, const float* w, int64_t n, double eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const double inv = 1.0 / std::sqrt(ss / double(n) + eps);
  Vec y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * inv * w[i];
  return y;
}

void rope(double* v, int64_t dim, int64_t pos, double theta) {
  const int64_t half = dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const double ang = double(pos) * std::pow(theta, -2.0 * double(i) / double(dim));
    const double a = v[i], b = v[i + half];
    v[i] = a * std::cos(ang) - b * std::sin(ang);
    v[i + half] = b * std::cos(ang) + a * std::sin(ang);
  }
}

double silu(double a) {
  return a / (1.0 + std::exp(-a));
}

// SwiGLU of one row over a [H, F] / [F, H] weight triple.
Vec swiglu(const Vec& h, const float* wg, const float* wu, const float* wd, int64_t H, int64_t F) {
  const Vec g = matvec(h.data(), wg, H, F), u = matvec(h.data(), wu, H, F);
  Vec a(static_cast<size_t>(F));
  for (int64_t j = 0; j < F; ++j) a[j] = silu(g[j]) * u[j];
  return matvec(a.data(), wd, F, H);
}

}  // namespace

ReferenceLayer::ReferenceLayer(const ModelSpec& model, LayerKind layer, int batch, int64_t seq_len,
                               int64_t max_positions, uint64_t seed)
    : m_(model), layer_(layer), batch_(batch), seed_(seed) {
  LayoutParams one;
  one.kind = LayoutKind::tp;
  one.n = one.tpa = one.kvp = one.tpf = one.ep = 1;
  shard_ = rank_shard(model, layer, one, 0);
  RankShard no_experts = shard_;
  no_experts.experts = {0, 0};  // routed experts: generated when first routed to (expert())
  w_ = make_layer_weights(model, no_experts, seed);
  cache_ = make_kv_cache(model, shard_, batch, seq_len, max_positions, seed);
}

const ReferenceLayer::Expert& ReferenceLayer::expert(int64_t e) {
  auto it = experts_.find(e);
  if (it != experts_.end()) return it->second;
  Expert x;
  append_expert_weights(m_, e, {0, m_.moe.expert_ffn}, seed_, &x.gate, &x.up, &x.down);
  return experts_.emplace(e, std::move(x)).first->second;
}

int64_t ReferenceLayer::bytes_needed(const ModelSpec& m, LayerKind layer, int batch,
                                     int64_t max_positions) {
  return int64_t(sizeof(float)) *
         (m.layer_params(layer) + int64_t(batch) * max_positions * m.kv_elems_per_token());
}

std::vector<double> ReferenceLayer::attention_gqa(const Vec& hn, int64_t b, int64_t pos) {
  const int64_t H = m_.hidden, D = m_.head_dim, Q = m_.q_heads, K = m_.kv_heads;
  Vec q = matvec(hn.data(), w_.wq.data(), H, Q * D);
  Vec k = matvec(hn.data(), w_.wk.data(), H, K * D);
  const Vec v = matvec(hn.data(), w_.wv.data(), H, K * D);
  for (int64_t h = 0; h < Q; ++h) rope(&q[size_t(h * D)], D, pos, m_.rope_theta);
  for (int64_t h = 0; h < K; ++h) rope(&k[size_t(h * D)], D, pos, m_.rope_theta);
  const int64_t cap = cache_.capacity;
  for (int64_t h = 0; h < K; ++h)
    for (int64_t d = 0; d < D; ++d) {
      const size_t o = size_t(((b * K + h) * cap + pos) * D + d);
      cache_.k[o] = float(k[size_t(h * D + d)]);
      cache_.v[o] = float(v[size_t(h * D + d)]);
    }
  Vec o(size_t(Q * D), 0.0);
  const double scale = 1.0 / std::sqrt(double(D));
#pragma omp parallel for schedule(dynamic) if (Q * (pos + 1) * D >= kParallelWork)
  for (int64_t h = 0; h < Q; ++h) {
    Vec s(size_t(pos + 1));
    const int64_t kvh = h / m_.group();
    const float* kc = &cache_.k[size_t((b * K + kvh) * cap * D)];
    const float* vc = &cache_.v[size_t((b * K + kvh) * cap * D)];
    double mx = -INFINITY;
    for (int64_t p = 0; p <= pos; ++p) {
      double dot = 0;
      for (int64_t d = 0; d < D; ++d) dot += q[size_t(h * D + d)] * kc[p * D + d];
      s[p] = dot * scale;
      mx = std::max(mx, s[p]);
    }
    double sum = 0;
    for (int64_t p = 0; p <= pos; ++p) sum += (s[p] = std::exp(s[p] - mx));
    for (int64_t p = 0; p <= pos; ++p)
      for (int64_t d = 0; d < D; ++d) o[size_t(h * D + d)] += s[p] / sum * vc[p * D + d];
  }
  return matvec(o.data(), w_.wo.data(), Q * D, H);
}

std::vector<double> ReferenceLayer::attention_mla(const Vec& hn, int64_t b, int64_t pos) {
  const auto& a = m_.mla;
  const int64_t H = m_.hidden, Q = m_.q_heads, L = a.kv_lora, R = a.qk_rope, W = L + R;
  const int64_t qk = a.qk_nope + R;
  const Vec cq0 = matvec(hn.data(), w_.wdq.data(), H, a.q_lora);
  const Vec cq = rms(cq0.data(), w_.q_norm.data(), a.q_lora, m_.rms_eps);
  Vec qf = matvec(cq.data(), w_.wuq.data(), a.q_lora, Q * qk);
  Vec ckv = matvec(hn.data(), w_.wdkv.data(), H, W);
  const Vec c = rms(ckv.data(), w_.kv_norm.data(), L, m_.rms_eps);
  std::copy(c.begin(), c.end(), ckv.begin());
  rope(&ckv[size_t(L)], R, pos, m_.rope_theta);
  const int64_t cap = cache_.capacity;
  for (int64_t d = 0; d < W; ++d) cache_.k[size_t((b * cap + pos) * W + d)] = float(ckv[size_t(d)]);
  const float* kv = &cache_.k[size_t(b * cap * W)];
  Vec up(size_t(Q * a.v_head), 0.0);
#pragma omp parallel for schedule(dynamic) if (Q * (pos + 1) * W >= kParallelWork)
  for (int64_t h = 0; h < Q; ++h) {
    Vec s(size_t(pos + 1));
    double* qh = &qf[size_t(h * qk)];
    rope(qh + a.qk_nope, R, pos, m_.rope_theta);
    // Latent query: q_lat[i] = sum_j W_uk[h][i][j] q_nope[j]  (wuk_t[h] is [nope][L]).
    Vec ql(static_cast<size_t>(L), 0.0);
    for (int64_t j = 0; j < a.qk_nope; ++j)
      for (int64_t i = 0; i < L; ++i)
        ql[size_t(i)] += qh[j] * w_.wuk_t[size_t((h * a.qk_nope + j) * L + i)];
    double mx = -INFINITY;
    for (int64_t p = 0; p <= pos; ++p) {
      double dot = 0;
      for (int64_t i = 0; i < L; ++i) dot += ql[size_t(i)] * kv[p * W + i];
      for (int64_t i = 0; i < R; ++i) dot += qh[a.qk_nope + i] * kv[p * W + L + i];
      s[p] = dot * m_.softmax_scale();
      mx = std::max(mx, s[p]);
    }
    double sum = 0;
    for (int64_t p = 0; p <= pos; ++p) sum += (s[p] = std::exp(s[p] - mx));
    Vec ol(static_cast<size_t>(L), 0.0);
    for (int64_t p = 0; p <= pos; ++p)
      for (int64_t i = 0; i < L; ++i) ol[size_t(i)] += s[p] / sum * kv[p * W + i];
    const Vec oh = matvec(ol.data(), &w_.wuv[size_t(h * L * a.v_head)], L, a.v_head);
    std::copy(oh.begin(), oh.end(), up.begin() + h * a.v_head);
  }
  return matvec(up.data(), w_.wo.data(), Q * a.v_head, H);
}

std::vector<double> ReferenceLayer::ffn(const Vec& h2, RouterRecord* rec) {
  const int64_t H = m_.hidden;
  if (layer_ == LayerKind::dense)
    return swiglu(h2, w_.w_gate.data(), w_.w_up.data(), w_.w_down.data(), H, m_.ffn);
  const int64_t E = m_.moe.routed_experts, K = m_.moe.top_k, F = m_.moe.expert_ffn;
  RouterRecord r;
  r.h2 = h2;
  r.logits = matvec(h2.data(), w_.router.data(), H, E);
  r.bound = rss_matvec(h2.data(), w_.router.data(), H, E);
  for (double& b : r.bound) b *= kRouterBoundUnits * kBf16Roundoff;
  // Sigmoid scores rank as the logits do; ties go to the lower index, as in the kernels.
  std::vector<int32_t> idx(static_cast<size_t>(E));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int32_t x, int32_t y) { return r.logits[x] > r.logits[y]; });
  r.topk.assign(idx.begin(), idx.begin() + K);
  r.base.assign(static_cast<size_t>(H), 0.0);
  const int64_t Fs = int64_t(m_.moe.shared_experts) * F;
  if (Fs > 0) r.base = swiglu(h2, w_.s_gate.data(), w_.s_up.data(), w_.s_down.data(), H, Fs);
  Vec out = moe_output(r, r.topk.data());
  if (rec) *rec = std::move(r);
  return out;
}

std::vector<double> ReferenceLayer::moe_output(const RouterRecord& r, const int32_t* experts) {
  const int64_t H = m_.hidden, K = m_.moe.top_k, F = m_.moe.expert_ffn;
  auto score = [&](int32_t e) { return 1.0 / (1.0 + std::exp(-r.logits[size_t(e)])); };
  double sum = 0;
  for (int64_t i = 0; i < K; ++i) sum += score(experts[i]);
  Vec out = r.base;
  for (int64_t i = 0; i < K; ++i) {
    const int32_t e = experts[i];
    const double wgt = score(e) / sum * m_.moe.routed_scale;
    const Expert& x = expert(e);
    const Vec y = swiglu(r.h2, x.gate.data(), x.up.data(), x.down.data(), H, F);
    for (int64_t j = 0; j < H; ++j) out[j] += wgt * y[j];
  }
  return out;
}

std::vector<float> ReferenceLayer::step(const std::vector<float>& x, int64_t pos,
                                        std::vector<RouterRecord>* routers) {
  const int64_t H = m_.hidden;
  std::vector<float> out(size_t(batch_ * H));
  if (routers) routers->assign(size_t(layer_ == LayerKind::moe ? batch_ : 0), RouterRecord{});
  for (int64_t b = 0; b < batch_; ++b) {
    Vec xb(x.begin() + b * H, x.begin() + (b + 1) * H);
    const Vec hn = rms(xb.data(), w_.attn_norm.data(), H, m_.rms_eps);
    const Vec att = m_.is_mla() ? attention_mla(hn, b, pos) : attention_gqa(hn, b, pos);
    Vec x1(static_cast<size_t>(H));
    for (int64_t j = 0; j < H; ++j) x1[j] = xb[j] + att[j];
    const Vec h2 = rms(x1.data(), w_.ffn_norm.data(), H, m_.rms_eps);
    RouterRecord* rec = routers && layer_ == LayerKind::moe ? &(*routers)[size_t(b)] : nullptr;
    const Vec f = ffn(h2, rec);
    if (rec)  // the record's base includes the residual, so moe_output() gives the layer output
      for (int64_t j = 0; j < H; ++j) rec->base[size_t(j)] += x1[size_t(j)];
    for (int64_t j = 0; j < H; ++j) out[size_t(b * H + j)] = float(x1[j] + f[j]);
  }
  return out;
}

ReferenceRun::ReferenceRun(const ModelSpec& model, LayerKind layer, int batch, int64_t seq,
                           int steps, uint64_t seed)
    : m_(model),
      batch_(batch),
      layer_(std::make_unique<ReferenceLayer>(model, layer, batch, seq, seq + steps, seed)) {
  for (int t = 0; t < steps; ++t) {
    std::vector<RouterRecord> rec;
    outputs_.push_back(layer_->step(make_decode_input(model, batch, t, seed), seq + t, &rec));
    if (layer == LayerKind::moe) routers_.push_back(std::move(rec));
  }
}

std::vector<float> ReferenceRun::output_for(int step, const int32_t* experts,
                                            std::vector<RoutingFlip>* flips) {
  std::vector<float> out = outputs_[size_t(step)];
  if (!experts || routers_.empty()) return out;
  const int64_t H = m_.hidden, K = m_.moe.top_k, E = m_.moe.routed_experts;
  for (int b = 0; b < batch_; ++b) {
    const RouterRecord& r = routers_[size_t(step)][size_t(b)];
    const int32_t* mine = experts + b * K;
    std::vector<int32_t> x(mine, mine + K), ref = r.topk;
    std::sort(x.begin(), x.end());
    std::sort(ref.begin(), ref.end());
    if (x == ref) continue;
    // Executor experts the reference did not choose (strongest first), and the reverse.
    const bool valid = std::adjacent_find(x.begin(), x.end()) == x.end() &&
                       std::all_of(x.begin(), x.end(), [&](int32_t e) { return e >= 0 && e < E; });
    std::vector<int32_t> added, dropped;
    if (valid) {
      std::set_difference(x.begin(), x.end(), ref.begin(), ref.end(), std::back_inserter(added));
      std::set_difference(ref.begin(), ref.end(), x.begin(), x.end(), std::back_inserter(dropped));
    } else {
      added.assign(mine, mine + K);
    }
    auto by_logit = [&](int32_t p, int32_t q) { return r.logits[size_t(p)] > r.logits[size_t(q)]; };
    std::sort(added.begin(), added.end(), by_logit);
    std::sort(dropped.begin(), dropped.end(), by_logit);
    // The executor's set is a top-k of some logits within the bounds iff its weakest member,
    // raised by its bound, still reaches the strongest non-member lowered by its bound.
    bool accepted = valid;
    if (valid) {
      double lo_in = INFINITY, hi_out = -INFINITY;
      for (int64_t e = 0; e < E; ++e) {
        const bool in = std::binary_search(x.begin(), x.end(), int32_t(e));
        const double l = r.logits[size_t(e)], d = r.bound[size_t(e)];
        if (in)
          lo_in = std::min(lo_in, l + d);
        else
          hi_out = std::max(hi_out, l - d);
      }
      accepted = lo_in >= hi_out;
    }
    for (size_t i = 0; i < added.size(); ++i) {
      RoutingFlip f;
      f.step = step;
      f.token = b;
      f.executor_expert = added[i];
      f.accepted = accepted;
      if (i < dropped.size() && valid) {
        const int32_t in = added[i], out_e = dropped[dropped.size() - 1 - i];
        f.reference_expert = out_e;
        f.logit_gap = r.logits[size_t(out_e)] - r.logits[size_t(in)];
        f.bound = r.bound[size_t(out_e)] + r.bound[size_t(in)];
      }
      flips->push_back(f);
    }
    if (!accepted) continue;
    const std::vector<double> row = layer_->moe_output(r, mine);
    for (int64_t j = 0; j < H; ++j) out[size_t(b * H + j)] = float(row[size_t(j)]);
  }
  return out;
}

double relative_error(const std::vector<float>& out, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = double(out[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * ref[i];
  }
  if (!std::isfinite(num)) return INFINITY;
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace helix
