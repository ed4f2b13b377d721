#include "analytic/hardware.hpp"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "common/usage_error.hpp"
#include "layouts/builtin_data.hpp"
#include "layouts/model_spec.hpp"

namespace helix {

double HardwareProfile::effective_mem_bw_gbps() const {
  return stream_gbps > 0 ? stream_gbps : mem_bw_gbps * mem_bw_efficiency;
}

double HardwareProfile::gemm_efficiency_at(double m) const {
  if (gemm_efficiency.empty()) return 1.0;
  if (m <= gemm_efficiency.front().m) return gemm_efficiency.front().efficiency;
  if (m >= gemm_efficiency.back().m) return gemm_efficiency.back().efficiency;
  for (size_t i = 1; i < gemm_efficiency.size(); ++i) {
    const auto& a = gemm_efficiency[i - 1];
    const auto& b = gemm_efficiency[i];
    if (m <= b.m) {
      const double f = (std::log(m) - std::log(a.m)) / (std::log(b.m) - std::log(a.m));
      return a.efficiency + f * (b.efficiency - a.efficiency);
    }
  }
  return gemm_efficiency.back().efficiency;
}

double HardwareProfile::prefill_gemm_tflops(DType d, double m) const {
  return flops_tflops_for(d) *
         (gemm_efficiency.empty() ? prefill_efficiency : gemm_efficiency_at(m));
}

double HardwareProfile::prefill_attention_tflops(DType d) const {
  DType a = d;
  if (attention_dtype && dtype_bytes(*attention_dtype) > dtype_bytes(d) &&
      flops_tflops.count(*attention_dtype))
    a = *attention_dtype;
  return flops_tflops_for(a) * attention_efficiency;
}

double HardwareProfile::flops_tflops_for(DType d) const {
  const auto it = flops_tflops.find(d);
  if (it == flops_tflops.end() || !(it->second > 0))
    throw UsageError(std::string("--dtype: hardware ") + name + " gives no " + to_string(d) +
                     " FLOP rate (flops_tflops." + to_string(d) + ")");
  return it->second;
}

namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& origin, const std::string& field,
                      const std::string& rule) {
  throw UsageError("--hardware: " + origin + ": field '" + field + "' " + rule);
}

const json& need(const json& j, const char* key, const std::string& origin,
                 const std::string& path) {
  if (!j.is_object() || !j.contains(key)) bad(origin, path, "is missing");
  return j.at(key);
}

double positive(const json& j, const char* key, const std::string& origin, const std::string& path,
                bool allow_zero = false) {
  const json v = need(j, key, origin, path);
  if (!v.is_number()) bad(origin, path, "must be a number");
  const double x = v.get<double>();
  if (!(allow_zero ? x >= 0 : x > 0) || !std::isfinite(x))
    bad(origin, path, allow_zero ? "must be >= 0" : "must be > 0");
  return x;
}

std::string text(const json& j, const char* key, const std::string& origin) {
  const json v = need(j, key, origin, key);
  if (!v.is_string()) bad(origin, key, "must be a string");
  return v.get<std::string>();
}

// A collective the profiles measure (the five of helix-micro).
std::optional<Collective> parse_measured(const std::string& s) {
  for (Collective c : kMeasuredCollectives)
    if (s == to_string(c)) return c;
  return std::nullopt;
}

}  // namespace

