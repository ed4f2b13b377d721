// Fuzz target: model JSON files (--model FILE.json). Any input must either parse or be refused
// with std::invalid_argument; what parses must survive the layouts, schedules and cost model.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "analytic/hardware.hpp"
#include "layouts/model_spec.hpp"
#include "tests/fuzz/fuzz_exercise.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const helix::HardwareProfile hw = helix::load_hardware("h200");
  const std::string text(reinterpret_cast<const char*>(data), size);
  helix::ModelSpec m;
  try {
    m = helix::parse_model_json(text, "fuzz.json");
  } catch (const std::invalid_argument&) {
    return 0;
  }
  helix::fuzz::exercise_model(m, hw);
  return 0;
}
