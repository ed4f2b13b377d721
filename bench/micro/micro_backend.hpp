// What the micro-benchmarks need from a compute backend: device memory, random fills, a timer of
// one iteration, and one entry point per kernel taking plain shapes and device pointers.
//
// The CPU backend (cpu_micro_backend.cpp) calls the reference kernels in kernels/*_cpu.cpp. A CUDA
// backend is one more file defining make_cuda_micro_backend() (compiled when HELIX_MICRO_CUDA is
// defined); nothing else changes: the harness allocates operands through allocate(), fills them
// through fill_random(), launches through the entry points and times through time_us().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/gemm.hpp"
#include "kernels/partials.hpp"

namespace helix::micro {

// A block of a backend's memory: host memory (the CPU backends, HostBuffer) or device memory (the
// CUDA backends, gpu_buffer.hpp). Freed on destruction.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual void* data() = 0;
  virtual const void* data() const = 0;
  virtual int64_t bytes() const = 0;
};

// Where a backend's buffers live: allocation, and the copies to and from the host the checks use
// (synchronous; never timed). The kernel and collective backends share it.
class MemorySpace {
 public:
  virtual ~MemorySpace() = default;
  virtual std::unique_ptr<Buffer> allocate(int64_t bytes) = 0;
  virtual void upload(Buffer& dst, const void* host, int64_t bytes) = 0;
  virtual void download(const Buffer& src, void* host, int64_t bytes) = 0;
};

// Host memory, 64-byte aligned (the CPU kernel and MPI collective backends).
class HostMemory : public virtual MemorySpace {
 public:
  std::unique_ptr<Buffer> allocate(int64_t bytes) override;
  void upload(Buffer& dst, const void* host, int64_t bytes) override;
  void download(const Buffer& src, void* host, int64_t bytes) override;
};

class HostBuffer final : public Buffer {
 public:
  explicit HostBuffer(int64_t bytes);
  ~HostBuffer() override;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  void* data() override { return ptr_; }
  const void* data() const override { return ptr_; }
  int64_t bytes() const override { return bytes_; }

 private:
  void* ptr_ = nullptr;
  int64_t bytes_ = 0;
};

// Element type of an operand: the backend's storage type (cpu: fp32; cuda: bf16) for KV caches,
// weights and GEMM activations, or fp32 for attention queries (the projections' fp32 output, as
// in the decode executors), partial outputs, LSE and accumulators.
enum class Elem { storage, fp32 };

// Decode attention, GQA (q_len = 1, every query head of a KV head's group reads that head's KV).
//   q   [batch, q_heads, head_dim]              fp32
//   k,v [batch, kv_heads, tokens, head_dim]     storage
//   out [batch, q_heads, head_dim]              fp32, normalized by its own softmax sum
//   lse [batch, q_heads]                        fp32, natural log of the scaled scores' sum
struct GqaDecodeShape {
  int64_t batch = 1, q_heads = 1, kv_heads = 1, head_dim = 128, tokens = 1;
};

// Decode attention, absorbed MLA: every head reads the shared cache of (latent, rope key) rows.
//   q   [batch, heads, kv_lora + rope]          fp32
//   kv  [batch, tokens, kv_lora + rope]         storage (the value is the first kv_lora columns)
//   out [batch, heads, kv_lora]                 fp32
//   lse [batch, heads]                          fp32
struct MlaDecodeShape {
  int64_t batch = 1, heads = 1, kv_lora = 512, rope = 64, tokens = 1;
};

// Exact LSE combine of `parts` partial outputs (Helix step 5; the merge of flash-decoding splits).
//   o [parts, rows, dim] fp32; lse [parts, rows] fp32; out [rows, dim] fp32; lse_out [rows] fp32
struct CombineShape {
  int64_t parts = 2, rows = 1, dim = 128;
};

// The partials exchange of one helix rank (kernels/partials.hpp): the pack of `batch` requests'
// partials of `heads` query heads for `peers` peers (balanced head ranges), and the combine over
// the exchange's rows as received from `parts` ranks.
//   pack:    o [batch, heads, dim] fp32; lse [batch, heads] fp32; dst [batch * heads, dim + 1] fp32
//   combine: rows [parts, rows, dim + 1] fp32 (values, then the LSE); out [rows, dim] fp32;
//            lse_out [rows] fp32 (CombineShape)
struct PackShape {
  int64_t batch = 1, heads = 1, dim = 128, peers = 1;
};

// GEMMs take the suite's GemmShape (kernels/gemm.hpp) with packed operands (GemmShape::packed):
// x, w, y in storage type, batches one after another.

