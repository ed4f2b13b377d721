// What the collective micro-benchmarks need from a communication backend: device buffers, copies
// to and from the host (for the checks), a timer, and the five collectives on typed buffers.
//
// mpi-host (mpi_collective_backend.cpp): MPI over host memory, runs everywhere (CI). An NCCL
// backend is one more file defining make_nccl_collective_backend() (compiled when
// HELIX_MICRO_CUDA is defined); the sweep, the checks and the reports stay as they are.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "bench/micro/micro_backend.hpp"
#include "common/collective.hpp"
#include "common/dtype.hpp"

namespace helix::micro {

// Element types of the collectives: fp32, bf16, int32. Parses a name or alias (common/dtype.hpp);
// throws UsageError naming `option` for any other type.
DType parse_element_type(const std::string& text, const std::string& option);
// One of kMeasuredCollectives by name ('-' accepted for '_'); throws UsageError naming `option`.
Collective parse_measured_collective(const std::string& text, const std::string& option);
// Bytes of one element of a collective's type.
inline int64_t elem_bytes(DType t) {
  return int64_t(dtype_bytes(t));
}

class CollectiveBackend : public virtual MemorySpace {
 public:
  virtual ~CollectiveBackend() = default;

  // "mpi-host", "nccl", ...
  virtual std::string name() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Whether timings reflect the real interconnect (false for MPI over host memory).
  virtual bool link_representative() const = 0;
  virtual bool supports(DType t) const = 0;

  // Host barrier of every rank of the group (never inside a timed region).
  virtual void barrier() = 0;
  // Microseconds one call of `launch` takes, completion included.
  virtual double time_us(const std::function<void()>& launch) = 0;

  // Sum reductions. `count` is in elements:
  //   all_reduce      send, recv: count                       in place: send == recv
  //   all_gather      send: count, recv: size() * count       in place: send == recv + rank*count
  //   reduce_scatter  send: size() * count, recv: count       in place: recv == send + rank*count
  //   all_to_all      send, recv: size() * count (count per peer)    in place: send == recv
  //   send_recv       send `count` to rank `send_to`, receive `count` from `recv_from`
  //                                                                   in place: send == recv
  // (all_to_all and send_recv in place: timed as nccl-tests does, the result is not checked)
  virtual void all_reduce(const void* send, void* recv, int64_t count, DType t) = 0;
  virtual void all_gather(const void* send, void* recv, int64_t count, DType t) = 0;
  virtual void reduce_scatter(const void* send, void* recv, int64_t count, DType t) = 0;
  virtual void all_to_all(const void* send, void* recv, int64_t count, DType t) = 0;
  virtual void send_recv(const void* send, void* recv, int64_t count, DType t, int send_to,
                         int recv_from) = 0;
};

// MPI over host memory on `comm` (duplicated; the caller keeps ownership of `comm`).
std::unique_ptr<CollectiveBackend> make_mpi_collective_backend(MPI_Comm comm);

// NCCL over the ranks of `comm` (one GPU per rank). Declared here, defined in a CUDA source only
// when HELIX_MICRO_CUDA is defined.
std::unique_ptr<CollectiveBackend> make_nccl_collective_backend(MPI_Comm comm);

// The collective backend that goes with a compute backend: cpu -> mpi-host, cuda -> nccl.
std::unique_ptr<CollectiveBackend> make_collective_backend(const std::string& backend,
                                                           MPI_Comm comm);

}  // namespace helix::micro
