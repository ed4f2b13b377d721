// GPU tests of every CUDA kernel against its CPU reference: random data (never zeros), outputs
// poisoned (NaN) before each run, every call checked. Skipped when no GPU is visible.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "comm/cuda_check.hpp"
#include "kernels/attention.hpp"
#include "kernels/combine.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/gemm.hpp"
#include "kernels/gemm_cuda.hpp"
#include "kernels/moe.hpp"
#include "kernels/norm.hpp"
#include "kernels/rope.hpp"
#include "layouts/model_spec.hpp"
#include "layouts/schedule.hpp"
#include "tests/cuda/gpu_test_util.hpp"

namespace helix {
namespace {

// --------------------------------------------------------------------------------------------
// Decode attention

struct GqaCase {
  int64_t batch, q_heads, kv_heads, group, tokens, capacity, q_begin, kv_begin;
};

void run_gqa(const GqaCase& c, int splits, const char* variant = nullptr) {
  const int64_t D = 128;
  std::vector<float> q = random_vec(size_t(c.batch * c.q_heads * D), 1);
  std::vector<float> k = random_vec(size_t(c.batch * c.kv_heads * c.capacity * D), 2);
  std::vector<float> v = random_vec(k.size(), 3);
  round_bf16(q);  // the kernel rounds Q to bf16 for the tensor cores
  round_bf16(k);
  round_bf16(v);
  std::vector<float> ref_o(size_t(c.batch * c.q_heads * D)), ref_l(size_t(c.batch * c.q_heads));
  cpu::GqaAttention r;
  r.batch = c.batch;
  r.q_heads = c.q_heads;
  r.q_begin = c.q_begin;
  r.kv_begin = c.kv_begin;
  r.kv_heads = c.kv_heads;
  r.group = c.group;
  r.head_dim = D;
  r.tokens = c.tokens;
  r.capacity = c.capacity;
  r.scale = 1.0f / std::sqrt(float(D));
  r.q = q.data();
  r.k = k.data();
  r.v = v.data();
  r.out = ref_o.data();
  r.lse = ref_l.data();
  cpu::attention_gqa(r);

  auto dq = upload(q);
  auto dk = upload_bf16(k);
  auto dv = upload_bf16(v);
  DeviceBuffer<float> o(int64_t(ref_o.size())), l(int64_t(ref_l.size()));
  cuda::poison(o.get(), o.bytes(), nullptr);
  cuda::poison(l.get(), l.bytes(), nullptr);
  cuda::DecodeAttention a;
  a.batch = c.batch;
  a.heads = c.q_heads;
  a.q_begin = c.q_begin;
  a.kv_begin = c.kv_begin;
  a.kv_heads = c.kv_heads;
  a.group = c.group;
  a.tokens = c.tokens;
  a.capacity = c.capacity;
  a.scale = r.scale;
  a.q = dq.get();
  a.k = dk.get();
  a.v = dv.get();
  a.out = o.get();
  a.lse = l.get();
  a.splits = splits;
  a.variant = variant;
  const int s = cuda::attention_splits(a);
  DeviceBuffer<float> ws(std::max<int64_t>(1, cuda::attention_workspace_floats(a, s)));
  a.workspace = ws.get();
  cuda::attention_decode(a, nullptr);
  EXPECT_LT(rel_err(download(o), ref_o), 1e-2) << "splits " << s;
  expect_lse_near(download(l), ref_l, 2e-2);
}

TEST_F(Gpu, GqaAttentionGroupsAndSplits) {
  // Groups 1 to 16, uneven token counts (masking of the last tile), one and many splits.
  for (int64_t group : {1, 4, 8, 16})
    for (int64_t tokens : {1, 37, 1000})
      for (int splits : {1, 0, 5}) {
        SCOPED_TRACE("group " + std::to_string(group) + " tokens " + std::to_string(tokens));
        run_gqa({2, 2 * group, 2, group, tokens, tokens + 3, 0, 0}, splits);
      }
}

TEST_F(Gpu, GqaAttentionShardMapping) {
  // A rank holding query heads 6..13 of a group-4 model and KV heads 1..3 (TP with uneven split).
  run_gqa({3, 8, 3, 4, 300, 310, 6, 1}, 0);
  // TP beyond the KV heads: 2 query heads of one duplicated KV head.
  run_gqa({1, 2, 1, 16, 513, 520, 32, 2}, 0);
}

TEST_F(Gpu, GqaAttentionEmptySlice) {
  run_gqa({2, 8, 1, 8, 0, 4, 0, 0}, 0);  // a KVP rank with no tokens yet: zeros and -inf
}

TEST_F(Gpu, GqaAttentionRealShapes) {
  // Helix / TP shard of Llama-3.1-405B: one KV head, 16 query heads, B = 1, 128K tokens.
  run_gqa({1, 16, 1, 16, 131072, 131072, 0, 0}, 0);
  // One KV head with 8 query heads (Llama-3.1-70B shard), B = 4, 32K tokens.
  run_gqa({4, 8, 1, 8, 32768, 32768, 0, 0}, 0);
}

struct MlaCase {
  int64_t batch, heads, tokens;
  int splits;           // 0: chosen by attention_splits
  int64_t check_heads;  // heads compared with the CPU reference (a stride through all)
  const char* variant = nullptr;
  int64_t capacity_pad = 5;  // cache rows past the slice (filled with NaN: must never be read)
};

struct MlaResult {
  std::vector<float> out, lse;
  int splits = 0;
  std::string variant;
};

// One launch of MLA decode attention on random data: q [batch, heads, 576] fp32 and the latent
// cache [batch, capacity, 576] bf16 whose rows past the slice are NaN. Outputs are poisoned first.
MlaResult launch_mla(const MlaCase& c, const std::vector<float>& q, const std::vector<float>& kv) {
  const int64_t W = 576, L = 512, cap = c.tokens + c.capacity_pad;
  std::vector<bf16> kvb(kv.size());
  for (size_t i = 0; i < kv.size(); ++i) kvb[i] = __float2bfloat16_rn(kv[i]);
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t t = c.tokens; t < cap; ++t)
      for (int64_t i = 0; i < W; ++i)
        kvb[size_t((b * cap + t) * W + i)] = __float2bfloat16_rn(std::nanf(""));
  auto dq = upload(q);
  auto dkv = upload(kvb);
  DeviceBuffer<float> o(c.batch * c.heads * L), l(c.batch * c.heads);
  cuda::poison(o.get(), o.bytes(), nullptr);
  cuda::poison(l.get(), l.bytes(), nullptr);
  cuda::DecodeAttention a;
  a.mla = true;
  a.batch = c.batch;
  a.heads = c.heads;
  a.group = c.heads;
  a.tokens = c.tokens;
  a.capacity = cap;
  a.scale = 0.07f;
  a.q = dq.get();
  a.k = dkv.get();
  a.out = o.get();
  a.lse = l.get();
  a.splits = c.splits;
  a.variant = c.variant;
  MlaResult r;
  r.splits = cuda::attention_splits(a);
  r.variant = cuda::attention_variant(a);
  DeviceBuffer<float> ws(std::max<int64_t>(1, cuda::attention_workspace_floats(a, r.splits)));
  cuda::poison(ws.get(), ws.bytes(), nullptr);
  a.workspace = ws.get();
  cuda::attention_decode(a, nullptr);
  HELIX_CUDA_CHECK(cudaGetLastError());
  r.out = download(o);
  r.lse = download(l);
  return r;
}

void run_mla_case(const MlaCase& c) {
  const int64_t W = 576, L = 512, cap = c.tokens + c.capacity_pad;
  std::vector<float> q = random_vec(size_t(c.batch * c.heads * W), 4);
  std::vector<float> kv = random_vec(size_t(c.batch * cap * W), 5);
  round_bf16(q);
  round_bf16(kv);
  const MlaResult g = launch_mla(c, q, kv);
  SCOPED_TRACE(g.variant + " splits " + std::to_string(g.splits));
  // CPU reference on a stride of heads (every head when check_heads >= heads), the heads spread
  // over the host's cores.
  const int64_t stride = std::max<int64_t>(1, c.heads / std::max<int64_t>(1, c.check_heads));
  std::vector<std::pair<int64_t, int64_t>> names;  // (b, h) per compared row
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; h += stride) names.emplace_back(b, h);
  const size_t n = names.size();
  std::vector<float> got_o(n * size_t(L)), want_o(n * size_t(L)), got_l(n), want_l(n);
  auto reference = [&](size_t first, size_t step) {
    for (size_t i = first; i < n; i += step) {
      const int64_t b = names[i].first, h = names[i].second;
      cpu::MlaAttention r;
      r.batch = 1;
      r.heads = 1;
      r.kv_lora = L;
      r.rope = 64;
      r.tokens = c.tokens;
      r.capacity = cap;
      r.scale = 0.07f;
      r.q = &q[size_t((b * c.heads + h) * W)];
      r.kv = &kv[size_t(b * cap * W)];
      r.out = &want_o[i * size_t(L)];
      r.lse = &want_l[i];
      cpu::attention_mla(r);
      const size_t off = size_t((b * c.heads + h) * L);
      std::copy(g.out.begin() + long(off), g.out.begin() + long(off + size_t(L)),
                got_o.begin() + long(i * size_t(L)));
      got_l[i] = g.lse[size_t(b * c.heads + h)];
    }
  };
  const size_t workers = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (size_t w = 0; w < workers; ++w) pool.emplace_back(reference, w, workers);
  for (std::thread& t : pool) t.join();
  auto name = [&](int64_t r) {
    return "b " + std::to_string(names[size_t(r)].first) + " head " +
           std::to_string(names[size_t(r)].second);
  };
  if (c.tokens == 0) {
    for (float v : got_o) ASSERT_EQ(v, 0.0f) << "an empty slice gives zeros";
  } else {
    expect_rows_near(got_o, want_o, L, 2e-2, name);
  }
  expect_lse_near(got_l, want_l, 2e-2);
}

