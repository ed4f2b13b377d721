#include "analytic/disagg.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace helix {

const char* to_string(PrefillScheme s) {
  switch (s) {
    case PrefillScheme::tp:
      return "tp";
    case PrefillScheme::tep:
      return "tep";
    case PrefillScheme::pp:
      return "pp";
    case PrefillScheme::cpp:
      return "cpp";
  }
  return "?";
}

const char* to_string(ServeMode m) {
  switch (m) {
    case ServeMode::disagg:
      return "disagg";
    case ServeMode::colocated:
      return "colocated";
    case ServeMode::colocated_piggyback:
      return "colocated-piggyback";
  }
  return "?";
}

namespace {

// Attention parameters of one layer (projections; norms excluded).
double attn_params(const ModelSpec& m) {
  return double(m.layer_params(LayerKind::dense)) - 3.0 * m.hidden * m.ffn - 2.0 * m.hidden;
}

// FFN parameters one token uses (MoE: router, top-k routed and the shared experts).
double ffn_active_params(const ModelSpec& m, LayerKind k) {
  const double H = m.hidden;
  if (k == LayerKind::dense) return 3 * H * m.ffn;
  return H * m.moe.routed_experts + (m.moe.top_k + m.moe.shared_experts) * 3 * H * m.moe.expert_ffn;
}

// Query-key and value widths of the (unabsorbed) prefill attention.
std::pair<double, double> attn_dims(const ModelSpec& m) {
  if (m.is_mla()) return {double(m.mla.qk_nope + m.mla.qk_rope), double(m.mla.v_head)};
  return {double(m.head_dim), double(m.head_dim)};
}

struct LayerKinds {
  std::vector<std::pair<LayerKind, int>> kinds;  // kind, layer count
};
LayerKinds kinds_of(const ModelSpec& m) {
  LayerKinds k;
  if (m.dense_layers() > 0) k.kinds.push_back({LayerKind::dense, m.dense_layers()});
  if (m.moe_layers() > 0) k.kinds.push_back({LayerKind::moe, m.moe_layers()});
  return k;
}

// FLOPs of one layer for one prompt's chunk of c tokens after p earlier tokens, split into the
// weight GEMMs (for MLA with the up-projection of the latent of every attended token to keys and
// values) and the causal attention products (scores and values: 2 FLOPs per multiply-add).
struct ChunkFlops {
  double gemm = 0, attn = 0;
  double total() const { return gemm + attn; }
};
ChunkFlops chunk_flops(const ModelSpec& m, LayerKind k, double c, double p) {
  const auto [dqk, dv] = attn_dims(m);
  ChunkFlops f;
  f.gemm = 2 * c * (attn_params(m) + ffn_active_params(m, k));
  if (m.is_mla())
    f.gemm += 2 * (p + c) * m.mla.kv_lora * double(m.q_heads) * (m.mla.qk_nope + m.mla.v_head);
  f.attn = 2.0 * m.q_heads * c * (p + c / 2) * (dqk + dv);
  return f;
}

// FLOPs of one prompt of `isl` tokens in chunks of `chunk` tokens (0: one pass), all layers.
ChunkFlops prompt_flops(const ModelSpec& m, int64_t isl, int64_t chunk) {
  const int64_t c = chunk > 0 ? std::min(chunk, isl) : isl;
  ChunkFlops total;
  for (const auto& [k, L] : kinds_of(m).kinds)
    for (int64_t p = 0; p < isl; p += c) {
      const ChunkFlops f = chunk_flops(m, k, double(std::min(c, isl - p)), double(p));
      total.gemm += L * f.gemm;
      total.attn += L * f.attn;
    }
  return total;
}

// Compute time in us of `f` on n GPUs at the achieved prefill rates, GEMMs of `rows` rows.
double prefill_compute_us(const HardwareProfile& hw, DType d, const ChunkFlops& f, double n,
                          double rows) {
  return f.gemm / (n * hw.prefill_gemm_tflops(d, rows) * 1e6) +
         f.attn / (n * hw.prefill_attention_tflops(d) * 1e6);
}

// One pass of `batch` prompts' chunks (c tokens after p) through one layer on `n` GPUs.
double pass_layer_us(const ModelSpec& m, const CostModel& cm, LayerKind k, PrefillScheme s, int n,
                     double batch, double c, double p) {
  const HardwareProfile& hw = cm.hardware();
  const double wb = dtype_bytes(cm.options().dtype);
  const double tokens = batch * c;
  ChunkFlops flops = chunk_flops(m, k, c, p);
  flops.gemm *= batch;
  flops.attn *= batch;
  const double compute_us = prefill_compute_us(hw, cm.options().dtype, flops, n, tokens);
  double weights = double(m.layer_params(k));
  if (k == LayerKind::moe) {  // experts untouched by these tokens are not read
    const double E = m.moe.routed_experts;
    const double touched = E * (1.0 - std::pow(1.0 - m.moe.top_k / E, tokens));
    weights -= (E - touched) * 3.0 * m.hidden * m.moe.expert_ffn;
  }
  const double kv = batch * (p + c) * double(m.kv_elems_per_token());
  const double mem_us = (weights + kv) * wb / n / (hw.effective_mem_bw_gbps() * 1e3);
  const double act = tokens * m.hidden * cm.options().act_bytes;
  double comm = 2 * cm.collective_us(Collective::all_reduce, n, act, false);
  if (s == PrefillScheme::tep && k == LayerKind::moe)
    comm = cm.collective_us(Collective::all_reduce, n, act, false) +
           2 * cm.collective_us(Collective::all_to_all, n, act * m.moe.top_k / n, false);
  return std::max(compute_us, mem_us) + comm;
}

}  // namespace

