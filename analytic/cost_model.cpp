#include "analytic/cost_model.hpp"

#include <algorithm>
#include <cmath>

namespace helix {

CostModel::CostModel(const HardwareProfile& hw, const CostOptions& opt) : hw_(hw), opt_(opt) {
  mem_bw_bytes_per_us_ = hw_.effective_mem_bw_gbps() * 1e3;
  flops_per_us_ = hw_.flops_tflops_for(opt_.dtype) * 1e6;
}

CostModel collective_pricing(const HardwareProfile& hw) {
  CostOptions o;
  o.dtype = hw.flops_tflops.count(DType::bf16) || hw.flops_tflops.empty()
                ? DType::bf16
                : hw.flops_tflops.begin()->first;
  return CostModel(hw, o);
}

double CostModel::compute_us(const Step& s) const {
  const Work& w = s.work;
  const double wb = dtype_bytes(opt_.dtype);
  if (s.op == Op::attention && w.kv_elems > 0 && !hw_.decode_attention.empty()) {
    const double t =
        hw_.decode_attention_us(w.attn_mla, w.attn_q_per_kv, w.attn_kv_heads,
                                int(std::max<int64_t>(1, s.batch.size())), w.kv_elems * wb);
    if (t >= 0) return t;  // measured launches: their fixed cost included
  }
  const double bytes = (w.weight_elems + w.kv_elems) * wb + w.act_elems * opt_.act_bytes;
  double eff = 1.0;
  if (is_weight_gemm(s.op))
    eff = hw_.gemm_efficiency_at(double(std::max<int64_t>(1, s.batch.size())));
  // HOP-B's chunked attention leaves reserved_sms SMs to the exchanges: its arithmetic runs on the
  // others (the memory system is the same; fewer SMs still saturate it).
  if (s.reserved_sms > 0 && hw_.sm_count > s.reserved_sms)
    eff *= double(hw_.sm_count - s.reserved_sms) / double(hw_.sm_count);
  return launch_us(w) + std::max(bytes / mem_bw_bytes_per_us_, w.flops / (flops_per_us_ * eff));
}

double CostModel::launch_us(const Work& w) const {
  return w.gemm_launches * hw_.gemm_launch_us + w.kernel_launches * hw_.kernel_launch_us;
}

const CollectiveMeasurement* CostModel::measured(Collective c, int group_size, bool network) const {
  const CollectiveMeasurement* best = nullptr;
  double best_d = 1e300;
  for (const auto& m : hw_.collectives) {
    if (m.collective != c) continue;
    if ((m.group_size > hw_.nvlink.domain_gpus) != network) continue;
    const double d = std::fabs(std::log(double(m.group_size)) - std::log(double(group_size)));
    if (d < best_d) {
      best_d = d;
      best = &m;
    }
  }
  return best;
}

double CostModel::collective_us(Collective c, int n, double bytes, bool network) const {
  if (n <= 1 || bytes <= 0) return 0.0;
  if (const CollectiveMeasurement* m = measured(priced_as(c), n, network)) {
    if (!m->points.empty()) {
      // The measured curve of the nearest group size, at the bytes each rank moves here.
      const double same_traffic =
          bytes * busbw_factor(c, n) / busbw_factor(m->collective, m->group_size);
      return m->time_us(m->collective, same_traffic);
    }
    return m->latency_us + bytes * busbw_factor(c, n) / (m->busbw_gbps * 1e3);
  }
  const double latency = network ? hw_.network.latency_us : hw_.nvlink.latency_us;
  const double bw = network ? hw_.network.bw_gbps : hw_.nvlink.bw_gbps;
  return latency + bytes * busbw_factor(c, n) / (bw * 1e3);  // GB/s = 1e3 bytes/us
}

double CostModel::step_us(const Step& s, bool network) const {
  const Work& w = s.work;
  if (!w.coll) return compute_us(s);
  if (s.op == Op::a2a_wait) return 0.0;  // the join of the exchanges: priced by the pipeline
  const double elem = opt_.comm_bytes > 0 ? opt_.comm_bytes : opt_.act_bytes;
  return collective_us(*w.coll, w.group_size, w.comm_elems * elem, network);
}

ScheduleTime schedule_time(const std::vector<Step>& steps, const std::vector<double>& step_us) {
  ScheduleTime t;
  double now = 0, comm_free = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    const double d = step_us[i];
    t.phase_us[size_t(s.phase)] += d;
    if (s.op == Op::a2a_start) {
      // On the communication stream: it starts when its chunk is packed (now) and the previous
      // chunk's exchange is done, while the compute stream goes on.
      comm_free = std::max(now, comm_free) + d;
    } else if (s.op == Op::a2a_wait) {
      now = std::max(now, comm_free) + d;
    } else {
      now += d;
    }
  }
  t.total_us = std::max(now, comm_free);
  return t;
}

