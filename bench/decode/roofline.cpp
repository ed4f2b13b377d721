#include "bench/decode/roofline.hpp"

#include <algorithm>
#include <vector>

#include "bench/decode/record.hpp"

namespace helix {

MoeActivity moe_activity(const RankShard& shard, const int32_t* experts, int64_t n) {
  MoeActivity a;
  const Range held = shard.experts;
  std::vector<bool> hit(size_t(std::max<int64_t>(0, held.size())), false);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t e = experts[i];
    if (e < held.begin || e >= held.end) continue;
    ++a.assignments;
    if (!hit[size_t(e - held.begin)]) {
      hit[size_t(e - held.begin)] = true;
      ++a.touched;
    }
  }
  return a;
}

PhaseWork phase_work(const ModelSpec& m, const RankShard& shard, const Schedule& sched,
                     const ElemBytes& e, const MoeActivity* moe) {
  PhaseWork w;
  for (const Step& s : sched.steps) {
    // Collectives, and the pack of the partials exchange: its time counts as communication
    // (attn_comm), which has no roofline.
    if (s.work.coll || phase_is_comm(s.phase)) continue;
    Work k = s.work;
    if (s.op == Op::ffn_compute && shard.layer == LayerKind::moe && moe)
      k = moe_ffn_work(m, shard, sched.batch, double(moe->touched), double(moe->assignments));
    const size_t p = size_t(s.phase);
    w.bytes[p] += k.weight_elems * e.weight + k.kv_elems * e.kv + k.act_elems * e.act;
    w.flops[p] += k.flops;
  }
  return w;
}

double roofline_us(double bytes, double flops, const Ceilings& c) {
  if (!(c.stream_gbps > 0) && !(c.gemm_tflops > 0)) return NAN;
  double us = 0;
  if (c.stream_gbps > 0) us = std::max(us, bytes / (c.stream_gbps * 1e3));
  if (c.gemm_tflops > 0) us = std::max(us, flops / (c.gemm_tflops * 1e6));
  return us;
}

RankRoofline rank_roofline(const RunRecord& r, int rank, const Ceilings& c) {
  RankRoofline out;
  double worst_excess = 0;
  for (int p = 0; p < kNumPhases; ++p) {
    PhaseRoofline& ph = out.phase[size_t(p)];
    ph.measured_us = r.rank_phase_median(rank, p);
    if (phase_is_comm(static_cast<Phase>(p))) continue;
    const size_t i = size_t(rank * kNumPhases + p);
    ph.bytes = r.work_bytes[i];
    ph.flops = r.work_flops[i];
    ph.roofline_us = roofline_us(ph.bytes, ph.flops, c);
    const double mem_us = c.stream_gbps > 0 ? ph.bytes / (c.stream_gbps * 1e3) : 0.0;
    const double flop_us = c.gemm_tflops > 0 ? ph.flops / (c.gemm_tflops * 1e6) : 0.0;
    ph.compute_bound = flop_us > 0 && flop_us >= mem_us;
    if (ph.measured_us > 0) ph.fraction = ph.roofline_us / ph.measured_us;
    out.step_roofline_us += ph.roofline_us;
    const double excess = ph.measured_us - ph.roofline_us;
    if (excess > worst_excess) {
      worst_excess = excess;
      out.limiter = p;
    }
  }
  out.step_measured_us = r.rank_compute_median(rank);
  if (out.step_measured_us > 0) out.step_fraction = out.step_roofline_us / out.step_measured_us;
  return out;
}

}  // namespace helix
