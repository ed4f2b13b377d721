#include "exec/executor.hpp"

#include <algorithm>

namespace helix {

const char* const kExposedCommDefinition =
    "step_us minus the sum of the compute phases (phases whose phase_is_comm is 0), at least 0: "
    "the time this rank's step spent outside its compute steps";

double exposed_comm_us(const std::array<double, kNumPhases>& phase_us, double step_us) {
  double compute_us = 0;
  for (int p = 0; p < kNumPhases; ++p)
    if (!phase_is_comm(static_cast<Phase>(p))) compute_us += phase_us[size_t(p)];
  return std::max(0.0, step_us - compute_us);
}

}  // namespace helix
