// Emulation as a communicator, on the GPU: the timeline kernels hold a stream for their time, an
// emulated collective takes the price the cost model gives it and overlaps computation on another
// stream, and every collective leaves this rank's data in its receive buffers at the right sizes.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "analytic/cost_model.hpp"
#include "analytic/hardware.hpp"
#include "comm/cuda_timer.hpp"
#include "comm/device_buffer.hpp"
#include "comm/emulated_comm.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/delay.hpp"
#include "tests/cuda/gpu_test_util.hpp"

namespace helix {
namespace {

// Device microseconds of what `enqueue` puts on `stream`.
template <class F>
double device_us(cudaStream_t stream, F enqueue) {
  CudaTimer t;
  t.start(stream);
  enqueue();
  t.stop(stream);
  return t.elapsed_us();
}

TEST_F(Gpu, TimedCopiesHoldTheirTimeAndCopyEverySegment) {
  // More segments than one launch carries, of several sizes, from random data.
  const int n = cuda::kTimedCopySegments + 3;
  std::vector<DeviceBuffer<float>> src, dst;
  std::vector<std::vector<float>> want;
  std::vector<cuda::CopySegment> segs;
  for (int i = 0; i < n; ++i) {
    const int64_t count = 1 + int64_t(i) * 7919;
    want.push_back(random_vec(size_t(count), 100 + uint32_t(i)));
    src.push_back(upload(want.back()));
    dst.emplace_back(count);
    HELIX_CUDA_CHECK(cudaMemset(dst.back().get(), 0, size_t(count) * sizeof(float)));
    segs.push_back({dst.back().get(), src.back().get(), count});
  }
  // The first launch of a kernel loads its module (lazy loading): about 100 us, not timed.
  for (double want_us : {0.0, 20.0, 200.0}) {
    const double us = device_us(
        nullptr, [&] { cuda::timed_copies(segs.data(), n, int64_t(want_us * 1e3), nullptr); });
    if (want_us == 0.0) continue;
    EXPECT_GE(us, want_us * 0.99) << want_us;
    EXPECT_LE(us, want_us + 20.0) << want_us;
  }
  for (int i = 0; i < n; ++i)
    EXPECT_EQ(download(dst[size_t(i)]), want[size_t(i)]) << "segment " << i;
}

TEST_F(Gpu, EmulationFloorIsOneLaunch) {
  EmulationClock clock;
  EXPECT_GT(clock.floor_us(), 0.0);
  EXPECT_LT(clock.floor_us(), 10.0) << "a launch with nothing to copy";
}

TEST_F(Gpu, EmulatedCollectiveTakesItsPriceFromTheCostModel) {
  const HardwareProfile hw = load_hardware("h200");
  const CostModel cm = collective_pricing(hw);
  auto clock = std::make_shared<EmulationClock>();
  EXPECT_GT(clock->floor_us(), 0.0);
  EXPECT_LT(clock->floor_us(), 50.0);
  EmulatedComm comm(
      0, 8, [&](Collective c, int n, double b) { return cm.collective_us(c, n, b, false); }, clock);
  const int64_t count = int64_t(64) << 20;  // 256 MiB of fp32: a price of a millisecond or more
  DeviceBuffer<float> buf(count);
  const double want = cm.collective_us(Collective::all_reduce, 8, double(count) * 4, false);
  ASSERT_GT(want, 500.0);
  std::vector<double> got;
  for (int i = 0; i < 5; ++i)
    got.push_back(device_us(nullptr, [&] { comm.all_reduce_sum(buf.get(), count, nullptr); }));
  std::sort(got.begin(), got.end());
  EXPECT_NEAR(got[2], want, 0.02 * want + 5.0);
}

TEST_F(Gpu, EmulatedCollectiveOverlapsComputeOnAnotherStream) {
  auto clock = std::make_shared<EmulationClock>();
  EmulatedComm comm(
      0, 4, [](Collective, int, double) { return 400.0; }, clock);
  DeviceBuffer<float> buf(1024);
  cudaStream_t a = nullptr, b = nullptr;
  HELIX_CUDA_CHECK(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking));
  HELIX_CUDA_CHECK(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking));
  CudaEvent start, fork, join;
  double both = 0;
  // Twice, the first untimed: it loads the kernels' modules (lazy loading).
  for (int pass = 0; pass < 2; ++pass) {
    start.record(a);
    start.wait_on(b);
    comm.all_reduce_sum(buf.get(), 1024, a);  // 400 us on stream a
    cuda::hold_stream(400000, b);             // 400 us of "compute" on stream b
    join.record(b);
    join.wait_on(a);
    fork.record(a);
    fork.synchronize();
    both = CudaEvent::elapsed_us(start, fork);
  }
  EXPECT_GE(both, 395.0);
  EXPECT_LT(both, 600.0) << "the emulated collective did not overlap the other stream";
  cudaStreamDestroy(a);
  cudaStreamDestroy(b);
}

TEST_F(Gpu, EmulatedCollectivesLeaveThisRanksDataAtTheRightSizes) {
  auto clock = std::make_shared<EmulationClock>();
  const int n = 4, me = 1;
  EmulatedComm comm(
      me, n, [](Collective, int, double) { return 0.0; }, clock);
  const int64_t block = 1000;
  const std::vector<float> send = random_vec(size_t(n * block), 3);
  DeviceBuffer<float> ds = upload(send);
  // All-to-all: every received block is the block this rank sends itself.
  DeviceBuffer<float> dr(n * block);
  std::vector<int64_t> counts(n, block), displs;
  for (int j = 0; j < n; ++j) displs.push_back(j * block);
  comm.all_to_all_v(ds.get(), counts, displs, dr.get(), counts, displs, nullptr);
  std::vector<float> got = download(dr);
  for (int j = 0; j < n; ++j)
    EXPECT_TRUE(std::equal(got.begin() + j * block, got.begin() + (j + 1) * block,
                           send.begin() + me * block))
        << "block " << j;
  // All-gather: n copies of the send block.
  DeviceBuffer<float> dg(n * block);
  comm.all_gather(ds.get(), block, dg.get(), nullptr);
  got = download(dg);
  for (int j = 0; j < n; ++j)
    EXPECT_TRUE(std::equal(got.begin() + j * block, got.begin() + (j + 1) * block, send.begin()));
  // Reduce-scatter: this rank's block of its own input.
  DeviceBuffer<float> rs(block);
  comm.reduce_scatter_sum(ds.get(), rs.get(), block, nullptr);
  got = download(rs);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), send.begin() + me * block));
  // Gather: the root receives n copies, another rank nothing.
  DeviceBuffer<float> gr(n * block);
  HELIX_CUDA_CHECK(cudaMemset(gr.get(), 0, size_t(gr.bytes())));
  comm.gather(ds.get(), block, gr.get(), 0, nullptr);  // this rank is not the root
  got = download(gr);
  EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](float x) { return x == 0.0f; }));
  EmulatedComm root(
      0, n, [](Collective, int, double) { return 0.0; }, clock);
  root.gather(ds.get(), block, gr.get(), 0, nullptr);
  got = download(gr);
  for (int j = 0; j < n; ++j)
    EXPECT_TRUE(std::equal(got.begin() + j * block, got.begin() + (j + 1) * block, send.begin()));
}

}  // namespace
}  // namespace helix
