// Gather / scatter of byte segments between two buffers (packing the KV blocks bound for one peer
// into a send buffer, and unpacking received blocks into a cache): CPU reference.
#pragma once

#include <cstdint>

namespace helix::cpu {

// One segment: `bytes` bytes from src + src_offset to dst + dst_offset.
struct Segment {
  int64_t src_offset = 0, dst_offset = 0, bytes = 0;
};

// Copies every segment; segments must not overlap in dst.
void copy_segments(const void* src, void* dst, const Segment* segments, int64_t count);

}  // namespace helix::cpu
