// Correctness check of a kernel case outside the timed loop: the backend runs the case's small()
// version once on fresh random operands, and the case compares the results with the fp32 CPU
// reference of kernels/*_cpu.cpp on the very same inputs (storage values widened to fp32). Also
// the comparison helpers the cases' checks share.
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

// Storage elements (fp32, or bf16 as the upper half of an fp32) widened to fp32; fp32 operands.
std::vector<float> widen(const std::vector<unsigned char>& raw, int64_t storage_bytes);
std::vector<float> as_f32(const std::vector<unsigned char>& raw);
// max |a - b| / max |b| (NaN anywhere: infinity); max |a - b| (equal infinities agree).
double max_rel_err(const std::vector<float>& a, const std::vector<float>& b);
double max_abs_err(const std::vector<float>& a, const std::vector<float>& b);
// Fills the result of a check from its errors, tolerances and the shape it checked.
VerifyResult verdict(double out_err, double out_tol, double lse_err, double lse_tol,
                     const std::string& shape);

}  // namespace helix::micro
