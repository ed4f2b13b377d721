// CUDA kernels of one decode layer (bf16 storage, fp32 accumulation). Each has a CPU reference in
// the *_cpu.cpp files of this folder and a GPU test in tests/cuda. All pointers are device
// pointers; every launcher is asynchronous on `stream` and checks its launch.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace helix::cuda {

using bf16 = __nv_bfloat16;

// Streaming multiprocessors of the current device (queried once per device).
int sm_count();

// ---------------------------------------------------------------------------------------------
// Decode attention over a KV slice (flash-decoding): the sequence is split across CTAs, each CTA
// reads its KV tile once for every query head of the group (tensor-core MMAs), and the splits are
// merged with the exact LSE combine. Returns the partial output normalized by its own softmax sum
// and the natural-log LSE (-inf and zeros for an empty slice), like cpu::attention_gqa/mla.
//   GQA: k, v = [batch, kv_heads, capacity, 128]; query head j (global q_begin + j) reads KV head
//        (q_begin + j) / group - kv_begin.
//   MLA: k = [batch, capacity, 576] (latent 512 + rope 64); v = nullptr (the value is the latent);
//        every head reads the one latent.
struct DecodeAttention {
  bool mla = false;
  int64_t batch = 0;
  int64_t heads = 0;                                           // local query heads
  int64_t q_begin = 0, kv_begin = 0, kv_heads = 1, group = 1;  // GQA head mapping
  int64_t tokens = 0;                                          // tokens of the slice
  int64_t capacity = 0;                                        // cache rows per (request, head)
  float scale = 1.0f;
  const float* q = nullptr;  // [batch, heads, dk] fp32 (dk = 128 or 576)
  const bf16* k = nullptr;
  const bf16* v = nullptr;
  float* out = nullptr;  // [batch, heads, dv] fp32 (dv = 128 or 512)
  float* lse = nullptr;  // [batch, heads]
  // Split workspace: splits * batch * heads * (dv + 1) floats (attention_workspace_floats).
  float* workspace = nullptr;
  int splits = 0;  // 0: chosen for this GPU (attention_splits)
  // SMs to leave free for work running beside the launch (HOP-B's chunk exchanges): the split
  // count fills the other SMs' waves.
  int reserved_sms = 0;
  // Kernel configuration by name (attention_variant_names); nullptr: HELIX_ATTN_VARIANT if it
  // names one of this kind, else the default.
  const char* variant = nullptr;
};
int attention_splits(const DecodeAttention& a);
// The kernel configuration a launch uses (name as in attention.cu; HELIX_ATTN_VARIANT=<name>
// overrides the default for launches of its kind, GQA or MLA).
std::string attention_variant(const DecodeAttention& a);
std::vector<std::string> attention_variant_names(bool mla);
// Throws UsageError when HELIX_ATTN_VARIANT is set to a name that is not a configuration (called
// by the CUDA backends at start-up, before any output is opened).
void check_attention_variant_env();
int64_t attention_workspace_floats(const DecodeAttention& a, int splits);
void attention_decode(const DecodeAttention& a, cudaStream_t stream);

// Exact LSE combine of `parts` partials (cpu::lse_combine), reading them in place with strides:
// part i, row r at o + i * o_part_stride + r * dim and lse + i * lse_part_stride + r. Writes fp32
// (out_f32) and/or bf16 (out_bf16) rows [rows, dim]; lse_out optional.
void lse_combine(int64_t parts, int64_t rows, int64_t dim, const float* o, int64_t o_part_stride,
                 const float* lse, int64_t lse_part_stride, float* out_f32, bf16* out_bf16,
                 float* lse_out, cudaStream_t stream);
