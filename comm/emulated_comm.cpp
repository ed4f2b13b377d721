#include "comm/emulated_comm.hpp"

#include <algorithm>
#include <vector>

#include "comm/cuda_check.hpp"
#include "comm/cuda_timer.hpp"
#include "kernels/delay.hpp"

namespace helix {

EmulationClock::EmulationClock() {
  HELIX_CUDA_CHECK(cudaStreamCreateWithFlags(&calibration_, cudaStreamNonBlocking));
  // The floor: median device time of a launch with nothing to copy and no hold, over a few tries.
  std::vector<double> t;
  CudaTimer timer;
  for (int i = 0; i < 25; ++i) {
    timer.start(calibration_);
    cuda::timed_copies(nullptr, 0, 0, calibration_);
    timer.stop(calibration_);
    const double us = timer.elapsed_us();
    if (i >= 5) t.push_back(us);  // the first few: module loading and warm-up
  }
  std::sort(t.begin(), t.end());
  floor_us_ = t[t.size() / 2];
}

EmulationClock::~EmulationClock() {
  if (calibration_) {
    cudaStreamSynchronize(calibration_);
    cudaStreamDestroy(calibration_);
  }
}

void EmulationClock::run(const std::vector<cuda::CopySegment>& segments, double us,
                         cudaStream_t stream) const {
  const double hold_us = std::max(0.0, us - floor_us_);
  cuda::timed_copies(segments.data(), int(segments.size()), int64_t(hold_us * 1e3), stream);
}

EmulatedComm::EmulatedComm(int rank, int size, CollectivePrice price,
                           std::shared_ptr<EmulationClock> clock)
    : rank_(rank), size_(size), price_(std::move(price)), clock_(std::move(clock)) {}

void EmulatedComm::replicate(const float* src, int64_t count, float* dst,
                             const std::vector<int64_t>& offsets,
                             std::vector<cuda::CopySegment>& segments) {
  if (count <= 0) return;
  for (int64_t off : offsets) segments.push_back({dst + off, src, count});
}

void EmulatedComm::all_to_all_v(const float* send, const std::vector<int64_t>& sc,
                                const std::vector<int64_t>& sd, float* recv,
                                const std::vector<int64_t>& rc, const std::vector<int64_t>& rd,
                                cudaStream_t stream) {
  int64_t total = 0;
  for (int64_t c : sc) total += c;
  collective(Collective::all_to_all, total, stream, [&](std::vector<cuda::CopySegment>& seg) {
    // Every peer's block for this rank: the one it sends itself, at the size each peer delivers.
    const int64_t own = sc[size_t(rank_)];
    const float* mine = send + sd[size_t(rank_)];
    std::vector<int64_t> same;  // destinations of blocks the size of its own
    for (size_t j = 0; j < rc.size(); ++j) {
      if (rc[j] == own)
        same.push_back(rd[j]);
      else if (rc[j] > 0)
        replicate(mine, std::min(rc[j], own), recv, {rd[j]}, seg);
    }
    replicate(mine, own, recv, same, seg);
  });
}

void EmulatedComm::all_reduce_sum(float*, int64_t count, cudaStream_t stream) {
  collective(Collective::all_reduce, count, stream, [](std::vector<cuda::CopySegment>&) {});
}

void EmulatedComm::all_gather(const float* send, int64_t count, float* recv, cudaStream_t stream) {
  collective(Collective::all_gather, int64_t(size_) * count, stream,
             [&](std::vector<cuda::CopySegment>& seg) {
               std::vector<int64_t> offsets;
               for (int i = 0; i < size_; ++i) offsets.push_back(int64_t(i) * count);
               replicate(send, count, recv, offsets, seg);
             });
}

void EmulatedComm::reduce_scatter_sum(const float* send, float* recv, int64_t count,
                                      cudaStream_t stream) {
  collective(Collective::reduce_scatter, int64_t(size_) * count, stream,
             [&](std::vector<cuda::CopySegment>& seg) {
               replicate(send + int64_t(rank_) * count, count, recv, {0}, seg);
             });
}

void EmulatedComm::gather(const float* send, int64_t count, float* recv, int root,
                          cudaStream_t stream) {
  collective(Collective::gather, int64_t(size_) * count, stream,
             [&](std::vector<cuda::CopySegment>& seg) {
               if (rank_ != root) return;
               std::vector<int64_t> offsets;
               for (int i = 0; i < size_; ++i) offsets.push_back(int64_t(i) * count);
               replicate(send, count, recv, offsets, seg);
             });
}

void EmulatedComm::bcast(float*, int64_t count, int, cudaStream_t stream) {
  collective(Collective::broadcast, count, stream, [](std::vector<cuda::CopySegment>&) {});
}

void EmulatedComm::send(const float*, int64_t count, int, cudaStream_t stream) {
  collective(Collective::send_recv, count, stream, [](std::vector<cuda::CopySegment>&) {});
}

void EmulatedComm::recv(float*, int64_t count, int, cudaStream_t stream) {
  collective(Collective::send_recv, count, stream, [](std::vector<cuda::CopySegment>&) {});
}

}  // namespace helix
