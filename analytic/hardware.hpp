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

// One measured size of a collective: S (nccl-tests convention) and the median time.
struct CollectivePoint {
  double size_bytes = 0;
  double time_us = 0;
};

struct CollectiveMeasurement {
  Collective collective = Collective::all_reduce;  // one of kMeasuredCollectives
  int group_size = 2;
  double latency_us = 0;
  double busbw_gbps = 0;
  // The measured curve, sorted by size (optional): when present it prices the collective at any
  // size (log-log interpolation; the smallest size's time below it; beyond the largest, its time
  // plus the extra bytes at busbw_gbps).
  std::vector<CollectivePoint> points;

  // Time of the collective at S = bytes over group_size ranks.
  double time_us(Collective c, double bytes) const;
};

// One measured decode-attention shape (the executors' kernel): MLA or GQA, the query heads
// reading each KV head, the KV heads (MLA: 1) and requests, the KV bytes read, and the achieved
// fraction of the profile's memory bandwidth (stream_gbps).
struct AttentionPoint {
  bool mla = false;
  int q_per_kv = 1;
  int kv_heads = 1;
  int batch = 1;
  double kv_bytes = 0;
  double efficiency = 1;
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
  // Decode (measured profiles): the fixed cost of one launch of a GEMM and of any other kernel or
  // copy (time of a launch on a tiny operand), and the measured efficiency of decode attention.
  double gemm_launch_us = 0, kernel_launch_us = 0;
  std::vector<AttentionPoint> decode_attention;
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
  // Time of one decode attention launch reading kv_bytes from the measured points of its kind
  // (the nearest q_per_kv, then the nearest number of (request, KV head) pairs, in log distance;
  // log-log in the KV bytes, the smallest point's time below it, its efficiency beyond the
  // largest); a negative value when the profile has no point of that kind.
  double decode_attention_us(bool mla, int q_per_kv, int kv_heads, int batch,
                             double kv_bytes) const;
};

// The profile as JSON (the format parse_hardware_json reads; what `calibrate` writes).
std::string hardware_to_json(const HardwareProfile& p);
// Writes the JSON to `path` as "<path>.tmp.<pid>", renamed when complete; throws UsageError naming
// `option` when the file cannot be written.
void write_hardware_profile(const std::string& path, const HardwareProfile& p,
                            const std::string& option = "--out");

// Parses a profile; throws UsageError naming the missing or bad field.
HardwareProfile parse_hardware_json(const std::string& text, const std::string& origin);
// A built-in profile by name, or a .json file; throws UsageError (option --hardware).
HardwareProfile load_hardware(const std::string& name_or_path);
std::vector<std::string> builtin_hardware_names();

}  // namespace helix