// The same over rows of any stride (cpu::lse_combine_rows): part i, row r at
// o + i * o_part_stride + r * o_row and lse + i * lse_part_stride + r * lse_row.
void lse_combine_rows(int64_t parts, int64_t rows, int64_t dim, const float* o,
                      int64_t o_part_stride, int64_t o_row, const float* lse,
                      int64_t lse_part_stride, int64_t lse_row, float* out_f32, bf16* out_bf16,
                      float* lse_out, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// Norms, rotary embedding, conversions, KV append, FFN activation, MoE routing.

// y = x / rms(x) * w per row; fp32 in, bf16 and/or fp32 out (y_f32 may alias x).
// x rows have stride ldx, outputs are packed [rows, dim].
void rmsnorm(const float* x, int64_t ldx, const float* w, int64_t rows, int64_t dim, float eps,
             bf16* y_bf16, float* y_f32, cudaStream_t stream);
// Rotate-half RoPE of `rows` vectors of width dim at position pos, in place; vector r at
// x + (r / per_row) * ld_outer + (r % per_row) * ld_inner.
void rope(float* x, int64_t rows, int64_t per_row, int64_t ld_outer, int64_t ld_inner, int64_t dim,
          int64_t pos, float theta, cudaStream_t stream);
void to_bf16(const float* x, bf16* y, int64_t n, cudaStream_t stream);
// y = a + b (fp32), n elements.
void add(const float* a, const float* b, float* y, int64_t n, cudaStream_t stream);
// out = x1 + sum_{e < parts} parts_buf[e * n + i] (EP all-gather reduction), n elements.
void residual_sum(const float* x1, const float* parts_buf, int parts, float* out, int64_t n,
                  cudaStream_t stream);
// GQA append: cache[(b, h, li)] = src[b, h, :] for K and V (bf16 cache, fp32 source rows of dim).
void kv_append_gqa(const float* k_new, const float* v_new, int64_t batch, int64_t heads,
                   int64_t dim, bf16* k_cache, bf16* v_cache, int64_t capacity, int64_t li,
                   cudaStream_t stream);
// Append of rows already in bf16: cache[(r * capacity + li) * width + d] = src[r * width + d] for
// r < rows (one row per (request, KV head)); 16-byte copies when width is a multiple of 8.
void kv_append_rows(const bf16* src, int64_t rows, int64_t width, bf16* cache, int64_t capacity,
                    int64_t li, cudaStream_t stream);
// MLA append: per request, RMSNorm of the latent (kv_lora) and RoPE of the rope key (rope) of the
// row ckv[b, :], written as bf16 to cache[b, li, :]; ckv is normalized/rotated in place too.
void kv_append_mla(float* ckv, const float* kv_norm_w, int64_t batch, int64_t kv_lora,
                   int64_t rope_dim, float eps, int64_t pos, float theta, bf16* cache,
                   int64_t capacity, int64_t li, cudaStream_t stream);
// MLA: copy the rope part of every head's query (qfull[b, h, nope:nope+rope]) into
// q[b, h, kv_lora:kv_lora+rope] with RoPE at pos.
void mla_q_rope(const float* qfull, int64_t batch, int64_t heads, int64_t nope, int64_t rope_dim,
                float* q, int64_t kv_lora, int64_t pos, float theta, cudaStream_t stream);
// h[m, j] = row_scale[m] * silu(g[m, j]) * u[m, j] as bf16 (row_scale may be null: 1).
void silu_mul(const float* g, const float* u, const float* row_scale, int64_t m, int64_t cols,
              bf16* h, cudaStream_t stream);
// Sigmoid top-k routing (cpu::moe_route): logits [tokens, experts] -> expert, weight [tokens, k].
void moe_route(const float* logits, int64_t tokens, int64_t experts, int64_t top_k, float scale,
               int32_t* expert, float* weight, cudaStream_t stream);
// Gather rows: y[r, :] = x[rows[r], :] (bf16, width h), r < n.
void gather_rows(const bf16* x, const int32_t* rows, int64_t n, int64_t h, bf16* y,
                 cudaStream_t stream);
// Scatter-add rows: y[rows[r], :] += x[r, :] (fp32), r < n; rows distinct.
void scatter_add_rows(const float* x, const int32_t* rows, int64_t n, int64_t h, float* y,
                      cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// Random data from the counter-based generator of kernels/rng.hpp, bit-identical to the host.

// dst[(i - r0) * (c1 - c0) + (j - c0)] = scale * uniform(key, i * cols + j), rows [r0, r1),
// columns [c0, c1).
void fill_slice(bf16* dst, uint64_t key, int64_t cols, int64_t r0, int64_t r1, int64_t c0,
                int64_t c1, float scale, cudaStream_t stream);
void fill_slice_f32(float* dst, uint64_t key, int64_t cols, int64_t r0, int64_t r1, int64_t c0,
                    int64_t c1, float scale, float offset, cudaStream_t stream);
// MLA W_uk of heads [h0, h1), transposed per head to [nope][kv_lora] (layer_data.cpp).
void fill_wuk_t(bf16* dst, uint64_t key, int64_t h0, int64_t h1, int64_t kv_lora, int64_t nope,
                float scale, cudaStream_t stream);
// KV rows of local indices [0, filled) of KVP rank k (round-robin blocks): row i holds
// uniform(key, global_pos(i) * width + d). dst: [filled..capacity) rows are zeroed.
void fill_kv_rows(bf16* dst, uint64_t key, int64_t width, int64_t filled, int64_t capacity,
                  int64_t kvp, int64_t block, int64_t k, cudaStream_t stream);
// ---------------------------------------------------------------------------------------------
// Read-only stream bandwidth (the ceiling of decode attention and small-batch GEMMs): `iters`
// timed passes over a buffer of `bytes`, after two warm-up passes. Decimal GB/s.
struct StreamResult {
  int64_t bytes = 0;
  double gbps_median = 0, gbps_max = 0;
};
StreamResult stream_read(int64_t bytes, int iters, cudaStream_t stream);
// One pass of the same read-only kernel over `bytes` (a multiple of 16; a shorter tail is not
// read) of `buf` (16-byte aligned); `sink` is one device word, written only in the practically
// impossible case that the XOR of a block's reads equals a constant.
void stream_read_pass(const void* buf, int64_t bytes, uint32_t* sink, cudaStream_t stream);

// Keeps `stream` busy for about `ns` nanoseconds (one thread on the global timer). Enqueued before
// the start event of a timed launch, it lets the host finish enqueueing the launch's kernels
// before the start event fires, so host launch overhead stays out of the measured device time.
void hold_stream(int64_t ns, cudaStream_t stream);

// Fills with a value pattern that no kernel produces (tests poison outputs before a run).
void poison(void* dst, int64_t bytes, cudaStream_t stream);

}  // namespace helix::cuda
