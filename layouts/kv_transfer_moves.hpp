// Which KV block goes where when one request's KV cache moves from a prefill layout (tensor
// parallel over P ranks, KV heads sharded by TP, duplicated once P exceeds the KV heads) into a
// decode Helix layout (KVP x TPA ranks, KV heads sharded over TPA, tokens placed round-robin in
// blocks over KVP). A pure function of the layouts, separate from any transport (MPI, NCCL).
//
// Buffers, per layer, in elements of one cached value (K and V for GQA, latent + rope key for MLA:
// ModelSpec::kv_elems_per_token_per_head() per token and head):
//   prefill rank p: [held KV head][token 0 .. tokens-1][value]
//   decode rank d = k * TPA + t: [held KV head][local token index][value], local index as
//     BlockPlacement::local_index, local tokens = BlockPlacement::count(tokens, k).
#pragma once

#include <cstdint>
#include <vector>

#include "layouts/model_spec.hpp"
#include "layouts/partition.hpp"
#include "layouts/schedule.hpp"

namespace helix {

struct KvTransferLayouts {
  int prefill_ranks = 1;  // P: TP width of the prefill layout
  int kvp = 1, tpa = 1;   // decode Helix layout
  int kv_block = 16;      // tokens per round-robin block of the decode layout
  int decode_ranks() const { return kvp * tpa; }
};

struct KvBlockMove {
  int src_rank = 0;                   // prefill rank
  int dst_rank = 0;                   // decode rank (k * TPA + t)
  int head = 0;                       // global KV head
  int64_t pos_begin = 0, tokens = 0;  // global positions [pos_begin, pos_begin + tokens)
  int64_t src_offset = 0, dst_offset = 0, elems = 0;  // in elements of the buffers above
};

// Rank shards of both sides (what each rank holds).
RankShard prefill_rank_shard(const ModelSpec& m, const KvTransferLayouts& l, int p);
RankShard decode_rank_shard(const ModelSpec& m, const KvTransferLayouts& l, int d);
int64_t prefill_buffer_elems(const ModelSpec& m, const KvTransferLayouts& l, int p, int64_t tokens);
int64_t decode_buffer_elems(const ModelSpec& m, const KvTransferLayouts& l, int d, int64_t tokens);

// Every (KV head, block) of a `tokens`-long cache moved once, from a prefill rank holding that
// head (replicas take turns block by block, so duplicated heads spread the egress) to the decode
// rank whose TPA slice holds the head and whose KVP index owns the block. Ordered by block, then
// head. Empty string from validate when the layouts are usable, else the reason.
std::vector<KvBlockMove> kv_transfer_moves(const ModelSpec& m, const KvTransferLayouts& l,
                                           int64_t tokens);
std::string validate_kv_transfer(const ModelSpec& m, const KvTransferLayouts& l);

}  // namespace helix
