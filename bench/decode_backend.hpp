// What the decode driver needs from a backend (CPU now; CUDA when built): executors of the
// schedules, the memory planner, the reference and the facts recorded in the trace.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/executor.hpp"
#include "comm/mpi_comm.hpp"
#include "layouts/model_spec.hpp"
#include "layouts/schedule.hpp"

namespace helix {

struct DecodeOptions;

// Read-only stream bandwidth of the device (decimal GB/s); 0 when not measured.
struct ReadCeiling {
  double gbps = 0;
  int64_t bytes = 0;
};

struct MemoryPlan {
  bool fits = true;
  int64_t needed_bytes = 0;     // per rank
  int64_t available_bytes = 0;  // per rank
};

// Facts about how a run was executed, recorded as run attributes.
struct LayerExecutorInfo {
  std::string dtype = "fp32";
  std::string comm_backend = "mpi-host";
  bool link_representative = false;  // do communication timings reflect the real link?
  int emulated_ranks = 0;            // 0: every rank of the layout ran
  int emulated_rank = 0;
  double link_gbps = 0, link_latency_us = 0;    // emulation: the link figures pricing collectives
  std::array<int, kNumPhases> phase_modeled{};  // 1: phase priced from link figures, not run
};

class DecodeBackend {
 public:
  virtual ~DecodeBackend() = default;
  virtual std::string description() const = 0;
  // This rank's device, e.g. "cpu" or "cuda:0 NVIDIA H100 80GB HBM3 bus 0000:18:00.0".
  virtual std::string device_description() const = 0;
  // Ranks of the layout (the world size, or N when one GPU emulates an N-rank layout).
  virtual int layout_ranks(int world_size) const { return world_size; }
  // Layout rank this process runs.
  virtual int plan_rank(int world_rank) const { return world_rank; }
  virtual MemoryPlan plan_memory(const ModelSpec& model, const RankPlan& plan, int batch,
                                 int64_t max_positions) const = 0;
  // Collective over the world communicator.
  virtual std::unique_ptr<LayerExecutor> make_executor(const ModelSpec& model, const RankPlan& plan,
                                                       int batch, int64_t seq_len,
                                                       int64_t max_positions, uint64_t seed) = 0;
  virtual LayerExecutorInfo info() const = 0;
  // Whether outputs can be checked against the single-rank reference (not in emulation, where
  // received data stands in for the peers' results).
  virtual bool can_verify() const { return true; }
  // Bytes per cached KV element.
  virtual int kv_elem_bytes() const { return 4; }
  // Measures the read-only stream ceiling (collective-free; called once per job).
  virtual ReadCeiling read_ceiling() { return {}; }
  // CUDA runtime and NCCL versions ("none" when not used).
  virtual std::string cuda_version() const { return "none"; }
  virtual std::string nccl_version() const { return "none"; }
  // Largest accepted ||out - ref|| / ||ref||.
  virtual double tolerance() const = 0;
};

// The backend `opt.backend` names; throws UsageError when unknown or not built.
std::unique_ptr<DecodeBackend> make_decode_backend(const DecodeOptions& opt, const MpiComm& world);

// The CUDA backend (built when CUDA is found).
std::unique_ptr<DecodeBackend> make_cuda_backend(const DecodeOptions& opt, const MpiComm& world);

// The CPU backend (fp32 reference kernels, MPI over host memory).
std::unique_ptr<DecodeBackend> make_cpu_backend(const MpiComm& world);

// Bytes one rank's shard, cache and buffers take in fp32 (the CPU planner; also the reference's
// share on rank 0).
int64_t cpu_rank_bytes(const ModelSpec& model, const RankPlan& plan, int batch,
                       int64_t max_positions);

}  // namespace helix