// Expert FFNs (SwiGLU) of one rank: for each of `experts` experts, rows_per_expert tokens:
//   out_e += (silu(x_e Wg_e) * (x_e Wu_e)) Wd_e
//   x [experts, rows_per_expert, hidden]; w_gate, w_up [experts, hidden, cols];
//   w_down [experts, cols, hidden]; out [experts, rows_per_expert, hidden] (storage type);
//   scratch: 2 * rows_per_expert * cols fp32 (cpu) or whatever the backend needs (see
//   moe_scratch_bytes).
struct MoeShape {
  int64_t experts = 1, rows_per_expert = 1, hidden = 1, cols = 1;
};

// KV append of one decode step: the new token's row of every (request, KV head) written at
// `position` of a cache.
//   new_kv [batch, kv_heads, width] storage; cache [batch, kv_heads, capacity, width] storage
struct KvAppendShape {
  int64_t batch = 1, kv_heads = 1, width = 256, capacity = 1024, position = 0;
};

// Packing the KV blocks bound for one peer (KV transfer, kernels/copy_segments): every other block
// of a cache of 2 x blocks blocks, block_bytes each, copied into a packed send buffer.
//   src [2 * blocks * block_bytes] bytes; dst [blocks * block_bytes] bytes
struct KvPackShape {
  int64_t blocks = 1, block_bytes = 16;
};

class MicroBackend : public virtual MemorySpace {
 public:
  virtual ~MicroBackend() = default;

  // "cpu" or "cuda".
  virtual std::string name() const = 0;
  // This rank's device, e.g. "cpu" or "cuda:0 NVIDIA H100 80GB HBM3 bus 0000:18:00.0".
  virtual std::string device_description() const = 0;
  // Versions recorded in the trace's root attributes ("none" without CUDA).
  virtual std::string cuda_version() const { return "none"; }
  virtual std::string nccl_version() const { return "none"; }
  // Storage type name ("fp32", "bf16") and its size in bytes.
  virtual std::string storage_dtype() const = 0;
  virtual int64_t storage_bytes() const = 0;
  // Memory of one device (cpu: host RAM), and the size of its last-level cache (operand sets
  // smaller than a few caches are rotated so no timed launch reads warm data).
  virtual int64_t memory_bytes() const = 0;
  virtual int64_t cache_bytes() const = 0;

  // Uniform values in [-1, 1) (never all zeros), keyed by `seed`, as `elem` elements.
  virtual void fill_random(Buffer& buf, Elem elem, uint64_t seed) = 0;
  // Waits for every launched kernel.
  virtual void synchronize() = 0;
  // Microseconds one call of `launch` takes on the device (cpu: steady_clock around the call;
  // cuda: events recorded around it on the launch stream, then synchronized).
  virtual double time_us(const std::function<void()>& launch) = 0;

  // Kernels. Pointers are device memory from allocate(); types as documented on the shapes.
  // Read-only reduction over `bytes` of `buf` (the bandwidth ceiling); the result goes to `sink`
  // (one fp32 in device memory) so the reads cannot be optimized away.
  virtual void stream_read(const void* buf, int64_t bytes, float* sink) = 0;
  virtual void attention_gqa(const GqaDecodeShape& s, const void* q, const void* k, const void* v,
                             float* out, float* lse) = 0;
  virtual void attention_mla(const MlaDecodeShape& s, const void* q, const void* kv, float* out,
                             float* lse) = 0;
  virtual void lse_combine(const CombineShape& s, const float* o, const float* lse, float* out,
                           float* lse_out) = 0;
  virtual void pack_partials(const PackShape& s, const float* o, const float* lse, float* dst) = 0;
  virtual void lse_combine_rows(const CombineShape& s, const float* rows, float* out,
                                float* lse_out) = 0;
  virtual void gemm(const GemmShape& s, const void* x, const void* w, void* y) = 0;
  virtual int64_t moe_scratch_bytes(const MoeShape& s) const = 0;
  virtual void moe_experts(const MoeShape& s, const void* x, const void* w_gate, const void* w_up,
                           const void* w_down, void* out, void* scratch) = 0;
  virtual void kv_append(const KvAppendShape& s, const void* new_kv, void* cache) = 0;
  virtual void kv_pack(const KvPackShape& s, const void* src, void* dst) = 0;
};

// The peers' head ranges of a PackShape: `heads` split into `peers` balanced contiguous ranges.
std::vector<cpu::HeadRange> pack_peer_heads(const PackShape& s);

// The backend `name` names ("cpu" or "cuda"); throws UsageError naming `option` when unknown or
// not built.
std::unique_ptr<MicroBackend> make_micro_backend(const std::string& name,
                                                 const std::string& option = "--backend");

// fp32 reference kernels on the host.
std::unique_ptr<MicroBackend> make_cpu_micro_backend();

// CUDA kernels. Declared here, defined in a CUDA source only when HELIX_MICRO_CUDA is defined
// (the device is chosen from the node-local rank, as in the decode driver).
std::unique_ptr<MicroBackend> make_cuda_micro_backend();

}  // namespace helix::micro
