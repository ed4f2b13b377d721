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

#include "bench/cuda_executor.hpp"
#include "bench/layer_data.hpp"
#include "comm/cuda_check.hpp"
#include "comm/error.hpp"
#include "kernels/attention.hpp"
#include "kernels/combine.hpp"
#include "kernels/copy_segments.hpp"
#include "kernels/copy_segments_cuda.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/gemm.hpp"
#include "kernels/gemm_cuda.hpp"
#include "kernels/moe.hpp"
#include "kernels/moe_cuda.hpp"
#include "kernels/norm.hpp"
#include "kernels/rng.hpp"
#include "kernels/rope.hpp"
#include "layouts/model_spec.hpp"
#include "layouts/schedule.hpp"

namespace helix {
namespace {

using bf16 = __nv_bfloat16;

class Gpu : public ::testing::Test {
 protected:
  void SetUp() override {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) GTEST_SKIP() << "no GPU visible";
    HELIX_CUDA_CHECK(cudaSetDevice(0));
  }
};

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

// Rounds to bf16 in place (so the CPU reference sees the values the GPU stores).
void round_bf16(std::vector<float>& v) {
  for (float& x : v) x = __bfloat162float(__float2bfloat16_rn(x));
}

template <class T>
DeviceArray<T> upload(const std::vector<T>& h) {
  DeviceArray<T> d(int64_t(h.size()));
  HELIX_CUDA_CHECK(cudaMemcpy(d.get(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

DeviceArray<bf16> upload_bf16(const std::vector<float>& h) {
  std::vector<bf16> b(h.size());
  for (size_t i = 0; i < h.size(); ++i) b[i] = __float2bfloat16_rn(h[i]);
  return upload(b);
}

template <class T>
std::vector<T> download(const DeviceArray<T>& d) {
  HELIX_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<T> h(size_t(d.size()));
  HELIX_CUDA_CHECK(cudaMemcpy(h.data(), d.get(), h.size() * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

std::vector<float> to_float(const std::vector<bf16>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = __bfloat162float(v[i]);
  return f;
}

// ||a - b|| / ||b|| over finite entries; NaN anywhere in `a` (a poisoned output left unwritten)
// fails the test.
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i])) {
      ADD_FAILURE() << "NaN (unwritten output) at " << i;
      return INFINITY;
    }
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

void expect_lse_near(const std::vector<float>& got, const std::vector<float>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isinf(want[i])) {
      EXPECT_TRUE(std::isinf(got[i]) && got[i] < 0) << "row " << i;
    } else {
      EXPECT_NEAR(got[i], want[i], tol) << "row " << i;
    }
  }
}

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
  DeviceArray<float> o(int64_t(ref_o.size())), l(int64_t(ref_l.size()));
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
  DeviceArray<float> ws(std::max<int64_t>(1, cuda::attention_workspace_floats(a, s)));
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

// Row-wise comparison with diagnostics: every row's relative error ||got - want|| / ||want|| must
// stay below `tol` (a wrong head cannot hide in a global norm). On failure: the number of bad
// rows, the worst ones by name, and the first element of each that differs by more than
// tol * max|want| of its row.
void expect_rows_near(const std::vector<float>& got, const std::vector<float>& want, int64_t width,
                      double tol, const std::function<std::string(int64_t)>& row_name) {
  ASSERT_EQ(got.size(), want.size());
  const int64_t rows = int64_t(want.size()) / width;
  std::vector<std::pair<double, int64_t>> bad;
  for (int64_t r = 0; r < rows; ++r) {
    double num = 0, den = 0;
    bool nan = false;
    for (int64_t c = 0; c < width; ++c) {
      const double g = got[size_t(r * width + c)], w = want[size_t(r * width + c)];
      nan = nan || std::isnan(g);
      num += (g - w) * (g - w);
      den += w * w;
    }
    const double err = nan ? INFINITY : std::sqrt(num / std::max(den, 1e-30));
    if (!(err < tol)) bad.emplace_back(err, r);
  }
  if (bad.empty()) return;
  std::sort(bad.begin(), bad.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string msg = std::to_string(bad.size()) + " of " + std::to_string(rows) +
                    " rows with relative error >= " + std::to_string(tol) + "; worst:";
  for (size_t k = 0; k < std::min<size_t>(bad.size(), 6); ++k) {
    const int64_t r = bad[k].second;
    double scale = 0;
    for (int64_t c = 0; c < width; ++c)
      scale = std::max(scale, std::fabs(double(want[size_t(r * width + c)])));
    int64_t first = -1;
    for (int64_t c = 0; c < width && first < 0; ++c) {
      const double g = got[size_t(r * width + c)], w = want[size_t(r * width + c)];
      if (!(std::fabs(g - w) <= tol * scale)) first = c;
    }
    msg += "\n  " + row_name(r) + ": rel err " + std::to_string(bad[k].first);
    if (first >= 0)
      msg += ", first bad column " + std::to_string(first) + " got " +
             std::to_string(got[size_t(r * width + first)]) + " want " +
             std::to_string(want[size_t(r * width + first)]);
  }
  ADD_FAILURE() << msg;
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
  DeviceArray<float> o(c.batch * c.heads * L), l(c.batch * c.heads);
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
  DeviceArray<float> ws(std::max<int64_t>(1, cuda::attention_workspace_floats(a, r.splits)));
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
        DeviceArray<float> o(rows * dim), l(rows);
        DeviceArray<bf16> ob(rows * dim);
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
  cuda::GemmShape s{m, k, n, k, ldw, n};
  s.y_bf16 = y_bf16;
  s.accumulate = acc;
  s.batch = batch;
  s.stride_x = m * k;
  s.stride_w = k * ldw;
  s.stride_y = m * n;
  if (y_bf16) {
    DeviceArray<bf16> y(int64_t(ref.size()));
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
  DeviceArray<float> y(rows * dim);
  DeviceArray<bf16> yb(rows * dim);
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
  DeviceArray<bf16> kc(B * heads * cap * D), vc(B * heads * cap * D);
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
  DeviceArray<bf16> cache(B * cap * Wd);
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
  DeviceArray<int32_t> de(T * K);
  DeviceArray<float> dw(T * K);
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
  DeviceArray<bf16> g(int64_t(rows.size()) * H);
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

// --------------------------------------------------------------------------------------------
// MoE FFN without host round trips (kernels/moe_cuda.hpp)

struct MoeCase {
  int64_t tokens, hidden, experts, top_k, e0, e1, cols, shared_cols;
  uint32_t seed = 30;
  int64_t hot_tokens = 0;  // the first hot_tokens tokens all rank expert e0 first
  bool none_held = false;  // no token ranks a held expert within its top-k
};

// Random bf16 data, CPU routing and FFN on the same logits; the GPU's routing must match exactly
// (ties are broken alike), its output row by row; two launches must agree bit for bit. Outputs
// and the whole workspace are poisoned first.
void run_moe_case(const MoeCase& c) {
  const int64_t T = c.tokens, H = c.hidden, E = c.experts, K = c.top_k;
  const int64_t held = c.e1 - c.e0, C = c.cols, S = c.shared_cols;
  std::vector<float> x = random_vec(size_t(T * H), c.seed);
  std::vector<float> logits = random_vec(size_t(T * E), c.seed + 1, -4.0f, 4.0f);
  for (int64_t t = 0; t < c.hot_tokens; ++t) logits[size_t(t * E + c.e0)] = 9.0f;
  if (c.none_held)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t e = c.e0; e < c.e1; ++e) logits[size_t(t * E + e)] = -9.0f;
  const float ws = 1.0f / std::sqrt(float(H)), ds = 1.0f / std::sqrt(float(std::max(C, S)));
  std::vector<float> g = random_vec(size_t(held * H * C), c.seed + 2, -ws, ws);
  std::vector<float> u = random_vec(size_t(held * H * C), c.seed + 3, -ws, ws);
  std::vector<float> d = random_vec(size_t(held * C * H), c.seed + 4, -ds, ds);
  std::vector<float> sg = random_vec(size_t(H * S), c.seed + 5, -ws, ws);
  std::vector<float> su = random_vec(size_t(H * S), c.seed + 6, -ws, ws);
  std::vector<float> sd = random_vec(size_t(S * H), c.seed + 7, -ds, ds);
  for (auto* v : {&x, &g, &u, &d, &sg, &su, &sd}) round_bf16(*v);

  std::vector<int32_t> re(size_t(T * K));
  std::vector<float> rw(size_t(T * K)), rm(static_cast<size_t>(T)), want(size_t(T * H));
  cpu::moe_route(logits.data(), T, E, K, 2.5f, re.data(), rw.data(), rm.data());
  const cpu::MoeFfnRef r{T,        H,         K,         c.e0,      c.e1,       C,
                         S,        x.data(),  re.data(), rw.data(), g.data(),   u.data(),
                         d.data(), sg.data(), su.data(), sd.data(), want.data()};
  cpu::moe_ffn(r);

  auto dx = upload_bf16(x);
  auto dl = upload(logits);
  auto dg = upload_bf16(g);
  auto du = upload_bf16(u);
  auto dd = upload_bf16(d);
  auto dsg = upload_bf16(sg.empty() ? std::vector<float>(1) : sg);
  auto dsu = upload_bf16(su.empty() ? std::vector<float>(1) : su);
  auto dsd = upload_bf16(sd.empty() ? std::vector<float>(1) : sd);
  const cuda::MoeFfnShape shape{H, E, K, c.e0, c.e1, C, S, 2.5f, T + 3};
  cuda::MoeFfnWeights w;
  w.gate = dg.get();
  w.up = du.get();
  w.down = dd.get();
  if (S > 0) {
    w.s_gate = dsg.get();
    w.s_up = dsu.get();
    w.s_down = dsd.get();
  }
  const cuda::MoeFfn moe(shape, w);
  DeviceArray<float> work((moe.workspace_bytes() + 3) / 4);
  DeviceArray<float> out(T * H), out2(T * H), margin(T), lmargin(T);
  DeviceArray<int32_t> expert(T * K);
  DeviceArray<float> weight(T * K);
  const cuda::MoeRouting routing{expert.get(), weight.get(), margin.get(), lmargin.get()};
  std::vector<float> got[2];
  for (int run = 0; run < 2; ++run) {
    DeviceArray<float>& o = run == 0 ? out : out2;
    cuda::poison(work.get(), work.bytes(), nullptr);
    cuda::poison(o.get(), o.bytes(), nullptr);
    cuda::poison(expert.get(), expert.bytes(), nullptr);
    moe.run_from_logits(dx.get(), dl.get(), T, work.get(), o.get(), routing, nullptr);
    HELIX_CUDA_CHECK(cudaGetLastError());
    got[run] = download(o);
  }
  const cuda::MoePlanSummary sum = moe.summary(work.get(), nullptr);
  SCOPED_TRACE("active experts " + std::to_string(sum.active_experts) + ", assignments " +
               std::to_string(sum.assignments) + ", units " + std::to_string(sum.phase1_units) +
               " + " + std::to_string(sum.phase2_units) + " + " + std::to_string(sum.phase3_units) +
               ", row parts " + std::to_string(sum.phase1_parts) + " / " +
               std::to_string(sum.phase2_parts));
  EXPECT_EQ(download(expert), re);
  EXPECT_LT(rel_err(download(weight), rw), 1e-5);
  const std::vector<float> gm = download(margin);
  const std::vector<float> glm = download(lmargin);
  for (int64_t t = 0; t < T; ++t) {
    EXPECT_NEAR(gm[size_t(t)], rm[size_t(t)], 1e-5) << "token " << t;
    // The logit margin: the k-th chosen expert's logit minus the best unchosen one's.
    float best_out = -INFINITY;
    for (int64_t e = 0; e < E; ++e) {
      bool chosen = false;
      for (int64_t k = 0; k < K; ++k) chosen = chosen || re[size_t(t * K + k)] == e;
      if (!chosen) best_out = std::max(best_out, logits[size_t(t * E + e)]);
    }
    EXPECT_FLOAT_EQ(glm[size_t(t)], logits[size_t(t * E + re[size_t(t * K + K - 1)])] - best_out)
        << "token " << t;
  }
  int64_t assignments = 0;
  for (int32_t e : re) assignments += e >= c.e0 && e < c.e1;
  EXPECT_EQ(sum.assignments, assignments);
  expect_rows_near(got[0], want, H, 1e-2,
                   [](int64_t row) { return "token " + std::to_string(row); });
  EXPECT_EQ(std::memcmp(got[0].data(), got[1].data(), got[0].size() * sizeof(float)), 0)
      << "two launches differ";
}

TEST_F(Gpu, MoeFfnMatchesReference) {
  if (!cuda::MoeFfn::available()) GTEST_SKIP() << "needs compute capability 9.0 and an sm_90 build";
  // Hidden sizes with a partial 512-row part and a partial 64-column box, expert and shared
  // slices that are not multiples of 64, 1 to 64 tokens (two 32-token sub-items of the shared
  // expert), an expert with more than 32 tokens, a rank with no shared expert.
  run_moe_case({1, 1088, 32, 4, 5, 21, 128, 64});
  run_moe_case({7, 1000, 32, 4, 0, 32, 200, 72});
  run_moe_case({33, 1088, 32, 4, 8, 24, 64, 136});
  run_moe_case({64, 512, 16, 2, 4, 12, 96, 0, 31, 40});
  run_moe_case({5, 256, 64, 6, 60, 64, 64, 0});  // few tokens reach experts 60..63
}

TEST_F(Gpu, MoeFfnEverySplit) {
  if (!cuda::MoeFfn::available()) GTEST_SKIP() << "needs compute capability 9.0 and an sm_90 build";
  // Slices over 512 rows (phase 2 in 3 and 2 row parts, partial boxes of 8 columns).
  run_moe_case({40, 2048, 64, 4, 8, 40, 1032, 520, 60});
  // More slots than the split buffers hold: hidden 1536 in two units of 1024 and 512 rows (one
  // unit reloads its token tile), then hidden 1024 unsplit (no partial sums).
  run_moe_case({128, 1536, 16, 4, 4, 12, 256, 256, 61});
  run_moe_case({256, 1024, 16, 2, 0, 16, 128, 64, 62});
  // More shared-expert units than SMs: some of them are taken from the queue after the plan.
  run_moe_case({160, 2048, 16, 2, 0, 4, 64, 2048, 63});
}
TEST_F(Gpu, MoeFfnNothingRoutedHere) {
  if (!cuda::MoeFfn::available()) GTEST_SKIP() << "needs compute capability 9.0 and an sm_90 build";
  // Every token's experts are held elsewhere and there is no shared expert: out is zeros.
  run_moe_case({3, 256, 16, 2, 14, 16, 64, 0, 40, 0, true});
}

TEST_F(Gpu, MoeFfnDeepSeekShapes) {
  if (!cuda::MoeFfn::available()) GTEST_SKIP() << "needs compute capability 9.0 and an sm_90 build";
  // DeepSeek-R1: hidden 7168, 256 experts top-8; 16 held experts with a 512-column slice (TPF 4)
  // and a 256-column shared slice, at B = 8 and 32.
  run_moe_case({8, 7168, 256, 8, 0, 16, 512, 256, 41});
  run_moe_case({32, 7168, 256, 8, 48, 64, 512, 256, 42});
  // The full 2048-column experts of EP 1 / EP 4 (two held, four tokens on the first) and the
  // 2048-column shared expert.
  run_moe_case({8, 7168, 256, 8, 0, 2, 2048, 2048, 43, 4});
}

TEST_F(Gpu, MoeFfnRefusesShapesItCannotRun) {
  // Refused on the host with the reason, before any launch (UsageError).
  DeviceArray<bf16> w(4 * 64 * 64 + 8);
  cuda::MoeFfnWeights ok;
  ok.gate = ok.up = ok.down = w.get();
  const cuda::MoeFfnShape good{64, 8, 2, 0, 4, 64, 0, 1.0f, 4};
  EXPECT_NO_THROW(cuda::MoeFfn(good, ok));
  auto refused = [&](cuda::MoeFfnShape s, cuda::MoeFfnWeights wt, const char* why) {
    try {
      cuda::MoeFfn m(s, wt);
      ADD_FAILURE() << "accepted: " << why;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  };
  cuda::MoeFfnShape s = good;
  s.cols = 60;
  refused(s, ok, "multiples of 8");
  s = good;
  s.hidden = 100;
  refused(s, ok, "multiple of 8");
  s = good;
  s.max_tokens = 4097;
  refused(s, ok, "max_tokens * top_k");
  s = good;
  s.expert_end = 9;
  refused(s, ok, "held experts");
  cuda::MoeFfnWeights odd = ok;
  odd.down = w.get() + 1;  // 2 bytes off
  refused(good, odd, "down must be 16-byte aligned");
  s = good;
  s.shared_cols = 64;
  refused(s, ok, "shared expert's weights");
}

TEST_F(Gpu, MoeFfnRouterOnGpu) {
  if (!cuda::MoeFfn::available()) GTEST_SKIP() << "needs compute capability 9.0 and an sm_90 build";
  // run(): the router GEMM on the GPU; its routing must be the CPU's on the GPU's logits.
  const int64_t T = 9, H = 512, E = 64, K = 6, C = 128;
  std::vector<float> x = random_vec(size_t(T * H), 50), router = random_vec(size_t(H * E), 51);
  std::vector<float> wt = random_vec(size_t(E * H * C), 52, -0.05f, 0.05f);
  round_bf16(x);
  round_bf16(router);
  auto dx = upload_bf16(x);
  auto dr = upload_bf16(router);
  auto dw = upload_bf16(wt);
  DeviceArray<bf16> dd(E * C * H);
  HELIX_CUDA_CHECK(cudaMemcpy(dd.get(), dw.get(), size_t(dd.bytes()), cudaMemcpyDeviceToDevice));
  const cuda::MoeFfnShape s{H, E, K, 0, E, C, 0, 1.0f, T};
  cuda::MoeFfnWeights w;
  w.router = dr.get();
  w.gate = dw.get();
  w.up = dw.get();
  w.down = dd.get();
  const cuda::MoeFfn moe(s, w);
  DeviceArray<float> work((moe.workspace_bytes() + 3) / 4);
  DeviceArray<float> logits(T * E), out(T * H), margin(T), weight(T * K);
  DeviceArray<int32_t> expert(T * K);
  cuda::Gemm gemm;
  moe.run(gemm, dx.get(), T, logits.get(), work.get(), out.get(),
          {expert.get(), weight.get(), margin.get()}, nullptr);
  const std::vector<float> gl = download(logits);
  std::vector<float> want_l(size_t(T * E), 0.0f);
  cpu::gemm(x.data(), H, router.data(), E, want_l.data(), E, T, H, E, false);
  EXPECT_LT(rel_err(gl, want_l), 1e-4);
  std::vector<int32_t> re(size_t(T * K));
  std::vector<float> rw(size_t(T * K));
  cpu::moe_route(gl.data(), T, E, K, 1.0f, re.data(), rw.data());
  EXPECT_EQ(download(expert), re);
  for (float v : download(out)) ASSERT_TRUE(std::isfinite(v));
}

TEST_F(Gpu, DeviceShardMatchesHostShard) {
  // The weights generated on the GPU are the host's, rounded to bf16: both test models, a rank
  // of a 4-way layout.
  for (const char* name : {"tiny-gqa", "tiny-mla-moe"}) {
    const ModelSpec m = load_model(name);
    const LayerKind layer = m.default_layer_kind();
    LayoutRequest req;
    const LayoutParams L = make_layout(LayoutKind::helix, 4, m, layer, 4, req);
    const RankPlan p = plan_rank(m, layer, L, 3);
    const LayerShard h = make_layer_shard(m, p, 99);
    const DeviceShard d = make_device_shard(m, p, 99, nullptr);
    auto same = [&](const DeviceArray<bf16>& a, const std::vector<float>& b, const char* what) {
      ASSERT_EQ(a.size(), int64_t(b.size())) << name << " " << what;
      std::vector<float> r = b;
      round_bf16(r);
      EXPECT_EQ(to_float(download(a)), r) << name << " " << what;
    };
    if (m.is_mla()) {
      same(d.wdq, h.wdq, "wdq");
      same(d.wuq, h.wuq, "wuq");
      same(d.wuk_t, h.wuk_t, "wuk_t");
      same(d.wuv, h.wuv, "wuv");
      same(d.e_gate, h.e_gate, "e_gate");
      same(d.e_down, h.e_down, "e_down");
      same(d.s_up, h.s_up, "s_up");
      same(d.router, h.router, "router");
    } else {
      same(d.wq, h.wq, "wq");
      same(d.wk, h.wk, "wk");
      same(d.w_down, h.w_down, "w_down");
    }
    same(d.wo, h.wo, "wo");
    EXPECT_EQ(download(d.attn_norm), h.attn_norm) << name;
  }
}

TEST_F(Gpu, KvFillMatchesHostCache) {
  const ModelSpec m = load_model("tiny-gqa");
  LayoutRequest req;
  req.kv_block = 4;
  req.kvp = 2;
  req.tpa = 2;
  const LayoutParams L = make_layout(LayoutKind::helix, 4, m, LayerKind::dense, 2, req);
  const RankPlan p = plan_rank(m, LayerKind::dense, L, 3);
  const KvCache c = make_kv_cache(m, p, 2, 37, 45, 5);
  const uint64_t key = tensor_key(5, TensorId::k_cache, 1, uint64_t(p.kv_heads.begin + 1));
  DeviceArray<bf16> d(c.capacity * c.width);
  cuda::fill_kv_rows(d.get(), key, c.width, p.local_tokens(37), c.capacity, p.placement.kvp,
                     p.placement.block, p.k, nullptr);
  const size_t off = size_t(((1 * c.heads + 1) * c.capacity) * c.width);
  std::vector<float> want(c.k.begin() + long(off), c.k.begin() + long(off + size_t(d.size())));
  round_bf16(want);
  EXPECT_EQ(to_float(download(d)), want);
}

TEST_F(Gpu, CopySegmentsMatchesHost) {
  // Gathers of 16-byte-aligned blocks (the vector path) and of odd offsets and lengths (the byte
  // path), into a buffer poisoned with 0xFF: only the segments' bytes change.
  std::mt19937 g(11);
  std::vector<unsigned char> src(1 << 20);
  for (auto& b : src) b = static_cast<unsigned char>(g() & 0xFF);
  std::vector<cpu::Segment> segs;
  int64_t at = 0;
  for (int i = 0; i < 300; ++i) {
    cpu::Segment s;
    const bool aligned = i % 3 != 0;
    s.bytes = aligned ? 16 * int64_t(1 + g() % 128) : int64_t(1 + g() % 999);
    s.src_offset = aligned ? 16 * int64_t(g() % 60000) : int64_t(g() % 1000000);
    s.dst_offset = aligned ? (at + 15) / 16 * 16 : at + 3;
    at = s.dst_offset + s.bytes;
    segs.push_back(s);
  }
  std::vector<unsigned char> want(size_t(at + 64), 0xFF);
  cpu::copy_segments(src.data(), want.data(), segs.data(), int64_t(segs.size()));
  void *d_src = nullptr, *d_dst = nullptr, *d_segs = nullptr;
  const size_t seg_bytes = segs.size() * sizeof(cpu::Segment);
  HELIX_CUDA_CHECK(cudaMalloc(&d_src, src.size()));
  HELIX_CUDA_CHECK(cudaMalloc(&d_dst, want.size()));
  HELIX_CUDA_CHECK(cudaMalloc(&d_segs, seg_bytes));
  HELIX_CUDA_CHECK(cudaMemcpy(d_src, src.data(), src.size(), cudaMemcpyHostToDevice));
  HELIX_CUDA_CHECK(cudaMemset(d_dst, 0xFF, want.size()));
  HELIX_CUDA_CHECK(cudaMemcpy(d_segs, segs.data(), seg_bytes, cudaMemcpyHostToDevice));
  cuda::copy_segments(d_src, d_dst, static_cast<const cpu::Segment*>(d_segs), int64_t(segs.size()),
                      nullptr);
  std::vector<unsigned char> got(want.size());
  HELIX_CUDA_CHECK(cudaMemcpy(got.data(), d_dst, got.size(), cudaMemcpyDeviceToHost));
  for (void* p : {d_src, d_dst, d_segs}) HELIX_CUDA_CHECK(cudaFree(p));
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace helix
