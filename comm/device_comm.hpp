// Communicators over device memory, used by the CUDA executor: NCCL when every rank owns its GPU,
// MPI with host staging when several ranks share one GPU (NCCL refuses duplicate GPUs), or the
// emulated communicator of one rank of a larger layout (emulated_comm.hpp). Element type fp32;
// counts and displacements in elements. Operations are ordered on `stream`: NCCL and the emulation
// enqueue them there (stream_ordered()); the staged MPI version synchronizes the stream, copies to
// the host, runs the MPI collective and copies back (correct, but not representative of link
// speed).
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
  virtual std::string kind() const = 0;  // "nccl", "mpi-host-staged" or "emulated"
  // Whether operations only enqueue work on their stream (the host does not wait): then a
  // collective on a second stream overlaps computation on the first.
  virtual bool stream_ordered() const = 0;
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

// MPI over host memory with staging copies; wraps (and owns) an MPI communicator.
std::unique_ptr<DeviceComm> make_staged_comm(MpiComm comm);

}  // namespace helix
