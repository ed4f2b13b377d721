// helix-kernel-bench: the absorbed MLA decode attention cases (the default kernel against the
// mma.sync one it replaced, outputs compared).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/micro/kernel_bench.hpp"
#include "comm/cuda_check.hpp"
#include "comm/error.hpp"
#include "kernels/attention_mla_sm90.hpp"
#include "kernels/cuda_kernels.hpp"

namespace helix::kbench {

using cuda::bf16;

// The mma.sync configuration the default rule picked before the wgmma kernel.
const char* mma_variant(int64_t heads) {
  return heads <= 16   ? "mla-h16-t32-s2-w4"
         : heads <= 32 ? "mla-h32-t32-s4-w8"
                       : "mla-h64-t32-s3-w8";
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

}  // namespace helix::kbench
