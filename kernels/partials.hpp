// Packing attention partials for their exchange (Helix All-to-All, KVP gather): CPU reference.
#pragma once

#include <cstdint>

namespace helix::cpu {

// Query heads [begin, end) of one peer, relative to this rank's heads.
struct HeadRange {
  int64_t begin = 0, end = 0;
};

// One exchanged row per (request, head): the head's `dim` partial output values followed by its
// LSE, dim + 1 floats.
inline int64_t partial_row(int64_t dim) {
  return dim + 1;
}

// Packs the partials of `batch` requests for the peers of an exchange, one contiguous block per
// peer in peer order: for peer j (query heads peer_heads[j], relative to this rank's heads), for
// each request b, for each head h of the range, the row (o[b * o_ld + h * dim + d] for d < dim,
// lse[b * lse_ld + h]). Rows are partial_row(dim) floats; peer j's block starts after the
// batch x heads rows of the peers before it.
void pack_partials(const float* o, int64_t o_ld, const float* lse, int64_t lse_ld, int64_t batch,
                   int64_t dim, const HeadRange* peer_heads, int peers, float* dst);

}  // namespace helix::cpu