double prefill_flops(const ModelSpec& m, int64_t isl, int64_t chunk) {
  return prompt_flops(m, isl, chunk).total();
}

PrefillPoint price_prefill(const ModelSpec& m, const CostModel& cm, const PrefillConfig& c,
                           int64_t isl, double workspace_bytes) {
  PrefillPoint pt;
  pt.cfg = c;
  const HardwareProfile& hw = cm.hardware();
  const double wb = dtype_bytes(cm.options().dtype);
  const double B = c.batch;
  const bool network = c.gpus() > hw.nvlink.domain_gpus;
  const auto kinds = kinds_of(m).kinds;
  if (c.scheme == PrefillScheme::cpp) {
    const int64_t chunk = c.chunk > 0 ? std::min<int64_t>(c.chunk, isl) : isl;
    double sum = 0, last = 0;
    for (int64_t p = 0; p < isl; p += chunk) {
      const double cc = double(std::min(chunk, isl - p));
      double stage = 0;  // one stage holds layers / pp of each kind
      for (const auto& [k, L] : kinds)
        stage += double(L) / c.pp * pass_layer_us(m, cm, k, c.scheme, c.tp, B, cc, double(p));
      stage += cm.collective_us(Collective::send_recv, 2,
                                B * cc * m.hidden * cm.options().act_bytes, network);
      sum += stage;
      last = stage;
    }
    pt.ftl_s = (sum + (c.pp - 1) * last) * 1e-6;
    pt.requests_per_s_per_gpu = B / (sum * 1e-6 * c.gpus());
  } else {
    double t = 0;
    for (const auto& [k, L] : kinds)
      t += L * pass_layer_us(m, cm, k, c.scheme, c.tp, B, double(isl), 0);
    if (c.pp > 1)
      t += (c.pp - 1) * cm.collective_us(Collective::send_recv, 2,
                                         B * double(isl) * m.hidden * cm.options().act_bytes,
                                         network);
    pt.ftl_s = t * 1e-6;
    // pp batches in flight, one per stage.
    pt.requests_per_s_per_gpu = B / (pt.ftl_s * c.tp);
  }
  double weights = 0;
  for (const auto& [k, L] : kinds) weights += L * double(m.layer_params(k));
  weights += 2.0 * m.vocab * m.hidden;
  const int kv_shards = std::min(c.tp, m.kv_heads);
  const double kv = B * double(isl) * double(m.kv_elems_per_token()) * m.layers / kv_shards;
  pt.mem_bytes_per_gpu = (weights / c.gpus() + kv / c.pp) * wb + workspace_bytes;
  pt.feasible = pt.mem_bytes_per_gpu <= hw.memory_bytes;
  pt.distinct_kv_gpus = kv_shards * c.pp;
  return pt;
}