void run_mla(int64_t batch, int64_t heads, int64_t tokens, int splits, int64_t check_heads,
             const char* variant = nullptr) {
  run_mla_case({batch, heads, tokens, splits, check_heads, variant});
}

TEST_F(Gpu, MlaAttention) {
  for (int64_t heads : {16, 24, 128})
    for (int64_t tokens : {1, 37, 700})
      for (int splits : {1, 0}) {
        SCOPED_TRACE("heads " + std::to_string(heads) + " tokens " + std::to_string(tokens));
        run_mla(2, heads, tokens, splits, heads);
      }
}

TEST_F(Gpu, EveryAttentionVariantMatchesReference) {
  // Every kernel configuration a user can select: uneven token counts (a partial last tile),
  // one and several splits, head counts that leave a head tile partly empty.
  for (const std::string& v : cuda::attention_variant_names(false))
    for (int64_t tokens : {45, 3001})
      for (int splits : {1, 0}) {
        SCOPED_TRACE(v + " tokens " + std::to_string(tokens));
        run_gqa({2, 16, 2, 8, tokens, tokens + 5, 0, 0}, splits, v.c_str());
        run_gqa({1, 16, 1, 16, tokens, tokens, 0, 0}, splits, v.c_str());
      }
  for (const std::string& v : cuda::attention_variant_names(true))
    for (int64_t heads : {16, 40, 128})
      for (int64_t tokens : {45, 3001}) {
        SCOPED_TRACE(v + " heads " + std::to_string(heads) + " tokens " + std::to_string(tokens));
        run_mla(2, heads, tokens, 0, heads, v.c_str());
        run_mla(1, heads, tokens, 1, heads, v.c_str());
      }
  EXPECT_GE(cuda::attention_variant_names(false).size(), 2u);
  EXPECT_GE(cuda::attention_variant_names(true).size(), 2u);
}

