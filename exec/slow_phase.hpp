// A test-only slowdown of one phase, for checking that the performance gate catches a regression
// on real hardware: HELIX_TEST_SLOW_PHASE=PHASE:FRACTION (e.g. ffn:0.10) lengthens PHASE on every
// rank by FRACTION of its own undelayed time in the previous timed step, with a delay at the end
// of the phase's last step, inside that step's timing (CUDA: one launch that holds the stream on
// the GPU's global timer until the delay has passed since it began, the emulated collectives'
// kernel, at least its measured floor; CPU: a busy wait). The first timed
// step of an executor has no estimate and runs undelayed. Never set it for measurements: the
// trace records it (run attribute test_slow_phase).
#pragma once

#include <string>
#include <vector>

#include "layouts/schedule.hpp"

namespace helix {

struct SlowPhase {
  int phase = -1;  // -1: off
  double fraction = 0;
  std::string text;  // the variable's value ("" when off)
  bool on() const { return phase >= 0; }
};

// HELIX_TEST_SLOW_PHASE parsed; throws UsageError naming the variable when the value is not
// PHASE:FRACTION with a known phase and 0 < FRACTION <= 10.
SlowPhase slow_phase_from_env();

// The delay of one executor: which step ends the phase, and how long to delay after it.
class PhaseDelay {
 public:
  PhaseDelay() = default;
  explicit PhaseDelay(SlowPhase s) : s_(std::move(s)) {}
  bool on() const { return s_.on(); }
  // Index of the last step of the phase in `steps` (-1: none, or off).
  int last_step(const std::vector<Step>& steps) const;
  // Delay to add in this step (us): FRACTION of the phase's last undelayed time (0 at first).
  double next_us() const { return on() ? s_.fraction * undelayed_us_ : 0.0; }
  // After a timed step: the phase's measured time and the delay it included.
  void observe(const std::vector<Step>& steps, const std::vector<double>& step_us, double added_us);

 private:
  SlowPhase s_;
  double undelayed_us_ = 0;
};

}  // namespace helix
