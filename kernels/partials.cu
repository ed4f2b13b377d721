// Packing attention partials for their exchange (cpu::pack_partials): one warp per exchanged row
// (request, head), its dim values then its LSE; the peers' head ranges travel in the kernel
// parameters, so a chunk's whole send block is one launch.
#include <algorithm>

#include "comm/cuda_check.hpp"
#include "comm/error.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/partials_cuda.hpp"

namespace helix::cuda {

namespace {

constexpr int kWarpsPerBlock = 8;

struct PackArgs {
  const float* o;
  const float* lse;
  float* dst;
  int64_t o_ld, lse_ld, batch, dim, rows;
  int peers;
  int32_t head_begin[kMaxPackPeers];
  int32_t heads[kMaxPackPeers];
  int64_t first_row[kMaxPackPeers];  // first output row of each peer's block
};

__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    pack_kernel(const __grid_constant__ PackArgs a) {
  const int lane = threadIdx.x % 32;
  const int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (r >= a.rows) return;
  int j = 0;  // the peer whose block holds row r (peers with no heads hold no rows)
  while (j + 1 < a.peers && a.first_row[j + 1] <= r) ++j;
  const int64_t local = r - a.first_row[j];
  const int64_t b = local / a.heads[j], h = a.head_begin[j] + local % a.heads[j];
  const float* src = a.o + b * a.o_ld + h * a.dim;
  float* out = a.dst + r * (a.dim + 1);
  for (int64_t d = lane; d < a.dim; d += 32) out[d] = src[d];
  if (lane == 0) out[a.dim] = a.lse[b * a.lse_ld + h];
}

}  // namespace

void pack_partials(const float* o, int64_t o_ld, const float* lse, int64_t lse_ld, int64_t batch,
                   int64_t dim, const cpu::HeadRange* peer_heads, int peers, float* dst,
                   cudaStream_t stream) {
  HELIX_CHECK(peers >= 0 && peers <= kMaxPackPeers, "pack_partials: at most " +
                                                        std::to_string(kMaxPackPeers) +
                                                        " peers, got " + std::to_string(peers));
  PackArgs a{};
  a.o = o;
  a.lse = lse;
  a.dst = dst;
  a.o_ld = o_ld;
  a.lse_ld = lse_ld;
  a.batch = batch;
  a.dim = dim;
  a.peers = peers;
  int64_t rows = 0;
  for (int j = 0; j < peers; ++j) {
    a.head_begin[j] = int32_t(peer_heads[j].begin);
    a.heads[j] = int32_t(std::max<int64_t>(0, peer_heads[j].end - peer_heads[j].begin));
    a.first_row[j] = rows;
    rows += batch * a.heads[j];
  }
  a.rows = rows;
  if (rows == 0) return;
  const int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  HELIX_CHECK(blocks <= INT32_MAX, "pack_partials: too many rows");
  pack_kernel<<<unsigned(blocks), kWarpsPerBlock * 32, 0, stream>>>(a);
  HELIX_LAUNCH_CHECK();
}

}  // namespace helix::cuda
