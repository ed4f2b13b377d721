// `helix-bench model --validate TRACE.h5`: the cost model against a decode trace (every run's
// phases predicted from its layout, batch, sequence length and the hardware profile, beside the
// measured ones, written as /validate).
#pragma once

#include "analytic/hardware.hpp"
#include "bench/commands/model_cmd.hpp"
#include "bench/trace/metadata.hpp"

namespace helix {

int run_validate(const ModelOptions& o, const HardwareProfile& hw, const RunEnvironment& env);

}  // namespace helix
