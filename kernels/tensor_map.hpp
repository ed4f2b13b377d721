// TMA tensor maps (host side): a 3-D bf16 tensor read in boxes of 64 x rows x 1 elements with the
// 128-byte swizzle that the Hopper kernels' shared-memory layouts expect. Elements outside the
// tensor read as zeros.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <string>

namespace helix::cuda {

// dims: d0 (contiguous, elements) x d1 x d2; strides of d1 and d2 in bytes (multiples of 16);
// base 16-byte aligned. `what` names the tensor in error messages.
CUtensorMap tensor_map_bf16_3d(const void* base, uint64_t d0, uint64_t d1, uint64_t d2,
                               uint64_t stride1_bytes, uint64_t stride2_bytes, uint32_t box_rows,
                               const std::string& what);

}  // namespace helix::cuda
