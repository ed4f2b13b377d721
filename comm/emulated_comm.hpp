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

#include "comm/device_buffer.hpp"
#include "comm/device_comm.hpp"
#include "common/collective.hpp"

namespace helix {

// Microseconds one collective takes: (collective, group size, S in bytes).
using CollectivePrice = std::function<double(Collective, int, double)>;

// Realises priced durations on streams: a timestamp when the stream reaches the start of a
// collective, and a wait until that timestamp plus the price. A stamp-and-hold pair cannot take
// less than a floor (two kernel launches), measured once at construction; the holds are shortened
// by it, so a collective takes max(price, floor + its copies) (one priced at 0, a group of one,
// takes only its copies).
class EmulationClock {
 public:
  EmulationClock();
  ~EmulationClock();
  EmulationClock(const EmulationClock&) = delete;
  EmulationClock& operator=(const EmulationClock&) = delete;

  // Marks the start of a collective on `stream`; returns the token end() takes.
  int begin(cudaStream_t stream);
  // Holds `stream` until `us` after the matching begin().
  void end(int token, double us, cudaStream_t stream);
  // Shortest collective this GPU realises (us): a stamp followed by a hold of zero.
  double floor_us() const { return floor_us_; }

 private:
  DeviceBuffer<uint64_t> slots_;
  int next_ = 0;
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
  // Copies `count` elements of `src` to dst + offsets[i] for every i (fewer copies when the
  // destinations are consecutive blocks).
  static void replicate(const float* src, int64_t count, float* dst,
                        const std::vector<int64_t>& offsets, cudaStream_t stream);
  // Runs `fill` (the receive buffers' copies) inside a collective of price(c, size, elems x 4)
  // on `stream`: a stamp before, a hold until the price after. A collective priced at 0 (a group
  // of one, or nothing to send) only fills.
  template <class Fill>
  void collective(Collective c, int64_t elems, cudaStream_t stream, Fill fill) {
    const double us = price_(c, size_, double(elems) * double(sizeof(float)));
    if (!(us > 0)) {
      fill();
      return;
    }
    const int token = clock_->begin(stream);
    fill();
    clock_->end(token, us, stream);
  }

  int rank_ = 0, size_ = 1;
  CollectivePrice price_;
  std::shared_ptr<EmulationClock> clock_;
};

}  // namespace helix