TEST_F(Gpu, MlaAttentionRealShapes) {
  run_mla(1, 128, 65536, 0, 8);   // DeepSeek-R1, all 128 heads on a KVP rank, 64K tokens
  run_mla(1, 16, 131072, 0, 16);  // 16 heads (TP = 8 shard), 128K tokens
}

// The warpgroup-MMA + TMA kernel for Hopper (kernels/attention_mla_sm90.cu); skipped elsewhere.
constexpr const char* kWgmmaMla = "mla-wgmma-h64-t64-s3-w12";

bool wgmma_mla_usable() {
  for (const std::string& v : cuda::attention_variant_names(true))
    if (v == kWgmmaMla) return true;
  return false;
}

TEST_F(Gpu, MlaWgmmaShapes) {
  if (!wgmma_mla_usable()) GTEST_SKIP() << "needs compute capability 9.0 and an sm_90a build";
  // Head counts that fill part of one, one, and part of two 64-head tiles; slices that end inside,
  // at and just past a 64-token block; one split, three, and the chosen count.
  for (int64_t heads : {16, 24, 64, 100, 128})
    for (int64_t tokens : {1, 63, 64, 65, 1000})
      for (int splits : {1, 3, 0}) {
        SCOPED_TRACE("heads " + std::to_string(heads) + " tokens " + std::to_string(tokens) +
                     " splits " + std::to_string(splits));
        run_mla_case({2, heads, tokens, splits, heads, kWgmmaMla});
      }
  // More splits than blocks (empty splits), an odd split count over a ragged slice at B = 3, a
  // wide NaN tail past the slice, a long slice (more blocks than stages many times over), an
  // empty slice.
  run_mla_case({1, 128, 100, 5, 128, kWgmmaMla});
  run_mla_case({3, 128, 3001, 7, 128, kWgmmaMla});
  run_mla_case({2, 40, 3001, 0, 40, kWgmmaMla, 700});
  run_mla_case({1, 128, 70000, 0, 16, kWgmmaMla});
  run_mla_case({2, 32, 0, 0, 32, kWgmmaMla});
}

