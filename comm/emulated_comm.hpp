// Emulation as a communicator: the device communicator of one rank of a larger layout run alone
// on one GPU. Every collective leaves its receive buffers holding this rank's own data at the
// sizes the real collective would deliver (so later steps run on real shapes), and takes, on the
// stream it is enqueued on, the time a pricing function gives it (the cost model's
// CostModel::collective_us, from a hardware profile). Because the time is spent on the GPU
// timeline, a collective on a second stream overlaps computation on the first exactly as a real
// one would: HOP-B's overlap is measured, not modeled.
//
//   collective      receive buffers after the call                     S priced (bytes)
//   all_to_all_v    block j = the block this rank sends itself         sum of send counts x 4
//   all_reduce      unchanged (this rank's values)                     count x 4
//   all_gather      block i = this rank's send block, every i          size x count x 4
//   reduce_scatter  this rank's block of its own input                 size x count x 4
//   gather          root: block i = its send block, every i            size x count x 4
//   bcast           unchanged                                          count x 4
//   send / recv     unchanged                                          count x 4
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "comm/device_comm.hpp"
#include "common/collective.hpp"
#include "kernels/delay.hpp"

namespace helix {

// Microseconds one collective takes: (collective, group size, S in bytes).
using CollectivePrice = std::function<double(Collective, int, double)>;

// Realises priced durations on streams: each collective is one launch of cuda::timed_copies
// that copies its receive blocks and holds the stream until the price has passed since the launch
// began. A launch cannot take less than a floor (one kernel launch), measured once at
// construction; the holds are shortened by it, so a collective takes max(price, floor, its
// copies) (one priced at 0, a group of one, takes only its copies).
class EmulationClock {
 public:
  EmulationClock();
  ~EmulationClock();
  EmulationClock(const EmulationClock&) = delete;
  EmulationClock& operator=(const EmulationClock&) = delete;

  // Copies `segments` and holds `stream` for `us` from the start of the launch.
  void run(const std::vector<cuda::CopySegment>& segments, double us, cudaStream_t stream) const;
  // Shortest collective this GPU realises (us): a launch with nothing to copy and no hold.
  double floor_us() const { return floor_us_; }

 private:
  double floor_us_ = 0;
  cudaStream_t calibration_ = nullptr;
};

class EmulatedComm final : public DeviceComm {
 public:
  // This rank is `rank` of a group of `size`; every collective costs price(c, size, S).
  EmulatedComm(int rank, int size, CollectivePrice price, std::shared_ptr<EmulationClock> clock);
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string kind() const override { return "emulated"; }
  bool stream_ordered() const override { return true; }

  void all_to_all_v(const float* send, const std::vector<int64_t>& send_counts,
                    const std::vector<int64_t>& send_displs, float* recv,
                    const std::vector<int64_t>& recv_counts,
                    const std::vector<int64_t>& recv_displs, cudaStream_t stream) override;
  void all_reduce_sum(float* buf, int64_t count, cudaStream_t stream) override;
  void all_gather(const float* send, int64_t count, float* recv, cudaStream_t stream) override;
  void reduce_scatter_sum(const float* send, float* recv, int64_t count,
                          cudaStream_t stream) override;
  void gather(const float* send, int64_t count, float* recv, int root,
              cudaStream_t stream) override;
  void bcast(float* buf, int64_t count, int root, cudaStream_t stream) override;
  void send(const float* buf, int64_t count, int peer, cudaStream_t stream) override;
  void recv(float* buf, int64_t count, int peer, cudaStream_t stream) override;

 private:
  // Adds the copies of `count` elements of `src` to dst + offsets[i], for every i.
  static void replicate(const float* src, int64_t count, float* dst,
                        const std::vector<int64_t>& offsets,
                        std::vector<cuda::CopySegment>& segments);
  // One collective of price(c, size, elems x 4) on `stream`: the receive blocks that `fill` adds
  // copied, the stream held until the price has passed.
  template <class Fill>
  void collective(Collective c, int64_t elems, cudaStream_t stream, Fill fill) {
    const double us = price_(c, size_, double(elems) * double(sizeof(float)));
    std::vector<cuda::CopySegment> segments;
    fill(segments);
    if (!(us > 0) && segments.empty()) return;
    clock_->run(segments, us > 0 ? us : 0.0, stream);
  }

  int rank_ = 0, size_ = 1;
  CollectivePrice price_;
  std::shared_ptr<EmulationClock> clock_;
};

}  // namespace helix
