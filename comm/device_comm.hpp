// Communicators over device memory, used by the CUDA executor: NCCL when every rank owns its GPU,
// or MPI with host staging when several ranks share one GPU (NCCL refuses duplicate GPUs). Element
// type fp32; counts and displacements in elements. Operations are ordered on `stream`: NCCL
// enqueues them there; the staged MPI version synchronizes the stream, copies to the host, runs
// the MPI collective and copies back (correct, but not representative of link speed).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/mpi_comm.hpp"

namespace helix {

class DeviceComm {
 public:
  virtual ~DeviceComm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string kind() const = 0;  // "nccl" or "mpi-host-staged"
  virtual void all_to_all_v(const float* send, const std::vector<int64_t>& send_counts,
                            const std::vector<int64_t>& send_displs, float* recv,
                            const std::vector<int64_t>& recv_counts,
                            const std::vector<int64_t>& recv_displs, cudaStream_t stream) = 0;
  virtual void all_reduce_sum(float* buf, int64_t count, cudaStream_t stream) = 0;
  // recv: size() * count
  virtual void all_gather(const float* send, int64_t count, float* recv, cudaStream_t stream) = 0;
  // send: size() * count; recv: count (block rank() of the sum)
  virtual void reduce_scatter_sum(const float* send, float* recv, int64_t count,
                                  cudaStream_t stream) = 0;
  // recv (root only): size() * count
  virtual void gather(const float* send, int64_t count, float* recv, int root,
                      cudaStream_t stream) = 0;
  virtual void bcast(float* buf, int64_t count, int root, cudaStream_t stream) = 0;
  virtual void send(const float* buf, int64_t count, int peer, cudaStream_t stream) = 0;
  virtual void recv(float* buf, int64_t count, int peer, cudaStream_t stream) = 0;
};

// NCCL communicators of one job: a world communicator made from an MPI-broadcast unique id, and
// sub-groups made from it with ncclCommSplit. One GPU per rank.
class NcclWorld {
 public:
  explicit NcclWorld(const MpiComm& world);
  ~NcclWorld();
  NcclWorld(const NcclWorld&) = delete;
  NcclWorld& operator=(const NcclWorld&) = delete;
  std::unique_ptr<DeviceComm> world() const;
  // Collective over the world: every rank passes the world ranks of its own group, in group
  // order (empty: not a member, gets nullptr).
  std::unique_ptr<DeviceComm> split(const std::vector<int>& members) const;
  static std::string version();

 private:
  void* comm_ = nullptr;  // ncclComm_t
  int rank_ = 0;
};

// MPI over host memory with staging copies; wraps (and owns) an MPI communicator.
std::unique_ptr<DeviceComm> make_staged_comm(MpiComm comm);

}  // namespace helix
