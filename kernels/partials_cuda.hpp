// Packing attention partials for their exchange on the GPU, in one launch (cpu::pack_partials).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/partials.hpp"

namespace helix::cuda {

// Most peers one launch packs for (the KVP width).
constexpr int kMaxPackPeers = 256;

// cpu::pack_partials on device pointers, asynchronous on `stream`; peer_heads is a host array of
// at most kMaxPackPeers ranges.
void pack_partials(const float* o, int64_t o_ld, const float* lse, int64_t lse_ld, int64_t batch,
                   int64_t dim, const cpu::HeadRange* peer_heads, int peers, float* dst,
                   cudaStream_t stream);

}  // namespace helix::cuda
