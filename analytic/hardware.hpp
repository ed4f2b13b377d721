// Hardware profiles: what the cost model needs to know about one GPU and its links, read from the
// cited JSON data files in layouts/hardware/ (built into the binary), from a path to a .json file,
// or from a profile written by `helix-bench calibrate`. Format: results/README.md.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/collective.hpp"
#include "common/dtype.hpp"

namespace helix {

struct GemmEfficiencyPoint {
  double m = 1;           // GEMM rows (tokens)
  double efficiency = 1;  // achieved / peak FLOP rate
};

struct CollectiveMeasurement {
  Collective collective = Collective::all_reduce;  // one of kMeasuredCollectives
  int group_size = 2;
  double latency_us = 0;
  double busbw_gbps = 0;
};

struct LinkSpec {
  int domain_gpus = 1;    // GPUs that share the link (NVLink domain); unused for the network
  double bw_gbps = 0;     // unidirectional per-GPU decimal GB/s
  double latency_us = 0;  // per collective
};

struct HardwareProfile {
  std::string name, kind, description;
  double memory_bytes = 0;       // HBM per GPU
  double mem_bw_gbps = 0;        // peak
  double mem_bw_efficiency = 1;  // achievable fraction of the peak
  double stream_gbps = 0;        // measured; wins over peak x efficiency when > 0
  int sm_count = 0;  // streaming multiprocessors per GPU (0: not given; HOP-B's SM reservation is
                     // then not priced)
  std::map<DType, double> flops_tflops;              // dense per GPU; absent: unsupported
  std::vector<GemmEfficiencyPoint> gemm_efficiency;  // sorted by m
  // Prefill (large-M) pricing: achieved fraction of the dense peak for the weight GEMMs when the
  // profile has no gemm_efficiency curve, for the attention products, and the precision those
  // attention products run in (unset: the run's dtype; a wider one lowers the rate).
  double prefill_efficiency = 1;
  double attention_efficiency = 1;
  std::optional<DType> attention_dtype;
  LinkSpec nvlink, network;
  std::vector<CollectiveMeasurement> collectives;
  std::map<std::string, std::string> sources;

  // Achievable memory bandwidth in GB/s.
  double effective_mem_bw_gbps() const;
  // GEMM efficiency at m rows: piecewise linear in log(m) between measured points, clamped at the
  // ends; 1 when the profile has no curve (the roofline).
  double gemm_efficiency_at(double m) const;
  // Dense FLOP rate for a dtype; throws UsageError naming --dtype when the profile has none.
  double flops_tflops_for(DType d) const;
  // Achieved FLOP rate (TFLOP/s) of prefill weight GEMMs of m rows in dtype d: the measured
  // curve when present, else the peak x prefill_efficiency.
  double prefill_gemm_tflops(DType d, double m) const;
  // Achieved FLOP rate (TFLOP/s) of prefill attention (scores and values) for a run in dtype d:
  // the rate of the wider of d and attention_dtype x attention_efficiency.
  double prefill_attention_tflops(DType d) const;
};

// Parses a profile; throws UsageError naming the missing or bad field.
HardwareProfile parse_hardware_json(const std::string& text, const std::string& origin);
// A built-in profile by name, or a .json file; throws UsageError (option --hardware).
HardwareProfile load_hardware(const std::string& name_or_path);
std::vector<std::string> builtin_hardware_names();

}  // namespace helix
