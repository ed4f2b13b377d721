// The interface every backend's executor of a decode-layer schedule implements.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "layouts/schedule.hpp"

namespace helix {

struct StepTiming {
  std::array<double, kNumPhases> phase_us{};  // time spent in each phase's steps
  double step_us = 0;                         // wall time of the whole step on this rank
  double exposed_comm_us = 0;                 // communication time not hidden behind compute
};

class LayerExecutor {
 public:
  virtual ~LayerExecutor() = default;
  // Input hidden states of the next step(s): [batch, H] on the host.
  virtual void set_input(const float* x) = 0;
  // One decode step with the new token of every request at position `pos` (its K/V appended
  // there, overwriting what an earlier step at the same position wrote).
  virtual void step(const std::vector<Step>& schedule, int64_t pos, StepTiming* timing) = 0;
  // The layer output of the last step: [batch, H] on the host.
  virtual void get_output(float* out) = 0;
  // MoE layers: the routed experts this rank's router chose in the last step, [batch, top_k] on
  // the host; false when this rank ran no router (dense layers, ranks outside the FFN).
  virtual bool get_routing(int32_t* /*experts*/) { return false; }
  // Bytes of weights and KV cache this rank holds.
  virtual int64_t weight_bytes() const = 0;
  virtual int64_t kv_bytes() const = 0;
};

}  // namespace helix
