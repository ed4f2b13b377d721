// The /micro group of an HDF5 trace: the stream ceiling, one table of kernel results and one of
// collective results (one 1-D dataset per column; schema in results/README.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/micro/collectives.hpp"
#include "bench/micro/kernel_runner.hpp"
#include "bench/trace/metadata.hpp"

namespace helix::micro {

struct MicroReport {
  std::string backend;        // cpu | cuda
  std::string storage_dtype;  // fp32 | bf16
  std::string comm_backend;   // mpi-host | nccl
  bool link_representative = false;
  double ceiling_gbps = 0;  // per-rank read-only stream bandwidth, every rank reading at once
  int64_t stream_bytes = 0;
  int kernel_iters = 0, coll_iters = 0, warmup = 0;
  std::vector<KernelResult> kernels;
  std::vector<CollResult> collectives;
};

// Writes the whole trace (root attributes with kind "micro", then /micro) to `path` under a
// temporary name renamed when complete. Rank 0 only.
void write_micro_trace(const std::string& path, const RunEnvironment& env, const MicroReport& r);

}  // namespace helix::micro