std::array<bool, kNumGroups> groups_leaving_domain(const LayoutParams& layout, int rank,
                                                   int domain_gpus) {
  std::array<bool, kNumGroups> out{};
  for (int g = 0; g < kNumGroups; ++g) {
    const auto members = group_members(layout, static_cast<Group>(g), rank);
    if (members.size() < 2) continue;
    const auto mm = std::minmax_element(members.begin(), members.end());
    out[size_t(g)] = *mm.first / domain_gpus != *mm.second / domain_gpus;
  }
  return out;
}

ScheduleTime price_schedule(const CostModel& cm, const std::vector<Step>& steps,
                            const std::array<bool, kNumGroups>& crosses) {
  std::vector<double> d(steps.size());
  for (size_t i = 0; i < steps.size(); ++i)
    d[i] = cm.step_us(steps[i], crosses[size_t(steps[i].group)]);
  return schedule_time(steps, d);
}

StepAccount price_layout(const CostModel& cm, const ModelSpec& m, LayerKind layer,
                         const LayoutParams& p, int batch, int64_t seq_len,
                         const std::vector<ExpertLoad>& loads) {
  std::vector<RankSteps> ranks;
  for (int r = 0; r < p.n; ++r) {
    const RankShard shard = rank_shard(m, layer, p, r);
    RankSteps rs;
    rs.rank = r;
    rs.steps = build_schedule(m, shard, batch, seq_len).steps;
    if (size_t(r) < loads.size())
      for (Step& s : rs.steps)
        if (s.op == Op::ffn_compute) s.work = ffn_compute_work(m, shard, batch, &loads[size_t(r)]);
    const auto crosses = groups_leaving_domain(p, r, cm.hardware().nvlink.domain_gpus);
    for (const Step& s : rs.steps) rs.step_us.push_back(cm.step_us(s, crosses[size_t(s.group)]));
    ranks.push_back(std::move(rs));
  }
  return simulate_timeline(p, ranks);
}

double held_weight_elems(const ModelSpec& m, const RankShard& r) {
  const double H = m.hidden;
  double w = 0;
  // Attention projections: exactly what the schedule's steps read (they read every held weight),
  // in a schedule without HOP-B chunks.
  RankShard one = r;
  one.layout.hopb_chunks = 1;
  for (const Step& s : build_schedule(m, one, 1, 0).steps)
    if (reads_attention_weights(s.op)) w += s.work.weight_elems;
  if (r.in_ffn) {
    if (r.layer == LayerKind::dense) {
      w += 3 * H * double(r.dense_cols.size()) + H;
    } else {
      w += H * m.moe.routed_experts + 3 * H * double(r.shared_cols.size()) +
           double(r.experts.size()) * 3 * H * double(r.expert_cols.size()) + H;
    }
  }
  return w;
}

double held_kv_elems(const ModelSpec& m, const RankShard& r, int64_t seq_len) {
  return double(r.local_tokens(seq_len)) * double(r.kv_heads.size()) *
         double(m.kv_elems_per_token_per_head());
}

}  // namespace helix