std::vector<PrefillPoint> prefill_sweep(const ModelSpec& m, const CostModel& cm, int64_t isl,
                                        int max_gpus, double workspace_bytes) {
  std::vector<PrefillPoint> v;
  const int domain = cm.hardware().nvlink.domain_gpus;
  for (int tp = 1; tp <= std::min(16, max_gpus) && tp <= domain && tp <= m.q_heads; tp *= 2)
    for (int b = 1; b <= 64; b *= 2) {
      PrefillConfig c;
      c.tp = tp;
      c.batch = b;
      c.scheme = PrefillScheme::tp;
      v.push_back(price_prefill(m, cm, c, isl, workspace_bytes));
      if (m.has_moe()) {
        c.scheme = PrefillScheme::tep;
        v.push_back(price_prefill(m, cm, c, isl, workspace_bytes));
      }
      for (int pp = 2; tp * pp <= max_gpus && pp <= m.layers; pp *= 2) {
        c.pp = pp;
        c.scheme = PrefillScheme::pp;
        c.chunk = 0;
        v.push_back(price_prefill(m, cm, c, isl, workspace_bytes));
        c.scheme = PrefillScheme::cpp;
        for (int chunk : {2048, 8192})
          if (chunk < isl) {
            c.chunk = chunk;
            v.push_back(price_prefill(m, cm, c, isl, workspace_bytes));
          }
        c.chunk = 0;
      }
      c.pp = 1;
    }
  return v;
}

PoolRatio match_pools(double target, int gp, int gd, double tolerance) {
  // For each decode group count b the best prefill group count a is round(target b gd / gp);
  // among those within the tolerance keep the smallest a + b, else the closest.
  PoolRatio best, within;
  double best_err = 1e300;
  int within_sum = 1 << 30;
  for (int b = 1; b <= 64; ++b) {
    const double ideal = target * b * gd / gp;
    for (double cand : {std::floor(ideal), std::ceil(ideal)}) {
      const int a = int(std::min(64.0, std::max(1.0, cand)));
      const double r = double(a) * gp / (double(b) * gd);
      const double err = std::fabs(r / target - 1.0);
      if (err < best_err) {
        best_err = err;
        best = {a, b, r};
      }
      if (err <= tolerance && a + b < within_sum) {
        within_sum = a + b;
        within = {a, b, r};
      }
    }
  }
  return within_sum < (1 << 30) ? within : best;
}

namespace {

int decode_distinct_kv_gpus(const ModelSpec& m, const DesignConfig& c) {
  switch (c.layout) {
    case LayoutKind::tp:
      return std::min(c.n, m.kv_heads) * c.pp;
    case LayoutKind::kvp:
      return c.kvp * std::min(c.tpa, m.kv_heads) * c.pp;
    default:
      return c.n * c.pp;
  }
}

struct Curve {
  std::vector<double> user, gpu;  // falling interactivity, rising throughput
};

Curve frontier_curve(std::vector<std::pair<double, double>> pts) {
  std::sort(pts.begin(), pts.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second > b.second;
  });
  Curve c;
  double best = -1;
  for (const auto& [u, t] : pts)
    if (t > best) {
      best = t;
      c.user.push_back(u);
      c.gpu.push_back(t);
    }
  return c;
}

double gpu_at(const Curve& c, double u) {
  double best = 0;
  for (size_t i = 0; i < c.user.size() && c.user[i] >= u; ++i) best = c.gpu[i];
  return best;
}

std::vector<size_t> frontier_of(const std::vector<ServePoint>& pts,
                                const std::function<bool(const ServePoint&)>& keep) {
  std::vector<size_t> idx;
  for (size_t i = 0; i < pts.size(); ++i)
    if (keep(pts[i])) idx.push_back(i);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    if (pts[a].tokens_per_s_per_user != pts[b].tokens_per_s_per_user)
      return pts[a].tokens_per_s_per_user > pts[b].tokens_per_s_per_user;
    return pts[a].tokens_per_s_per_gpu > pts[b].tokens_per_s_per_gpu;
  });
  std::vector<size_t> f;
  double best = -1;
  for (size_t i : idx)
    if (pts[i].tokens_per_s_per_gpu > best) {
      best = pts[i].tokens_per_s_per_gpu;
      f.push_back(i);
    }
  return f;
}

}  // namespace

