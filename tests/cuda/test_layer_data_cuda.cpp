// GPU copies of the host data every rank builds: the weights and KV cache generated on the GPU
// (the host's values rounded to bf16), and the KV transfer's segment copies.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "comm/device_buffer.hpp"
#include "exec/device_weights.hpp"
#include "exec/layer_data.hpp"
#include "kernels/copy_segments.hpp"
#include "kernels/copy_segments_cuda.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/rng.hpp"
#include "layouts/layout.hpp"
#include "layouts/model_spec.hpp"
#include "tests/cuda/gpu_test_util.hpp"

namespace helix {
namespace {

TEST_F(Gpu, DeviceShardMatchesHostShard) {
  // The weights generated on the GPU are the host's, rounded to bf16: both test models, a rank
  // of a 4-way layout.
  for (const char* name : {"tiny-gqa", "tiny-mla-moe"}) {
    const ModelSpec m = load_model(name);
    const LayerKind layer = m.default_layer_kind();
    LayoutRequest req;
    const LayoutParams L = make_layout(LayoutKind::helix, 4, m, layer, 4, req);
    const RankShard p = rank_shard(m, layer, L, 3);
    const LayerWeights h = make_layer_weights(m, p, 99);
    const DeviceWeights d = make_device_weights(m, p, 99, nullptr);
    auto same = [&](const DeviceBuffer<bf16>& a, const std::vector<float>& b, const char* what) {
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
  const RankShard p = rank_shard(m, LayerKind::dense, L, 3);
  const KvCache c = make_kv_cache(m, p, 2, 37, 45, 5);
  const uint64_t key = tensor_key(5, TensorId::k_cache, 1, uint64_t(p.kv_heads.begin + 1));
  DeviceBuffer<bf16> d(c.capacity * c.width);
  cuda::fill_kv_rows(d.get(), key, c.width, p.local_tokens(37), c.capacity, p.placement.kvp,
                     p.placement.block, p.kvp_index, nullptr);
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
