// What one rank holds in a layout: its attention heads and KV placement, its FFN columns and
// experts, and the communicator groups it belongs to. A pure function of (model, layer kind,
// layout parameters, rank); the schedules, the executors' weights and caches, the cost model's
// capacity check and the KV-transfer moves all read it.
#pragma once

#include <vector>

#include "layouts/layout.hpp"
#include "layouts/model_spec.hpp"
#include "layouts/partition.hpp"

namespace helix {

// Communicator groups a step runs in (world ranks sharing the group of this rank).
enum class Group { none, world, kvp, tpa, ffn, tpf, ep };
constexpr int kNumGroups = int(Group::ep) + 1;
const char* group_name(Group g);

// What one rank holds in a layout.
struct RankShard {
  int rank = 0;
  LayoutParams layout;
  LayerKind layer = LayerKind::dense;
  // Attention coordinates: rank = kvp_index * TPA + tpa_index (tp: kvp_index = 0, tpa_index =
  // rank).
  int kvp_index = 0, tpa_index = 0;
  Range kv_heads;            // KV heads whose cache this rank holds
  Range q_heads;             // query heads it attends for
  Range o_heads;             // heads whose combined output it projects (empty: none)
  BlockPlacement placement;  // token placement over the KVP group (tp: one rank holds all)
  // FFN coordinates: ffn_index (position in the FFN group) = ep_index * TPF + tpf_index.
  bool in_ffn = false;
  int ffn_index = 0, ep_index = 0, tpf_index = 0;
  Range dense_cols;   // dense FFN columns (dense layers)
  Range experts;      // routed experts held (MoE layers)
  Range expert_cols;  // columns of each held expert
  Range shared_cols;  // columns of the shared experts, concatenated into one FFN

  // Tokens of the first `positions` cached positions that live on this rank.
  int64_t local_tokens(int64_t positions) const { return placement.count(positions, kvp_index); }
  bool owns_position(int64_t pos) const { return placement.owner(pos) == kvp_index; }
};

RankShard rank_shard(const ModelSpec& model, LayerKind layer, const LayoutParams& layout, int rank);

// Owned-head (o_heads) ranges of every peer of `shard`'s KVP group, in KVP order, relative to
// `shard`'s query heads: the head blocks of its attention partials that go to each peer.
std::vector<Range> peer_head_ranges(const ModelSpec& model, const RankShard& shard);

// World ranks of `group` as seen from `rank`, in group-rank order; empty when the rank is not in
// the group (non-FFN ranks of the kvp layout for ffn/tpf/ep).
std::vector<int> group_members(const LayoutParams& layout, Group group, int rank);

}  // namespace helix
