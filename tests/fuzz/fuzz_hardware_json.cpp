// Fuzz target: hardware profiles (--hardware FILE.json, the cost model's reader, and the reader
// of profiles written by `helix-bench calibrate`). Any input must parse or be refused with the
// reader's error; what parses must survive the cost model.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "analytic/hardware.hpp"
#include "bench/micro/profile.hpp"
#include "comm/error.hpp"
#include "tests/fuzz/fuzz_exercise.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    helix::fuzz::exercise_hardware(helix::parse_hardware_json(text, "fuzz.json"));
  } catch (const helix::UsageError&) {
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    return 0;
  }
  try {
    (void)helix::micro::to_json(helix::micro::profile_from_json(j));
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
