// The rule deciding whether ranks share a GPU, from the PCI bus ids of the node's ranks.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "comm/gpu_sharing.hpp"

namespace helix {
namespace {

TEST(GpuSharing, NormalizeTrimsAndUpperCases) {
  EXPECT_EQ(normalize_bus_id("0000:3b:00.0"), "0000:3B:00.0");
  EXPECT_EQ(normalize_bus_id("  0000:3B:00.0\n"), "0000:3B:00.0");
  EXPECT_EQ(normalize_bus_id(std::string("0000:af:00.0\0\0", 14)), "0000:AF:00.0");
  EXPECT_EQ(normalize_bus_id("\t00000000:19:00.0 "), "00000000:19:00.0");
  EXPECT_EQ(normalize_bus_id(""), "");
  EXPECT_EQ(normalize_bus_id(" \t "), "");
}

// Eight ranks, each given its own GPU (per-rank CUDA_VISIBLE_DEVICES: every rank sees one device,
// index 0): not sharing, although the node has more ranks than any rank sees devices.
TEST(GpuSharing, AllDistinct) {
  const std::vector<std::string> ids = {"0000:19:00.0", "0000:3B:00.0", "0000:4C:00.0",
                                        "0000:5D:00.0", "0000:9B:00.0", "0000:BB:00.0",
                                        "0000:CB:00.0", "0000:DB:00.0"};
  for (int r = 0; r < int(ids.size()); ++r) {
    const GpuSharing s = gpu_sharing(ids, r);
    EXPECT_FALSE(s.any) << "rank " << r;
    EXPECT_EQ(s.on_mine, 1) << "rank " << r;
  }
}

TEST(GpuSharing, SingleRank) {
  const GpuSharing s = gpu_sharing({"0000:19:00.0"}, 0);
  EXPECT_FALSE(s.any);
  EXPECT_EQ(s.on_mine, 1);
}

TEST(GpuSharing, TwoEqual) {
  const std::vector<std::string> ids = {"0000:19:00.0", "0000:3B:00.0", "0000:19:00.0"};
  EXPECT_TRUE(gpu_sharing(ids, 0).any);
  EXPECT_EQ(gpu_sharing(ids, 0).on_mine, 2);
  EXPECT_EQ(gpu_sharing(ids, 2).on_mine, 2);
  // Rank 1 has its GPU to itself, but the node still has a shared GPU.
  EXPECT_TRUE(gpu_sharing(ids, 1).any);
  EXPECT_EQ(gpu_sharing(ids, 1).on_mine, 1);
}

// Four ranks on one GPU (one device visible, ranks co-located on it).
TEST(GpuSharing, AllOnOneGpu) {
  const std::vector<std::string> ids(4, "0000:00:06.0");
  for (int r = 0; r < 4; ++r) {
    EXPECT_TRUE(gpu_sharing(ids, r).any);
    EXPECT_EQ(gpu_sharing(ids, r).on_mine, 4);
  }
}

// Four ranks on two GPUs, device = node-local rank mod 2.
TEST(GpuSharing, WrappedOntoFewerGpus) {
  const std::vector<std::string> ids = {"0000:19:00.0", "0000:3B:00.0", "0000:19:00.0",
                                        "0000:3B:00.0"};
  for (int r = 0; r < 4; ++r) {
    EXPECT_TRUE(gpu_sharing(ids, r).any);
    EXPECT_EQ(gpu_sharing(ids, r).on_mine, 2);
  }
}

// The same GPU written in different case or with stray white space is still the same GPU.
TEST(GpuSharing, MixedCaseAndWhitespaceCompareEqual) {
  const std::vector<std::string> ids = {"0000:3b:00.0", " 0000:3B:00.0\n", "0000:4C:00.0",
                                        "0000:4c:00.0 "};
  EXPECT_TRUE(gpu_sharing(ids, 0).any);
  EXPECT_EQ(gpu_sharing(ids, 0).on_mine, 2);
  EXPECT_EQ(gpu_sharing(ids, 1).on_mine, 2);
  EXPECT_EQ(gpu_sharing(ids, 3).on_mine, 2);
  const std::vector<std::string> distinct = {"0000:3b:00.0", "0000:3C:00.0 "};
  EXPECT_FALSE(gpu_sharing(distinct, 0).any);
}

TEST(GpuSharing, RankOutOfRangeThrows) {
  const std::vector<std::string> ids = {"0000:19:00.0", "0000:3B:00.0"};
  EXPECT_THROW(gpu_sharing(ids, 2), std::invalid_argument);
  EXPECT_THROW(gpu_sharing(ids, -1), std::invalid_argument);
  EXPECT_THROW(gpu_sharing({}, 0), std::invalid_argument);
}

}  // namespace
}  // namespace helix
