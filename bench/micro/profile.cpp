#include "bench/micro/profile.hpp"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

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

const nlohmann::json& field(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key))
    throw std::invalid_argument("hardware profile: missing field '" + where + key + "'");
  return j.at(key);
}

double number(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto v = field(j, key, where);
  if (!v.is_number())
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

HardwareProfile profile_from_json(const nlohmann::json& j) {
  HardwareProfile p;
  p.name = text(j, "name", "");
  p.kind = text(j, "kind", "");
  p.description = text(j, "description", "");
  p.memory_bytes = int64_t(number(j, "memory_bytes", ""));
  p.mem_bw_gbps = number(j, "mem_bw_gbps", "");
  p.mem_bw_efficiency = number(j, "mem_bw_efficiency", "");
  p.stream_gbps = number(j, "stream_gbps", "");
  const auto f = field(j, "flops_tflops", "");
  if (!f.is_object())
    throw std::invalid_argument("hardware profile: flops_tflops must be an object");
  for (const auto& [k, v] : f.items()) p.flops_tflops[k] = v.get<double>();
  if (!p.flops_tflops.count("bf16"))
    throw std::invalid_argument("hardware profile: missing field 'flops_tflops.bf16'");
  const auto gemm_eff = field(j, "gemm_efficiency", "");
  for (const auto& g : gemm_eff)
    p.gemm_efficiency.push_back({int64_t(number(g, "m", "gemm_efficiency[].")),
                                 number(g, "efficiency", "gemm_efficiency[].")});
  const auto nv = field(j, "nvlink", "");
  p.nvlink.domain_gpus = int(number(nv, "domain_gpus", "nvlink."));
  p.nvlink.bw_gbps = number(nv, "bw_gbps", "nvlink.");
  p.nvlink.latency_us = number(nv, "latency_us", "nvlink.");
  const auto net = field(j, "network", "");
  p.network.bw_gbps = number(net, "bw_gbps", "network.");
  p.network.latency_us = number(net, "latency_us", "network.");
  if (j.contains("collectives"))
    for (const auto& c : j.at("collectives"))
      p.collectives.push_back(
          {text(c, "collective", "collectives[]."), int(number(c, "group_size", "collectives[].")),
           number(c, "latency_us", "collectives[]."), number(c, "busbw_gbps", "collectives[].")});
  const nlohmann::json sources = field(j, "sources", "");  // a copy: no reference to a temporary
  for (const auto& [k, v] : sources.items()) p.sources[k] = v.get<std::string>();
  return p;
}

void write_profile(const std::string& path, const HardwareProfile& p) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp);
    if (!out) throw UsageError("--out: cannot create '" + path + "'");
    out << to_json(p).dump(2) << "\n";
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      throw UsageError("--out: cannot write '" + path + "'");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw UsageError("--out: cannot rename the temporary file to '" + path + "'");
  }
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
