// Absorbed MLA decode attention for Hopper (sm_90a: wgmma and TMA); used by attention_decode()
// (kernels/attention.cu) for MLA launches on a GPU of compute capability 9.0 when the build holds
// sm_90a code. Same inputs and outputs as the other MLA configurations: per split, the partial
// output normalized by its own softmax sum and the natural-log LSE.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace helix::cuda::detail {

constexpr int kMlaSm90HeadTile = 64;  // query heads per CTA (one wgmma row tile)
constexpr int kMlaSm90Tokens = 64;    // tokens per pipeline stage
constexpr int kMlaSm90Stages = 3;
constexpr int kMlaSm90Threads = 384;  // three warpgroups

struct MlaSm90Launch {
  int64_t batch = 0, heads = 0;
  int64_t tokens = 0;    // tokens of the slice
  int64_t capacity = 0;  // cache rows per request
  int64_t chunk = 0;     // tokens per split, a multiple of kMlaSm90Tokens
  int splits = 1;
  float scale_log2 = 0;               // softmax scale times log2(e)
  const float* q = nullptr;           // [batch, heads, 576] fp32
  const __nv_bfloat16* kv = nullptr;  // [batch, capacity, 576] bf16, 16-byte aligned
  float* out = nullptr;               // [splits, batch, heads, 512]
  float* lse = nullptr;               // [splits, batch, heads]
};

// True when this build holds the sm_90a kernel and the current device has compute capability 9.0.
bool mla_sm90_available();
const void* mla_sm90_kernel();
size_t mla_sm90_smem_bytes();
// Grid (ceil(heads / 64), splits, batch); raises the kernel's shared-memory limit on first use.
void mla_sm90_launch(const MlaSm90Launch& a, cudaStream_t stream);

}  // namespace helix::cuda::detail
