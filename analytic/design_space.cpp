#include "analytic/design_space.hpp"

#include "analytic/pareto.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>

#include "layouts/layout.hpp"
#include "layouts/schedule.hpp"

namespace helix {

std::vector<std::string> model_phase_names() {
  std::vector<std::string> v = phase_names();
  v.emplace_back("pp_comm");
  return v;
}

std::vector<int> batch_ladder(int max_batch, int per_octave) {
  std::vector<int> v;
  for (int i = 0;; ++i) {
    const int b = int(std::lround(std::pow(2.0, double(i) / per_octave)));
    if (b > max_batch) break;
    if (v.empty() || v.back() != b) v.push_back(b);
  }
  if (v.empty() || v.back() != max_batch) v.push_back(max_batch);
  return v;
}

std::vector<int> pool_sizes(int max_gpus) {
  std::vector<int> v;
  for (int p = 1; p <= max_gpus; p *= 2) {
    v.push_back(p);
    if (3 * p <= max_gpus && p >= 1) v.push_back(3 * p);
  }
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

namespace {

// The executors' layout for one layer kind of a configuration.
LayoutParams layer_layout(const ModelSpec& m, const DesignConfig& c, LayerKind kind, int kv_block) {
  LayoutParams p;
  p.n = c.n;
  p.kv_block = kv_block;
  const bool moe = kind == LayerKind::moe;
  switch (c.layout) {
    case LayoutKind::tp:
      p.kind = LayoutKind::tp;
      p.kvp = 1;
      p.tpa = c.n;
      break;
    case LayoutKind::kvp:
      p.kind = LayoutKind::kvp;
      p.kvp = c.kvp;
      p.tpa = c.tpa;
      break;
    case LayoutKind::helix:
    case LayoutKind::helix_hopb:
      p.kind = c.layout;
      p.kvp = c.kvp;
      p.tpa = c.tpa;
      p.hopb_chunks = c.layout == LayoutKind::helix_hopb ? c.hopb_chunks : 1;
      p.hopb_comm_sms = c.layout == LayoutKind::helix_hopb ? kDefaultHopbCommSms : 0;
      break;
    case LayoutKind::ep:  // the FFN layout: every rank in the FFN group
      p.kind = LayoutKind::helix;
      p.kvp = c.n;
      p.tpa = 1;
      break;
  }
  (void)m;
  p.tpf = moe ? c.tpf : p.ffn_ranks();
  p.ep = moe ? c.ep : 1;
  return p;
}

std::vector<LayerKind> layer_kinds(const ModelSpec& m) {
  std::vector<LayerKind> v;
  if (m.dense_layers() > 0) v.push_back(LayerKind::dense);
  if (m.moe_layers() > 0) v.push_back(LayerKind::moe);
  return v;
}

// Vanilla KVP in Medha's form with a TP width above the KV heads: the attention of each KVP rank
// is that of a TP group (query heads split TPA ways, KV heads duplicated as in tp), over the KVP
// rank's share of the tokens. The executors' kvp layout stops at TPA = K; the model prices this
// variant from the same schedule code (build_schedule for a kvp layout) with a tp rank shard.
bool medha_tp(const ModelSpec& m, const DesignConfig& c) {
  return c.layout == LayoutKind::kvp && c.tpa > m.kv_heads;
}

RankShard medha_shard(const ModelSpec& m, LayerKind kind, const LayoutParams& lp, int rank) {
  LayoutParams tp = lp;
  tp.kind = LayoutKind::tp;
  tp.n = lp.tpa;
  tp.kvp = 1;
  const int k = rank / lp.tpa, t = rank % lp.tpa;
  RankShard p = rank_shard(m, kind, tp, t);
  p.rank = rank;
  p.layout = lp;
  p.kvp_index = k;
  p.tpa_index = t;
  p.placement = {lp.kvp, lp.kv_block};
  if (k != 0) {  // only the TPA group of KVP rank 0 projects and runs the FFN
    p.o_heads = {p.q_heads.begin, p.q_heads.begin};
    p.in_ffn = false;
  }
  return p;
}

// The distinct rank shards of one layer layout (ranks with equal shares price identically).
struct LayerClasses {
  LayerKind kind = LayerKind::dense;
  int layers = 0;
  std::vector<RankShard> shards;
  std::vector<std::array<bool, kNumGroups>> crosses;
  double weight_elems_max = 0;  // held, one layer
  double kv_elems_max = 0;      // held, one request, one layer
  // ep layout: the data-parallel attention shard (one rank, whole model's attention).
  bool dp_attention = false;
  RankShard attn_shard;
};

LayerClasses make_classes(const ModelSpec& m, const DesignConfig& c, LayerKind kind,
                          const SweepOptions& o, int domain_gpus) {
  LayerClasses lc;
  lc.kind = kind;
  lc.layers = kind == LayerKind::dense ? m.dense_layers() : m.moe_layers();
  const LayoutParams lp = layer_layout(m, c, kind, o.kv_block);
  std::set<std::vector<int64_t>> seen;
  for (int r = 0; r < c.n; ++r) {
    RankShard p = medha_tp(m, c) ? medha_shard(m, kind, lp, r) : rank_shard(m, kind, lp, r);
    const auto cr = groups_leaving_domain(lp, r, domain_gpus);
    std::vector<int64_t> sig = {p.q_heads.size(),           p.kv_heads.size(),
                                p.o_heads.size(),           p.local_tokens(o.seq_len + 1),
                                p.owns_position(o.seq_len), p.in_ffn,
                                p.kvp_index == 0,           p.dense_cols.size(),
                                p.experts.size(),           p.expert_cols.size(),
                                p.shared_cols.size()};
    for (bool b : cr) sig.push_back(b);
    if (!seen.insert(sig).second) continue;
    lc.weight_elems_max = std::max(lc.weight_elems_max, held_weight_elems(m, p));
    lc.kv_elems_max = std::max(lc.kv_elems_max, held_kv_elems(m, p, o.seq_len));
    lc.shards.push_back(p);
    lc.crosses.push_back(cr);
  }
  if (c.layout == LayoutKind::ep) {
    lc.dp_attention = true;
    LayoutParams a;
    a.kind = LayoutKind::helix;
    a.n = a.kvp = a.tpa = a.tpf = a.ep = 1;
    a.kv_block = o.kv_block;
    lc.attn_shard = rank_shard(m, kind, a, 0);
    // Each GPU holds the whole attention and its share of the FFN.
    double attn_w = 0;
    for (const Step& s : build_schedule(m, lc.attn_shard, 1, 0).steps)
      if (reads_attention_weights(s.op)) attn_w += s.work.weight_elems;
    double ffn_w = 0;
    for (const RankShard& p : lc.shards) {
      double w = held_weight_elems(m, p);
      for (const Step& s : build_schedule(m, p, 1, 0).steps)
        if (reads_attention_weights(s.op)) w -= s.work.weight_elems;
      ffn_w = std::max(ffn_w, w);
    }
    lc.weight_elems_max = attn_w + ffn_w;
    lc.kv_elems_max = held_kv_elems(m, lc.attn_shard, o.seq_len);
  }
  return lc;
}

struct LayerTime {
  double us = 0;
  std::array<double, kNumPhases> phase_us{};
};

LayerTime price_layer(const ModelSpec& m, const CostModel& cm, const LayerClasses& lc,
                      const DesignConfig& c, int batch, int64_t seq) {
  LayerTime best;
  best.us = -1;
  for (size_t i = 0; i < lc.shards.size(); ++i) {
    RankShard p = lc.shards[i];
    if (p.layout.kind == LayoutKind::helix_hopb) p.layout.hopb_chunks = c.hopb_chunks_run(batch);
    std::vector<Step> steps;
    if (lc.dp_attention) {
      const int local = (batch + c.n - 1) / c.n;
      for (const Step& s : build_schedule(m, lc.attn_shard, local, seq).steps)
        if (s.phase != Phase::ffn && s.phase != Phase::ffn_comm) steps.push_back(s);
      // Every GPU needs the whole batch's tokens for its experts.
      Step g{Op::ffn_allgather, Phase::ffn_comm, Group::world, -1, {0, batch}, Work{}};
      g.work.coll = Collective::all_gather;
      g.work.group_size = c.n;
      g.work.comm_elems = double(batch) * m.hidden;
      steps.push_back(g);
      for (const Step& s : build_schedule(m, p, batch, seq).steps)
        if (s.phase == Phase::ffn || s.phase == Phase::ffn_comm) steps.push_back(s);
    } else {
      steps = build_schedule(m, p, batch, seq).steps;
    }
    const ScheduleTime t = price_schedule(cm, steps, lc.crosses[i]);
    if (t.total_us > best.us) {
      best.us = t.total_us;
      best.phase_us = t.phase_us;
    }
  }
  return best;
}

DesignPoint combine(const ModelSpec& m, const CostModel& cm, const DesignConfig& c, int batch,
                    const std::vector<LayerClasses>& classes, const std::vector<LayerTime>& times,
                    const SweepOptions& o) {
  DesignPoint pt;
  pt.cfg = c;
  pt.batch = batch;
  const double wb = dtype_bytes(o.cost.dtype);
  double ttl = 0, weights = 0, kv = 0;
  const double stage_share = std::ceil(double(m.layers) / c.pp) / m.layers;
  for (size_t i = 0; i < classes.size(); ++i) {
    const double L = classes[i].layers;
    ttl += L * times[i].us;
    for (int p = 0; p < kNumPhases; ++p) pt.phase_us[size_t(p)] += L * times[i].phase_us[size_t(p)];
    weights += L * classes[i].weight_elems_max * stage_share;
    const double reqs = classes[i].dp_attention ? std::ceil(double(batch) / c.n) : batch;
    kv += L * reqs * classes[i].kv_elems_max;  // pp micro-batches x (layers / pp)
  }
  // Embedding and output head, sharded over the stage's GPUs (both on one stage when pp = 1).
  weights += (c.pp == 1 ? 2.0 : 1.0) * double(m.vocab) * m.hidden / c.n;
  if (c.pp > 1) {
    const bool network = c.gpus() > cm.hardware().nvlink.domain_gpus;
    const double send = cm.collective_us(
        Collective::send_recv, 2, double(batch) * m.hidden * cm.options().act_bytes, network);
    pt.phase_us[kNumPhases] = c.pp * send;
    ttl += c.pp * send;
  }
  pt.ttl_us = ttl;
  pt.tokens_per_s_per_user = 1e6 / ttl;
  // pp micro-batches of `batch` requests are in flight, one per stage: pp x batch tokens per TTL
  // over n x pp GPUs.
  pt.tokens_per_s_per_gpu = double(batch) * 1e6 / ttl / c.n;
  pt.mem_bytes_per_gpu = (weights + kv) * wb + o.workspace_bytes;
  pt.feasible = pt.mem_bytes_per_gpu <= cm.hardware().memory_bytes;
  return pt;
}

std::vector<int> divisors(int n) {
  std::vector<int> v;
  for (int d = 1; d <= n; ++d)
    if (n % d == 0) v.push_back(d);
  return v;
}

// FFN splits (tpf, ep) of `ranks` GPUs for the model's MoE layers ((ranks, 1) for dense models).
std::vector<std::pair<int, int>> ffn_splits(const ModelSpec& m, int ranks) {
  std::vector<std::pair<int, int>> v;
  if (!m.has_moe()) return {{ranks, 1}};
  for (int ep : divisors(ranks))
    if (m.moe.routed_experts % ep == 0 && ranks / ep <= m.moe.expert_ffn)
      v.emplace_back(ranks / ep, ep);
  return v;
}

std::vector<DesignConfig> configs_for(const ModelSpec& m, int n, LayoutKind s,
                                      const SweepOptions& o) {
  std::vector<DesignConfig> v;
  DesignConfig c;
  c.layout = s;
  c.n = n;
  auto add = [&](const DesignConfig& x) {
    if (validate_config(m, x).empty()) v.push_back(x);
  };
  switch (s) {
    case LayoutKind::tp:
      for (auto [tpf, ep] : ffn_splits(m, n)) {
        c.tpf = tpf;
        c.ep = ep;
        c.tpa = n;
        add(c);
      }
      break;
    case LayoutKind::ep:
      if (!m.has_moe()) break;
      for (auto [tpf, ep] : ffn_splits(m, n)) {
        c.tpf = tpf;
        c.ep = ep;
        add(c);
      }
      break;
    case LayoutKind::kvp:
      for (int tpa : divisors(n)) {
        c.tpa = tpa;
        c.kvp = n / tpa;
        for (auto [tpf, ep] : ffn_splits(m, tpa)) {
          c.tpf = tpf;
          c.ep = ep;
          add(c);
        }
      }
      break;
    case LayoutKind::helix:
    case LayoutKind::helix_hopb:
      for (int tpa : divisors(n)) {
        if (tpa > m.kv_heads) continue;
        c.tpa = tpa;
        c.kvp = n / tpa;
        for (auto [tpf, ep] : ffn_splits(m, n)) {
          c.tpf = tpf;
          c.ep = ep;
          if (s == LayoutKind::helix) {
            c.hopb_chunks = 1;
            add(c);
          } else {
            for (int ch : o.hopb_chunk_options) {
              c.hopb_chunks = ch;
              add(c);
            }
          }
        }
      }
      break;
  }
  return v;
}

}  // namespace

std::string validate_config(const ModelSpec& m, const DesignConfig& c) {
  if (c.n < 1 || c.pp < 1) return "gpus: n and pp must be at least 1";
  if (c.pp > m.layers) return "pp: more pipeline stages than layers";
  if (c.layout == LayoutKind::ep && !m.has_moe()) return "ep: needs a MoE model";
  for (LayerKind k : layer_kinds(m)) {
    LayoutParams p = layer_layout(m, c, k, 16);
    if (medha_tp(m, c)) {  // checked as the tp layout of its TPA group
      if (c.kvp * c.tpa != c.n) return "kvp: KVP x TPA must equal n";
      p.kind = LayoutKind::tp;
      p.n = c.tpa;
      p.kvp = 1;
    }
    const std::string e = validate_layout(p, m, k, std::max(1, p.hopb_chunks));
    if (!e.empty()) return e;
  }
  return {};
}

DesignPoint price_point(const ModelSpec& m, const CostModel& cm, const DesignConfig& c, int batch,
                        const SweepOptions& o) {
  std::vector<LayerClasses> classes;
  std::vector<LayerTime> times;
  for (LayerKind k : layer_kinds(m)) {
    DesignConfig c1 = c;
    c1.pp = 1;
    classes.push_back(make_classes(m, c1, k, o, cm.hardware().nvlink.domain_gpus));
    times.push_back(price_layer(m, cm, classes.back(), c, batch, o.seq_len));
  }
  return combine(m, cm, c, batch, classes, times, o);
}

SweepResult sweep(const ModelSpec& m, const HardwareProfile& hw, const SweepOptions& o,
                  const std::function<void(size_t, size_t)>& progress) {
  const CostModel cm(hw, o.cost);
  SweepResult res;
  const std::vector<int> batches = batch_ladder(o.max_batch, o.batches_per_octave);
  std::vector<DesignConfig> cfgs;
  for (int n : pool_sizes(o.max_gpus))
    for (LayoutKind s : o.layouts)
      for (const DesignConfig& c : configs_for(m, n, s, o)) cfgs.push_back(c);
  res.configs = cfgs.size();
  size_t done = 0;
  for (const DesignConfig& c : cfgs) {
    std::vector<int> pps;
    for (int pp = 1; c.n * pp <= o.max_gpus && pp <= m.layers; pp *= 2)
      if (c.n * pp >= o.min_gpus) pps.push_back(pp);
    if (!pps.empty()) {
      std::vector<LayerClasses> classes;
      for (LayerKind k : layer_kinds(m))
        classes.push_back(make_classes(m, c, k, o, hw.nvlink.domain_gpus));
      std::vector<LayerTime> times(classes.size());
      for (int b : batches) {
        for (size_t i = 0; i < classes.size(); ++i)
          times[i] = price_layer(m, cm, classes[i], c, b, o.seq_len);
        for (int pp : pps) {
          DesignConfig cp = c;
          cp.pp = pp;
          res.points.push_back(combine(m, cm, cp, b, classes, times, o));
        }
      }
    }
    ++done;
    if (progress && (done % 64 == 0 || done == cfgs.size())) progress(done, cfgs.size());
  }
  mark_frontier(res.points);
  return res;
}

std::vector<size_t> pareto_frontier(const std::vector<DesignPoint>& pts,
                                    const std::function<bool(const DesignPoint&)>& keep) {
  return pareto_indices(pts,
                        [&](const DesignPoint& p) { return p.feasible && (!keep || keep(p)); });
}

void mark_frontier(std::vector<DesignPoint>& pts) {
  for (auto& p : pts) p.on_frontier = false;
  for (size_t i : pareto_frontier(pts, {})) pts[i].on_frontier = true;
}

namespace {

FrontierCurve curve(const std::vector<DesignPoint>& pts,
                    const std::function<bool(const DesignPoint&)>& keep) {
  return curve_of(pts, pareto_frontier(pts, keep));
}

}  // namespace

double max_interactivity_ratio(const std::vector<DesignPoint>& pts,
                               const std::function<bool(const DesignPoint&)>& a,
                               const std::function<bool(const DesignPoint&)>& b) {
  const FrontierCurve ca = curve(pts, a), cb = curve(pts, b);
  if (ca.user.empty() || cb.user.empty()) return NAN;
  return ca.user.front() / cb.user.front();
}

double throughput_ratio_at_equal_ttl(const std::vector<DesignPoint>& pts,
                                     const std::function<bool(const DesignPoint&)>& a,
                                     const std::function<bool(const DesignPoint&)>& b) {
  const FrontierCurve ca = curve(pts, a), cb = curve(pts, b);
  if (ca.user.empty() || cb.user.empty()) return NAN;
  double best = 0;
  for (double u : log_grid(cb.user.back(), cb.user.front(), 400)) {
    const double ga = ca.gpu_at(u), gb = cb.gpu_at(u);
    if (ga > 0 && gb > 0) best = std::max(best, ga / gb);
  }
  return best;
}

double interactivity_loss_at_equal_throughput(const std::vector<DesignPoint>& pts,
                                              const std::function<bool(const DesignPoint&)>& a,
                                              const std::function<bool(const DesignPoint&)>& b) {
  const FrontierCurve ca = curve(pts, a), cb = curve(pts, b);
  if (ca.gpu.empty() || cb.gpu.empty()) return NAN;
  const double lo = std::max(ca.gpu.front(), cb.gpu.front());
  const double hi = std::min(ca.gpu.back(), cb.gpu.back());
  double worst = 0;
  for (double t : log_grid(lo, hi, 400)) {
    const double ua = ca.user_at(t), ub = cb.user_at(t);
    if (ua > 0 && ub > 0) worst = std::max(worst, 1.0 - ub / ua);
  }
  return worst;
}

}  // namespace helix
