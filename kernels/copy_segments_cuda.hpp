// Gather / scatter of byte segments between two device buffers in one launch (cpu::copy_segments):
// the segment table lives in device memory, one CTA per segment at a time, 16-byte copies when
// both ends and the length are 16-byte aligned.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/copy_segments.hpp"

namespace helix::cuda {

// src, dst and segments are device pointers; asynchronous on `stream`.
void copy_segments(const void* src, void* dst, const cpu::Segment* segments, int64_t count,
                   cudaStream_t stream);

}  // namespace helix::cuda
