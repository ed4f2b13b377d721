// Correctness check of a kernel case outside the timed loop: the backend runs the case's small()
// version once on fresh random operands, the CPU backend (the fp32 reference kernels of
// kernels/*_cpu.cpp) runs it on the very same inputs (storage values widened to fp32), and the
// outputs the case names are compared.
#pragma once

#include <cstdint>
#include <vector>

#include "bench/micro/kernel_case.hpp"
#include "bench/micro/micro_backend.hpp"

namespace helix::micro {

// Runs the check on this rank's backend (allocates, fills, launches, downloads, synchronizes).
// Cases without a reference (small() null) return ok with an empty detail.
VerifyResult verify_case(MicroBackend& backend, const KernelCase& c, uint64_t seed);
// Whether the case has a reference check.
bool verifiable(const KernelCase& c);

}  // namespace helix::micro
