// Index partitions shared by every layout: balanced contiguous ranges (heads, FFN columns,
// experts, batch chunks) and the round-robin block placement of KV tokens across KVP ranks.
#pragma once

#include <cstdint>

namespace helix {

// Half-open range [begin, end).
struct Range {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
  bool empty() const { return end <= begin; }
  bool contains(int64_t i) const { return i >= begin && i < end; }
  bool operator==(const Range& o) const { return begin == o.begin && end == o.end; }
};

// Part `part` of `n` items split into `parts` contiguous ranges whose sizes differ by at most one;
// the first n % parts ranges are the longer ones.
inline Range balanced_range(int64_t n, int64_t parts, int64_t part) {
  const int64_t base = n / parts, extra = n % parts;
  const int64_t begin = part * base + (part < extra ? part : extra);
  return {begin, begin + base + (part < extra ? 1 : 0)};
}

// Round-robin placement of KV tokens in blocks of `block` consecutive positions over `kvp` ranks:
// position p lives on rank (p / block) % kvp. Helix step 8: every new token is appended on exactly
// one KVP rank, and the ranks' shards grow evenly.
struct BlockPlacement {
  int64_t kvp = 1;
  int64_t block = 16;

  int64_t owner(int64_t pos) const { return (pos / block) % kvp; }
  // Index of `pos` inside its owner's local cache.
  int64_t local_index(int64_t pos) const { return (pos / block / kvp) * block + pos % block; }
  // Number of the first `n` positions owned by rank `k`.
  int64_t count(int64_t n, int64_t k) const {
    const int64_t full = n / block, rem = n % block;
    const int64_t rounds = full / kvp, left = full % kvp;
    return rounds * block + (k < left ? block : 0) + (k == left ? rem : 0);
  }
  // Global position of local index `i` on rank `k`.
  int64_t global_pos(int64_t k, int64_t i) const {
    return ((i / block) * kvp + k) * block + i % block;
  }
};

}  // namespace helix
