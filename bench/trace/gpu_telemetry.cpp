#include "bench/trace/gpu_telemetry.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <mutex>

#include "bench/trace/h5.hpp"
#include "comm/error.hpp"

#if defined(HELIX_CUDA_BACKEND)
#include <cuda_runtime.h>
#endif

namespace helix {

std::string throttle_reason_names(uint64_t mask) {
  static const std::pair<uint64_t, const char*> names[] = {
      {kThrottleGpuIdle, "gpu_idle"},
      {kThrottleApplicationsClocks, "applications_clocks"},
      {kThrottleSwPowerCap, "sw_power_cap"},
      {kThrottleHwSlowdown, "hw_slowdown"},
      {kThrottleSyncBoost, "sync_boost"},
      {kThrottleSwThermal, "sw_thermal_slowdown"},
      {kThrottleHwThermal, "hw_thermal_slowdown"},
      {kThrottleHwPowerBrake, "hw_power_brake"},
      {kThrottleDisplayClocks, "display_clocks"}};
  std::string s;
  for (const auto& [bit, name] : names)
    if (mask & bit) s += (s.empty() ? "" : ",") + std::string(name);
  const uint64_t known = 0x1ff;
  if (mask & ~known) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(mask & ~known));
    s += (s.empty() ? "" : ",") + std::string(buf);
  }
  return s.empty() ? "none" : s;
}

void GpuSample::to(double* out) const {
  const double v[kFields] = {
      sm_clock_mhz,       mem_clock_mhz,       power_w, temperature_c, double(throttle_reasons),
      power_violation_us, thermal_violation_us};
  std::copy(v, v + kFields, out);
}

GpuSample GpuSample::from(const double* in) {
  GpuSample s;
  s.sm_clock_mhz = in[0];
  s.mem_clock_mhz = in[1];
  s.power_w = in[2];
  s.temperature_c = in[3];
  s.throttle_reasons = int64_t(in[4]);
  s.power_violation_us = in[5];
  s.thermal_violation_us = in[6];
  return s;
}

#if defined(HELIX_CUDA_BACKEND)
namespace {

// The few NVML entry points used here, with the types of the public NVML C API (nvml.h is not
// part of every toolkit install; the library comes with the driver).
using NvmlDevice = struct NvmlDeviceOpaque*;
struct NvmlViolationTime {
  unsigned long long reference_time;
  unsigned long long violation_time_ns;
};
constexpr int kNvmlSuccess = 0;
constexpr int kNvmlClockSm = 1, kNvmlClockMem = 2;           // nvmlClockType_t
constexpr int kNvmlTemperatureGpu = 0;                       // nvmlTemperatureSensors_t
constexpr int kNvmlPolicyPower = 0, kNvmlPolicyThermal = 1;  // nvmlPerfPolicyType_t

struct Nvml {
  int (*init)() = nullptr;
  int (*by_bus_id)(const char*, NvmlDevice*) = nullptr;
  int (*clock)(NvmlDevice, int, unsigned*) = nullptr;
  int (*power_mw)(NvmlDevice, unsigned*) = nullptr;
  int (*temperature)(NvmlDevice, int, unsigned*) = nullptr;
  int (*reasons)(NvmlDevice, unsigned long long*) = nullptr;
  int (*violation)(NvmlDevice, int, NvmlViolationTime*) = nullptr;
  const char* (*error_string)(int) = nullptr;
  std::string error;  // why NVML is not usable ("" when it is)
};

template <class F>
void bind(void* lib, F* fn, const char* name, const char* fallback = nullptr) {
  void* p = dlsym(lib, name);
  if (!p && fallback) p = dlsym(lib, fallback);
  *fn = reinterpret_cast<F>(p);
}

const Nvml& nvml() {
  static Nvml n;
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      n.error = "libnvidia-ml.so.1 not found (NVML comes with the NVIDIA driver)";
      return;
    }
    bind(lib, &n.init, "nvmlInit_v2");
    bind(lib, &n.by_bus_id, "nvmlDeviceGetHandleByPciBusId_v2");
    bind(lib, &n.clock, "nvmlDeviceGetClockInfo");
    bind(lib, &n.power_mw, "nvmlDeviceGetPowerUsage");
    bind(lib, &n.temperature, "nvmlDeviceGetTemperature");
    // Renamed in driver 535; the older name stays for older drivers.
    bind(lib, &n.reasons, "nvmlDeviceGetCurrentClocksEventReasons",
         "nvmlDeviceGetCurrentClocksThrottleReasons");
    bind(lib, &n.violation, "nvmlDeviceGetViolationStatus");
    bind(lib, &n.error_string, "nvmlErrorString");
    if (!n.init || !n.by_bus_id) {
      n.error = "libnvidia-ml.so.1 lacks nvmlInit_v2 or nvmlDeviceGetHandleByPciBusId_v2";
      return;
    }
    const int rc = n.init();
    if (rc != kNvmlSuccess)
      n.error = std::string("nvmlInit failed: ") + (n.error_string ? n.error_string(rc) : "?");
  });
  return n;
}

}  // namespace
#endif

