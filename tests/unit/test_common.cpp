// The shared vocabulary: element types and collectives (names, aliases, nccl-tests bus factors).
#include <gtest/gtest.h>

#include "common/collective.hpp"
#include "common/dtype.hpp"

using namespace helix;

TEST(DType, NamesAliasesAndSizes) {
  for (DType d : {DType::fp32, DType::bf16, DType::fp8, DType::fp4, DType::int32})
    EXPECT_EQ(parse_dtype(to_string(d)), d);
  EXPECT_EQ(parse_dtype("float"), DType::fp32);
  EXPECT_EQ(parse_dtype("bfloat16"), DType::bf16);
  EXPECT_EQ(parse_dtype("i32"), DType::int32);
  EXPECT_FALSE(parse_dtype("int3"));
  EXPECT_DOUBLE_EQ(dtype_bytes(DType::fp4), 0.5);
  EXPECT_DOUBLE_EQ(dtype_bytes(DType::int32), 4);
  EXPECT_STREQ(nccl_tests_name(DType::bf16), "bfloat16");
  EXPECT_FALSE(is_float(DType::int32));
}

TEST(Collective, BusFactorsFollowNcclTests) {
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::all_reduce, 8), 2.0 * 7 / 8);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::all_to_all, 4), 3.0 / 4);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::gather, 4), 3.0 / 4);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::broadcast, 4), 1.0);
  EXPECT_EQ(priced_as(Collective::gather), Collective::all_gather);
  EXPECT_EQ(priced_as(Collective::broadcast), Collective::send_recv);
  EXPECT_EQ(priced_as(Collective::all_to_all), Collective::all_to_all);
  for (Collective c : kMeasuredCollectives) EXPECT_EQ(parse_collective(to_string(c)), c);
  EXPECT_EQ(parse_collective("all-to-all"), Collective::all_to_all);
  EXPECT_FALSE(parse_collective("bcast"));
}
