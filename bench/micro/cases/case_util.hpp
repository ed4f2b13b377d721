// What the case generators of bench/micro/cases share: the per-rank shards of each layout at each
// pool size, and the wording of scaled-down shapes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "layouts/layout.hpp"
#include "layouts/rank_shard.hpp"

namespace helix::micro {

struct LayoutShard {
  std::string origin;  // e.g. "helix N=16 (KVPxTPA 2x8, TPFxEP 16x1)"
  LayoutParams layout;
  RankShard shard;  // rank 0's
};

// Rank 0's shard of each valid (layout, N) for one layer kind.
std::vector<LayoutShard> layout_shards(const ModelSpec& m, LayerKind layer,
                                       const std::vector<int>& ns,
                                       const std::vector<LayoutKind>& kinds);

// Token counts after scaling: multiples of 64, at least 64.
int64_t round_tokens(double t);
// " (scaled down from <from> by the memory caps)" when scaled, else "".
std::string scaled_note(bool scaled, const std::string& from);

}  // namespace helix::micro