TEST_F(Gpu, MlaWgmmaMatchesMmaKernelAndIsDeterministic) {
  if (!wgmma_mla_usable()) GTEST_SKIP() << "needs compute capability 9.0 and an sm_90a build";
  // DeepSeek-R1's helix shard shape, shortened: B = 8, 128 heads (two head tiles), many splits.
  // Every head against the mma.sync kernel; two launches must agree bit for bit (no races).
  MlaCase c{8, 128, 20000, 0, 128, kWgmmaMla};
  const int64_t cap = c.tokens + c.capacity_pad;
  std::vector<float> q = random_vec(size_t(c.batch * c.heads * 576), 6);
  std::vector<float> kv = random_vec(size_t(c.batch * cap * 576), 7);
  round_bf16(q);
  round_bf16(kv);
  const MlaResult w1 = launch_mla(c, q, kv), w2 = launch_mla(c, q, kv);
  c.variant = "mla-h64-t32-s3-w8";
  const MlaResult m = launch_mla(c, q, kv);
  SCOPED_TRACE("splits " + std::to_string(w1.splits) + " vs " + std::to_string(m.splits));
  ASSERT_EQ(w1.out.size(), w2.out.size());
  EXPECT_EQ(std::memcmp(w1.out.data(), w2.out.data(), w1.out.size() * sizeof(float)), 0)
      << "two launches differ";
  EXPECT_EQ(std::memcmp(w1.lse.data(), w2.lse.data(), w1.lse.size() * sizeof(float)), 0);
  expect_rows_near(w1.out, m.out, 512, 1e-2, [&](int64_t r) {
    return "b " + std::to_string(r / c.heads) + " head " + std::to_string(r % c.heads);
  });
  expect_lse_near(w1.lse, m.lse, 1e-2);
}

// --------------------------------------------------------------------------------------------
// LSE combine

