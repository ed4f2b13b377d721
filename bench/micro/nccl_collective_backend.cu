// Collectives over NCCL on device memory, in the nccl-tests conventions of collectives.hpp: one
// communicator made with ncclCommInitRank from an MPI-broadcast unique id, one GPU per rank
// (node-local rank modulo the visible devices, as the compute backend), every call enqueued on
// one non-blocking stream and timed with CUDA events. All-to-all is a group of ncclSend/ncclRecv
// pairs (the rank's own block a device copy). NCCL_* variables are left as the user set them.
//
// NCCL refuses two ranks on one GPU; when ranks share a GPU (two ranks of a node with the same PCI
// bus id, gpu_select.hpp) the factory says so and returns the MPI-over-host-memory backend
// instead (correct results, timings not representative of links).
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "bench/micro/collective_backend.hpp"
#include "bench/micro/gpu_buffer.hpp"
#include "comm/cuda_check.hpp"
#include "comm/error.hpp"
#include "comm/gpu_select.hpp"

#define HELIX_MICRO_NCCL_CHECK(call)                                                               \
  do {                                                                                             \
    const ncclResult_t helix_nccl_rc_ = (call);                                                    \
    if (helix_nccl_rc_ != ncclSuccess)                                                             \
      ::helix::fatal(::helix::call_site(#call, __FILE__, __LINE__) + ": " +                        \
                     ncclGetErrorString(helix_nccl_rc_) + " (" + ncclGetLastError(nullptr) + ")"); \
  } while (0)

namespace helix::micro {

namespace {

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32:
      return ncclFloat32;
    case DType::bf16:
      return ncclBfloat16;
    case DType::i32:
      return ncclInt32;
  }
  return ncclFloat32;
}

class NcclCollectives final : public CollectiveBackend {
 public:
  NcclCollectives(MPI_Comm comm, int device) : device_(device) {
    HELIX_MPI_CHECK(MPI_Comm_dup(comm, &comm_));
    HELIX_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    HELIX_MPI_CHECK(MPI_Comm_size(comm_, &size_));
    HELIX_CUDA_CHECK(cudaSetDevice(device_));
    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    if (rank_ == 0) HELIX_MICRO_NCCL_CHECK(ncclGetUniqueId(&id));
    HELIX_MPI_CHECK(MPI_Bcast(&id, int(sizeof id), MPI_BYTE, 0, comm_));
    HELIX_MICRO_NCCL_CHECK(ncclCommInitRank(&nccl_, size_, id, rank_));
    HELIX_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    HELIX_CUDA_CHECK(cudaEventCreate(&start_));
    HELIX_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~NcclCollectives() override {
    cudaStreamSynchronize(stream_);
    if (nccl_) ncclCommDestroy(nccl_);
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
    cudaStreamDestroy(stream_);
    MPI_Comm_free(&comm_);
  }
  NcclCollectives(const NcclCollectives&) = delete;
  NcclCollectives& operator=(const NcclCollectives&) = delete;

  std::string name() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool link_representative() const override { return true; }
  bool supports(DType) const override { return true; }

  std::unique_ptr<DeviceBuffer> allocate(int64_t bytes) override {
    return std::make_unique<GpuBuffer>(bytes, "helix-micro (nccl)", "lower --max-bytes");
  }
  void upload(DeviceBuffer& dst, const void* host, int64_t bytes) override {
    HELIX_CUDA_CHECK(
        cudaMemcpyAsync(dst.data(), host, size_t(bytes), cudaMemcpyHostToDevice, stream_));
    HELIX_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void download(const DeviceBuffer& src, void* host, int64_t bytes) override {
    HELIX_CUDA_CHECK(
        cudaMemcpyAsync(host, src.data(), size_t(bytes), cudaMemcpyDeviceToHost, stream_));
    HELIX_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void barrier() override { HELIX_MPI_CHECK(MPI_Barrier(comm_)); }

  double time_us(const std::function<void()>& launch) override {
    HELIX_CUDA_CHECK(cudaEventRecord(start_, stream_));
    launch();
    HELIX_CUDA_CHECK(cudaEventRecord(stop_, stream_));
    HELIX_CUDA_CHECK(cudaEventSynchronize(stop_));
    float ms = 0;
    HELIX_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
    return double(ms) * 1e3;
  }

  void all_reduce(const void* send, void* recv, int64_t count, DType t) override {
    HELIX_MICRO_NCCL_CHECK(
        ncclAllReduce(send, recv, size_t(count), nccl_type(t), ncclSum, nccl_, stream_));
  }
  void all_gather(const void* send, void* recv, int64_t count, DType t) override {
    HELIX_MICRO_NCCL_CHECK(ncclAllGather(send, recv, size_t(count), nccl_type(t), nccl_, stream_));
  }
  void reduce_scatter(const void* send, void* recv, int64_t count, DType t) override {
    HELIX_MICRO_NCCL_CHECK(
        ncclReduceScatter(send, recv, size_t(count), nccl_type(t), ncclSum, nccl_, stream_));
  }
  void all_to_all(const void* send, void* recv, int64_t count, DType t) override {
    const size_t block = size_t(count * dtype_bytes(t));
    const char* s = static_cast<const char*>(send);
    char* r = static_cast<char*>(recv);
    if (s != r)  // in place (nccl-tests' in-place timing): the own block stays where it is
      HELIX_CUDA_CHECK(cudaMemcpyAsync(r + size_t(rank_) * block, s + size_t(rank_) * block, block,
                                       cudaMemcpyDeviceToDevice, stream_));
    HELIX_MICRO_NCCL_CHECK(ncclGroupStart());
    for (int p = 0; p < size_; ++p) {
      if (p == rank_) continue;
      HELIX_MICRO_NCCL_CHECK(
          ncclSend(s + size_t(p) * block, size_t(count), nccl_type(t), p, nccl_, stream_));
      HELIX_MICRO_NCCL_CHECK(
          ncclRecv(r + size_t(p) * block, size_t(count), nccl_type(t), p, nccl_, stream_));
    }
    HELIX_MICRO_NCCL_CHECK(ncclGroupEnd());
  }
  void send_recv(const void* send, void* recv, int64_t count, DType t, int send_to,
                 int recv_from) override {
    if (send_to == rank_ && recv_from == rank_) {  // one rank: the ring is a device copy
      if (send != recv)
        HELIX_CUDA_CHECK(cudaMemcpyAsync(recv, send, size_t(count * dtype_bytes(t)),
                                         cudaMemcpyDeviceToDevice, stream_));
      return;
    }
    HELIX_MICRO_NCCL_CHECK(ncclGroupStart());
    HELIX_MICRO_NCCL_CHECK(ncclSend(send, size_t(count), nccl_type(t), send_to, nccl_, stream_));
    HELIX_MICRO_NCCL_CHECK(ncclRecv(recv, size_t(count), nccl_type(t), recv_from, nccl_, stream_));
    HELIX_MICRO_NCCL_CHECK(ncclGroupEnd());
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, device_ = 0;
  ncclComm_t nccl_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

}  // namespace

std::unique_ptr<CollectiveBackend> make_nccl_collective_backend(MPI_Comm comm) {
  int rank = 0;
  HELIX_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  const GpuSelection gpu = select_gpu_by_local_rank(comm);
  // Two ranks of a node on one GPU: NCCL needs distinct physical GPUs, so the selection compares
  // PCI bus ids rather than counting devices.
  if (gpu.shared) {
    if (rank == 0)
      std::fprintf(stderr,
                   "helix-micro: ranks share a GPU (NCCL refuses duplicate GPUs): collectives run "
                   "over MPI on host memory (mpi-host), correct but not representative of the "
                   "GPU links\n");
    return make_mpi_collective_backend(comm);
  }
  return std::make_unique<NcclCollectives>(comm, gpu.device);
}

}  // namespace helix::micro
