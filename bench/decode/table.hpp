// The decode job's results as printed: one row per run (step time, phases, exposed
// communication, verification) and, when the stream ceiling was measured, rank 0's attention
// bandwidth against it. Reads only the job record.
#pragma once

#include "bench/decode/record.hpp"

namespace helix {

void print_decode_table(const DecodeJobRecord& job);

}  // namespace helix
