// Correctness check of a kernel case outside the timed loop: the backend's kernel runs once on
// small fresh random operands of the same head shape (attention: at most kVerifyGqaTokens or
// kVerifyMlaTokens tokens, so the split path and a partial last tile are exercised; LSE combine:
// at most kVerifyCombineRows rows) and its outputs are compared with the fp32 CPU reference of
// kernels/*_cpu.cpp on the very same inputs (storage values widened to fp32).
#pragma once

#include <cstdint>
#include <string>

#include "bench/micro/kernel_cases.hpp"
#include "bench/micro/micro_backend.hpp"

namespace helix::micro {

constexpr int64_t kVerifyGqaTokens = 4037;
constexpr int64_t kVerifyMlaTokens = 2053;
constexpr int64_t kVerifyCombineRows = 64;

// Whether verify_case checks this kind (decode attention and LSE combine).
bool verifiable(const KernelCase& c);
// Cases that reduce to the same small case share this key (attention: the name without /T<n>).
std::string verify_key(const KernelCase& c);
// The small case verify_case runs.
KernelCase verify_shape(const KernelCase& c);

struct VerifyResult {
  bool ok = true;
  double out_err = 0;  // max |out - ref| / max |ref|
  double lse_err = 0;  // max |lse - ref lse| (natural log)
  double out_tol = 0, lse_tol = 0;
  std::string detail;  // one line: shape checked, errors and tolerances
};

// Runs the check on this rank's backend (allocates, fills, launches, downloads, synchronizes).
VerifyResult verify_case(MicroBackend& backend, const KernelCase& c, uint64_t seed);

}  // namespace helix::micro
