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

namespace helix::micro {

enum class DType { f32, bf16, i32 };
const char* dtype_name(DType t);  // "float", "bfloat16", "int32" (the nccl-tests names)
int64_t dtype_bytes(DType t);
// Parses "float"/"f32"/"fp32", "bfloat16"/"bf16", "int32"/"i32"; throws UsageError naming option.
DType parse_dtype(const std::string& text, const std::string& option);

enum class Coll { all_reduce, all_gather, reduce_scatter, all_to_all, send_recv };
constexpr int kNumColls = 5;
const char* coll_name(Coll c);  // "all_reduce", "all_gather", ...
// Parses a name as coll_name prints it (also with '-' for '_'); throws UsageError naming option.
Coll parse_coll(const std::string& text, const std::string& option);

class CollectiveBackend {
 public:
  virtual ~CollectiveBackend() = default;

  // "mpi-host", "nccl", ...
  virtual std::string name() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Whether timings reflect the real interconnect (false for MPI over host memory).
  virtual bool link_representative() const = 0;
  virtual bool supports(DType t) const = 0;

  virtual std::unique_ptr<DeviceBuffer> allocate(int64_t bytes) = 0;
  virtual void upload(DeviceBuffer& dst, const void* host, int64_t bytes) = 0;
  virtual void download(const DeviceBuffer& src, void* host, int64_t bytes) = 0;
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
