// GPU clocks, power, temperature and throttle reasons from NVML, sampled on every rank before and
// after the timed iterations of a run and recorded as run attributes (results/README.md), so that
// a slow run can be told from a throttled GPU. NVML is opened at run time (libnvidia-ml.so.1 comes
// with the driver, not the toolkit): helix-bench starts without it, and the trace then says why
// there is no telemetry.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

#include "comm/mpi_comm.hpp"

namespace helix {

// NVML's clocks event ("throttle") reason bits, as nvmlDeviceGetCurrentClocksEventReasons reports.
enum ThrottleReason : uint64_t {
  kThrottleGpuIdle = 0x1,
  kThrottleApplicationsClocks = 0x2,
  kThrottleSwPowerCap = 0x4,
  kThrottleHwSlowdown = 0x8,
  kThrottleSyncBoost = 0x10,
  kThrottleSwThermal = 0x20,
  kThrottleHwThermal = 0x40,
  kThrottleHwPowerBrake = 0x80,
  kThrottleDisplayClocks = 0x100,
};
// The reasons that slow a busy GPU below the clocks asked for: power cap, hardware slowdown,
// software and hardware thermal slowdown, power brake.
constexpr uint64_t kThrottleSlowing = kThrottleSwPowerCap | kThrottleHwSlowdown |
                                      kThrottleSwThermal | kThrottleHwThermal |
                                      kThrottleHwPowerBrake;
// "sw_power_cap,hw_thermal" for a bit mask ("none" for 0).
std::string throttle_reason_names(uint64_t mask);

// One sample of this rank's GPU. Fields are -1 where NVML could not read them.
struct GpuSample {
  double sm_clock_mhz = -1, mem_clock_mhz = -1, power_w = -1, temperature_c = -1;
  int64_t throttle_reasons = -1;                              // bit mask (ThrottleReason)
  double power_violation_us = -1, thermal_violation_us = -1;  // cumulative since driver load
  static constexpr int kFields = 7;
  void to(double* out) const;
  static GpuSample from(const double* in);
};

// This rank's current CUDA device through NVML. `error` says why nothing could be read (no CUDA
// backend, no libnvidia-ml, a device NVML does not know); the sample is then all -1.
GpuSample sample_gpu(std::string* error);

// The samples of one run: every rank's before and after the timed iterations, on rank 0.
struct GpuTelemetry {
  std::vector<GpuSample> before, after;  // [ranks]
  std::string error;                     // rank 0's reason when NVML could not be read
  // Ranks whose GPU throttled during the run: a slowing reason after the timed iterations, or
  // power or thermal violation time accumulated during them.
  std::vector<int> throttled_ranks() const;
  // One line for stderr when some GPU throttled ("" otherwise).
  std::string warning() const;
};

// Collective: gathers `mine_before` and `mine_after` of every rank to rank 0 of `world`.
GpuTelemetry gather_gpu_telemetry(const MpiComm& world, const GpuSample& mine_before,
                                  const GpuSample& mine_after, const std::string& error);

// Writes the gpu_* attributes of a run group (one value per rank; results/README.md).
void write_gpu_telemetry(hid_t run, const GpuTelemetry& t);

}  // namespace helix
