// Disaggregated serving priced by the cost model (Mitra et al., "Beyond the Buzz",
// arXiv 2506.05508): prefill layouts (TP, TEP, PP, chunked pipeline CPP) giving first-token
// latency (FTL) and prefill throughput per GPU; the decode design space of design_space.hpp
// (Helix layouts included); co-located serving with and without chunked-prefill piggybacking;
// disaggregated points with dynamic rate matching, an FTL cutoff and the KV transfer bandwidth
// each point needs.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "analytic/design_space.hpp"

namespace helix {

enum class PrefillScheme { tp, tep, pp, cpp };
const char* to_string(PrefillScheme s);

struct PrefillConfig {
  PrefillScheme scheme = PrefillScheme::tp;
  int tp = 1;     // GPUs per stage (tensor parallel; tep: TP attention, EP FFN)
  int pp = 1;     // pipeline stages (pp, cpp)
  int batch = 1;  // prompts per batch
  int chunk = 0;  // cpp: tokens per chunk (0: whole prompt)
  int gpus() const { return tp * pp; }
};

struct PrefillPoint {
  PrefillConfig cfg;
  double ftl_s = 0;
  double requests_per_s_per_gpu = 0;
  double mem_bytes_per_gpu = 0;
  bool feasible = false;
  int distinct_kv_gpus = 1;  // GPUs holding distinct KV (TP beyond the KV heads replicates)
};

struct Workload {
  int64_t isl = 16384, osl = 2048;
};

// FLOPs of one prompt of `isl` tokens processed in chunks of `chunk` tokens (0: one pass), all
// layers: GEMMs on the active parameters, causal attention, and for MLA the up-projection of the
// cached latent to keys and values, repeated for every chunk over all earlier tokens.
double prefill_flops(const ModelSpec& m, int64_t isl, int64_t chunk);

std::vector<PrefillPoint> prefill_sweep(const ModelSpec& m, const CostModel& cm, int64_t isl,
                                        int max_gpus, double workspace_bytes);
PrefillPoint price_prefill(const ModelSpec& m, const CostModel& cm, const PrefillConfig& c,
                           int64_t isl, double workspace_bytes);

// Rate matching: prefill GPUs / decode GPUs = target, as (a x prefill_group) / (b x decode_group)
// with the smallest a + b (a, b <= 64) within `tolerance`; the closest fraction otherwise.
struct PoolRatio {
  int prefill_groups = 1, decode_groups = 1;
  double ratio = 1;  // prefill GPUs / decode GPUs
};
PoolRatio match_pools(double target, int prefill_group, int decode_group, double tolerance = 0.03);

enum class ServeMode { disagg, colocated, colocated_piggyback };
const char* to_string(ServeMode m);

struct ServePoint {
  ServeMode mode = ServeMode::disagg;
  int prefill = -1;  // index into prefill points (disagg)
  int decode = -1;   // index into decode points
  double ratio = 0;  // prefill GPUs / decode GPUs (disagg)
  double ftl_s = 0, ttl_us = 0;
  double tokens_per_s_per_user = 0, tokens_per_s_per_gpu = 0;
  double kv_egress_gbps_per_prefill_gpu = 0, kv_ingress_gbps_per_decode_gpu = 0;
  bool kv_ok = true, ftl_ok = true, on_frontier = false;
};

struct DisaggOptions {
  Workload w;
  double ftl_max_s = 10;
  double nic_gbps = 50;      // per GPU (400 Gb/s)
  int max_gpus = 64;         // GPUs of one decode instance (and of one prefill instance unless
                             // max_prefill_gpus is set)
  int max_prefill_gpus = 0;  // GPUs of one prefill instance, TP x PP (0: max_gpus)
  int decode_batches_per_octave = 4;
  std::vector<double> fixed_ratios;
  double workspace_bytes = 2.0 * (1 << 30);
  DType dtype = DType::fp4;
};

struct DisaggResult {
  std::vector<PrefillPoint> prefill;
  std::vector<DesignPoint> decode;
  std::vector<ServePoint> points;
  std::vector<size_t> disagg_frontier, colocated_frontier;  // indices into points
  // Frontier of each fixed ratio: (tokens/s/user, tokens/s/GPU), falling interactivity.
  std::vector<std::vector<std::pair<double, double>>> fixed_curves;
  size_t prefill_candidates = 0;
};

DisaggResult disagg_sweep(const ModelSpec& m, const HardwareProfile& hw, const DisaggOptions& o,
                          const std::function<void(const std::string&)>& progress = {});

// Geometric mean, over a log grid of the shared interactivity range, of disaggregated over
// co-located tokens/s/GPU (each the best at that interactivity or above).
double disagg_gain(const DisaggResult& r);
// The optimal ratio at the lowest and the highest interactivity of the disaggregated frontier.
std::pair<double, double> ratio_ends(const DisaggResult& r);
// The optimal ratio at interactivity `user`: that of the frontier point that gives the most
// tokens/s/GPU at `user` tokens/s/user or more (NAN beyond the frontier).
double ratio_at(const DisaggResult& r, double user);

}  // namespace helix
