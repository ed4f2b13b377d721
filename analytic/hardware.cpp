#include "analytic/hardware.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <unistd.h>

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

namespace {

// y at x on the piecewise-linear interpolation of log y against log x through `pts` (sorted by x,
// positive values); x inside [first, last].
double loglog(const std::vector<std::pair<double, double>>& pts, double x) {
  for (size_t i = 1; i < pts.size(); ++i) {
    const auto& a = pts[i - 1];
    const auto& b = pts[i];
    if (x <= b.first) {
      if (b.first <= a.first) return b.second;
      const double f = (std::log(x) - std::log(a.first)) / (std::log(b.first) - std::log(a.first));
      return std::exp(std::log(a.second) + f * (std::log(b.second) - std::log(a.second)));
    }
  }
  return pts.back().second;
}

// Interpolated through points (size, time), the first's time below it, and beyond the last its time
// plus the extra size at `rate` (size units per us).
double curve_time(const std::vector<std::pair<double, double>>& pts, double x, double rate) {
  if (x <= pts.front().first) return pts.front().second;
  if (x >= pts.back().first) return pts.back().second + (x - pts.back().first) / rate;
  return loglog(pts, x);
}

}  // namespace

double CollectiveMeasurement::time_us(Collective c, double bytes) const {
  const double factor = busbw_factor(c, group_size);
  if (points.empty()) return latency_us + bytes * factor / (busbw_gbps * 1e3);
  std::vector<std::pair<double, double>> pts;
  for (const CollectivePoint& p : points) pts.emplace_back(p.size_bytes, p.time_us);
  // Beyond the largest size: the bus bandwidth there (S x factor / busbw), in bytes of S per us.
  return curve_time(pts, bytes, busbw_gbps * 1e3 / std::max(factor, 1e-12));
}

double HardwareProfile::decode_attention_us(bool mla, int q_per_kv, int kv_heads, int batch,
                                            double kv_bytes) const {
  auto dist = [](double a, double b) { return std::fabs(std::log(a) - std::log(b)); };
  const int units = std::max(1, batch) * std::max(1, kv_heads);
  double best_q = -1, best_u = -1;
  for (const AttentionPoint& p : decode_attention) {
    if (p.mla != mla) continue;
    if (best_q < 0 || dist(p.q_per_kv, std::max(1, q_per_kv)) < dist(best_q, std::max(1, q_per_kv)))
      best_q = p.q_per_kv;
  }
  if (best_q < 0) return -1;
  for (const AttentionPoint& p : decode_attention)
    if (p.mla == mla && p.q_per_kv == best_q &&
        (best_u < 0 || dist(p.batch * p.kv_heads, units) < dist(best_u, units)))
      best_u = p.batch * p.kv_heads;
  const double bw = effective_mem_bw_gbps() * 1e3;  // bytes per us
  std::vector<std::pair<double, double>> pts;       // (KV bytes, time)
  for (const AttentionPoint& p : decode_attention)
    if (p.mla == mla && p.q_per_kv == best_q && p.batch * p.kv_heads == best_u)
      pts.emplace_back(p.kv_bytes, p.kv_bytes / (bw * p.efficiency));
  std::sort(pts.begin(), pts.end());
  return curve_time(pts, kv_bytes, pts.back().first / pts.back().second);
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
      if (c.contains("points")) {
        const json& pts = c.at("points");
        if (!pts.is_array()) bad(origin, "collectives[].points", "must be an array");
        for (const json& p : pts)
          m.points.push_back(
              {positive(p, "size_bytes", origin, "collectives[].points[].size_bytes"),
               positive(p, "time_us", origin, "collectives[].points[].time_us")});
        std::sort(m.points.begin(), m.points.end(),
                  [](const auto& a, const auto& b) { return a.size_bytes < b.size_bytes; });
      }
      h.collectives.push_back(m);
    }
  }
  if (j.contains("launch_us")) {
    const json& l = j.at("launch_us");
    h.gemm_launch_us = positive(l, "gemm", origin, "launch_us.gemm", true);
    h.kernel_launch_us = positive(l, "kernel", origin, "launch_us.kernel", true);
  }
  if (j.contains("decode_attention")) {
    const json& da = j.at("decode_attention");
    if (!da.is_array()) bad(origin, "decode_attention", "must be an array");
    for (const json& p : da) {
      AttentionPoint a;
      const json kind = need(p, "kind", origin, "decode_attention[].kind");
      if (!kind.is_string() || (kind != "gqa" && kind != "mla"))
        bad(origin, "decode_attention[].kind", "must be 'gqa' or 'mla'");
      a.mla = kind == "mla";
      const double q = positive(p, "q_per_kv", origin, "decode_attention[].q_per_kv");
      const double kh = positive(p, "kv_heads", origin, "decode_attention[].kv_heads");
      const double b = positive(p, "batch", origin, "decode_attention[].batch");
      for (double v : {q, kh, b})
        if (v != std::floor(v) || v > 1e6)
          bad(origin, "decode_attention[]", "q_per_kv, kv_heads and batch must be integers");
      a.q_per_kv = int(q);
      a.kv_heads = int(kh);
      a.batch = int(b);
      a.kv_bytes = positive(p, "kv_bytes", origin, "decode_attention[].kv_bytes");
      a.efficiency = positive(p, "efficiency", origin, "decode_attention[].efficiency");
      h.decode_attention.push_back(a);
    }
  }
  const json src = need(j, "sources", origin, "sources");
  if (!src.is_object()) bad(origin, "sources", "must be an object {field: citation}");
  for (auto it = src.begin(); it != src.end(); ++it)
    if (it.value().is_string()) h.sources[it.key()] = it.value().get<std::string>();
  return h;
}

