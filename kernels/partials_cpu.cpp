#include <cstring>

#include "kernels/partials.hpp"

namespace helix::cpu {

void pack_partials(const float* o, int64_t o_ld, const float* lse, int64_t lse_ld, int64_t batch,
                   int64_t dim, const HeadRange* peer_heads, int peers, float* dst) {
  const int64_t row = partial_row(dim);
  for (int j = 0; j < peers; ++j)
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t h = peer_heads[j].begin; h < peer_heads[j].end; ++h) {
        std::memcpy(dst, o + b * o_ld + h * dim, size_t(dim) * sizeof(float));
        dst[dim] = lse[b * lse_ld + h];
        dst += row;
      }
}

}  // namespace helix::cpu
