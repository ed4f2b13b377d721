// The decode design space of the Helix paper, priced by the cost model: every layout family
// (TP, PP over layers, EP with data-parallel attention, vanilla KVP, Helix with and without HOP-B)
// at every GPU count, layout split and batch, with a capacity check, the full-model token-to-token
// latency (TTL), and the Pareto frontier of tokens/s/user against tokens/s/GPU.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "analytic/cost_model.hpp"
#include "analytic/hardware.hpp"
#include "layouts/layout.hpp"
#include "layouts/model_spec.hpp"

namespace helix {

// The layouts of the design space, in the order of the sweep and of its outputs (the `layout`
// column). PP is a parameter of every layout (pp > 1: the layers are split into pp stages of n
// GPUs each); `ep` (data-parallel attention, layouts/layout.hpp) is priced here only.
constexpr LayoutKind kDesignLayouts[] = {LayoutKind::tp, LayoutKind::ep, LayoutKind::kvp,
                                         LayoutKind::helix, LayoutKind::helix_hopb};

// Extra phase after the layer phases: the point-to-point sends between pipeline stages.
constexpr int kNumModelPhases = kNumPhases + 1;
std::vector<std::string> model_phase_names();

struct DesignConfig {
  LayoutKind layout = LayoutKind::tp;
  int n = 1;             // GPUs per pipeline stage (the layout's ranks)
  int pp = 1;            // pipeline stages
  int kvp = 1, tpa = 1;  // attention (tp: 1 x n; ep: data parallel, 1 x 1)
  int tpf = 1, ep = 1;   // FFN of MoE layers (dense layers: tpf = FFN ranks, ep = 1)
  int hopb_chunks = 1;   // helix-hopb: batch chunks requested (hopb_chunks_at clamps them)
  int gpus() const { return n * pp; }
  // HOP-B chunks run at `batch` (0 for the other layouts).
  int hopb_chunks_run(int batch) const {
    return layout == LayoutKind::helix_hopb ? hopb_chunks_at(hopb_chunks, batch) : 0;
  }
};

struct DesignPoint {
  DesignConfig cfg;
  int batch = 1;
  double ttl_us = 0;
  double tokens_per_s_per_user = 0;
  double tokens_per_s_per_gpu = 0;
  double mem_bytes_per_gpu = 0;
  bool feasible = false;
  bool on_frontier = false;
  std::array<double, kNumModelPhases> phase_us{};  // full model, critical rank of each layer
};

struct SweepOptions {
  int min_gpus = 1, max_gpus = 64;
  int max_batch = 4096;
  int64_t seq_len = 1 << 20;
  CostOptions cost;
  double workspace_bytes = 2.0 * (1 << 30);  // activations, communication buffers, runtime
  std::vector<LayoutKind> layouts = {std::begin(kDesignLayouts), std::end(kDesignLayouts)};
  std::vector<int> hopb_chunk_options = {2, 4, 8};
  int kv_block = 16;
  int batches_per_octave = 16;
};

struct SweepResult {
  std::vector<DesignPoint> points;
  size_t configs = 0;  // layout configurations (x batches = points)
};

// Batches 1 .. max_batch, `per_octave` per octave (distinct integers).
std::vector<int> batch_ladder(int max_batch, int per_octave = 16);
// Layer-pool sizes n: 1, 2, 3, 4, 6, 8, 12, ... (powers of two and three times powers of two).
std::vector<int> pool_sizes(int max_gpus);

// Enumerates and prices every design point. `progress(done, total)` is called now and then.
SweepResult sweep(const ModelSpec& m, const HardwareProfile& hw, const SweepOptions& o,
                  const std::function<void(size_t, size_t)>& progress = {});

// Prices one configuration at one batch (the sweep's inner step, exposed for tests).
DesignPoint price_point(const ModelSpec& m, const CostModel& cm, const DesignConfig& c, int batch,
                        const SweepOptions& o);
// Empty when the configuration is valid for the model, else the reason.
std::string validate_config(const ModelSpec& m, const DesignConfig& c);

// Indices of the Pareto-optimal feasible points among those `keep` accepts (no other point has
// both higher tokens/s/user and higher tokens/s/GPU), ordered by falling tokens/s/user.
std::vector<size_t> pareto_frontier(const std::vector<DesignPoint>& pts,
                                    const std::function<bool(const DesignPoint&)>& keep);
// Marks on_frontier over all feasible points.
void mark_frontier(std::vector<DesignPoint>& pts);

// Comparisons between two sets of points (a over b), on a log grid of the shared range.
//   max_interactivity_ratio: max tokens/s/user of a / that of b.
//   throughput_ratio_at_equal_ttl: max over TTL bounds t (within b's range) of the best
//     tokens/s/GPU of a with TTL <= t over that of b.
//   interactivity_loss_at_equal_throughput: max over throughput levels T (shared range) of
//     1 - (best tokens/s/user of b with tokens/s/GPU >= T) / (that of a).
double max_interactivity_ratio(const std::vector<DesignPoint>& pts,
                               const std::function<bool(const DesignPoint&)>& a,
                               const std::function<bool(const DesignPoint&)>& b);
double throughput_ratio_at_equal_ttl(const std::vector<DesignPoint>& pts,
                                     const std::function<bool(const DesignPoint&)>& a,
                                     const std::function<bool(const DesignPoint&)>& b);
double interactivity_loss_at_equal_throughput(const std::vector<DesignPoint>& pts,
                                              const std::function<bool(const DesignPoint&)>& a,
                                              const std::function<bool(const DesignPoint&)>& b);

}  // namespace helix