std::string hardware_to_json(const HardwareProfile& p) {
  json j;
  j["name"] = p.name;
  j["kind"] = p.kind;
  j["description"] = p.description;
  j["memory_bytes"] = p.memory_bytes;
  j["mem_bw_gbps"] = p.mem_bw_gbps;
  j["mem_bw_efficiency"] = p.mem_bw_efficiency;
  if (p.stream_gbps > 0) j["stream_gbps"] = p.stream_gbps;
  j["flops_tflops"] = json::object();
  for (const auto& [d, v] : p.flops_tflops) j["flops_tflops"][to_string(d)] = v;
  if (!p.gemm_efficiency.empty()) {
    j["gemm_efficiency"] = json::array();
    for (const auto& g : p.gemm_efficiency)
      j["gemm_efficiency"].push_back({{"m", g.m}, {"efficiency", g.efficiency}});
  }
  j["prefill_efficiency"] = p.prefill_efficiency;
  j["attention_efficiency"] = p.attention_efficiency;
  if (p.attention_dtype) j["attention_dtype"] = to_string(*p.attention_dtype);
  j["nvlink"] = {{"domain_gpus", p.nvlink.domain_gpus},
                 {"bw_gbps", p.nvlink.bw_gbps},
                 {"latency_us", p.nvlink.latency_us}};
  j["network"] = {{"bw_gbps", p.network.bw_gbps}, {"latency_us", p.network.latency_us}};
  if (!p.collectives.empty()) {
    j["collectives"] = json::array();
    for (const auto& c : p.collectives) {
      json e = {{"collective", to_string(c.collective)},
                {"group_size", c.group_size},
                {"latency_us", c.latency_us},
                {"busbw_gbps", c.busbw_gbps}};
      if (!c.points.empty()) {
        e["points"] = json::array();
        for (const auto& q : c.points)
          e["points"].push_back({{"size_bytes", q.size_bytes}, {"time_us", q.time_us}});
      }
      j["collectives"].push_back(e);
    }
  }
  if (p.gemm_launch_us > 0 || p.kernel_launch_us > 0)
    j["launch_us"] = {{"gemm", p.gemm_launch_us}, {"kernel", p.kernel_launch_us}};
  if (!p.decode_attention.empty()) {
    j["decode_attention"] = json::array();
    for (const auto& a : p.decode_attention)
      j["decode_attention"].push_back({{"kind", a.mla ? "mla" : "gqa"},
                                       {"q_per_kv", a.q_per_kv},
                                       {"kv_heads", a.kv_heads},
                                       {"batch", a.batch},
                                       {"kv_bytes", a.kv_bytes},
                                       {"efficiency", a.efficiency}});
  }
  j["sources"] = json::object();
  for (const auto& [k, v] : p.sources) j["sources"][k] = v;
  return j.dump(2) + "\n";
}

void write_hardware_profile(const std::string& path, const HardwareProfile& p,
                            const std::string& option) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp);
    if (!out) throw UsageError(option + ": cannot create '" + path + "'");
    out << hardware_to_json(p);
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      throw UsageError(option + ": cannot write '" + path + "'");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw UsageError(option + ": cannot rename the temporary file to '" + path + "'");
  }
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
