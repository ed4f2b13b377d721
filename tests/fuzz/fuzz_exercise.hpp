// What the fuzz targets do with a parsed model or profile: the computations every subcommand
// derives from it (layouts, rank plans, schedules, the cost model), so that a value the parser
// lets through and the arithmetic cannot take (an overflow, a division by zero) shows up under
// the sanitizers.
#pragma once

#include "analytic/hardware.hpp"
#include "layouts/model_spec.hpp"

namespace helix::fuzz {

// Every layout of 1..8 ranks the model admits at batch 1 and 8, planned, scheduled and priced on
// `hw` (S = 4096 tokens).
void exercise_model(const ModelSpec& m, const HardwareProfile& hw);

// The profile's derived figures and the pricing of a small model's layouts on it.
void exercise_hardware(const HardwareProfile& hw);

}  // namespace helix::fuzz
