// Rotary position embedding: CPU reference (fp32).
#pragma once

#include <cstdint>

namespace helix::cpu {

// Rotary embedding (rotate-half convention) of one vector of even width `dim` at position `pos`:
// pairs (v[i], v[i + dim/2]) rotated by pos * theta^(-2i/dim).
void rope(float* v, int64_t dim, int64_t pos, float theta);

}  // namespace helix::cpu
