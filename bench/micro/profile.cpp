#include "bench/micro/profile.hpp"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "bench/trace/output_path.hpp"
#include "comm/error.hpp"

namespace helix::micro {

nlohmann::json to_json(const HardwareProfile& p) {
  nlohmann::json j;
  j["name"] = p.name;
  j["kind"] = p.kind;
  j["description"] = p.description;
  j["memory_bytes"] = p.memory_bytes;
  j["mem_bw_gbps"] = p.mem_bw_gbps;
  j["mem_bw_efficiency"] = p.mem_bw_efficiency;
  j["stream_gbps"] = p.stream_gbps;
  j["flops_tflops"] = nlohmann::json::object();
  for (const auto& [k, v] : p.flops_tflops) j["flops_tflops"][k] = v;
  j["gemm_efficiency"] = nlohmann::json::array();
  for (const auto& g : p.gemm_efficiency)
    j["gemm_efficiency"].push_back({{"m", g.m}, {"efficiency", g.efficiency}});
  j["nvlink"] = {{"domain_gpus", p.nvlink.domain_gpus},
                 {"bw_gbps", p.nvlink.bw_gbps},
                 {"latency_us", p.nvlink.latency_us}};
  j["network"] = {{"bw_gbps", p.network.bw_gbps}, {"latency_us", p.network.latency_us}};
  if (!p.collectives.empty()) {
    j["collectives"] = nlohmann::json::array();
    for (const auto& c : p.collectives)
      j["collectives"].push_back({{"collective", c.collective},
                                  {"group_size", c.group_size},
                                  {"latency_us", c.latency_us},
                                  {"busbw_gbps", c.busbw_gbps}});
  }
  j["sources"] = nlohmann::json::object();
  for (const auto& [k, v] : p.sources) j["sources"][k] = v;
  return j;
}

namespace {

const nlohmann::json& field(const nlohmann::json& j, const char* key, std::string where) {
  if (!j.is_object() || !j.contains(key))
    throw std::invalid_argument("hardware profile: missing field '" + where + key + "'");
  return j.at(key);
}

double number(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto v = field(j, key, where);
  if (!v.is_number() || !std::isfinite(v.get<double>()))
    throw std::invalid_argument("hardware profile: field '" + where + key + "' must be a number");
  return v.get<double>();
}

std::string text(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto v = field(j, key, where);
  if (!v.is_string())
    throw std::invalid_argument("hardware profile: field '" + where + key + "' must be a string");
  return v.get<std::string>();
}

}  // namespace

namespace {

const nlohmann::json& array(const nlohmann::json& j, const char* key, std::string where) {
  const auto& v = field(j, key, where);
  if (!v.is_array())
    throw std::invalid_argument("hardware profile: field '" + where + key + "' must be an array");
  return v;
}

const nlohmann::json& object(const nlohmann::json& j, const char* key, std::string where) {
  const auto& v = field(j, key, where);
  if (!v.is_object())
    throw std::invalid_argument("hardware profile: field '" + where + key + "' must be an object");
  return v;
}

// An integer-valued number within [lo, hi].
int64_t count(const nlohmann::json& j, const char* key, const std::string& where, double lo,
              double hi) {
  const double v = number(j, key, where);
  if (!(v >= lo && v <= hi) || v != std::floor(v))
    throw std::invalid_argument("hardware profile: field '" + where + key +
                                "' must be an integer in range");
  return int64_t(v);
}

}  // namespace

HardwareProfile profile_from_json(const nlohmann::json& j) {
  HardwareProfile p;
  p.name = text(j, "name", "");
  p.kind = text(j, "kind", "");
  p.description = text(j, "description", "");
  p.memory_bytes = count(j, "memory_bytes", "", 0, 9e18);
  p.mem_bw_gbps = number(j, "mem_bw_gbps", "");
  p.mem_bw_efficiency = number(j, "mem_bw_efficiency", "");
  p.stream_gbps = number(j, "stream_gbps", "");
  for (const auto& [k, v] : object(j, "flops_tflops", "").items()) {
    if (!v.is_number())
      throw std::invalid_argument("hardware profile: field 'flops_tflops." + k +
                                  "' must be a number");
    p.flops_tflops[k] = v.get<double>();
  }
  if (!p.flops_tflops.count("bf16"))
    throw std::invalid_argument("hardware profile: missing field 'flops_tflops.bf16'");
  for (const auto& g : array(j, "gemm_efficiency", ""))
    p.gemm_efficiency.push_back({count(g, "m", "gemm_efficiency[].", 1, 1e9),
                                 number(g, "efficiency", "gemm_efficiency[].")});
  const auto& nv = object(j, "nvlink", "");
  p.nvlink.domain_gpus = int(count(nv, "domain_gpus", "nvlink.", 0, 1e6));
  p.nvlink.bw_gbps = number(nv, "bw_gbps", "nvlink.");
  p.nvlink.latency_us = number(nv, "latency_us", "nvlink.");
  const auto& net = object(j, "network", "");
  p.network.bw_gbps = number(net, "bw_gbps", "network.");
  p.network.latency_us = number(net, "latency_us", "network.");
  if (j.contains("collectives"))
    for (const auto& c : array(j, "collectives", ""))
      p.collectives.push_back({text(c, "collective", "collectives[]."),
                               int(count(c, "group_size", "collectives[].", 1, 1e6)),
                               number(c, "latency_us", "collectives[]."),
                               number(c, "busbw_gbps", "collectives[].")});
  for (const auto& [k, v] : object(j, "sources", "").items()) {
    if (!v.is_string())
      throw std::invalid_argument("hardware profile: field 'sources." + k + "' must be a string");
    p.sources[k] = v.get<std::string>();
  }
  return p;
}

void write_profile(const std::string& path, const HardwareProfile& p) {
  AtomicOutput file(path);
  {
    std::ofstream out(file.tmp());
    if (!out) throw UsageError("--out: cannot create '" + path + "'");
    out << to_json(p).dump(2) << "\n";
    out.close();
    if (!out) throw UsageError("--out: cannot write '" + path + "'");
  }
  if (!file.commit()) throw UsageError("--out: cannot rename the temporary file to '" + path + "'");
}

HardwareProfile read_profile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("cannot read hardware profile '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument("hardware profile '" + path + "': not valid JSON (" + e.what() +
                                ")");
  }
  return profile_from_json(j);
}

}  // namespace helix::micro
