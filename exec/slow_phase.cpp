#include "exec/slow_phase.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "common/usage_error.hpp"

namespace helix {

SlowPhase slow_phase_from_env() {
  SlowPhase s;
  const char* v = std::getenv("HELIX_TEST_SLOW_PHASE");
  if (!v || !*v) return s;
  s.text = v;
  const std::string text = v;
  const auto colon = text.find(':');
  const std::string name = text.substr(0, colon);
  std::string known;
  for (int p = 0; p < kNumPhases; ++p) {
    known += std::string(known.empty() ? "" : ", ") + phase_name(Phase(p));
    if (name == phase_name(Phase(p))) s.phase = p;
  }
  char* end = nullptr;
  const std::string frac = colon == std::string::npos ? "" : text.substr(colon + 1);
  s.fraction = std::strtod(frac.c_str(), &end);
  if (s.phase < 0 || frac.empty() || *end != '\0' || !std::isfinite(s.fraction) ||
      !(s.fraction > 0) || s.fraction > 10)
    throw UsageError("HELIX_TEST_SLOW_PHASE: must be PHASE:FRACTION with PHASE one of " + known +
                     " and 0 < FRACTION <= 10 (e.g. ffn:0.10), got '" + text + "'");
  return s;
}

namespace {

// A step whose time counts in the phase: every step of it but HOP-B's a2a_wait, which the
// executors time in no phase (exec/executor.hpp).
bool in_phase(const Step& s, int phase) {
  return int(s.phase) == phase && s.op != Op::a2a_wait;
}

}  // namespace

int PhaseDelay::last_step(const std::vector<Step>& steps) const {
  if (!on()) return -1;
  for (int i = int(steps.size()) - 1; i >= 0; --i)
    if (in_phase(steps[size_t(i)], s_.phase)) return i;
  return -1;
}

void PhaseDelay::observe(const std::vector<Step>& steps, const std::vector<double>& step_us,
                         double added_us) {
  if (!on()) return;
  double t = 0;
  for (size_t i = 0; i < steps.size() && i < step_us.size(); ++i)
    if (in_phase(steps[i], s_.phase)) t += step_us[i];
  undelayed_us_ = std::max(0.0, t - added_us);
}

}  // namespace helix
