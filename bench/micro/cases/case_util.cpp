#include "bench/micro/cases/case_util.hpp"

#include <algorithm>
#include <cmath>

namespace helix::micro {

std::vector<LayoutShard> layout_shards(const ModelSpec& m, LayerKind layer,
                                       const std::vector<int>& ns,
                                       const std::vector<LayoutKind>& kinds) {
  std::vector<LayoutShard> v;
  for (LayoutKind k : kinds)
    for (int n : ns) {
      const LayoutParams p = make_layout(k, n, m, layer, 1, LayoutRequest{});
      if (!validate_layout(p, m, layer, 1).empty()) continue;
      LayoutShard s;
      s.origin = std::string(to_string(k)) + " N=" + std::to_string(n) + " (KVPxTPA " +
                 attn_shape(p) + ", TPFxEP " + ffn_shape(p) + ")";
      s.layout = p;
      s.shard = rank_shard(m, layer, p, 0);
      v.push_back(s);
    }
  return v;
}

int64_t round_tokens(double t) {
  return std::max<int64_t>(64, int64_t(std::llround(t / 64)) * 64);
}

std::string scaled_note(bool scaled, const std::string& from) {
  return scaled ? " (scaled down from " + from + " by the memory caps)" : "";
}

}  // namespace helix::micro
