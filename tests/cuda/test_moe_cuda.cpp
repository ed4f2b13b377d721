// GPU tests of the MoE FFN without host round trips (kernels/moe_cuda.hpp): routing, grouping and
// the grouped expert launch against the CPU references (cpu::moe_route, cpu::moe_ffn) on random
// data, outputs and workspace poisoned first; shapes the kernel refuses. Skipped without a GPU.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "comm/cuda_check.hpp"
#include "comm/error.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/gemm.hpp"
#include "kernels/gemm_cuda.hpp"
#include "kernels/moe.hpp"
#include "kernels/moe_cuda.hpp"
#include "tests/cuda/gpu_test_util.hpp"

namespace helix {
namespace {

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
  DeviceBuffer<float> work((moe.workspace_bytes() + 3) / 4);
  DeviceBuffer<float> out(T * H), out2(T * H), margin(T), lmargin(T);
  DeviceBuffer<int32_t> expert(T * K);
  DeviceBuffer<float> weight(T * K);
  const cuda::MoeRouting routing{expert.get(), weight.get(), margin.get(), lmargin.get()};
  std::vector<float> got[2];
  for (int run = 0; run < 2; ++run) {
    DeviceBuffer<float>& o = run == 0 ? out : out2;
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
  DeviceBuffer<bf16> w(4 * 64 * 64 + 8);
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
  DeviceBuffer<bf16> dd(E * C * H);
  HELIX_CUDA_CHECK(cudaMemcpy(dd.get(), dw.get(), size_t(dd.bytes()), cudaMemcpyDeviceToDevice));
  const cuda::MoeFfnShape s{H, E, K, 0, E, C, 0, 1.0f, T};
  cuda::MoeFfnWeights w;
  w.router = dr.get();
  w.gate = dw.get();
  w.up = dw.get();
  w.down = dd.get();
  const cuda::MoeFfn moe(s, w);
  DeviceBuffer<float> work((moe.workspace_bytes() + 3) / 4);
  DeviceBuffer<float> logits(T * E), out(T * H), margin(T), weight(T * K);
  DeviceBuffer<int32_t> expert(T * K);
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

}  // namespace
}  // namespace helix