TEST_F(Gpu, LseCombineStridedWithEmptyParts) {
  // Few parts (a warp per row chunk; 19 takes three batches of loads with 16-byte loads) and many
  // (a block per row chunk); 16-byte loads (packed stride) and scalar ones (odd stride, odd
  // width); widths with a partial last chunk.
  for (int64_t parts : {5, 19, 40, 300})
    for (int64_t dim : {128, 512, 200, 6})
      for (bool padded : {false, true}) {
        SCOPED_TRACE("parts " + std::to_string(parts) + " padded " + std::to_string(padded));
        const int64_t rows = 37;
        // The All-to-All receive layout: O [rows, dim] then LSE [rows] per part (padded: +3).
        const int64_t stride = (rows * (dim + 1) + 3) / 4 * 4 + (padded ? 3 : 0);
        std::vector<float> buf = random_vec(size_t(parts * stride), 7);
        // LSE values: random, some parts empty (-inf), one row empty in every part.
        std::vector<float> lse = random_vec(size_t(parts * rows), 8, -20.0f, 20.0f);
        for (int64_t i = 0; i < parts; ++i) {
          lse[size_t(i * rows + 3)] = -INFINITY;
          if (i % 2) lse[size_t(i * rows + 5)] = -INFINITY;
        }
        for (int64_t i = 0; i < parts; ++i)
          for (int64_t r = 0; r < rows; ++r)
            buf[size_t(i * stride + rows * dim + r)] = lse[size_t(i * rows + r)];
        std::vector<float> ref(static_cast<size_t>(rows * dim)), ref_l(static_cast<size_t>(rows));
        cpu::lse_combine(parts, rows, dim, buf.data(), stride, buf.data() + rows * dim, stride,
                         ref.data(), ref_l.data());
        auto d = upload(buf);
        DeviceBuffer<float> o(rows * dim), l(rows);
        DeviceBuffer<bf16> ob(rows * dim);
        cuda::poison(o.get(), o.bytes(), nullptr);
        cuda::poison(ob.get(), ob.bytes(), nullptr);
        cuda::lse_combine(parts, rows, dim, d.get(), stride, d.get() + rows * dim, stride, o.get(),
                          ob.get(), l.get(), nullptr);
        EXPECT_LT(rel_err(download(o), ref), 1e-5) << "dim " << dim;
        EXPECT_LT(rel_err(to_float(download(ob)), ref), 1e-2) << "dim " << dim;
        expect_lse_near(download(l), ref_l, 1e-4);
      }
}

// --------------------------------------------------------------------------------------------
// GEMMs (cuBLASLt)

void run_gemm(int64_t m, int64_t k, int64_t n, int64_t ldw, bool y_bf16, bool acc, int batch) {
  std::vector<float> x = random_vec(size_t(batch * m * k), 9),
                     w = random_vec(size_t(batch * k * ldw), 10);
  round_bf16(x);
  round_bf16(w);
  std::vector<float> y0 = random_vec(size_t(batch * m * n), 11);
  std::vector<float> ref = acc ? y0 : std::vector<float>(y0.size(), 0.0f);
  for (int i = 0; i < batch; ++i)
    cpu::gemm(&x[size_t(i * m * k)], k, &w[size_t(i * k * ldw)], ldw, &ref[size_t(i * m * n)], n, m,
              k, n, acc);
  auto dx = upload_bf16(x);
  auto dw = upload_bf16(w);
  cuda::Gemm gemm;
  GemmShape s{m, k, n, k, ldw, n};
  s.y_bf16 = y_bf16;
  s.accumulate = acc;
  s.batch = batch;
  s.stride_x = m * k;
  s.stride_w = k * ldw;
  s.stride_y = m * n;
  if (y_bf16) {
    DeviceBuffer<bf16> y(int64_t(ref.size()));
    cuda::poison(y.get(), y.bytes(), nullptr);
    gemm.run(s, dx.get(), dw.get(), y.get(), nullptr);
    EXPECT_LT(rel_err(to_float(download(y)), ref), 1e-2);
  } else {
    auto y = upload(y0);
    if (!acc) cuda::poison(y.get(), y.bytes(), nullptr);
    gemm.run(s, dx.get(), dw.get(), y.get(), nullptr);
    EXPECT_LT(rel_err(download(y), ref), 1e-4);
  }
}