DisaggResult disagg_sweep(const ModelSpec& m, const HardwareProfile& hw, const DisaggOptions& o,
                          const std::function<void(const std::string&)>& progress) {
  DisaggResult r;
  CostOptions co;
  co.dtype = o.dtype;
  const CostModel cm(hw, co);
  const Workload& w = o.w;
  const double osl = double(w.osl), isl = double(w.isl);
  // Prefill: every layout and batch; the candidates are the feasible points under the FTL cutoff
  // that no other beats on both FTL and throughput.
  r.prefill = prefill_sweep(m, cm, w.isl, o.max_prefill_gpus > 0 ? o.max_prefill_gpus : o.max_gpus,
                            o.workspace_bytes);
  std::vector<size_t> cand;
  {
    std::vector<size_t> idx;
    for (size_t i = 0; i < r.prefill.size(); ++i)
      if (r.prefill[i].feasible && r.prefill[i].ftl_s <= o.ftl_max_s) idx.push_back(i);
    std::sort(idx.begin(), idx.end(),
              [&](size_t a, size_t b) { return r.prefill[a].ftl_s < r.prefill[b].ftl_s; });
    double best = -1;
    for (size_t i : idx)
      if (r.prefill[i].requests_per_s_per_gpu > best) {
        best = r.prefill[i].requests_per_s_per_gpu;
        cand.push_back(i);
      }
  }
  r.prefill_candidates = cand.size();
  if (progress)
    progress("prefill: " + std::to_string(r.prefill.size()) + " points, " +
             std::to_string(cand.size()) + " on the FTL/throughput frontier under the cutoff");
  // Decode: the design space at the mean KV length of generation.
  SweepOptions so;
  so.cost = co;
  so.seq_len = w.isl + w.osl / 2;
  so.max_gpus = o.max_gpus;
  so.workspace_bytes = o.workspace_bytes;
  so.batches_per_octave = o.decode_batches_per_octave;
  SweepResult ds = sweep(m, hw, so);
  for (auto& p : ds.points)
    if (p.feasible) r.decode.push_back(p);
  if (progress) progress("decode: " + std::to_string(r.decode.size()) + " feasible points");

  const double kv_bytes_per_request =
      isl * m.layers * double(m.kv_elems_per_token()) * dtype_bytes(o.dtype);
  std::vector<std::vector<std::pair<double, double>>> fixed(o.fixed_ratios.size());
  r.points.reserve(r.decode.size() * (cand.size() + 2));
  const ChunkFlops whole = prompt_flops(m, w.isl, 0);
  for (size_t j = 0; j < r.decode.size(); ++j) {
    const DesignPoint& d = r.decode[j];
    // Requests/s per decode GPU: the decode pool generates OSL - 1 tokens of every request (the
    // first comes out of prefill).
    const double d_req = d.tokens_per_s_per_gpu / (osl - 1);
    const int gd = d.cfg.gpus();
    const double ingress_per_req = kv_bytes_per_request / decode_distinct_kv_gpus(m, d.cfg);
    for (size_t i : cand) {
      const PrefillPoint& pf = r.prefill[i];
      const double p_req = pf.requests_per_s_per_gpu;
      const PoolRatio pr = match_pools(d_req / p_req, pf.cfg.gpus(), gd);
      ServePoint s;
      s.mode = ServeMode::disagg;
      s.prefill = int(i);
      s.decode = int(j);
      s.ratio = pr.ratio;
      const double rate = std::min(pr.ratio * p_req, d_req);  // requests/s per decode GPU
      s.tokens_per_s_per_gpu = rate * osl / (1 + pr.ratio);
      s.tokens_per_s_per_user = d.tokens_per_s_per_user;
      s.ttl_us = d.ttl_us;
      s.ftl_s = pf.ftl_s;
      s.kv_egress_gbps_per_prefill_gpu =
          rate / pr.ratio * pf.cfg.gpus() * kv_bytes_per_request / pf.distinct_kv_gpus / 1e9;
      s.kv_ingress_gbps_per_decode_gpu = rate * gd * ingress_per_req / 1e9;
      s.kv_ok = std::max(s.kv_egress_gbps_per_prefill_gpu, s.kv_ingress_gbps_per_decode_gpu) <=
                o.nic_gbps;
      s.ftl_ok = s.ftl_s <= o.ftl_max_s;
      r.points.push_back(s);
      for (size_t f = 0; f < o.fixed_ratios.size(); ++f) {
        const double fr = o.fixed_ratios[f];
        fixed[f].emplace_back(d.tokens_per_s_per_user,
                              std::min(fr * p_req, d_req) * osl / (1 + fr));
      }
    }
    // Co-located on the decode layout's GPUs: prefill runs on the same GPUs at the same achieved
    // prefill rates as a prefill pool, either as its own passes between decode steps, or
    // piggybacked in chunks on the decode steps. A step that carries chunks lasts the decode step
    // plus the chunks' compute (the chunk GEMMs and attention do not hide under the memory-bound
    // decode step), and every request in flight waits for it: the interference that
    // disaggregation removes.
    // Output tokens count OSL per request in both modes (the first from prefill), as above.
    const double G = gd;
    const double reqs_per_ttl = double(d.batch) * d.cfg.pp / (osl - 1);  // new prompts per step
    const double out_per_decode_token = osl / (osl - 1);
    const double t_pf_us = prefill_compute_us(hw, o.dtype, whole, G, isl);
    {
      ServePoint s;
      s.mode = ServeMode::colocated;
      s.decode = int(j);
      s.ttl_us = d.ttl_us + reqs_per_ttl * t_pf_us;
      s.ftl_s = t_pf_us * 1e-6;
      s.tokens_per_s_per_user = 1e6 / s.ttl_us;
      s.tokens_per_s_per_gpu = double(d.batch) * 1e6 / s.ttl_us / d.cfg.n * out_per_decode_token;
      s.ftl_ok = s.ftl_s <= o.ftl_max_s;
      r.points.push_back(s);
    }
    {
      const double chunk = std::max(256.0, std::min(isl, reqs_per_ttl * isl));
      const double t_chunked_us =
          prefill_compute_us(hw, o.dtype, prompt_flops(m, w.isl, int64_t(chunk)), G, chunk);
      ServePoint s;
      s.mode = ServeMode::colocated_piggyback;
      s.decode = int(j);
      s.ttl_us = d.ttl_us + reqs_per_ttl * t_chunked_us;
      s.ftl_s = std::max(t_chunked_us, s.ttl_us * isl / chunk) * 1e-6;
      s.tokens_per_s_per_user = 1e6 / s.ttl_us;
      s.tokens_per_s_per_gpu = double(d.batch) * 1e6 / s.ttl_us / d.cfg.n * out_per_decode_token;
      s.ftl_ok = s.ftl_s <= o.ftl_max_s;
      r.points.push_back(s);
    }
  }
  r.disagg_frontier = frontier_of(r.points, [](const ServePoint& s) {
    return s.mode == ServeMode::disagg && s.ftl_ok && s.kv_ok;
  });
  r.colocated_frontier = frontier_of(
      r.points, [](const ServePoint& s) { return s.mode != ServeMode::disagg && s.ftl_ok; });
  for (size_t i : r.disagg_frontier) r.points[i].on_frontier = true;
  for (size_t i : r.colocated_frontier) r.points[i].on_frontier = true;
  for (auto& f : fixed) {
    const Curve c = frontier_curve(std::move(f));
    std::vector<std::pair<double, double>> v;
    for (size_t k = 0; k < c.user.size(); ++k) v.emplace_back(c.user[k], c.gpu[k]);
    r.fixed_curves.push_back(v);
  }
  return r;
}

