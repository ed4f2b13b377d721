#include <cstring>

#include "kernels/copy_segments.hpp"

namespace helix::cpu {

void copy_segments(const void* src, void* dst, const Segment* segments, int64_t count) {
  const auto* s = static_cast<const unsigned char*>(src);
  auto* d = static_cast<unsigned char*>(dst);
  for (int64_t i = 0; i < count; ++i)
    std::memcpy(d + segments[i].dst_offset, s + segments[i].src_offset, size_t(segments[i].bytes));
}

}  // namespace helix::cpu