TEST_F(Gpu, GemmDecodeShapes) {
  run_gemm(3, 256, 192, 192, false, false, 1);
  run_gemm(3, 256, 64, 200, false, true, 1);   // a column slice of a wider matrix, accumulating
  run_gemm(5, 128, 512, 512, true, false, 4);  // strided batch (MLA absorb per head)
  run_gemm(8, 16384, 1024, 1024, false, false, 1);  // Llama-3.1-405B K/V projection shard
}

// --------------------------------------------------------------------------------------------
// Norms, RoPE, activations, KV append, routing, gather / scatter, random fills

TEST_F(Gpu, RmsNormRopeSilu) {
  const int64_t rows = 5, dim = 4096;
  std::vector<float> x = random_vec(size_t(rows * dim), 12),
                     w = random_vec(size_t(dim), 13, 0.5f, 1.5f);
  std::vector<float> ref(x.size());
  cpu::rmsnorm(x.data(), w.data(), rows, dim, 1e-5f, ref.data());
  auto dx = upload(x);
  auto dw = upload(w);
  DeviceBuffer<float> y(rows * dim);
  DeviceBuffer<bf16> yb(rows * dim);
  cuda::poison(y.get(), y.bytes(), nullptr);
  cuda::rmsnorm(dx.get(), dim, dw.get(), rows, dim, 1e-5f, yb.get(), y.get(), nullptr);
  EXPECT_LT(rel_err(download(y), ref), 1e-6);
  EXPECT_LT(rel_err(to_float(download(yb)), ref), 1e-2);

  std::vector<float> r = x;
  for (int64_t i = 0; i < rows * dim / 128; ++i) cpu::rope(&r[size_t(i * 128)], 128, 77777, 5e5f);
  cuda::rope(dx.get(), rows * dim / 128, 1, 128, 0, 128, 77777, 5e5f, nullptr);
  EXPECT_LT(rel_err(download(dx), r), 1e-6);

  std::vector<float> g = random_vec(x.size(), 14, -4, 4), u = random_vec(x.size(), 15);
  std::vector<float> sc = random_vec(size_t(rows), 16);
  std::vector<float> want(x.size());
  for (int64_t i = 0; i < rows * dim; ++i) {
    const float a = g[size_t(i)];
    want[size_t(i)] = sc[size_t(i / dim)] * (a / (1 + std::exp(-a))) * u[size_t(i)];
  }
  auto dg = upload(g);
  auto du = upload(u);
  auto ds = upload(sc);
  cuda::poison(yb.get(), yb.bytes(), nullptr);
  cuda::silu_mul(dg.get(), du.get(), ds.get(), rows, dim, yb.get(), nullptr);
  EXPECT_LT(rel_err(to_float(download(yb)), want), 1e-2);
}

