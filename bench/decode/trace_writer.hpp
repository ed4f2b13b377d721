// The HDF5 trace of a decode job (schema: results/README.md, "/decode"), written from the job
// record alone: root attributes, the /decode group, one /decode/run_NNNN group per run. The file
// appears under its name only when complete (h5::File commits a temporary file).
#pragma once

#include <string>

#include "bench/decode/record.hpp"

namespace helix {

void write_decode_trace(const std::string& path, const DecodeJobRecord& job);

}  // namespace helix
