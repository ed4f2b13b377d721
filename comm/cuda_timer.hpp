// CUDA events as objects: an event (created on construction, destroyed with the object) and a
// timer of the device time between two points of one stream. The one event timer of the CUDA code
// (executor steps, micro-benchmark launches, KV transfers, the stream ceiling, the emulation's
// calibration).
#pragma once

#include <cuda_runtime.h>

#include "comm/cuda_check.hpp"

namespace helix {

class CudaEvent {
 public:
  // timing = false: an event for ordering only (cudaEventDisableTiming, cheaper to record).
  explicit CudaEvent(bool timing = true) {
    HELIX_CUDA_CHECK(
        cudaEventCreateWithFlags(&e_, timing ? cudaEventDefault : cudaEventDisableTiming));
  }
  CudaEvent(CudaEvent&& o) noexcept : e_(o.e_) { o.e_ = nullptr; }
  CudaEvent& operator=(CudaEvent&& o) noexcept {
    if (this != &o) {
      if (e_) cudaEventDestroy(e_);
      e_ = o.e_;
      o.e_ = nullptr;
    }
    return *this;
  }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  ~CudaEvent() {
    if (e_) cudaEventDestroy(e_);
  }

  void record(cudaStream_t stream) { HELIX_CUDA_CHECK(cudaEventRecord(e_, stream)); }
  // As record(); while `stream` is being captured into a CUDA graph, the record becomes a node of
  // the graph (each replay records the event, so it times the replay) instead of a dependency.
  void record_in_graph(cudaStream_t stream) {
    HELIX_CUDA_CHECK(cudaEventRecordWithFlags(e_, stream, cudaEventRecordExternal));
  }
  // Makes `stream` wait for the work recorded before this event.
  void wait_on(cudaStream_t stream) const { HELIX_CUDA_CHECK(cudaStreamWaitEvent(stream, e_, 0)); }
  void synchronize() const { HELIX_CUDA_CHECK(cudaEventSynchronize(e_)); }
  cudaEvent_t get() const { return e_; }

  // Microseconds from `from` to `to` (both recorded and complete).
  static double elapsed_us(const CudaEvent& from, const CudaEvent& to) {
    float ms = 0;
    HELIX_CUDA_CHECK(cudaEventElapsedTime(&ms, from.e_, to.e_));
    return double(ms) * 1e3;
  }

 private:
  cudaEvent_t e_ = nullptr;
};

// Device time of the work enqueued on one stream between start() and stop().
class CudaTimer {
 public:
  void start(cudaStream_t stream) { start_.record(stream); }
  void stop(cudaStream_t stream) { stop_.record(stream); }
  // Waits for the stop event; microseconds between the two.
  double elapsed_us() {
    stop_.synchronize();
    return CudaEvent::elapsed_us(start_, stop_);
  }

 private:
  CudaEvent start_, stop_;
};

}  // namespace helix
