// helix-kernel-bench: the Hopper decode kernels against the ceilings measured in the same run, on
// one GPU (no MPI). Prints one table last and writes it as JSON (--json).
//
//   ceilings: read-only stream over 4 GiB (GB/s) and a dense bf16 GEMM 8192^3 through cuBLASLt
//             (TFLOP/s), medians of --iters runs;
//   attn_mla: absorbed MLA decode attention (latent 512 + rope 64, bf16 KV, natural-log LSE) at
//             B = 8: 128 heads (the Helix shard: compute-bound, bar 0.60 of the GEMM rate) and 16
//             or 32 heads (TP shards: memory-bound, bar 0.85 of the stream ceiling), 128K..1M
//             tokens; the default kernel (the wgmma one on Hopper) and the mma.sync one it
//             replaced, whose outputs must agree (every head, relative error per row);
//   moe_ffn:  DeepSeek-R1's MoE FFN of one rank (hidden 7168, 256 experts top-8, expert FFN 2048,
//             one shared expert) at EP = 1 and 4, B = 1, 8, 32, random routing that changes every
//             iteration: plan + grouped launch (bar 0.75 of the stream ceiling over the bytes of
//             the experts that received tokens plus the shared slice; its output checked against
//             a per-expert cuBLAS recomputation with the routing weights and the shared expert),
//             the same with the router GEMM, and the per-expert cuBLAS path for comparison.
// Cases can be chosen (--mla-cases, --moe-cases), so that a script runs each in its own process
// (a kernel fault ends only its process), takes the ceilings of one measurement (--ceilings-from)
// and prints one table from the processes' JSON files (--table).
// Exit code 0 when every case ran (bars missed are reported, not failed), 1 on a mismatch (between
// the attention kernels, or of the MoE output against the per-expert cuBLAS recomputation), 2 on
// bad arguments.
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "bench/micro/gpu_buffer.hpp"
#include "comm/cuda_check.hpp"
#include "kernels/attention_mla_sm90.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/gemm_cuda.hpp"
#include "kernels/moe_cuda.hpp"

