// GPU telemetry (bench/gpu_telemetry.hpp): throttle reason names, which ranks throttled, the
// warning, the run attributes written to HDF5, and a sample on this machine (NVML values when a
// GPU and its driver are here, otherwise all -1 with the reason).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "bench/trace/gpu_telemetry.hpp"
#include "bench/trace/h5.hpp"

namespace helix {
namespace {

GpuSample sample(double sm_mhz, double power_w, int64_t reasons, double power_violation_us,
                 double thermal_violation_us) {
  GpuSample s;
  s.sm_clock_mhz = sm_mhz;
  s.mem_clock_mhz = 3201;
  s.power_w = power_w;
  s.temperature_c = 41;
  s.throttle_reasons = reasons;
  s.power_violation_us = power_violation_us;
  s.thermal_violation_us = thermal_violation_us;
  return s;
}

TEST(GpuTelemetry, ReasonNames) {
  EXPECT_EQ(throttle_reason_names(0), "none");
  EXPECT_EQ(throttle_reason_names(kThrottleGpuIdle), "gpu_idle");
  EXPECT_EQ(throttle_reason_names(kThrottleSwPowerCap | kThrottleHwThermal),
            "sw_power_cap,hw_thermal_slowdown");
  EXPECT_EQ(throttle_reason_names(0x1000 | kThrottleSyncBoost), "sync_boost,0x1000");
  EXPECT_EQ(kThrottleSlowing, 0xecu);
}

TEST(GpuTelemetry, ThrottledRanks) {
  GpuTelemetry t;
  // rank 0: idle afterwards, no violation time: fine
  t.before.push_back(sample(1980, 120, kThrottleGpuIdle, 5e6, 0));
  t.after.push_back(sample(1980, 130, kThrottleGpuIdle, 5e6, 0));
  // rank 1: power capped after the run
  t.before.push_back(sample(1980, 690, 0, 0, 0));
  t.after.push_back(sample(1755, 700, kThrottleSwPowerCap, 0, 0));
  // rank 2: thermal violation time grew during the run
  t.before.push_back(sample(1980, 500, 0, 0, 100));
  t.after.push_back(sample(1980, 510, 0, 0, 2600));
  // rank 3: counters unreadable (-1): not counted
  t.before.push_back(sample(1980, 500, -1, -1, -1));
  t.after.push_back(sample(1980, 500, -1, -1, -1));
  EXPECT_EQ(t.throttled_ranks(), (std::vector<int>{1, 2}));
  const std::string w = t.warning();
  EXPECT_NE(w.find("WARNING: GPU throttled"), std::string::npos) << w;
  EXPECT_NE(w.find("ranks 1 (sw_power_cap; SM 1980 -> 1755 MHz"), std::string::npos) << w;
  EXPECT_NE(
      w.find("2 (none; SM 1980 -> 1980 MHz, 500 -> 510 W, power/thermal violation 0/2500 us)"),
      std::string::npos)
      << w;
  t.after[1].throttle_reasons = kThrottleGpuIdle;
  t.after[2].thermal_violation_us = 100;
  EXPECT_TRUE(t.throttled_ranks().empty());
  EXPECT_EQ(t.warning(), "");
}

// The run group of a trace holding only what write_gpu_telemetry wrote; removed on destruction.
class WrittenRun {
 public:
  explicit WrittenRun(const GpuTelemetry& t)
      : path_("gpu_telemetry_test_" + std::to_string(getpid()) + ".h5") {
    {
      h5::File f(path_);
      h5::Group g(f.id(), "/decode/run_0000");
      write_gpu_telemetry(g.id(), t);
      f.commit();
    }
    file_ = H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    group_ = file_ >= 0 ? H5Gopen2(file_, "/decode/run_0000", H5P_DEFAULT) : -1;
  }
  ~WrittenRun() {
    if (group_ >= 0) H5Gclose(group_);
    if (file_ >= 0) H5Fclose(file_);
    std::remove(path_.c_str());
  }
  hid_t id() const { return group_; }

 private:
  std::string path_;
  hid_t file_ = -1, group_ = -1;
};

TEST(GpuTelemetry, RunAttributes) {
  GpuTelemetry t;
  t.before = {sample(1980, 120, 0, 10, 0), sample(1980, 130, 0, 0, 0)};
  t.after = {sample(1755, 700, kThrottleSwPowerCap, 2010, 0), sample(1980, 650, 0, 0, 0)};
  {
    const WrittenRun run(t);
    ASSERT_GE(run.id(), 0);
    EXPECT_EQ(h5::read_attr_string(run.id(), "gpu_telemetry"), "nvml");
    EXPECT_EQ(h5::read_attr_int(run.id(), "gpu_throttled"), 1);
    EXPECT_EQ(h5::read_attr_string(run.id(), "gpu_throttled_ranks"), "0");
    for (const char* name :
         {"gpu_sm_clock_mhz_before", "gpu_sm_clock_mhz_after", "gpu_mem_clock_mhz_after",
          "gpu_power_w_before", "gpu_power_w_after", "gpu_temperature_c_after",
          "gpu_throttle_reasons_before", "gpu_throttle_reasons_after", "gpu_power_violation_us",
          "gpu_thermal_violation_us"})
      EXPECT_TRUE(h5::has_attr(run.id(), name)) << name;
    hid_t a = H5Aopen(run.id(), "gpu_power_violation_us", H5P_DEFAULT);
    double v[2] = {};
    H5Aread(a, H5T_NATIVE_DOUBLE, v);
    H5Aclose(a);
    EXPECT_DOUBLE_EQ(v[0], 2000.0);
    EXPECT_DOUBLE_EQ(v[1], 0.0);
  }
  t.after[0] = sample(1980, 700, 0, 10, 0);  // no throttling: an empty list of ranks
  {
    const WrittenRun run(t);
    EXPECT_EQ(h5::read_attr_int(run.id(), "gpu_throttled"), 0);
    EXPECT_EQ(h5::read_attr_string(run.id(), "gpu_throttled_ranks"), "");
  }
  GpuTelemetry none;
  none.error = "libnvidia-ml.so.1 not found (NVML comes with the NVIDIA driver)";
  const WrittenRun run(none);
  EXPECT_EQ(h5::read_attr_string(run.id(), "gpu_telemetry"), "none: " + none.error);
  EXPECT_FALSE(h5::has_attr(run.id(), "gpu_sm_clock_mhz_before"));
}

TEST(GpuTelemetry, SampleOnThisMachine) {
  std::string error;
  const GpuSample s = sample_gpu(&error);
  if (error.empty()) {  // a GPU with its driver: NVML answered
    EXPECT_GT(s.sm_clock_mhz, 0);
    EXPECT_GT(s.power_w, 0);
    EXPECT_GE(s.throttle_reasons, 0);
  } else {
    EXPECT_EQ(s.sm_clock_mhz, -1);
    EXPECT_EQ(s.throttle_reasons, -1);
  }
}

}  // namespace
}  // namespace helix