HardwareProfile parse_hardware_json(const std::string& body, const std::string& origin) {
  json j;
  try {
    j = json::parse(body);
  } catch (const std::exception& e) {
    throw UsageError("--hardware: " + origin + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) throw UsageError("--hardware: " + origin + ": not a JSON object");
  HardwareProfile h;
  h.name = text(j, "name", origin);
  h.kind = text(j, "kind", origin);
  if (h.kind != "datasheet" && h.kind != "calibrated")
    bad(origin, "kind", "must be 'datasheet' or 'calibrated'");
  h.description = text(j, "description", origin);
  h.memory_bytes = positive(j, "memory_bytes", origin, "memory_bytes");
  h.mem_bw_gbps = positive(j, "mem_bw_gbps", origin, "mem_bw_gbps");
  if (j.contains("stream_gbps")) h.stream_gbps = positive(j, "stream_gbps", origin, "stream_gbps");
  if (j.contains("sm_count")) {
    const double sms = positive(j, "sm_count", origin, "sm_count");
    if (sms != std::floor(sms) || sms > 1e4) bad(origin, "sm_count", "must be a whole SM count");
    h.sm_count = int(sms);
  }
  if (j.contains("mem_bw_efficiency") || h.stream_gbps <= 0) {
    h.mem_bw_efficiency = positive(j, "mem_bw_efficiency", origin, "mem_bw_efficiency");
    if (h.mem_bw_efficiency > 1.0) bad(origin, "mem_bw_efficiency", "must be <= 1");
  }
  const json fl = need(j, "flops_tflops", origin, "flops_tflops");
  if (!fl.is_object()) bad(origin, "flops_tflops", "must be an object {dtype: TFLOP/s}");
  for (auto it = fl.begin(); it != fl.end(); ++it) {
    const auto d = parse_dtype(it.key());
    if (!d || !is_float(*d)) continue;  // unknown precisions are ignored
    h.flops_tflops[*d] = positive(fl, it.key().c_str(), origin, "flops_tflops." + it.key());
  }
  if (h.flops_tflops.empty())
    bad(origin, "flops_tflops", "must give at least one of fp32, bf16, fp8, fp4");
  if (j.contains("gemm_efficiency")) {
    const json& g = j.at("gemm_efficiency");
    if (!g.is_array()) bad(origin, "gemm_efficiency", "must be an array of {m, efficiency}");
    for (const json& p : g) {
      GemmEfficiencyPoint q;
      q.m = positive(p, "m", origin, "gemm_efficiency[].m");
      q.efficiency = positive(p, "efficiency", origin, "gemm_efficiency[].efficiency");
      if (q.efficiency > 1.0) bad(origin, "gemm_efficiency[].efficiency", "must be <= 1");
      h.gemm_efficiency.push_back(q);
    }
    std::sort(h.gemm_efficiency.begin(), h.gemm_efficiency.end(),
              [](const auto& a, const auto& b) { return a.m < b.m; });
  }
  for (auto [key, field] :
       {std::pair<const char*, double*>{"prefill_efficiency", &h.prefill_efficiency},
        {"attention_efficiency", &h.attention_efficiency}})
    if (j.contains(key)) {
      *field = positive(j, key, origin, key);
      if (*field > 1.0) bad(origin, key, "must be <= 1");
    }
  if (j.contains("attention_dtype")) {
    const json& a = j.at("attention_dtype");
    h.attention_dtype = a.is_string() ? parse_dtype(a.get<std::string>()) : std::nullopt;
    if (!h.attention_dtype || !is_float(*h.attention_dtype))
      bad(origin, "attention_dtype", "must be fp32, bf16, fp8 or fp4");
  }
  const json nv = need(j, "nvlink", origin, "nvlink");
  const double dom = positive(nv, "domain_gpus", origin, "nvlink.domain_gpus");
  if (dom != std::floor(dom) || dom > 1e6) bad(origin, "nvlink.domain_gpus", "must be an integer");
  h.nvlink.domain_gpus = int(dom);
  h.nvlink.bw_gbps = positive(nv, "bw_gbps", origin, "nvlink.bw_gbps");
  h.nvlink.latency_us = positive(nv, "latency_us", origin, "nvlink.latency_us", true);
  const json net = need(j, "network", origin, "network");
  h.network.bw_gbps = positive(net, "bw_gbps", origin, "network.bw_gbps");
  h.network.latency_us = positive(net, "latency_us", origin, "network.latency_us", true);
  h.network.domain_gpus = 1;
  if (j.contains("collectives")) {
    const json& cs = j.at("collectives");
    if (!cs.is_array()) bad(origin, "collectives", "must be an array");
    for (const json& c : cs) {
      const json name = need(c, "collective", origin, "collectives[].collective");
      const auto kind = name.is_string() ? parse_measured(name.get<std::string>()) : std::nullopt;
      if (!kind)
        bad(origin, "collectives[].collective",
            "must be all_reduce, all_gather, reduce_scatter, all_to_all or send_recv");
      CollectiveMeasurement m;
      m.collective = *kind;
      const double g = positive(c, "group_size", origin, "collectives[].group_size");
      if (g != std::floor(g) || g < 1 || g > 1e6)
        bad(origin, "collectives[].group_size", "must be a positive integer");
      m.group_size = int(g);
      m.latency_us = positive(c, "latency_us", origin, "collectives[].latency_us", true);
      m.busbw_gbps = positive(c, "busbw_gbps", origin, "collectives[].busbw_gbps");
      h.collectives.push_back(m);
    }
  }
  const json src = need(j, "sources", origin, "sources");
  if (!src.is_object()) bad(origin, "sources", "must be an object {field: citation}");
  for (auto it = src.begin(); it != src.end(); ++it)
    if (it.value().is_string()) h.sources[it.key()] = it.value().get<std::string>();
  return h;
}

std::vector<std::string> builtin_hardware_names() {
  std::vector<std::string> v;
  for (const auto& f : builtin_hardware()) v.push_back(f.name);
  return v;
}

HardwareProfile load_hardware(const std::string& name_or_path) {
  const std::string suffix = ".json";
  if (name_or_path.size() > suffix.size() &&
      name_or_path.compare(name_or_path.size() - suffix.size(), suffix.size(), suffix) == 0) {
    std::string text;
    const std::string why = read_small_file(name_or_path, &text);
    if (!why.empty())
      throw UsageError("--hardware: cannot read profile '" + name_or_path + "' (" + why + ")");
    return parse_hardware_json(text, name_or_path);
  }
  for (const auto& f : builtin_hardware())
    if (f.name == name_or_path) return parse_hardware_json(f.json, f.name);
  std::string known;
  for (const auto& n : builtin_hardware_names()) known += (known.empty() ? "" : ", ") + n;
  throw UsageError("--hardware: unknown profile '" + name_or_path + "' (known: " + known +
                   "; or a path to a .json profile)");
}

}  // namespace helix
