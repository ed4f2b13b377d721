// The CUDA transport of `helix-bench kv-transfer`: caches in device memory (placed and read back
// with cudaMemcpy), blocks packed and unpacked by one gather / scatter kernel per transfer, one
// ncclSend / ncclRecv per peer inside one NCCL group (DeviceComm::all_to_all_v), every transfer
// timed with CUDA events and reported as the maximum over ranks. When ranks share a GPU NCCL
// cannot be used and the exchange runs over MPI with host staging (comm_backend
// "mpi-host-staged", as `decode --backend cuda` does).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/kv_transfer/job.hpp"
#include "comm/mpi_comm.hpp"

namespace helix {

struct KvTransferTimes {
  std::vector<double> secs;  // per timed transfer, max over ranks
  int64_t misplaced = 0;     // largest over ranks, first timed transfer
};

class KvTransferCuda {
 public:
  // One GPU per rank by node-local rank; collective over `world`. Throws UsageError when no GPU
  // is usable.
  static std::unique_ptr<KvTransferCuda> make(const MpiComm& world);
  virtual ~KvTransferCuda() = default;
  virtual std::string device_description() const = 0;
  virtual std::string comm_backend() const = 0;  // "nccl" or "mpi-host-staged"
  virtual bool link_representative() const = 0;
  virtual std::string cuda_version() const = 0;
  virtual std::string nccl_version() const = 0;
  // `warmup` untimed then `iters` timed transfers of `job`; the prefill ranks' cache comes from
  // `prefill_cache` (host, job.cache_bytes()); the first timed transfer is checked on every decode
  // rank by `misplaced` on a host copy of its cache. Collective.
  virtual KvTransferTimes run(const KvTransferJob& job, const void* prefill_cache, int warmup,
                              int iters, const std::function<int64_t(const void*)>& misplaced) = 0;
};

}  // namespace helix
