#include "layouts/kv_transfer_moves.hpp"

#include <algorithm>

namespace helix {

namespace {

LayoutParams prefill_layout(const KvTransferLayouts& l) {
  LayoutParams p;
  p.kind = LayoutKind::tp;
  p.n = l.prefill_ranks;
  p.kvp = 1;
  p.tpa = l.prefill_ranks;
  p.tpf = l.prefill_ranks;
  return p;
}

LayoutParams decode_layout(const KvTransferLayouts& l) {
  LayoutParams p;
  p.kind = LayoutKind::helix;
  p.n = l.decode_ranks();
  p.kvp = l.kvp;
  p.tpa = l.tpa;
  p.tpf = p.n;
  p.kv_block = l.kv_block;
  return p;
}

}  // namespace

RankShard prefill_rank_shard(const ModelSpec& m, const KvTransferLayouts& l, int p) {
  return rank_shard(m, LayerKind::dense, prefill_layout(l), p);
}

RankShard decode_rank_shard(const ModelSpec& m, const KvTransferLayouts& l, int d) {
  return rank_shard(m, LayerKind::dense, decode_layout(l), d);
}

int64_t prefill_buffer_elems(const ModelSpec& m, const KvTransferLayouts& l, int p,
                             int64_t tokens) {
  return prefill_rank_shard(m, l, p).kv_heads.size() * tokens * m.kv_elems_per_token_per_head();
}

int64_t decode_buffer_elems(const ModelSpec& m, const KvTransferLayouts& l, int d, int64_t tokens) {
  const RankShard r = decode_rank_shard(m, l, d);
  return r.kv_heads.size() * r.local_tokens(tokens) * m.kv_elems_per_token_per_head();
}

std::string validate_kv_transfer(const ModelSpec& m, const KvTransferLayouts& l) {
  if (l.prefill_ranks < 1) return "--prefill-ranks: must be at least 1";
  if (l.prefill_ranks > m.q_heads)
    return "--prefill-ranks: the TP prefill layout needs at most one rank per query head (" +
           std::to_string(m.q_heads) + ")";
  if (l.kvp < 1 || l.tpa < 1) return "--kvp/--tpa: must be at least 1";
  if (l.tpa > m.kv_heads)
    return "--tpa: the decode Helix layout needs TPA <= KV heads (" + std::to_string(m.kv_heads) +
           ")";
  if (l.kv_block < 1) return "--kv-block: must be at least 1 token";
  return {};
}

std::vector<KvBlockMove> kv_transfer_moves(const ModelSpec& m, const KvTransferLayouts& l,
                                           int64_t tokens) {
  const int64_t E = m.kv_elems_per_token_per_head();
  std::vector<RankShard> src(size_t(l.prefill_ranks)), dst(size_t(l.decode_ranks()));
  for (int p = 0; p < l.prefill_ranks; ++p) src[size_t(p)] = prefill_rank_shard(m, l, p);
  for (int d = 0; d < l.decode_ranks(); ++d) dst[size_t(d)] = decode_rank_shard(m, l, d);
  // Replicas of every head on the prefill side, and its TPA slice on the decode side.
  std::vector<std::vector<int>> replicas(size_t(m.kv_heads));
  for (int p = 0; p < l.prefill_ranks; ++p)
    for (int64_t h = src[size_t(p)].kv_heads.begin; h < src[size_t(p)].kv_heads.end; ++h)
      replicas[size_t(h)].push_back(p);
  std::vector<int> slice(size_t(m.kv_heads), -1);
  for (int t = 0; t < l.tpa; ++t)
    for (int64_t h = dst[size_t(t)].kv_heads.begin; h < dst[size_t(t)].kv_heads.end; ++h)
      slice[size_t(h)] = t;
  const BlockPlacement place{l.kvp, l.kv_block};
  std::vector<KvBlockMove> moves;
  const int64_t blocks = (tokens + l.kv_block - 1) / l.kv_block;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t pos = b * l.kv_block;
    const int64_t n = std::min<int64_t>(l.kv_block, tokens - pos);
    const int k = int(place.owner(pos));
    for (int h = 0; h < m.kv_heads; ++h) {
      const auto& reps = replicas[size_t(h)];
      KvBlockMove mv;
      mv.src_rank = reps[size_t(b % int64_t(reps.size()))];
      mv.dst_rank = k * l.tpa + slice[size_t(h)];
      mv.head = h;
      mv.pos_begin = pos;
      mv.tokens = n;
      const RankShard& s = src[size_t(mv.src_rank)];
      const RankShard& d = dst[size_t(mv.dst_rank)];
      mv.src_offset = ((h - s.kv_heads.begin) * tokens + pos) * E;
      mv.dst_offset =
          ((h - d.kv_heads.begin) * d.local_tokens(tokens) + place.local_index(pos)) * E;
      mv.elems = n * E;
      moves.push_back(mv);
    }
  }
  return moves;
}

}  // namespace helix
