// Hardware profiles measured by `helix-bench calibrate`: the JSON file the cost model reads.
//
// {"name", "kind": "calibrated", "description", "memory_bytes", "mem_bw_gbps",
//  "mem_bw_efficiency", "stream_gbps", "flops_tflops": {"bf16", ...},
//  "gemm_efficiency": [{"m", "efficiency"}], "nvlink": {"domain_gpus", "bw_gbps", "latency_us"},
//  "network": {"bw_gbps", "latency_us"},
//  "collectives": [{"collective", "group_size", "latency_us", "busbw_gbps"}],
//  "sources": {"*": "measured by helix-bench calibrate <version> on <date>"}}
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace helix::micro {

struct GemmEfficiency {
  int64_t m = 1;            // rows (batch) of the decode GEMM
  double efficiency = 0.0;  // achieved FLOP rate / flops_tflops
};

struct LinkFigures {
  int domain_gpus = 0;  // nvlink only: ranks in one node
  double bw_gbps = 0.0;
  double latency_us = 0.0;
};

struct CollectiveFigure {
  std::string collective;  // all_reduce | all_gather | reduce_scatter | all_to_all | send_recv
  int group_size = 1;
  double latency_us = 0.0;  // time of the smallest size
  double busbw_gbps = 0.0;  // bus bandwidth at the largest size
};

struct HardwareProfile {
  std::string name;
  std::string kind = "calibrated";
  std::string description;
  int64_t memory_bytes = 0;
  double mem_bw_gbps = 0.0;
  double mem_bw_efficiency = 1.0;
  double stream_gbps = 0.0;
  std::map<std::string, double> flops_tflops;
  std::vector<GemmEfficiency> gemm_efficiency;
  LinkFigures nvlink, network;
  std::vector<CollectiveFigure> collectives;  // empty (and omitted) with one rank
  std::map<std::string, std::string> sources;
};

nlohmann::json to_json(const HardwareProfile& p);
// Throws std::invalid_argument naming the missing or malformed field.
HardwareProfile profile_from_json(const nlohmann::json& j);

// Writes `path` as "<path>.tmp.<pid>" renamed when complete; throws UsageError naming --out when
// the file cannot be created.
void write_profile(const std::string& path, const HardwareProfile& p);
// Throws std::invalid_argument when the file cannot be read or is not a profile.
HardwareProfile read_profile(const std::string& path);

}  // namespace helix::micro