namespace {

Curve curve_of(const DisaggResult& r, const std::vector<size_t>& f) {
  Curve c;
  for (size_t i : f) {
    c.user.push_back(r.points[i].tokens_per_s_per_user);
    c.gpu.push_back(r.points[i].tokens_per_s_per_gpu);
  }
  return c;
}

double geo_gain(const Curve& a, const Curve& b) {
  if (a.user.empty() || b.user.empty()) return NAN;
  const double lo = std::max(a.user.back(), b.user.back());
  const double hi = std::min(a.user.front(), b.user.front());
  if (!(hi > lo)) return a.user.front() > b.user.front() ? INFINITY : 0.0;
  double s = 0;
  int n = 0;
  for (int i = 0; i < 100; ++i) {
    const double u = lo * std::pow(hi / lo, i / 99.0);
    const double ga = gpu_at(a, u), gb = gpu_at(b, u);
    if (ga > 0 && gb > 0) {
      s += std::log(ga / gb);
      ++n;
    }
  }
  return n ? std::exp(s / n) : NAN;
}

}  // namespace

double disagg_gain(const DisaggResult& r) {
  return geo_gain(curve_of(r, r.disagg_frontier), curve_of(r, r.colocated_frontier));
}

std::pair<double, double> ratio_ends(const DisaggResult& r) {
  if (r.disagg_frontier.empty()) return {NAN, NAN};
  return {r.points[r.disagg_frontier.back()].ratio, r.points[r.disagg_frontier.front()].ratio};
}

