// The NCCL communicator: the one wrapper of NCCL calls (and of their error check) in the suite.
// The decode executor uses it through DeviceComm (fp32); helix-micro through the typed operations
// below, on any element type NCCL reduces (fp32, bf16, int32).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/device_comm.hpp"
#include "common/dtype.hpp"

namespace helix {

class NcclComm final : public DeviceComm {
 public:
  // Takes ownership of `comm` (an ncclComm_t).
  explicit NcclComm(void* comm);
  ~NcclComm() override;
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;
  // A communicator over the ranks of `comm` (one GPU per rank, the current device), from a unique
  // id broadcast over MPI. Collective over `comm`.
  static std::unique_ptr<NcclComm> create(MPI_Comm comm);
  // A sub-group (ncclCommSplit). Collective over this communicator: every rank passes the ranks
  // of its own group, in group order (empty: not a member, gets nullptr). max_ctas > 0 caps the
  // CTAs of each of its kernels (ncclConfig_t::maxCTAs), so that they fit the SMs a concurrent
  // computation leaves free; every rank of the group must pass the same value.
  std::unique_ptr<NcclComm> split(const std::vector<int>& members, int max_ctas = 0) const;
  // "major.minor.patch" of the NCCL library.
  static std::string version();

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string kind() const override { return "nccl"; }
  bool stream_ordered() const override { return true; }

  // Typed operations (sum reductions; `count` in elements, layouts as in
  // bench/micro/collective_backend.hpp; in place when the pointers say so).
  void all_reduce(const void* send, void* recv, int64_t count, DType t, cudaStream_t stream);
  void all_gather(const void* send, void* recv, int64_t count, DType t, cudaStream_t stream);
  void reduce_scatter(const void* send, void* recv, int64_t count, DType t, cudaStream_t stream);
  // Equal blocks of `count` elements per peer (this rank's own block a device copy).
  void all_to_all(const void* send, void* recv, int64_t count, DType t, cudaStream_t stream);
  // Sends `count` elements to `send_to` and receives as many from `recv_from` in one group (both
  // this rank: a device copy).
  void send_recv(const void* send, int send_to, void* recv, int recv_from, int64_t count, DType t,
                 cudaStream_t stream);

  // DeviceComm (fp32).
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
  void* c_ = nullptr;  // ncclComm_t
  int rank_ = 0, size_ = 1;
};

}  // namespace helix
