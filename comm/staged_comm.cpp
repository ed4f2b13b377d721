// MPI over host memory for device buffers: synchronize the stream, copy to pinned host buffers,
// run the MPI collective, copy back. Used when several ranks share one GPU.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "comm/cuda_check.hpp"
#include "comm/device_comm.hpp"
#include "comm/error.hpp"

namespace helix {

namespace {

class PinnedBuffer {
 public:
  ~PinnedBuffer() {
    if (p_) cudaFreeHost(p_);
  }
  float* get(int64_t count) {
    const size_t bytes = size_t(count) * sizeof(float);
    if (bytes > bytes_) {
      if (p_) HELIX_CUDA_CHECK(cudaFreeHost(p_));
      HELIX_CUDA_CHECK(cudaMallocHost(&p_, bytes));
      bytes_ = bytes;
    }
    return static_cast<float*>(p_);
  }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

int64_t total(const std::vector<int64_t>& counts, const std::vector<int64_t>& displs) {
  int64_t n = 0;
  for (size_t i = 0; i < counts.size(); ++i) n = std::max(n, displs[i] + counts[i]);
  return n;
}

class StagedComm final : public DeviceComm {
 public:
  explicit StagedComm(MpiComm c) : c_(std::move(c)) {}
  int rank() const override { return c_.rank(); }
  int size() const override { return c_.size(); }
  std::string kind() const override { return "mpi-host-staged"; }
  bool stream_ordered() const override { return false; }

  void all_to_all_v(const float* send, const std::vector<int64_t>& sc,
                    const std::vector<int64_t>& sd, float* recv, const std::vector<int64_t>& rc,
                    const std::vector<int64_t>& rd, cudaStream_t stream) override {
    const int64_t ns = total(sc, sd), nr = total(rc, rd);
    float* hs = down(send, ns, stream, a_);
    float* hr = b_.get(nr);
    c_.all_to_all_v(hs, mpi_counts(sc), mpi_counts(sd), hr, mpi_counts(rc), mpi_counts(rd));
    up(hr, recv, nr);
  }
  void all_reduce_sum(float* buf, int64_t n, cudaStream_t stream) override {
    if (c_.size() == 1) return;
    float* h = down(buf, n, stream, a_);
    c_.all_reduce_sum(h, size_t(n));
    up(h, buf, n);
  }
  void all_gather(const float* send, int64_t n, float* recv, cudaStream_t stream) override {
    float* hs = down(send, n, stream, a_);
    float* hr = b_.get(n * c_.size());
    c_.all_gather(hs, size_t(n), hr);
    up(hr, recv, n * c_.size());
  }
  void reduce_scatter_sum(const float* send, float* recv, int64_t n, cudaStream_t stream) override {
    float* hs = down(send, n * c_.size(), stream, a_);
    float* hr = b_.get(n);
    c_.reduce_scatter_sum(hs, hr, size_t(n));
    up(hr, recv, n);
  }
  void gather(const float* send, int64_t n, float* recv, int root, cudaStream_t stream) override {
    float* hs = down(send, n, stream, a_);
    float* hr = b_.get(c_.rank() == root ? n * c_.size() : 1);
    c_.gather(hs, size_t(n), hr, root);
    if (c_.rank() == root) up(hr, recv, n * c_.size());
  }
  void bcast(float* buf, int64_t n, int root, cudaStream_t stream) override {
    if (c_.size() == 1) return;
    float* h = down(buf, n, stream, a_);
    c_.bcast(h, size_t(n), root);
    up(h, buf, n);
  }
  void send(const float* buf, int64_t n, int peer, cudaStream_t stream) override {
    float* h = down(buf, n, stream, a_);
    c_.send(h, size_t(n), peer, 0);
  }
  void recv(float* buf, int64_t n, int peer, cudaStream_t stream) override {
    HELIX_CUDA_CHECK(cudaStreamSynchronize(stream));
    stream_ = stream;
    float* h = b_.get(n);
    c_.recv(h, size_t(n), peer, 0);
    up(h, buf, n);
  }

 private:
  // Device -> pinned host, after everything enqueued on `stream` (the copy is ordered on it).
  float* down(const float* d, int64_t n, cudaStream_t stream, PinnedBuffer& buf) {
    float* h = buf.get(n);
    if (n > 0)
      HELIX_CUDA_CHECK(
          cudaMemcpyAsync(h, d, size_t(n) * sizeof(float), cudaMemcpyDeviceToHost, stream));
    HELIX_CUDA_CHECK(cudaStreamSynchronize(stream));
    stream_ = stream;
    return h;
  }
  // Pinned host -> device on the stream of the operation, waited for.
  void up(const float* h, float* d, int64_t n) {
    if (n > 0)
      HELIX_CUDA_CHECK(
          cudaMemcpyAsync(d, h, size_t(n) * sizeof(float), cudaMemcpyHostToDevice, stream_));
    HELIX_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  cudaStream_t stream_ = nullptr;
  MpiComm c_;
  PinnedBuffer a_, b_;
};

}  // namespace

std::unique_ptr<DeviceComm> make_staged_comm(MpiComm comm) {
  return std::make_unique<StagedComm>(std::move(comm));
}

}  // namespace helix