GpuSample sample_gpu(std::string* error) {
  GpuSample s;
#if defined(HELIX_CUDA_BACKEND)
  const Nvml& n = nvml();
  if (!n.error.empty()) {
    if (error) *error = n.error;
    return s;
  }
  int device = 0;
  char bus[32] = {};
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetPCIBusId(bus, int(sizeof bus), device) != cudaSuccess) {
    if (error) *error = "no current CUDA device";
    return s;
  }
  NvmlDevice dev = nullptr;
  if (n.by_bus_id(bus, &dev) != kNvmlSuccess) {
    if (error) *error = std::string("NVML does not know the device at bus id ") + bus;
    return s;
  }
  unsigned v = 0;
  if (n.clock && n.clock(dev, kNvmlClockSm, &v) == kNvmlSuccess) s.sm_clock_mhz = v;
  if (n.clock && n.clock(dev, kNvmlClockMem, &v) == kNvmlSuccess) s.mem_clock_mhz = v;
  if (n.power_mw && n.power_mw(dev, &v) == kNvmlSuccess) s.power_w = v / 1000.0;
  if (n.temperature && n.temperature(dev, kNvmlTemperatureGpu, &v) == kNvmlSuccess)
    s.temperature_c = v;
  unsigned long long mask = 0;
  if (n.reasons && n.reasons(dev, &mask) == kNvmlSuccess) s.throttle_reasons = int64_t(mask);
  NvmlViolationTime t{};
  if (n.violation && n.violation(dev, kNvmlPolicyPower, &t) == kNvmlSuccess)
    s.power_violation_us = double(t.violation_time_ns) / 1e3;
  if (n.violation && n.violation(dev, kNvmlPolicyThermal, &t) == kNvmlSuccess)
    s.thermal_violation_us = double(t.violation_time_ns) / 1e3;
  if (error) error->clear();
#else
  if (error) *error = "this build has no CUDA backend";
#endif
  return s;
}

std::vector<int> GpuTelemetry::throttled_ranks() const {
  std::vector<int> ranks;
  for (size_t r = 0; r < after.size() && r < before.size(); ++r) {
    const GpuSample &a = after[r], &b = before[r];
    const bool reason = a.throttle_reasons > 0 && (uint64_t(a.throttle_reasons) & kThrottleSlowing);
    const bool power = a.power_violation_us >= 0 && b.power_violation_us >= 0 &&
                       a.power_violation_us > b.power_violation_us;
    const bool thermal = a.thermal_violation_us >= 0 && b.thermal_violation_us >= 0 &&
                         a.thermal_violation_us > b.thermal_violation_us;
    if (reason || power || thermal) ranks.push_back(int(r));
  }
  return ranks;
}

