// `helix-bench model --validate`: the cost model against a decode trace (model_validate.hpp).
#include "bench/commands/model_validate.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include "analytic/cost_model.hpp"
#include "analytic/design_space.hpp"
#include "analytic/hardware.hpp"
#include "analytic/reproductions.hpp"
#include "bench/commands/cli_util.hpp"
#include "bench/trace/h5.hpp"
#include "bench/trace/metadata.hpp"
#include "bench/trace/output_path.hpp"
#include "bench/trace/trace_input.hpp"
#include "comm/error.hpp"
#include "exec/layer_data.hpp"
#include "layouts/layout.hpp"
#include "layouts/model_spec.hpp"
#include "layouts/schedule.hpp"

namespace helix {

int run_validate(const ModelOptions& o, const HardwareProfile& hw, const RunEnvironment& env) {
  const std::vector<TraceRun> runs = read_decode_trace(o.validate, "--validate");
  std::vector<std::string> run_col, layout_col, phase_col;
  std::vector<int64_t> n_col, b_col, s_col, prank_col, mrank_col, kvp_col, tpa_col, tpf_col, ep_col,
      hopb_col;
  std::vector<std::string> model_col;
  std::vector<double> pred_col, meas_col, err_col;
  std::printf("%-9s %-10s %3s %5s %8s %-10s %12s %12s %8s\n", "run", "layout", "N", "B", "S",
              "phase", "predicted", "measured", "error");
  for (const TraceRun& run : runs) {
    if (run.status != "ok") continue;
    const std::string& name = run.name;
    const std::string path = "--validate: '" + o.validate + "': /decode/" + name;
    ModelSpec m;
    try {
      m = load_model(run.model);
    } catch (const std::invalid_argument& e) {
      throw UsageError(path + ": " + e.what());
    }
    const LayerKind layer = run.layer_kind == "moe" ? LayerKind::moe : LayerKind::dense;
    const std::optional<LayoutParams> layout = layout_of(run);
    if (!layout) throw UsageError(path + " has an unknown layout '" + run.layout + "'");
    const LayoutParams& p = *layout;
    const int batch = int(run.batch);
    const int64_t seq = run.seq_len;
    const std::string err = validate_layout(p, m, layer, batch);
    if (!err.empty()) throw UsageError(path + ": " + err);
    const auto dtype = parse_dtype(run.dtype);
    if (!dtype || !is_float(*dtype))
      throw UsageError(path + ": attribute 'dtype' must be fp32, bf16, fp8 or fp4");
    CostOptions co;
    co.dtype = *dtype;
    co.act_bytes = dtype_bytes(co.dtype);
    if (hw.flops_tflops.find(co.dtype) == hw.flops_tflops.end())
      throw UsageError("--hardware: " + hw.name + " gives no " + run.dtype + " FLOP rate, which " +
                       name + " of the trace ran in (flops_tflops." + run.dtype + ")");
    // The exchange at the precision the executors sent (fp32 in every trace so far).
    const auto comm_dtype = parse_dtype(run.comm_dtype);
    if (!comm_dtype || !is_float(*comm_dtype))
      throw UsageError(path + ": attribute 'comm_dtype' must be fp32, bf16, fp8 or fp4");
    co.comm_bytes = dtype_bytes(*comm_dtype);
    const CostModel cm(hw, co);
    // Measured: per iteration the critical rank's phases (rows of the per-rank arrays).
    const std::vector<double>& ph = run.phase_us;
    const size_t iters = size_t(run.iters), rows = size_t(run.ranks);
    if (rows > size_t(p.n))
      throw UsageError(path + ": phase_us has " + std::to_string(rows) + " rows for " +
                       std::to_string(p.n) + " ranks");
    std::vector<int> row_rank(rows);
    for (size_t k = 0; k < rows; ++k) row_rank[k] = int(k);
    if (!run.rank_of_row.empty()) {
      for (size_t k = 0; k < rows; ++k) row_rank[k] = int(run.rank_of_row[k]);
    } else if (rows == 1 && run.emulated_ranks > 0) {
      if (run.emulated_rank < 0 || run.emulated_rank >= p.n)
        throw UsageError(path + ": attribute 'emulated_rank' is not one of the run's ranks");
      row_rank[0] = int(run.emulated_rank);
    }
    // The critical rank of each iteration as the trace accounted it, else the longest step.
    std::vector<size_t> crit(iters, 0);
    if (!run.critical_rank.empty()) {
      for (size_t i = 0; i < iters; ++i)
        crit[i] = size_t(std::find(row_rank.begin(), row_rank.end(), int(run.critical_rank[i])) -
                         row_rank.begin()) %
                  rows;
    } else if (!run.rank_step_us.empty()) {
      const auto& rs = run.rank_step_us;
      for (size_t i = 0; i < iters; ++i)
        for (size_t k = 1; k < rows; ++k)
          if (rs[i * rows + k] > rs[i * rows + crit[i]]) crit[i] = k;
    }
    // Routed experts per rank: as the run recorded them, else the router's choice on the inputs.
    std::vector<ExpertLoad> loads;
    std::string routing = "none (dense layer)";
    if (layer == LayerKind::moe) {
      if (!run.routed_rows.empty() && rows == size_t(p.n)) {
        const auto& r = run.routed_rows;
        const auto& e = run.routed_experts;
        loads.assign(size_t(p.n), ExpertLoad{});
        for (size_t k = 0; k < rows; ++k)
          loads[size_t(row_rank[k])] = {std::max(0.0, r[k]), std::max(0.0, e[k])};
        routing = "recorded by the run";
      } else {
        const auto experts = route_decode_input(m, batch, uint64_t(run.seed));
        for (int r = 0; r < p.n; ++r) {
          const RankShard sh = rank_shard(m, layer, p, r);
          ExpertLoad l;
          std::vector<char> used(size_t(sh.experts.size()), 0);
          for (int32_t e : experts)
            if (sh.in_ffn && sh.experts.contains(e)) {
              ++l.rows;
              used[size_t(e - sh.experts.begin)] = 1;
            }
          l.experts = double(std::count(used.begin(), used.end(), 1));
          loads.push_back(l);
        }
        routing = "the router on the layer input";
      }
    }
    // Predicted: every rank priced, on one timeline; the critical rank (or the emulated one).
    const StepAccount acc = price_layout(cm, m, layer, p, batch, seq, loads);
    const bool one_row = rows < size_t(p.n);  // one emulated rank: predict that rank
    const int pred_rank = one_row ? row_rank[0] : acc.critical;
    const RankAccount& pr = acc.ranks[size_t(pred_rank)];
    const double pred_step = one_row ? pr.step_us : acc.step_us;
    const double pred_parts[3] = {one_row ? pr.compute_us : acc.compute_us,
                                  one_row ? pr.wait_exposed_us : acc.wait_us,
                                  one_row ? pr.transfer_exposed_us : acc.transfer_us};
    std::map<int, int> count;
    for (size_t i = 0; i < iters; ++i) ++count[row_rank[crit[i]]];
    int meas_rank = 0;
    for (const auto& [rk, c] : count)
      if (c > count[meas_rank]) meas_rank = rk;
    std::printf("%-9s %-10s %3d %5d %8lld critical rank: predicted %d, measured %d; routing: %s\n",
                name.c_str(), to_string(p.kind), p.n, batch, static_cast<long long>(seq), pred_rank,
                meas_rank, routing.c_str());
    auto add = [&](const std::string& phase, double pred, double me) {
      run_col.push_back(name);
      layout_col.emplace_back(to_string(p.kind));
      n_col.push_back(p.n);
      b_col.push_back(batch);
      s_col.push_back(seq);
      phase_col.push_back(phase);
      pred_col.push_back(pred);
      meas_col.push_back(me);
      prank_col.push_back(pred_rank);
      mrank_col.push_back(meas_rank);
      model_col.push_back(m.name);
      kvp_col.push_back(p.kvp);
      tpa_col.push_back(p.tpa);
      tpf_col.push_back(p.tpf);
      ep_col.push_back(p.ep);
      hopb_col.push_back(p.hopb_chunks);
      const double e = me > 0 ? pred / me - 1.0 : NAN;
      err_col.push_back(e);
      std::printf("%-9s %-10s %3d %5d %8lld %-10s %12.2f %12.2f %+7.0f%%\n", name.c_str(),
                  to_string(p.kind), p.n, batch, static_cast<long long>(seq), phase.c_str(), pred,
                  me, 100 * e);
    };
    auto crit_median = [&](const std::vector<double>& v) {
      std::vector<double> out;
      for (int k = 0; k < kNumPhases; ++k) {
        std::vector<double> it(iters);
        for (size_t i = 0; i < iters; ++i) it[i] = v[(i * rows + crit[i]) * kNumPhases + size_t(k)];
        out.push_back(median(it));
      }
      return out;
    };
    const std::vector<double> meas = crit_median(ph);
    for (int k = 0; k < kNumPhases; ++k) {
      if (pr.phase_us[size_t(k)] == 0 && meas[size_t(k)] == 0) continue;
      add(phase_name(static_cast<Phase>(k)), pr.phase_us[size_t(k)], meas[size_t(k)]);
    }
    // The critical step in parts, when the trace holds them.
    if (!run.step_breakdown_us.empty()) {
      const auto& bd = run.step_breakdown_us;
      const char* part_names[3] = {"compute", "wait", "transfer"};
      for (int q = 0; q < 3; ++q) {
        std::vector<double> it(iters);
        for (size_t i = 0; i < iters; ++i) it[i] = bd[i * 4 + size_t(q)];
        add(part_names[q], pred_parts[q], median(it));
      }
    }
    add("step", pred_step, median(run.step_us));
  }
  if (!o.out.empty()) {
    h5::File out(o.out);
    write_root_attributes(out.id(), env, "model");
    h5::Group g(out.id(), "/validate");
    h5::attr(g.id(), "trace", o.validate);
    h5::attr(g.id(), "hardware", hw.name);
    h5::attr(g.id(), "hardware_kind", hw.kind);
    const hsize_t n = pred_col.size();
    h5::write(g.id(), "run", run_col);
    h5::write(g.id(), "layout", layout_col);
    h5::write(g.id(), "phase", phase_col);
    h5::write(g.id(), "n_ranks", n_col, "");
    h5::write(g.id(), "batch", b_col, "requests");
    h5::write(g.id(), "seq_len", s_col, "tokens");
    h5::write(g.id(), "predicted_us", {n}, pred_col.data(), "us");
    h5::write(g.id(), "measured_us", {n}, meas_col.data(), "us");
    h5::write(g.id(), "rel_error", {n}, err_col.data(), "predicted / measured - 1");
    h5::write(g.id(), "predicted_rank", prank_col, "");
    h5::write(g.id(), "measured_rank", mrank_col, "");
    h5::write(g.id(), "model", model_col);
    h5::write(g.id(), "kvp", kvp_col, "");
    h5::write(g.id(), "tpa", tpa_col, "");
    h5::write(g.id(), "tpf", tpf_col, "");
    h5::write(g.id(), "ep", ep_col, "");
    h5::write(g.id(), "hopb_chunks", hopb_col, "");
    out.commit();
    std::printf("written: %s\n", o.out.c_str());
  }
  return 0;
}

}  // namespace helix
