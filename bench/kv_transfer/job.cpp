#include "bench/kv_transfer/job.hpp"

#include <map>

namespace helix {

namespace {

int64_t align16(int64_t b) {
  return (b + 15) / 16 * 16;
}

}  // namespace

float kv_value_f32(int layer, int head, int64_t pos, int64_t e) {
  return float((int64_t(layer) * 1000003 + int64_t(head) * 7919 + pos * 257 + e) % 16777213);
}

uint16_t kv_value_u16(int layer, int head, int64_t pos, int64_t e) {
  // A multiplicative mix of the coordinates, so that blocks moved to the wrong place (another
  // head, layer or position) differ in almost every element.
  uint64_t x = uint64_t(layer) * 0x9E3779B97F4A7C15ull ^ uint64_t(head) * 0xC2B2AE3D27D4EB4Full ^
               uint64_t(pos) * 0x165667B19E3779F9ull ^ uint64_t(e) * 0x27D4EB2F165667C5ull;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return uint16_t(x % 0xFFFFu);
}

KvTransferJob make_kv_transfer_job(const ModelSpec& m, const KvTransferLayouts& l,
                                   const std::vector<KvBlockMove>& moves, int world_rank,
                                   int64_t tokens, int layers, int elem_bytes) {
  KvTransferJob j;
  const int P = l.prefill_ranks, W = P + l.decode_ranks();
  j.world_rank = world_rank;
  j.is_prefill = world_rank < P;
  j.local = j.is_prefill ? world_rank : world_rank - P;
  j.layers = layers;
  j.tokens = tokens;
  j.elem_bytes = elem_bytes;
  j.layer_elems = j.is_prefill ? prefill_buffer_elems(m, l, j.local, tokens)
                               : decode_buffer_elems(m, l, j.local, tokens);
  // The moves this rank sends or receives, by peer world rank, in moves order.
  std::map<int, std::vector<const KvBlockMove*>> by_peer;
  for (const KvBlockMove& mv : moves) {
    if (j.is_prefill && mv.src_rank == j.local) by_peer[P + mv.dst_rank].push_back(&mv);
    if (!j.is_prefill && mv.dst_rank == j.local) by_peer[mv.src_rank].push_back(&mv);
  }
  j.send_bytes.assign(size_t(W), 0);
  j.send_offset.assign(size_t(W), 0);
  j.recv_bytes.assign(size_t(W), 0);
  j.recv_offset.assign(size_t(W), 0);
  const int64_t eb = elem_bytes, layer_bytes = j.layer_elems * eb;
  int64_t at = 0;
  for (const auto& [peer, peer_moves] : by_peer) {
    // The peer's part: every layer's moves in moves order (the receiver unpacks in the same order).
    const int64_t start = at;
    for (int L = 0; L < layers; ++L)
      for (const KvBlockMove* mv : peer_moves) {
        cpu::Segment s;
        s.bytes = mv->elems * eb;
        if (j.is_prefill) {
          s.src_offset = L * layer_bytes + mv->src_offset * eb;
          s.dst_offset = at;
          j.pack.push_back(s);
        } else {
          s.src_offset = at;
          s.dst_offset = L * layer_bytes + mv->dst_offset * eb;
          j.unpack.push_back(s);
        }
        at += s.bytes;
      }
    auto& bytes = j.is_prefill ? j.send_bytes : j.recv_bytes;
    auto& offset = j.is_prefill ? j.send_offset : j.recv_offset;
    bytes[size_t(peer)] = at - start;
    offset[size_t(peer)] = start;
    at = align16(at);
  }
  (j.is_prefill ? j.send_total : j.recv_total) = at;
  return j;
}

void fill_prefill_cache(const ModelSpec& m, const KvTransferLayouts& l, const KvTransferJob& job,
                        void* cache) {
  const RankShard r = prefill_rank_shard(m, l, job.local);
  const int64_t E = m.kv_elems_per_token_per_head(), T = job.tokens;
  for (int L = 0; L < job.layers; ++L)
    for (int64_t h = r.kv_heads.begin; h < r.kv_heads.end; ++h)
      for (int64_t p = 0; p < T; ++p) {
        const int64_t base = L * job.layer_elems + ((h - r.kv_heads.begin) * T + p) * E;
        if (job.elem_bytes == 4) {
          float* c = static_cast<float*>(cache) + base;
          for (int64_t e = 0; e < E; ++e) c[e] = kv_value_f32(L, int(h), p, e);
        } else {
          uint16_t* c = static_cast<uint16_t*>(cache) + base;
          for (int64_t e = 0; e < E; ++e) c[e] = kv_value_u16(L, int(h), p, e);
        }
      }
}

int64_t count_misplaced(const ModelSpec& m, const KvTransferLayouts& l, const KvTransferJob& job,
                        const void* cache) {
  // Every local slot of the decode layout holds the value of its global (head, position).
  const RankShard r = decode_rank_shard(m, l, job.local);
  const int64_t E = m.kv_elems_per_token_per_head(), lt = r.local_tokens(job.tokens);
  int64_t bad = 0;
  for (int L = 0; L < job.layers; ++L)
    for (int64_t h = r.kv_heads.begin; h < r.kv_heads.end; ++h)
      for (int64_t i = 0; i < lt; ++i) {
        const int64_t pos = r.placement.global_pos(r.kvp_index, i);
        const int64_t base = L * job.layer_elems + ((h - r.kv_heads.begin) * lt + i) * E;
        if (job.elem_bytes == 4) {
          const float* c = static_cast<const float*>(cache) + base;
          for (int64_t e = 0; e < E; ++e) bad += c[e] != kv_value_f32(L, int(h), pos, e);
        } else {
          const uint16_t* c = static_cast<const uint16_t*>(cache) + base;
          for (int64_t e = 0; e < E; ++e) bad += c[e] != kv_value_u16(L, int(h), pos, e);
        }
      }
  return bad;
}

}  // namespace helix
