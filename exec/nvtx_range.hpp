// NVTX annotations and profiler control for Nsight Systems and Nsight Compute: a push/pop range
// for the scope of a C++ object, and the profiler's capture range (cudaProfilerStart/Stop). Built
// on NVTX 3 (header-only, from the CUDA toolkit) when HELIX_HAVE_NVTX is defined; otherwise every
// call is a no-op. Without a profiler attached an NVTX call costs a few nanoseconds.
//
//   { NvtxRange r("attention"); launch(); }          // nsys: a range "attention" on the thread,
//                                                     // projected onto the GPU's kernels
//   ncu --nvtx --nvtx-include "step/attention/" ...   // profiles the kernels launched inside it
#pragma once

#if defined(HELIX_HAVE_NVTX)
#include <cuda_profiler_api.h>
#include <nvtx3/nvToolsExt.h>
#endif

namespace helix {

class NvtxRange {
 public:
  explicit NvtxRange(const char* name) {
#if defined(HELIX_HAVE_NVTX)
    nvtxRangePushA(name);
#else
    (void)name;
#endif
  }
  ~NvtxRange() {
#if defined(HELIX_HAVE_NVTX)
    nvtxRangePop();
#endif
  }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

// The profiler's capture range (nsys --capture-range=cudaProfilerApi, ncu --profile-from-start
// off): cudaProfilerStart in start() when `enabled` (the CUDA backend), cudaProfilerStop in stop()
// or at destruction. Errors are ignored: without a profiler the calls do nothing.
class ProfilerCapture {
 public:
  ProfilerCapture() = default;
  explicit ProfilerCapture(bool enabled) { start(enabled); }
  ~ProfilerCapture() { stop(); }
  ProfilerCapture(const ProfilerCapture&) = delete;
  ProfilerCapture& operator=(const ProfilerCapture&) = delete;

  void start(bool enabled) {
#if defined(HELIX_HAVE_NVTX)
    if (enabled && !active_) {
      (void)cudaProfilerStart();
      active_ = true;
    }
#else
    (void)enabled;
#endif
  }
  void stop() {
#if defined(HELIX_HAVE_NVTX)
    if (active_) (void)cudaProfilerStop();
#endif
    active_ = false;
  }

 private:
  bool active_ = false;
};

}  // namespace helix
