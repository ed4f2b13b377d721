// The partials exchange on the GPU against the CPU references, on random data: the pack of a
// chunk's rows for its peers (cuda::pack_partials) and the combine reading the exchange's rows in
// place (cuda::lse_combine_rows); and HOP-B's attention launches leaving SMs free.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "exec/cuda_buffers.hpp"
#include "gpu_test_util.hpp"
#include "kernels/combine.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/partials.hpp"
#include "kernels/partials_cuda.hpp"
#include "layouts/layout.hpp"
#include "layouts/model_spec.hpp"
#include "layouts/rank_shard.hpp"

namespace helix {
namespace {

using PartialsGpu = Gpu;

TEST_F(PartialsGpu, PackMatchesTheCpuReferenceBitForBit) {
  // A HOP-B chunk of requests [3, 8) of 9, 20 heads over 5 peers (one without heads), dims of
  // GQA (128), DeepSeek's value width (128) and an odd one.
  for (int64_t dim : {128, 7}) {
    const int64_t B = 9, qh = 20, b0 = 3, nb = 5;
    const auto o = random_vec(size_t(B * qh * dim), 80);
    const auto lse = random_vec(size_t(B * qh), 81, -4.f, 4.f);
    const std::vector<cpu::HeadRange> peers = {{0, 6}, {6, 6}, {6, 11}, {11, 16}, {16, 20}};
    const int64_t rows = nb * qh, row = cpu::partial_row(dim);
    std::vector<float> ref(size_t(rows * row));
    cpu::pack_partials(o.data() + b0 * qh * dim, qh * dim, lse.data() + b0 * qh, qh, nb, dim,
                       peers.data(), int(peers.size()), ref.data());
    auto d_o = upload(o);
    auto d_l = upload(lse);
    DeviceBuffer<float> dst(rows * row + 3);  // 3 guard floats past the end
    cuda::poison(dst.get(), dst.bytes(), nullptr);
    cuda::pack_partials(d_o.get() + b0 * qh * dim, qh * dim, d_l.get() + b0 * qh, qh, nb, dim,
                        peers.data(), int(peers.size()), dst.get(), nullptr);
    const auto got = download(dst);
    for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(got[i], ref[i]) << "dim " << dim << " " << i;
    const auto poisoned = [&] {
      DeviceBuffer<float> p(1);
      cuda::poison(p.get(), p.bytes(), nullptr);
      return download(p)[0];
    }();
    for (size_t i = ref.size(); i < got.size(); ++i) {
      EXPECT_TRUE(std::memcmp(&got[i], &poisoned, sizeof(float)) == 0) << "wrote past the end";
    }
  }
}

TEST_F(PartialsGpu, CombineOverExchangeRowsMatchesTheCpuReference) {
  // The receive layout of the exchange: per source rank a region of rows (dim values, then the
  // LSE); some parts empty (-inf), one row empty in every part; the vectorized path needs 16-byte
  // rows, so dim 127 (rows of 128 floats) and dim 128 (129, scalar) both run.
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t dim : {127, 128, 512})
    for (int64_t parts : {2, 4, 64}) {
      const int64_t rows = 37, W = dim + 1;
      auto buf = random_vec(size_t(parts * rows * W), 90 + uint32_t(dim + parts));
      for (int64_t i = 0; i < parts; ++i)
        for (int64_t r = 0; r < rows; ++r) buf[size_t((i * rows + r) * W + dim)] *= 3.0f;
      buf[size_t((0 * rows + 4) * W + dim)] = ninf;
      for (int64_t i = 0; i < parts; ++i) buf[size_t((i * rows + 9) * W + dim)] = ninf;
      std::vector<float> ref(size_t(rows * dim)), ref_l(static_cast<size_t>(rows));
      cpu::lse_combine_rows(parts, rows, dim, buf.data(), rows * W, W, buf.data() + dim, rows * W,
                            W, ref.data(), ref_l.data());
      auto d = upload(buf);
      DeviceBuffer<float> o(rows * dim), l(rows);
      DeviceBuffer<bf16> ob(rows * dim);
      cuda::poison(o.get(), o.bytes(), nullptr);
      cuda::poison(ob.get(), ob.bytes(), nullptr);
      cuda::lse_combine_rows(parts, rows, dim, d.get(), rows * W, W, d.get() + dim, rows * W, W,
                             o.get(), ob.get(), l.get(), nullptr);
      EXPECT_LT(rel_err(download(o), ref), 1e-5) << "dim " << dim << " parts " << parts;
      EXPECT_LT(rel_err(to_float(download(ob)), ref), 1e-2) << "dim " << dim;
      expect_lse_near(download(l), ref_l, 1e-4);
    }
}

TEST_F(PartialsGpu, HopbAttentionWithReservedSmsFillsTheOthersAndStaysExact) {
  // DeepSeek-R1 at N = 4 (128 heads per rank): HOP-B's chunk launches carry the reservation; with
  // it, a chunk of 2 requests over 4096 tokens runs on the other SMs (one wave of 64-head CTAs, one
  // CTA per SM, at most sm_count - reserved of them) and gives the same partials as without.
  const ModelSpec m = load_model("deepseek-r1");
  LayoutRequest req;
  req.hopb_chunks = 4;
  const LayoutParams p = make_layout(LayoutKind::helix_hopb, 4, m, LayerKind::moe, 8, req);
  const RankShard shard = rank_shard(m, LayerKind::moe, p, 0);
  const int64_t nb = 2, T = 4096, heads = shard.q_heads.size(), dk = 576, dv = 512;
  cuda::DecodeAttention a = attention_shape(m, shard, nb, T, T);
  ASSERT_EQ(a.reserved_sms, kDefaultHopbCommSms);
  const auto q = random_vec(size_t(nb * heads * dk), 95);
  const auto kv = random_vec(size_t(nb * T * dk), 96);
  auto dq = upload(q);
  auto dkv = upload_bf16(kv);
  a.q = dq.get();
  a.k = dkv.get();
  std::vector<std::vector<float>> outs, lses;
  for (int reserved : {0, kDefaultHopbCommSms}) {
    a.reserved_sms = reserved;
    const int splits = cuda::attention_splits(a);
    if (reserved > 0) {
      const int64_t ctas = 2 * nb * splits;  // 64-head tiles: 2 per request
      EXPECT_LE(ctas, cuda::sm_count() - reserved) << "splits " << splits;
    }
    DeviceBuffer<float> o(nb * heads * dv), l(nb * heads);
    DeviceBuffer<float> ws(std::max<int64_t>(1, cuda::attention_workspace_floats(a, splits)));
    cuda::poison(o.get(), o.bytes(), nullptr);
    a.out = o.get();
    a.lse = l.get();
    a.workspace = ws.get();
    cuda::attention_decode(a, nullptr);
    outs.push_back(download(o));
    lses.push_back(download(l));
  }
  EXPECT_LT(rel_err(outs[1], outs[0]), 1e-4);
  expect_lse_near(lses[1], lses[0], 1e-4);
}

}  // namespace
}  // namespace helix
