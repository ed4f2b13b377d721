// Fuzz target: hardware profiles (--hardware FILE.json and the profiles `helix-bench calibrate`
// writes share one reader). Any input must parse or be refused with the reader's error; what
// parses must survive the cost model and be written back.
#include <cstddef>
#include <cstdint>
#include <string>

#include "analytic/hardware.hpp"
#include "comm/error.hpp"
#include "tests/fuzz/fuzz_exercise.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const helix::HardwareProfile h = helix::parse_hardware_json(text, "fuzz.json");
    helix::fuzz::exercise_hardware(h);
    (void)helix::hardware_to_json(h);  // as calibrate writes it
  } catch (const helix::UsageError&) {
  }
  return 0;
}
