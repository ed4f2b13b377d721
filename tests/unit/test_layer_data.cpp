// Weight and KV shards: generated shards tile the single-rank tensors exactly, the planner's
// element counts match what is allocated, and the RNG gives the documented distribution.
#include <gtest/gtest.h>

#include <unistd.h>
#include <cmath>
#include <cstdio>

#include "bench/trace/h5.hpp"
#include "exec/layer_data.hpp"
#include "kernels/rng.hpp"
#include "layouts/layout.hpp"

namespace helix {
namespace {

RankShard single(const ModelSpec& m) {
  LayoutParams one;
  one.kind = LayoutKind::tp;
  return rank_shard(m, m.default_layer_kind(), one, 0);
}

TEST(Rng, UniformInMinusOneOneWithUnitMoments) {
  const uint64_t key = tensor_key(1, TensorId::wq, 3, 4);
  double sum = 0, sq = 0, mn = 1, mx = -1;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double u = uniform_pm1(key, uint64_t(i));
    sum += u;
    sq += u * u;
    mn = std::min(mn, u);
    mx = std::max(mx, u);
  }
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sq / n, 1.0 / 3.0, 0.01);
  EXPECT_GE(mn, -1.0);
  EXPECT_LT(mx, 1.0);
  EXPECT_NE(tensor_key(1, TensorId::wq), tensor_key(2, TensorId::wq));
  EXPECT_NE(tensor_key(1, TensorId::wq, 0), tensor_key(1, TensorId::wq, 1));
}

TEST(LayerData, ShardsTileTheSingleRankWeights) {
  for (const char* name : {"tiny-gqa", "tiny-mla-moe"}) {
    const ModelSpec m = load_model(name);
    const LayerKind layer = m.default_layer_kind();
    const LayerWeights full = make_layer_weights(m, single(m), 9);
    EXPECT_EQ(full.elements(), weight_elements(m, single(m)));
    for (int n : {2, 3, 4}) {
      const auto p = make_layout(LayoutKind::helix, n, m, layer, 2, {});
      ASSERT_EQ(validate_layout(p, m, layer, 2), "");
      int64_t wo_rows = 0;
      for (int r = 0; r < n; ++r) {
        const RankShard rp = rank_shard(m, layer, p, r);
        const LayerWeights s = make_layer_weights(m, rp, 9);
        EXPECT_EQ(s.elements(), weight_elements(m, rp));
        // Output-projection rows of this rank equal the matching rows of the full matrix.
        const int64_t H = m.hidden, row0 = rp.o_heads.begin * m.head_dim;
        for (size_t i = 0; i < s.wo.size(); ++i)
          ASSERT_EQ(s.wo[i], full.wo[size_t(row0 * H) + i]) << name << " rank " << r;
        wo_rows += int64_t(s.wo.size()) / H;
      }
      EXPECT_EQ(wo_rows, int64_t(m.q_heads) * m.head_dim);
    }
  }
}

TEST(LayerData, CacheShardsHoldTheGlobalPositions) {
  const ModelSpec m = load_model("tiny-gqa");
  LayoutRequest req;
  req.kvp = 3;
  req.tpa = 1;
  const auto p = make_layout(LayoutKind::helix, 3, m, LayerKind::dense, 2, req);
  const KvCache full = make_kv_cache(m, single(m), 2, 100, 110, 5);
  for (int r = 0; r < 3; ++r) {
    const RankShard rp = rank_shard(m, LayerKind::dense, p, r);
    const KvCache c = make_kv_cache(m, rp, 2, 100, 110, 5);
    EXPECT_EQ(int64_t(c.k.size() + c.v.size()), cache_elements(m, rp, 2, 110));
    for (int64_t i = 0; i < rp.local_tokens(100); ++i) {
      const int64_t pos = rp.placement.global_pos(rp.kvp_index, i);
      for (int64_t h = 0; h < c.heads; ++h)
        for (int64_t d = 0; d < c.width; ++d)
          ASSERT_EQ(c.k[size_t(((1 * c.heads + h) * c.capacity + i) * c.width + d)],
                    full.k[size_t(((1 * full.heads + h) * full.capacity + pos) * full.width + d)]);
    }
  }
}

TEST(H5, RoundTripAndAtomicCommit) {
  const std::string path = "helix_test_" + std::to_string(getpid()) + ".h5";
  {
    h5::File f(path);
    h5::Group g(f.id(), "/a/b");
    h5::attr(g.id(), "s", std::string("text"));
    h5::attr(g.id(), "i", int64_t(42));
    h5::attr(g.id(), "d", 2.5);
    std::vector<double> v = {1, 2, 3, 4, 5, 6};
    h5::write(g.id(), "x", {2, 3}, v.data(), "us");
    EXPECT_NE(access(path.c_str(), F_OK), 0);  // not visible before commit
    f.commit();
  }
  ASSERT_EQ(access(path.c_str(), F_OK), 0);
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  const hid_t g = H5Gopen2(f, "/a/b", H5P_DEFAULT);
  EXPECT_EQ(h5::read_attr_string(g, "s"), "text");
  EXPECT_EQ(h5::read_attr_int(g, "i"), 42);
  EXPECT_EQ(h5::read_attr_double(g, "d"), 2.5);
  std::vector<hsize_t> dims;
  const auto x = h5::read_doubles(g, "x", &dims);
  EXPECT_EQ(dims, (std::vector<hsize_t>{2, 3}));
  EXPECT_EQ(x[5], 6.0);
  H5Gclose(g);
  H5Fclose(f);
  std::remove(path.c_str());
  {
    h5::File unfinished(path);  // destroyed without commit: nothing is left behind
  }
  EXPECT_NE(access(path.c_str(), F_OK), 0);
}

}  // namespace
}  // namespace helix
