// What one rank of `helix-bench kv-transfer` moves, whatever the transport (MPI over host memory,
// NCCL or staged MPI on device memory): its cache buffer (every layer's buffer of
// layouts/kv_transfer_moves.hpp, one after another), the segments it packs for each peer into a
// send buffer and unpacks from a receive buffer, and the value every cached element holds.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/copy_segments.hpp"
#include "layouts/kv_transfer_moves.hpp"

namespace helix {

struct KvTransferJob {
  int world_rank = 0;
  bool is_prefill = false;
  int local = 0;  // rank inside its layout (prefill p, or decode d = k * TPA + t)
  int layers = 1;
  int64_t tokens = 0;
  int elem_bytes = 4;       // 4: fp32 values; 2: 16-bit values
  int64_t layer_elems = 0;  // elements of one layer's buffer on this rank
  int64_t cache_bytes() const { return layer_elems * elem_bytes * layers; }
  // Per world rank: bytes sent to / received from it and their offsets in the packed send and
  // receive buffers (every peer's part starts 16-byte aligned).
  std::vector<int64_t> send_bytes, send_offset, recv_bytes, recv_offset;
  int64_t send_total = 0, recv_total = 0;  // buffer sizes, bytes
  std::vector<cpu::Segment> pack;          // cache -> send buffer
  std::vector<cpu::Segment> unpack;        // receive buffer -> cache
};

// `moves` from kv_transfer_moves; world ranks 0..P-1 are the prefill layout, P.. the decode layout.
KvTransferJob make_kv_transfer_job(const ModelSpec& m, const KvTransferLayouts& l,
                                   const std::vector<KvBlockMove>& moves, int world_rank,
                                   int64_t tokens, int layers, int elem_bytes);

// The value of element e of (layer, KV head, position): exact in fp32 (below 2^24), or 16 bits
// that are never 0xFFFF (the fill of an unwritten slot).
float kv_value_f32(int layer, int head, int64_t pos, int64_t e);
uint16_t kv_value_u16(int layer, int head, int64_t pos, int64_t e);

// A prefill rank's cache (host memory, job.cache_bytes()) filled with its heads' values.
void fill_prefill_cache(const ModelSpec& m, const KvTransferLayouts& l, const KvTransferJob& job,
                        void* cache);
// Elements of a decode rank's cache (host memory) that differ from the value of their global
// (layer, head, position).
int64_t count_misplaced(const ModelSpec& m, const KvTransferLayouts& l, const KvTransferJob& job,
                        const void* cache);

}  // namespace helix
