// RMSNorm: CPU reference (fp32).
#pragma once

#include <cstdint>

namespace helix::cpu {

// y[m, :] = (x[m, :] / rms(x[m, :])) * w, rms = sqrt(mean(x^2) + eps).
//   x, y: [rows, dim] (may alias), w: [dim]
void rmsnorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* y);

}  // namespace helix::cpu