namespace {

using namespace helix;
using cuda::bf16;
using Buf = micro::GpuBuffer;

Buf alloc(int64_t bytes) {
  return Buf(bytes, "helix-kernel-bench", "use a GPU with more free memory or --quick");
}

struct Row {
  std::string kernel, shape, variant;
  double us = 0, tflops = 0, gbps = 0;
  std::string ceiling;  // "gemm" or "stream"
  double fraction = 0, bar = 0;
  std::string note;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Device time of f (events around it; the stream is held first so that host enqueue time is not
// measured), median of `iters` after `warmup` untimed calls.
double time_us(const std::function<void(int)>& f, int warmup, int iters, cudaStream_t s) {
  for (int i = 0; i < warmup; ++i) f(i);
  HELIX_CUDA_CHECK(cudaStreamSynchronize(s));
  cudaEvent_t a, b;
  HELIX_CUDA_CHECK(cudaEventCreate(&a));
  HELIX_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    cuda::hold_stream(50000, s);
    HELIX_CUDA_CHECK(cudaEventRecord(a, s));
    f(warmup + i);
    HELIX_CUDA_CHECK(cudaEventRecord(b, s));
    HELIX_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    HELIX_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(double(ms) * 1e3);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return median(t);
}

struct Ceilings {
  double stream_gbps = 0, gemm_tflops = 0;
};

Ceilings measure_ceilings(int iters, cudaStream_t s) {
  Ceilings c;
  c.stream_gbps = cuda::stream_read(int64_t(4) << 30, iters, s).gbps_median;
  c.gemm_tflops = cuda::gemm_rate(8192, iters, s).tflops_median;
  return c;
}

// ---- MLA decode attention --------------------------------------------------------------------

struct MlaShape {
  int64_t batch, heads, tokens;
};

// The mma.sync configuration the default rule picked before the wgmma kernel.
const char* mma_variant(int64_t heads) {
  return heads <= 16   ? "mla-h16-t32-s2-w4"
         : heads <= 32 ? "mla-h32-t32-s4-w8"
                       : "mla-h64-t32-s3-w8";
}

// Largest per-row relative difference ||a - b|| / ||b|| over rows of `width`.
double max_row_rel(const std::vector<float>& a, const std::vector<float>& b, int64_t width) {
  double worst = 0;
  for (size_t r = 0; r * size_t(width) < b.size(); ++r) {
    double num = 0, den = 0;
    for (int64_t c = 0; c < width; ++c) {
      const double x = a[r * size_t(width) + size_t(c)], y = b[r * size_t(width) + size_t(c)];
      num += (x - y) * (x - y);
      den += y * y;
    }
    const double e = std::isfinite(num) ? std::sqrt(num / std::max(den, 1e-30)) : INFINITY;
    worst = std::max(worst, e);
  }
  return worst;
}

int bench_mla(const std::vector<MlaShape>& shapes, const Ceilings& c, int iters, cudaStream_t s,
              std::vector<Row>& rows) {
  int64_t kv_max = 0, q_max = 0;
  for (const MlaShape& m : shapes) {
    kv_max = std::max(kv_max, m.batch * m.tokens * 576);
    q_max = std::max(q_max, m.batch * m.heads);
  }
  Buf kv = alloc(kv_max * 2), q = alloc(q_max * 576 * 4), o1 = alloc(q_max * 512 * 4),
      o2 = alloc(q_max * 512 * 4), l1 = alloc(q_max * 4), l2 = alloc(q_max * 4);
  cuda::fill_slice(static_cast<bf16*>(kv.data()), 21, kv_max, 0, 1, 0, kv_max, 1.0f, s);
  cuda::fill_slice_f32(static_cast<float*>(q.data()), 22, q_max * 576, 0, 1, 0, q_max * 576, 1.0f,
                       0.0f, s);
  int mismatches = 0;
  for (const MlaShape& m : shapes) {
    cuda::DecodeAttention a;
    a.mla = true;
    a.batch = m.batch;
    a.heads = m.heads;
    a.group = m.heads;
    a.tokens = m.tokens;
    a.capacity = m.tokens;
    a.scale = 1.0f / std::sqrt(576.0f);
    a.q = static_cast<const float*>(q.data());
    a.k = static_cast<const bf16*>(kv.data());
    const std::string shape = "B" + std::to_string(m.batch) + " h" + std::to_string(m.heads) +
                              " T" + std::to_string(m.tokens >> 10) + "K";
    const double flops = 2.0 * double(m.batch * m.heads) * double(m.tokens) * (576 + 512);
    const double bytes = double(m.batch) * double(m.tokens) * 576 * 2;
    const bool compute = m.heads >= 64;
    std::vector<float> out[2];
    for (int v = 0; v < 2; ++v) {
      const std::string name = v == 0 ? cuda::attention_variant(a) : mma_variant(m.heads);
      if (v == 1 && name == cuda::attention_variant(a)) break;  // no wgmma kernel here
      a.variant = v == 0 ? nullptr : mma_variant(m.heads);
      a.splits = 0;
      const int splits = cuda::attention_splits(a);
      a.splits = splits;
      Buf ws = alloc(std::max<int64_t>(1, cuda::attention_workspace_floats(a, splits)) * 4);
      a.workspace = static_cast<float*>(ws.data());
      a.out = static_cast<float*>((v == 0 ? o1 : o2).data());
      a.lse = static_cast<float*>((v == 0 ? l1 : l2).data());
      const double us = time_us([&](int) { cuda::attention_decode(a, s); }, 2, iters, s);
      out[v].resize(size_t(m.batch * m.heads * 512));
      HELIX_CUDA_CHECK(cudaMemcpy(out[v].data(), a.out, out[v].size() * 4, cudaMemcpyDeviceToHost));
      Row r;
      r.kernel = "attn_mla";
      r.shape = shape;
      r.variant = name + " (" + std::to_string(splits) + " splits)";
      r.us = us;
      r.tflops = flops / (us * 1e-6) / 1e12;
      r.gbps = bytes / (us * 1e-6) / 1e9;
      r.ceiling = compute ? "gemm" : "stream";
      r.fraction = compute ? r.tflops / c.gemm_tflops : r.gbps / c.stream_gbps;
      r.bar = v == 0 ? (compute ? 0.60 : 0.85) : 0;
      rows.push_back(r);
      std::fprintf(stderr, "  attn_mla %-18s %-34s %9.1f us\n", shape.c_str(), r.variant.c_str(),
                   us);
    }
    if (!out[1].empty()) {
      const double d = max_row_rel(out[0], out[1], 512);
      rows.back().note = "max per-head rel diff vs default " + std::to_string(d);
      if (!(d < 1e-2)) {
        ++mismatches;
        rows.back().note += " MISMATCH";
      }
    }
  }
  return mismatches;
}

// ---- MoE FFN -------------------------------------------------------------------------------

struct MoeBenchShape {
  int ep;
  int64_t batch;
};

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

nlohmann::json row_json(const Row& r) {
  return {{"kernel", r.kernel},   {"shape", r.shape},
          {"variant", r.variant}, {"time_us", r.us},
          {"tflops", r.tflops},   {"gbps", r.gbps},
          {"ceiling", r.ceiling}, {"fraction_of_ceiling", r.fraction},
          {"bar", r.bar},         {"note", r.note}};
}

Row row_of(const nlohmann::json& j) {
  Row r;
  r.kernel = j.at("kernel").get<std::string>();
  r.shape = j.at("shape").get<std::string>();
  r.variant = j.at("variant").get<std::string>();
  r.us = j.at("time_us").get<double>();
  r.tflops = j.at("tflops").get<double>();
  r.gbps = j.at("gbps").get<double>();
  r.ceiling = j.at("ceiling").get<std::string>();
  r.fraction = j.at("fraction_of_ceiling").get<double>();
  r.bar = j.at("bar").get<double>();
  r.note = j.at("note").get<std::string>();
  return r;
}

// The table on stdout; returns the number of rows that report a mismatch.
int print_table(const std::vector<Row>& rows, const Ceilings& c, const std::string& device) {
  std::printf("ceilings: stream %.0f GB/s, bf16 GEMM %.0f TFLOP/s (%s)\n", c.stream_gbps,
              c.gemm_tflops, device.c_str());
  std::printf("%-9s %-30s %-36s %10s %8s %8s %9s %6s  %s\n", "kernel", "shape", "variant",
              "time_us", "TFLOP/s", "GB/s", "fraction", "bar", "result");
  int missed = 0, mismatches = 0;
  for (const Row& r : rows) {
    std::string res = "-";
    if (r.bar > 0) {
      const bool ok = r.fraction >= r.bar;
      missed += !ok;
      char b[64];
      std::snprintf(b, sizeof b, "MISS (short by %.0f%%)", 100 * (1 - r.fraction / r.bar));
      res = ok ? "pass" : b;
    }
    mismatches += r.note.find("MISMATCH") != std::string::npos;
    char bar[16] = "";
    if (r.bar > 0) std::snprintf(bar, sizeof bar, ">=%.2f", r.bar);
    std::printf("%-9s %-30s %-36s %10.1f %8.1f %8.0f %7.3f %-1s %6s  %s%s%s\n", r.kernel.c_str(),
                r.shape.c_str(), r.variant.c_str(), r.us, r.tflops, r.gbps, r.fraction,
                r.ceiling == "gemm" ? "G" : "S", bar, res.c_str(), r.note.empty() ? "" : "; ",
                r.note.c_str());
  }
  std::printf(
      "fraction: of the GEMM rate (G) or of the stream ceiling (S); %d bar(s) missed, %d "
      "mismatch(es) against the reference kernels\n",
      missed, mismatches);
  return mismatches;
}

// "8:128:128K" -> batch 8, 128 heads, 131072 tokens (K = 1024, M = 1048576).
bool parse_mla_case(const std::string& t, MlaShape& m) {
  long long b = 0, h = 0, n = 0;
  char unit = 0, extra = 0;
  const int got = std::sscanf(t.c_str(), "%lld:%lld:%lld%c%c", &b, &h, &n, &unit, &extra);
  if (got < 3 || got > 4 || b < 1 || h < 1 || n < 1) return false;
  if (got == 4 && unit != 'K' && unit != 'M') return false;
  m = {b, h, n * (unit == 'K' ? 1024 : unit == 'M' ? 1048576 : 1)};
  return true;
}

// "4:32" -> EP 4, batch 32.
bool parse_moe_case(const std::string& t, MoeBenchShape& m) {
  int ep = 0;
  long long b = 0;
  char extra = 0;
  if (std::sscanf(t.c_str(), "%d:%lld%c", &ep, &b, &extra) != 2) return false;
  if (ep < 1 || 256 % ep != 0 || b < 1 || b * 8 > 4096) return false;
  m = {ep, b};
  return true;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> v;
  for (size_t a = 0, b; a <= s.size(); a = b + 1) {
    b = std::min(s.find(',', a), s.size());
    if (b > a) v.push_back(s.substr(a, b - a));
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "helix-kernel-bench: the Hopper decode kernels (MLA attention, MoE FFN) against the stream "
      "and bf16 GEMM ceilings measured in the same run, on one GPU"};
  int iters = 10;
  bool quick = false;
  std::string json_path, only = "attn,moe", mla_cases, moe_cases, ceilings_from;
  std::vector<std::string> tables;
  app.add_option("--iters", iters, "Timed runs per case (median)")->check(CLI::Range(1, 1000));
  app.add_flag("--quick", quick, "Fewer and shorter shapes (a smoke run)");
  app.add_option("--json", json_path, "Write the rows (and the ceilings) as JSON to this file");
  app.add_option("--kernels", only, "Comma-separated: attn, moe")->capture_default_str();
  app.add_option("--mla-cases", mla_cases,
                 "MLA shapes instead of the default list, comma-separated BATCH:HEADS:TOKENS "
                 "(TOKENS may end in K or M), e.g. 8:128:128K,1:128:256K");
  app.add_option("--moe-cases", moe_cases,
                 "MoE shapes instead of the default list, comma-separated EP:BATCH, e.g. 1:8,4:32");
  app.add_option("--ceilings-from", ceilings_from,
                 "Take the stream and GEMM ceilings from an earlier --json file of the same job "
                 "instead of measuring them");
  app.add_option("--table", tables,
                 "Print one table from these --json files (no GPU work) and exit; the ceilings are "
                 "the first file's");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  auto fail_arg = [](const std::string& what) {
    std::fprintf(stderr, "helix-kernel-bench: %s\n", what.c_str());
    return 2;
  };
  auto read_json = [](const std::string& path, nlohmann::json& doc) {
    std::ifstream f(path);
    if (!f) return false;
    try {
      f >> doc;
      return doc.contains("stream_gbps") && doc.contains("gemm_tflops") && doc.contains("rows");
    } catch (const nlohmann::json::exception&) {
      return false;
    }
  };
  if (!tables.empty()) {
    std::vector<Row> rows;
    Ceilings c;
    std::string device;
    for (size_t i = 0; i < tables.size(); ++i) {
      nlohmann::json doc;
      if (!read_json(tables[i], doc))
        return fail_arg("--table: " + tables[i] + " is not a helix-kernel-bench --json file");
      if (i == 0) {
        c.stream_gbps = doc["stream_gbps"].get<double>();
        c.gemm_tflops = doc["gemm_tflops"].get<double>();
        device = doc.value("device", std::string("?"));
      }
      try {
        for (const auto& r : doc["rows"]) rows.push_back(row_of(r));
      } catch (const nlohmann::json::exception& e) {
        return fail_arg("--table: " + tables[i] + ": " + e.what());
      }
    }
    return print_table(rows, c, device) > 0 ? 1 : 0;
  }
  for (const std::string& k : split_list(only))
    if (k != "attn" && k != "moe") return fail_arg("--kernels: '" + k + "' is not attn or moe");
  std::vector<MlaShape> mla_shapes = {{8, 128, 131072}, {8, 128, 262144}, {8, 128, 1048576},
                                      {8, 32, 131072},  {8, 32, 1048576}, {8, 16, 131072},
                                      {8, 16, 1048576}, {1, 128, 262144}};
  if (quick) mla_shapes = {{8, 128, 65536}, {8, 32, 131072}, {8, 16, 131072}};
  if (!mla_cases.empty()) {
    mla_shapes.clear();
    for (const std::string& t : split_list(mla_cases)) {
      MlaShape m{};
      if (!parse_mla_case(t, m))
        return fail_arg("--mla-cases: '" + t + "' is not BATCH:HEADS:TOKENS (e.g. 8:128:128K)");
      mla_shapes.push_back(m);
    }
  }
  std::vector<MoeBenchShape> moe_shapes = {{1, 1}, {1, 8}, {1, 32}, {4, 1}, {4, 8}, {4, 32}};
  if (quick) moe_shapes = {{4, 1}, {4, 8}};
  if (!moe_cases.empty()) {
    moe_shapes.clear();
    for (const std::string& t : split_list(moe_cases)) {
      MoeBenchShape m{};
      if (!parse_moe_case(t, m))
        return fail_arg("--moe-cases: '" + t +
                        "' is not EP:BATCH (EP dividing 256, BATCH * 8 <= 4096; e.g. 4:32)");
      moe_shapes.push_back(m);
    }
  }
  Ceilings c;
  if (!ceilings_from.empty()) {
    nlohmann::json doc;
    if (!read_json(ceilings_from, doc))
      return fail_arg("--ceilings-from: " + ceilings_from +
                      " is not a helix-kernel-bench --json file");
    c.stream_gbps = doc["stream_gbps"].get<double>();
    c.gemm_tflops = doc["gemm_tflops"].get<double>();
  }
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::fprintf(stderr, "helix-kernel-bench: no GPU visible\n");
    return 1;
  }
  cudaDeviceProp p{};
  HELIX_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
  cudaStream_t s;
  HELIX_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  std::fprintf(stderr, "helix-kernel-bench: %s, %d SMs, compute capability %d.%d\n", p.name,
               p.multiProcessorCount, p.major, p.minor);
  // What the compiler gave the two Hopper kernels in this binary.
  for (const auto& k : {std::make_pair("attn_mla wgmma kernel", cuda::detail::mla_sm90_kernel()),
                        std::make_pair("moe_ffn grouped kernel", cuda::MoeFfn::ffn_kernel())}) {
    cudaFuncAttributes fa{};
    HELIX_CUDA_CHECK(cudaFuncGetAttributes(&fa, k.second));
    std::fprintf(stderr,
                 "  %s: %d registers/thread at entry, %zu bytes local memory (spills: must be 0), "
                 "binary sm_%d\n",
                 k.first, fa.numRegs, fa.localSizeBytes, fa.binaryVersion);
  }
  if (ceilings_from.empty()) {
    c = measure_ceilings(iters, s);
    std::fprintf(stderr, "  ceilings: stream %.0f GB/s, bf16 GEMM 8192^3 %.0f TFLOP/s\n",
                 c.stream_gbps, c.gemm_tflops);
  } else {
    std::fprintf(stderr, "  ceilings (from %s): stream %.0f GB/s, bf16 GEMM %.0f TFLOP/s\n",
                 ceilings_from.c_str(), c.stream_gbps, c.gemm_tflops);
  }
  std::vector<Row> rows;
  int mismatches = 0;
  const std::vector<std::string> kinds = split_list(only);
  auto wants = [&](const char* k) {
    return std::find(kinds.begin(), kinds.end(), k) != kinds.end();
  };
  if (wants("attn")) mismatches += bench_mla(mla_shapes, c, iters, s, rows);
  if (wants("moe")) mismatches += bench_moe(moe_shapes, c, iters, s, rows);
  print_table(rows, c, p.name);
  if (!json_path.empty()) {  // written to a temporary file, then renamed: never half-written
    nlohmann::json out = nlohmann::json::array();
    for (const Row& r : rows) out.push_back(row_json(r));
    const nlohmann::json doc = {{"device", p.name},
                                {"stream_gbps", c.stream_gbps},
                                {"gemm_tflops", c.gemm_tflops},
                                {"rows", out}};
    const std::string tmp = json_path + ".tmp";
    std::ofstream f(tmp);
    f << doc.dump(2) << "\n";
    f.close();
    if (!f || std::rename(tmp.c_str(), json_path.c_str()) != 0) {
      std::remove(tmp.c_str());
      std::fprintf(stderr, "helix-kernel-bench: cannot write %s\n", json_path.c_str());
      return 2;
    }
  }
  cudaStreamDestroy(s);
  return mismatches > 0 ? 1 : 0;
}