std::string GpuTelemetry::warning() const {
  const std::vector<int> ranks = throttled_ranks();
  if (ranks.empty()) return "";
  std::string s = "WARNING: GPU throttled during the timed iterations on rank";
  s += ranks.size() > 1 ? "s" : "";
  for (size_t i = 0; i < ranks.size() && i < 8; ++i) {
    const int r = ranks[i];
    const GpuSample &a = after[size_t(r)], &b = before[size_t(r)];
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "%s %d (%s; SM %.0f -> %.0f MHz, %.0f -> %.0f W, power/thermal violation "
                  "%.0f/%.0f us)",
                  i ? "," : "", r,
                  throttle_reason_names(uint64_t(std::max<int64_t>(0, a.throttle_reasons))).c_str(),
                  b.sm_clock_mhz, a.sm_clock_mhz, b.power_w, a.power_w,
                  std::max(0.0, a.power_violation_us - b.power_violation_us),
                  std::max(0.0, a.thermal_violation_us - b.thermal_violation_us));
    s += buf;
  }
  if (ranks.size() > 8) s += ", ...";
  return s + ": its timings are not those of the GPU at full clocks";
}

GpuTelemetry gather_gpu_telemetry(const MpiComm& world, const GpuSample& mine_before,
                                  const GpuSample& mine_after, const std::string& error) {
  constexpr int k = GpuSample::kFields;
  double mine[2 * k];
  mine_before.to(mine);
  mine_after.to(mine + k);
  const int n = world.size();
  std::vector<double> all(world.rank() == 0 ? size_t(2 * k * n) : 0);
  HELIX_MPI_CHECK(
      MPI_Gather(mine, 2 * k, MPI_DOUBLE, all.data(), 2 * k, MPI_DOUBLE, 0, world.raw()));
  GpuTelemetry t;
  t.error = error;
  if (world.rank() != 0) return t;
  for (int r = 0; r < n; ++r) {
    t.before.push_back(GpuSample::from(&all[size_t(2 * k * r)]));
    t.after.push_back(GpuSample::from(&all[size_t(2 * k * r + k)]));
  }
  return t;
}

void write_gpu_telemetry(hid_t run, const GpuTelemetry& t) {
  h5::attr(run, "gpu_telemetry", t.error.empty() ? std::string("nvml") : "none: " + t.error);
  if (!t.error.empty()) return;
  const auto column = [](const std::vector<GpuSample>& v, double GpuSample::*f) {
    std::vector<double> c;
    for (const GpuSample& s : v) c.push_back(s.*f);
    return c;
  };
  const std::pair<const char*, const std::vector<GpuSample>*> samples[] = {{"before", &t.before},
                                                                           {"after", &t.after}};
  for (const auto& [when, v] : samples) {
    const std::string w = when;
    h5::attr(run, "gpu_sm_clock_mhz_" + w, column(*v, &GpuSample::sm_clock_mhz));
    h5::attr(run, "gpu_mem_clock_mhz_" + w, column(*v, &GpuSample::mem_clock_mhz));
    h5::attr(run, "gpu_power_w_" + w, column(*v, &GpuSample::power_w));
    h5::attr(run, "gpu_temperature_c_" + w, column(*v, &GpuSample::temperature_c));
    std::vector<int64_t> reasons;
    for (const GpuSample& s : *v) reasons.push_back(s.throttle_reasons);
    h5::attr(run, "gpu_throttle_reasons_" + w, reasons);
  }
  std::vector<double> power, thermal;
  for (size_t r = 0; r < t.after.size(); ++r) {
    const GpuSample &a = t.after[r], &b = t.before[r];
    power.push_back(a.power_violation_us >= 0 && b.power_violation_us >= 0
                        ? a.power_violation_us - b.power_violation_us
                        : -1.0);
    thermal.push_back(a.thermal_violation_us >= 0 && b.thermal_violation_us >= 0
                          ? a.thermal_violation_us - b.thermal_violation_us
                          : -1.0);
  }
  h5::attr(run, "gpu_power_violation_us", power);
  h5::attr(run, "gpu_thermal_violation_us", thermal);
  const std::vector<int> throttled = t.throttled_ranks();
  h5::attr(run, "gpu_throttled", !throttled.empty());
  std::string ranks;
  for (int r : throttled) ranks += (ranks.empty() ? "" : ",") + std::to_string(r);
  h5::attr(run, "gpu_throttled_ranks", ranks);
}

}  // namespace helix
