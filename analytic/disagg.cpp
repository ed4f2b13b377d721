#include "analytic/disagg.hpp"

#include "analytic/pareto.hpp"

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
  r.disagg_frontier = pareto_indices(r.points, [](const ServePoint& s) {
    return s.mode == ServeMode::disagg && s.ftl_ok && s.kv_ok;
  });
  r.colocated_frontier = pareto_indices(
      r.points, [](const ServePoint& s) { return s.mode != ServeMode::disagg && s.ftl_ok; });
  for (size_t i : r.disagg_frontier) r.points[i].on_frontier = true;
  for (size_t i : r.colocated_frontier) r.points[i].on_frontier = true;
  for (auto& f : fixed) {
    const FrontierCurve c = frontier_curve(std::move(f));
    std::vector<std::pair<double, double>> v;
    for (size_t k = 0; k < c.user.size(); ++k) v.emplace_back(c.user[k], c.gpu[k]);
    r.fixed_curves.push_back(v);
  }
  return r;
}

double disagg_gain(const DisaggResult& r) {
  return geo_gain(curve_of(r.points, r.disagg_frontier), curve_of(r.points, r.colocated_frontier));
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

}  // namespace helix
