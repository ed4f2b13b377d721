// Collectives over NCCL on device memory, in the nccl-tests conventions of collectives.hpp: the
// suite's NCCL communicator (comm/nccl_comm.hpp) over the ranks of the job, one GPU per rank
// (node-local rank modulo the visible devices, as the compute backend), every call enqueued on
// one non-blocking stream and timed with CUDA events. All-to-all is a group of ncclSend/ncclRecv
// pairs (the rank's own block a device copy). NCCL_* variables are left as the user set them.
//
// NCCL refuses two ranks on one GPU; when ranks share a GPU (two ranks of a node with the same PCI
// bus id, gpu_select.hpp) the factory says so and returns the MPI-over-host-memory backend
// instead (correct results, timings not representative of links).
#include <cuda_runtime.h>
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "bench/micro/collective_backend.hpp"
#include "bench/micro/gpu_buffer.hpp"
#include "comm/cuda_check.hpp"
#include "comm/cuda_timer.hpp"
#include "comm/error.hpp"
#include "comm/gpu_select.hpp"
#include "comm/nccl_comm.hpp"

namespace helix::micro {

namespace {

class NcclCollectives final : public CollectiveBackend, public DeviceMemory {
 public:
  explicit NcclCollectives(MPI_Comm comm)
      : DeviceMemory("helix-micro (nccl)", "lower --max-bytes"), comm_(NcclComm::create(comm)) {
    HELIX_MPI_CHECK(MPI_Comm_dup(comm, &mpi_));
    HELIX_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    copy_stream_ = stream_;
  }
  ~NcclCollectives() override {
    cudaStreamSynchronize(stream_);
    comm_.reset();
    cudaStreamDestroy(stream_);
    MPI_Comm_free(&mpi_);
  }
  NcclCollectives(const NcclCollectives&) = delete;
  NcclCollectives& operator=(const NcclCollectives&) = delete;

  std::string name() const override { return "nccl"; }
  int rank() const override { return comm_->rank(); }
  int size() const override { return comm_->size(); }
  bool link_representative() const override { return true; }
  bool supports(DType) const override { return true; }

  void barrier() override { HELIX_MPI_CHECK(MPI_Barrier(mpi_)); }

  double time_us(const std::function<void()>& launch) override {
    timer_.start(stream_);
    launch();
    timer_.stop(stream_);
    return timer_.elapsed_us();
  }

  void all_reduce(const void* send, void* recv, int64_t count, DType t) override {
    comm_->all_reduce(send, recv, count, t, stream_);
  }
  void all_gather(const void* send, void* recv, int64_t count, DType t) override {
    comm_->all_gather(send, recv, count, t, stream_);
  }
  void reduce_scatter(const void* send, void* recv, int64_t count, DType t) override {
    comm_->reduce_scatter(send, recv, count, t, stream_);
  }
  void all_to_all(const void* send, void* recv, int64_t count, DType t) override {
    comm_->all_to_all(send, recv, count, t, stream_);
  }
  void send_recv(const void* send, void* recv, int64_t count, DType t, int send_to,
                 int recv_from) override {
    comm_->send_recv(send, send_to, recv, recv_from, count, t, stream_);
  }

 private:
  std::unique_ptr<NcclComm> comm_;
  MPI_Comm mpi_ = MPI_COMM_NULL;
  cudaStream_t stream_ = nullptr;
  CudaTimer timer_;
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
  return std::make_unique<NcclCollectives>(comm);
}

}  // namespace helix::micro
