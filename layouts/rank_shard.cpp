#include "layouts/rank_shard.hpp"

namespace helix {

const char* group_name(Group g) {
  switch (g) {
    case Group::none:
      return "none";
    case Group::world:
      return "world";
    case Group::kvp:
      return "kvp";
    case Group::tpa:
      return "tpa";
    case Group::ffn:
      return "ffn";
    case Group::tpf:
      return "tpf";
    case Group::ep:
      return "ep";
  }
  return "?";
}

RankShard rank_shard(const ModelSpec& m, LayerKind layer, const LayoutParams& p, int rank) {
  RankShard r;
  r.rank = rank;
  r.layout = p;
  r.layer = layer;
  const int64_t G = m.group();
  if (p.kind == LayoutKind::tp) {
    r.kvp_index = 0;
    r.tpa_index = rank;
    r.q_heads = balanced_range(m.q_heads, p.n, rank);
    r.kv_heads = {r.q_heads.begin / G, (r.q_heads.end - 1) / G + 1};
    r.o_heads = r.q_heads;
    r.placement = {1, p.kv_block};
  } else {
    r.kvp_index = rank / p.tpa;
    r.tpa_index = rank % p.tpa;
    r.kv_heads = balanced_range(m.kv_heads, p.tpa, r.tpa_index);
    r.q_heads = {r.kv_heads.begin * G, r.kv_heads.end * G};
    if (p.kind == LayoutKind::kvp) {
      r.o_heads = r.kvp_index == 0 ? r.q_heads : Range{r.q_heads.begin, r.q_heads.begin};
    } else {
      const Range sub = balanced_range(r.q_heads.size(), p.kvp, r.kvp_index);
      r.o_heads = {r.q_heads.begin + sub.begin, r.q_heads.begin + sub.end};
    }
    r.placement = {p.kvp, p.kv_block};
  }
  r.in_ffn = rank < p.ffn_ranks();
  if (r.in_ffn) {
    r.ffn_index = rank;  // the FFN group is ranks 0 .. ffn_ranks-1 (kvp: the TPA group of k = 0)
    r.ep_index = r.ffn_index / p.tpf;
    r.tpf_index = r.ffn_index % p.tpf;
    const int ffn_ranks = p.ffn_ranks();
    if (layer == LayerKind::dense) {
      r.dense_cols = balanced_range(m.ffn, ffn_ranks, r.ffn_index);
    } else {
      r.experts = balanced_range(m.moe.routed_experts, p.ep, r.ep_index);
      r.expert_cols = balanced_range(m.moe.expert_ffn, p.tpf, r.tpf_index);
      r.shared_cols =
          balanced_range(int64_t(m.moe.shared_experts) * m.moe.expert_ffn, ffn_ranks, r.ffn_index);
    }
  }
  return r;
}

std::vector<Range> peer_head_ranges(const ModelSpec& m, const RankShard& shard) {
  const LayoutParams& L = shard.layout;
  std::vector<Range> heads;
  for (int k = 0; k < L.kvp; ++k) {
    const RankShard peer = rank_shard(m, shard.layer, L, k * L.tpa + shard.tpa_index);
    heads.push_back(
        {peer.o_heads.begin - shard.q_heads.begin, peer.o_heads.end - shard.q_heads.begin});
  }
  return heads;
}

std::vector<int> group_members(const LayoutParams& p, Group group, int rank) {
  std::vector<int> v;
  const int k = p.kind == LayoutKind::tp ? 0 : rank / p.tpa;
  const int t = p.kind == LayoutKind::tp ? rank : rank % p.tpa;
  const int ffn_ranks = p.ffn_ranks();
  const bool in_ffn = rank < ffn_ranks;
  switch (group) {
    case Group::none:
      v.push_back(rank);
      break;
    case Group::world:
      for (int i = 0; i < p.n; ++i) v.push_back(i);
      break;
    case Group::kvp:
      for (int i = 0; i < p.kvp; ++i) v.push_back(i * p.tpa + t);
      break;
    case Group::tpa:
      for (int i = 0; i < p.tpa; ++i) v.push_back(k * p.tpa + i);
      break;
    case Group::ffn:
      if (in_ffn)
        for (int i = 0; i < ffn_ranks; ++i) v.push_back(i);
      break;
    case Group::tpf:
      if (in_ffn)
        for (int i = 0; i < p.tpf; ++i) v.push_back((rank / p.tpf) * p.tpf + i);
      break;
    case Group::ep:
      if (in_ffn)
        for (int i = 0; i < p.ep; ++i) v.push_back(i * p.tpf + rank % p.tpf);
      break;
  }
  return v;
}

}  // namespace helix