TEST_F(Gpu, KvAppendGqaAndMla) {
  const int64_t B = 3, heads = 2, D = 128, cap = 40, li = 17;
  std::vector<float> kn = random_vec(size_t(B * heads * D), 17), vn = random_vec(kn.size(), 18);
  auto dk = upload(kn);
  auto dv = upload(vn);
  DeviceBuffer<bf16> kc(B * heads * cap * D), vc(B * heads * cap * D);
  cuda::poison(kc.get(), kc.bytes(), nullptr);
  cuda::poison(vc.get(), vc.bytes(), nullptr);
  cuda::kv_append_gqa(dk.get(), dv.get(), B, heads, D, kc.get(), vc.get(), cap, li, nullptr);
  const std::vector<float> hk = to_float(download(kc)), hv = to_float(download(vc));
  for (int64_t bh = 0; bh < B * heads; ++bh)
    for (int64_t d = 0; d < D; ++d) {
      EXPECT_NEAR(hk[size_t((bh * cap + li) * D + d)], kn[size_t(bh * D + d)], 1e-2);
      EXPECT_NEAR(hv[size_t((bh * cap + li) * D + d)], vn[size_t(bh * D + d)], 1e-2);
    }
  EXPECT_TRUE(std::isnan(hk[size_t(li * D - 1)]));  // neighbours untouched

  // MLA: RMSNorm of the latent, RoPE of the rope key, written at row li.
  const int64_t Lr = 512, R = 64, Wd = Lr + R;
  std::vector<float> ckv = random_vec(size_t(B * Wd), 19), w = random_vec(size_t(Lr), 20, 0.5, 1.5);
  std::vector<float> want = ckv;
  for (int64_t b = 0; b < B; ++b) {
    cpu::rmsnorm(&want[size_t(b * Wd)], w.data(), 1, Lr, 1e-6f, &want[size_t(b * Wd)]);
    cpu::rope(&want[size_t(b * Wd + Lr)], R, 1234, 1e4f);
  }
  auto dckv = upload(ckv);
  auto dw = upload(w);
  DeviceBuffer<bf16> cache(B * cap * Wd);
  cuda::poison(cache.get(), cache.bytes(), nullptr);
  cuda::kv_append_mla(dckv.get(), dw.get(), B, Lr, R, 1e-6f, 1234, 1e4f, cache.get(), cap, li,
                      nullptr);
  const std::vector<float> hc = to_float(download(cache));
  std::vector<float> got;
  for (int64_t b = 0; b < B; ++b)
    got.insert(got.end(), hc.begin() + long((b * cap + li) * Wd),
               hc.begin() + long((b * cap + li + 1) * Wd));
  EXPECT_LT(rel_err(got, want), 1e-2);
}

TEST_F(Gpu, MoeRouteGatherScatter) {
  const int64_t T = 33, E = 256, K = 8;
  std::vector<float> logits = random_vec(size_t(T * E), 21, -3, 3);
  logits[5] = logits[6];  // a tie: the lower expert index wins on both sides
  std::vector<int32_t> re(size_t(T * K));
  std::vector<float> rw(size_t(T * K));
  cpu::moe_route(logits.data(), T, E, K, 2.5f, re.data(), rw.data());
  auto dl = upload(logits);
  DeviceBuffer<int32_t> de(T * K);
  DeviceBuffer<float> dw(T * K);
  cuda::poison(de.get(), de.bytes(), nullptr);
  cuda::moe_route(dl.get(), T, E, K, 2.5f, de.get(), dw.get(), nullptr);
  EXPECT_EQ(download(de), re);
  EXPECT_LT(rel_err(download(dw), rw), 1e-5);

  const int64_t H = 64;
  std::vector<float> x = random_vec(size_t(T * H), 22);
  round_bf16(x);
  std::vector<int32_t> rows = {7, 0, 31, 12};
  auto dx = upload_bf16(x);
  auto drows = upload(rows);
  DeviceBuffer<bf16> g(int64_t(rows.size()) * H);
  cuda::gather_rows(dx.get(), drows.get(), int64_t(rows.size()), H, g.get(), nullptr);
  const std::vector<float> hg = to_float(download(g));
  for (size_t r = 0; r < rows.size(); ++r)
    for (int64_t j = 0; j < H; ++j)
      EXPECT_EQ(hg[r * size_t(H) + size_t(j)], x[size_t(rows[r] * H + j)]);
  std::vector<float> add = random_vec(rows.size() * size_t(H), 23),
                     y = random_vec(size_t(T * H), 24);
  std::vector<float> want = y;
  for (size_t r = 0; r < rows.size(); ++r)
    for (int64_t j = 0; j < H; ++j) want[size_t(rows[r] * H + j)] += add[r * size_t(H) + size_t(j)];
  auto dadd = upload(add);
  auto dy = upload(y);
  cuda::scatter_add_rows(dadd.get(), drows.get(), int64_t(rows.size()), H, dy.get(), nullptr);
  EXPECT_LT(rel_err(download(dy), want), 1e-7);
}

}  // namespace
}  // namespace helix