double ratio_at(const DisaggResult& r, double user) {
  // The frontier falls in interactivity and rises in throughput: the last point at `user` or
  // above gives the most tokens/s/GPU there.
  double ratio = NAN;
  for (size_t i : r.disagg_frontier) {
    if (r.points[i].tokens_per_s_per_user < user) break;
    ratio = r.points[i].ratio;
  }
  return ratio;
}

std::vector<BuzzRow> beyond_the_buzz_rows(const HardwareProfile& hw,
                                          const std::function<void(const std::string&)>& progress,
                                          std::vector<BuzzCurve>* curves) {
  auto run = [&](const char* model, int64_t isl, int64_t osl, int domain,
                 std::vector<double> fixed = {}) {
    HardwareProfile h = hw;
    h.nvlink.domain_gpus = domain;
    DisaggOptions o;
    o.w = {isl, osl};
    o.fixed_ratios = std::move(fixed);
    o.max_prefill_gpus = kBuzzPrefillGpus;
    if (progress)
      progress(std::string(model) + " " + std::to_string(isl) + "/" + std::to_string(osl) +
               ", NVLink domain " + std::to_string(domain));
    return disagg_sweep(load_model(model), h, o);
  };
  auto fmt = [](const char* f, double a, double b = 0, double c = 0) {
    char buf[128];
    std::snprintf(buf, sizeof buf, f, a, b, c);
    return std::string(buf);
  };
  std::vector<BuzzRow> rows;
  const int64_t K16 = 16384, K2 = 2048;
  const DisaggResult ds = run("deepseek-r1", K16, K2, 72, {3.5, 0.5});
  const DisaggResult l405 = run("llama-3.1-405b", K16, K2, 72);
  const DisaggResult l70 = run("llama-3.1-70b", K16, K2, 72);
  const DisaggResult l8 = run("llama-3.1-8b", K16, K2, 72);
  const std::vector<std::pair<const char*, const DisaggResult*>> by_model = {
      {"deepseek-r1", &ds},
      {"llama-3.1-405b", &l405},
      {"llama-3.1-70b", &l70},
      {"llama-3.1-8b", &l8}};
  if (curves)
    for (const auto& [name, r] : by_model) {
      BuzzCurve c;
      c.model = name;
      for (size_t i : r->disagg_frontier) {
        c.tokens_per_s_per_user.push_back(r->points[i].tokens_per_s_per_user);
        c.tokens_per_s_per_gpu.push_back(r->points[i].tokens_per_s_per_gpu);
        c.ratio.push_back(r->points[i].ratio);
      }
      curves->push_back(std::move(c));
    }
  const double g8 = disagg_gain(l8), g70 = disagg_gain(l70), g405 = disagg_gain(l405),
               gds = disagg_gain(ds);
  for (auto [name, g] : std::vector<std::pair<const char*, double>>{{"llama-3.1-8b", g8},
                                                                    {"llama-3.1-70b", g70},
                                                                    {"llama-3.1-405b", g405},
                                                                    {"deepseek-r1", gds}})
    rows.push_back({std::string("16k/2k: disaggregated beats co-located, ") + name +
                        " (geo-mean tokens/s/GPU ratio at equal tokens/s/user)",
                    "> 1", fmt("%.2fx", g), g > 1.0});
  rows.push_back({"16k/2k: the gain grows with model size (8B < 70B < 405B)", "8B < 70B < 405B",
                  fmt("%.2f < %.2f < %.2f", g8, g70, g405), g8 < g70 && g70 < g405});
  for (const char* model : {"llama-3.1-70b", "deepseek-r1"}) {
    const double g = disagg_gain(run(model, 1024, 32768, 72));
    rows.push_back(
        {std::string("1k/32k: co-located ties or wins, ") + model + " (disaggregated gain <= 1.1)",
         "<= ~1", fmt("%.2fx", g), g <= 1.1});
  }
  auto shape_holds = [](double lo, double hi, bool falling) {
    return falling ? lo > 1.5 * hi : std::max(lo, hi) / std::min(lo, hi) <= 2.0;
  };
  const std::vector<std::pair<const char*, bool>> ratio_paper = {{"3.6 -> 0.05", true},
                                                                 {"2.1 -> 0.2-0.3", true},
                                                                 {"0.95 -> 0.45", true},
                                                                 {"~0.4 flat", false}};
  for (size_t k = 0; k < by_model.size(); ++k) {
    const auto [lo, hi] = ratio_ends(*by_model[k].second);
    const bool falling = ratio_paper[k].second;
    rows.push_back({std::string("16k/2k: optimal prefill:decode GPU ratio, low -> high "
                                "interactivity, ") +
                        by_model[k].first + (falling ? " (falls)" : " (flat within 2x)"),
                    ratio_paper[k].first, fmt("%.2f -> %.2f", lo, hi),
                    shape_holds(lo, hi, falling)});
  }
  {
    // The same over the interactivity range every model's frontier covers: from the highest of
    // their lowest interactivities to the lowest of their highest.
    double u_lo = 0, u_hi = INFINITY;
    for (const auto& [name, r] : by_model) {
      if (r->disagg_frontier.empty()) continue;
      u_lo = std::max(u_lo, r->points[r->disagg_frontier.back()].tokens_per_s_per_user);
      u_hi = std::min(u_hi, r->points[r->disagg_frontier.front()].tokens_per_s_per_user);
    }
    for (size_t k = 0; k < by_model.size(); ++k) {
      const double lo = ratio_at(*by_model[k].second, u_lo),
                   hi = ratio_at(*by_model[k].second, u_hi);
      const bool falling = ratio_paper[k].second;
      rows.push_back({std::string("16k/2k: optimal ratio over the interactivity range all four "
                                  "frontiers share, ") +
                          by_model[k].first + (falling ? " (falls)" : " (flat within 2x)"),
                      ratio_paper[k].first,
                      fmt("%.2f -> %.2f (%.0f-", lo, hi, u_lo) + fmt("%.0f tok/s/user)", u_hi),
                      shape_holds(lo, hi, falling)});
    }
  }
  {
    // Fixed 3.5 against dynamic matching at both ends of the dynamic frontier.
    const Curve dyn = curve_of(ds, ds.disagg_frontier);
    Curve f35;
    for (const auto& [u, t] : ds.fixed_curves[0]) {
      f35.user.push_back(u);
      f35.gpu.push_back(t);
    }
    const double tight = gpu_at(f35, dyn.user.front()) / dyn.gpu.front();
    const double relaxed = gpu_at(f35, dyn.user.back()) / dyn.gpu.back();
    double worst = 0;
    for (size_t k = 0; k < f35.user.size(); ++k)
      worst = std::max(worst, f35.gpu[k] / std::max(1e-300, gpu_at(dyn, f35.user[k])));
    rows.push_back(
        {"deepseek-r1 16k/2k: fixed ratio 3.5 near optimal when relaxed, collapses at "
         "the tight end; dynamic matching on top",
         "collapses; dynamic on top",
         fmt("fixed/dynamic %.2f relaxed, %.2f tight; max %.2f", relaxed, tight, worst),
         tight < 0.5 && relaxed > 0.5 && worst <= 1.03});
  }
  {
    const DisaggResult d8 = run("deepseek-r1", K16, K2, 8);
    const double g = geo_gain(curve_of(ds, ds.disagg_frontier), curve_of(d8, d8.disagg_frontier));
    rows.push_back({"deepseek-r1 16k/2k: NVLink domain 72 beats 8 (disaggregated, geo-mean ratio)",
                    "> 1", fmt("%.2fx", g), g > 1.0});
  }
  auto kv_row = [&](const char* what, const DisaggResult& r, double plo, double phi) {
    double lo = INFINITY, hi = 0;
    for (size_t i : r.disagg_frontier) {
      const double bw = std::max(r.points[i].kv_egress_gbps_per_prefill_gpu,
                                 r.points[i].kv_ingress_gbps_per_decode_gpu);
      lo = std::min(lo, bw);
      hi = std::max(hi, bw);
    }
    const bool any = !r.disagg_frontier.empty();
    rows.push_back({std::string("deepseek-r1 ") + what +
                        ": KV transfer per GPU on the frontier, GB/s (within 2x)",
                    fmt("%.1f-%.1f", plo, phi),
                    any ? fmt("%.2f-%.2f", lo, hi) : "no prefill layout under the FTL cutoff",
                    any && lo >= plo / 2 && hi <= phi * 2});
  };
  kv_row("16k/2k", ds, 0.4, 1.2);
  kv_row("1M/2k", run("deepseek-r1", 1 << 20, K2, 72), 1.0, 1.8);
  return rows;
}

}  // namespace helix
