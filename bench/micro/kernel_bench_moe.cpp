// helix-kernel-bench: the grouped MoE FFN cases (plan + grouped launch, with the router GEMM, and
// the per-expert cuBLAS path; the output checked against a per-expert recomputation).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/micro/kernel_bench.hpp"
#include "comm/cuda_check.hpp"
#include "comm/error.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/gemm_cuda.hpp"
#include "kernels/moe_cuda.hpp"

namespace helix::kbench {

using cuda::bf16;

namespace {

// The MoE FFN of routing set `set` recomputed without the grouped kernel: per held expert with
// tokens, gather, gate and up GEMMs (fp32), routing weight x silu(gate) x up (bf16), down GEMM,
// scatter-add into out; then the shared expert over every token. Returns out [B, H] on the host.
std::vector<float> moe_reference(cuda::Gemm& gemm, int64_t B, int64_t H, int64_t K, int64_t held,
                                 int64_t cols, int64_t scols, const Buf& x, const Buf& gate,
                                 const Buf& up, const Buf& down, const Buf& sg, const Buf& su,
                                 const Buf& sd, const std::vector<int32_t>& ex,
                                 const std::vector<float>& wt, cudaStream_t s) {
  std::vector<int32_t> rows;
  std::vector<float> scale;
  std::vector<int64_t> first(size_t(held) + 1, 0);
  for (int64_t e = 0; e < held; ++e) {
    for (int64_t t = 0; t < B; ++t)
      for (int64_t k = 0; k < K; ++k)
        if (ex[size_t(t * K + k)] == e) {
          rows.push_back(int32_t(t));
          scale.push_back(wt[size_t(t * K + k)]);
        }
    first[size_t(e) + 1] = int64_t(rows.size());
  }
  const int64_t wide = std::max(cols, scols), n_all = std::max<int64_t>(1, int64_t(rows.size()));
  Buf d_rows = alloc(n_all * 4), d_scale = alloc(n_all * 4), xg = alloc(B * H * 2),
      gg = alloc(B * wide * 4), uu = alloc(B * wide * 4), act = alloc(B * wide * 2),
      y = alloc(B * H * 4), ref = alloc(B * H * 4);
  HELIX_CUDA_CHECK(cudaMemcpy(d_rows.data(), rows.data(), rows.size() * 4, cudaMemcpyHostToDevice));
  HELIX_CUDA_CHECK(
      cudaMemcpy(d_scale.data(), scale.data(), scale.size() * 4, cudaMemcpyHostToDevice));
  HELIX_CUDA_CHECK(cudaMemsetAsync(ref.data(), 0, size_t(B * H * 4), s));
  auto ffn = [&](const bf16* xin, int64_t n, int64_t c, const bf16* wg, const bf16* wu,
                 const bf16* wd, const float* sc, float* yout, bool accumulate) {
    GemmShape g = GemmShape::packed(n, H, c);
    gemm.run(g, xin, wg, gg.data(), s);
    gemm.run(g, xin, wu, uu.data(), s);
    cuda::silu_mul(static_cast<float*>(gg.data()), static_cast<float*>(uu.data()), sc, n, c,
                   static_cast<bf16*>(act.data()), s);
    GemmShape d = GemmShape::packed(n, c, H);
    d.accumulate = accumulate;
    gemm.run(d, static_cast<bf16*>(act.data()), wd, yout, s);
  };
  for (int64_t e = 0; e < held; ++e) {
    const int64_t n = first[size_t(e) + 1] - first[size_t(e)];
    if (n == 0) continue;
    const int32_t* r = static_cast<const int32_t*>(d_rows.data()) + first[size_t(e)];
    cuda::gather_rows(static_cast<const bf16*>(x.data()), r, n, H, static_cast<bf16*>(xg.data()),
                      s);
    ffn(static_cast<bf16*>(xg.data()), n, cols,
        static_cast<const bf16*>(gate.data()) + e * H * cols,
        static_cast<const bf16*>(up.data()) + e * H * cols,
        static_cast<const bf16*>(down.data()) + e * cols * H,
        static_cast<const float*>(d_scale.data()) + first[size_t(e)], static_cast<float*>(y.data()),
        false);
    cuda::scatter_add_rows(static_cast<float*>(y.data()), r, n, H, static_cast<float*>(ref.data()),
                           s);
  }
  ffn(static_cast<const bf16*>(x.data()), B, scols, static_cast<const bf16*>(sg.data()),
      static_cast<const bf16*>(su.data()), static_cast<const bf16*>(sd.data()), nullptr,
      static_cast<float*>(ref.data()), true);
  std::vector<float> h(size_t(B * H));
  HELIX_CUDA_CHECK(cudaStreamSynchronize(s));
  HELIX_CUDA_CHECK(cudaMemcpy(h.data(), ref.data(), h.size() * 4, cudaMemcpyDeviceToHost));
  return h;
}

}  // namespace

// Returns the number of cases whose output disagrees with moe_reference.
int bench_moe(const std::vector<MoeBenchShape>& shapes, const Ceilings& c, int iters,
              cudaStream_t s, std::vector<Row>& rows) {
  const int64_t H = 7168, E = 256, K = 8, F = 2048;
  const int kLogitSets = 8;  // a different routing every iteration (cold experts)
  int mismatches = 0;
  for (const MoeBenchShape& m : shapes) {
    const int64_t held = E / m.ep, cols = F, scols = F / m.ep, B = m.batch;
    Buf gate = alloc(held * H * cols * 2), up = alloc(held * H * cols * 2),
        down = alloc(held * cols * H * 2), sg = alloc(H * scols * 2), su = alloc(H * scols * 2),
        sd = alloc(scols * H * 2), router = alloc(H * E * 2), x = alloc(B * H * 2);
    int key = 100;
    for (Buf* b : {&gate, &up, &down, &sg, &su, &sd, &router, &x}) {
      const int64_t n = b->bytes() / 2;
      cuda::fill_slice(static_cast<bf16*>(b->data()), uint64_t(key++), n, 0, 1, 0, n, 0.02f, s);
    }
    Buf logits = alloc(kLogitSets * B * E * 4), out = alloc(B * H * 4), rl = alloc(B * E * 4);
    cuda::fill_slice_f32(static_cast<float*>(logits.data()), 7, kLogitSets * B * E, 0, 1, 0,
                         kLogitSets * B * E, 4.0f, 0.0f, s);
    Buf re = alloc(B * K * 4), rw = alloc(B * K * 4), rm = alloc(B * 4);
    const cuda::MoeFfnShape shape{H, E, K, 0, held, cols, scols, 2.5f, B};
    cuda::MoeFfnWeights w;
    w.router = static_cast<bf16*>(router.data());
    w.gate = static_cast<bf16*>(gate.data());
    w.up = static_cast<bf16*>(up.data());
    w.down = static_cast<bf16*>(down.data());
    w.s_gate = static_cast<bf16*>(sg.data());
    w.s_up = static_cast<bf16*>(su.data());
    w.s_down = static_cast<bf16*>(sd.data());
    const cuda::MoeFfn moe(shape, w);
    Buf work = alloc(moe.workspace_bytes());
    const cuda::MoeRouting routing{static_cast<int32_t*>(re.data()), static_cast<float*>(rw.data()),
                                   static_cast<float*>(rm.data())};
    auto set_logits = [&](int i) {
      return static_cast<const float*>(logits.data()) + int64_t(i % kLogitSets) * B * E;
    };
    // Bytes of the experts each routing set reaches, averaged over the sets.
    double active = 0, assigned = 0;
    cuda::MoePlanSummary sum;
    for (int i = 0; i < kLogitSets; ++i) {
      moe.run_from_logits(static_cast<bf16*>(x.data()), set_logits(i), B, work.data(),
                          static_cast<float*>(out.data()), routing, s);
      sum = moe.summary(work.data(), s);
      active += double(sum.active_experts) / kLogitSets;
      assigned += double(sum.assignments) / kLogitSets;
    }
    const double bytes = (active * 3.0 * double(H * cols) + 3.0 * double(H * scols)) * 2.0;
    const double flops = 6.0 * double(H) * (assigned * double(cols) + double(B * scols));
    const std::string sh = "EP" + std::to_string(m.ep) + " B" + std::to_string(B) + " (" +
                           std::to_string(int(active + 0.5)) + " of " + std::to_string(held) +
                           " experts)";
    auto add = [&](const std::string& variant, double us, double bar) {
      Row r;
      r.kernel = "moe_ffn";
      r.shape = sh;
      r.variant = variant;
      r.us = us;
      r.gbps = bytes / (us * 1e-6) / 1e9;
      r.tflops = flops / (us * 1e-6) / 1e12;
      r.ceiling = "stream";
      r.fraction = r.gbps / c.stream_gbps;
      r.bar = bar;
      rows.push_back(r);
      std::fprintf(stderr, "  moe_ffn %-28s %-34s %9.1f us\n", sh.c_str(), variant.c_str(), us);
    };
    add("plan + grouped launch",
        time_us(
            [&](int i) {
              moe.run_from_logits(static_cast<bf16*>(x.data()), set_logits(i), B, work.data(),
                                  static_cast<float*>(out.data()), routing, s);
            },
            2, iters, s),
        0.75);
    // The output of routing set 0 against the per-expert recomputation.
    moe.run_from_logits(static_cast<bf16*>(x.data()), set_logits(0), B, work.data(),
                        static_cast<float*>(out.data()), routing, s);
    sum = moe.summary(work.data(), s);
    std::vector<int32_t> ex(size_t(B * K));
    std::vector<float> wt(size_t(B * K)), got(size_t(B * H));
    HELIX_CUDA_CHECK(cudaMemcpy(ex.data(), re.data(), ex.size() * 4, cudaMemcpyDeviceToHost));
    HELIX_CUDA_CHECK(cudaMemcpy(wt.data(), rw.data(), wt.size() * 4, cudaMemcpyDeviceToHost));
    HELIX_CUDA_CHECK(cudaMemcpy(got.data(), out.data(), got.size() * 4, cudaMemcpyDeviceToHost));
    cuda::Gemm gemm;
    const double diff = max_row_rel(
        got,
        moe_reference(gemm, B, H, K, held, cols, scols, x, gate, up, down, sg, su, sd, ex, wt, s),
        H);
    char note[160];
    std::snprintf(
        note, sizeof note,
        "max per-token rel diff vs per-expert cuBLAS %.1e; units %lld + %lld + %lld, "
        "row parts %lld / %lld",
        diff, static_cast<long long>(sum.phase1_units), static_cast<long long>(sum.phase2_units),
        static_cast<long long>(sum.phase3_units), static_cast<long long>(sum.phase1_parts),
        static_cast<long long>(sum.phase2_parts));
    rows.back().note = note;
    if (!(diff < 1e-2)) {
      ++mismatches;
      rows.back().note += " MISMATCH";
    }
    add("router GEMM + plan + grouped",
        time_us(
            [&](int) {
              moe.run(gemm, static_cast<bf16*>(x.data()), B, static_cast<float*>(rl.data()),
                      work.data(), static_cast<float*>(out.data()), routing, s);
            },
            2, iters, s),
        0);
    // The per-expert path (cuBLASLt GEMMs, SiLU, per active expert; the host already knows the
    // routing, so the round trip is not counted) on routing set 0.
    std::vector<std::vector<int32_t>> tok(static_cast<size_t>(held));
    for (int64_t t = 0; t < B; ++t)
      for (int64_t k = 0; k < K; ++k)
        if (ex[size_t(t * K + k)] < held) tok[size_t(ex[size_t(t * K + k)])].push_back(int32_t(t));
    Buf xg = alloc(B * H * 2), gg = alloc(B * cols * 4), uu = alloc(B * cols * 4),
        act = alloc(B * cols * 2), rows_d = alloc(held * B * 4);
    std::vector<int32_t> flat;
    std::vector<int64_t> first;
    for (const auto& v : tok) {
      first.push_back(int64_t(flat.size()));
      flat.insert(flat.end(), v.begin(), v.end());
    }
    // Routing set 0 may send no token to this rank's experts (EP 4, B = 1): nothing to copy.
    if (!flat.empty())
      HELIX_CUDA_CHECK(
          cudaMemcpy(rows_d.data(), flat.data(), flat.size() * 4, cudaMemcpyHostToDevice));
    add("per-expert cuBLAS (set 0)",
        time_us(
            [&](int) {
              for (int64_t e = 0; e < held; ++e) {
                const int64_t n = int64_t(tok[size_t(e)].size());
                if (n == 0) continue;
                const int32_t* r = static_cast<const int32_t*>(rows_d.data()) + first[size_t(e)];
                cuda::gather_rows(static_cast<bf16*>(x.data()), r, n, H,
                                  static_cast<bf16*>(xg.data()), s);
                GemmShape g = GemmShape::packed(n, H, cols);
                gemm.run(g, static_cast<bf16*>(xg.data()),
                         static_cast<bf16*>(gate.data()) + e * H * cols, gg.data(), s);
                gemm.run(g, static_cast<bf16*>(xg.data()),
                         static_cast<bf16*>(up.data()) + e * H * cols, uu.data(), s);
                cuda::silu_mul(static_cast<float*>(gg.data()), static_cast<float*>(uu.data()),
                               nullptr, n, cols, static_cast<bf16*>(act.data()), s);
                GemmShape d = GemmShape::packed(n, cols, H);
                d.accumulate = true;
                gemm.run(d, static_cast<bf16*>(act.data()),
                         static_cast<bf16*>(down.data()) + e * cols * H, out.data(), s);
              }
            },
            1, std::max(3, iters / 2), s),
        0);
  }
  return mismatches;
}

// ---- the table -------------------------------------------------------------------------------

}  // namespace helix::kbench
