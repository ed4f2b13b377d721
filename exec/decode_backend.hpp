// What the decode driver needs from a backend (CPU; CUDA when built): executors of the schedules,
// the memory planner, the reference and the facts recorded in the trace.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "comm/mpi_comm.hpp"
#include "exec/executor.hpp"
#include "layouts/model_spec.hpp"
#include "layouts/schedule.hpp"

namespace helix {

// How to execute: the backend and, for the CUDA backend, emulation of one rank of a larger layout.
struct BackendOptions {
  std::string backend = "cpu";  // cpu | cuda
  int emulate = 0;              // ranks of the emulated layout (0: off)
  int emulate_rank = 0;         // the layout rank this process runs (kEmulateEveryRank: all)
  // Emulation: the hardware profile whose links price the collectives (built-in name or .json;
  // empty: gb200-nvl72), and overrides of its NVLink figures (they also set aside the profile's
  // measured collective curves).
  std::string hardware;
  std::optional<double> link_gbps, link_latency_us;
  // CUDA: capture each decode step as a CUDA graph once and replay it (executors whose every
  // operation only enqueues work on its streams; the others run as before).
  bool cuda_graph = false;
};

// --emulate-rank all: the compute of every distinct rank runs in turn on the one GPU.
constexpr int kEmulateEveryRank = -1;

// Read-only stream bandwidth of the device (decimal GB/s); 0 when not measured.
struct ReadCeiling {
  double gbps = 0;
  int64_t bytes = 0;
};

// Dense GEMM rate of the device (TFLOP/s, 10^12 FLOP per second; the compute ceiling of the
// roofline) and what was measured; 0 when not measured.
struct GemmCeiling {
  double tflops = 0;
  std::string what;  // e.g. "bf16 8192 x 8192 x 8192, cuBLASLt, median of 10"
};

struct MemoryCheck {
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
  int emulated_rank = 0;             // kEmulateEveryRank: each rank's compute ran in turn
  // Emulation: the profile that priced the collectives and the figures it priced them with.
  std::string emulation_hardware, emulation_hardware_kind;
  double link_gbps = 0, link_latency_us = 0;        // NVLink (after --link-* overrides)
  double network_gbps = 0, network_latency_us = 0;  // groups leaving the NVLink domain
  int nvlink_domain_gpus = 0;
  int measured_collectives = 0;   // measured latency / bandwidth points of the profile used
  double emulation_floor_us = 0;  // shortest collective the emulation realises on this GPU
  std::array<int, kNumPhases> phase_modeled{};  // 1: phase priced by the cost model, not sent
};

class DecodeBackend {
 public:
  virtual ~DecodeBackend() = default;
  virtual std::string description() const = 0;
  // This rank's device, e.g. "cpu" or "cuda:0 NVIDIA H100 80GB HBM3 bus 0000:18:00.0".
  virtual std::string device_description() const = 0;
  // Ranks of the layout (the world size, or N when one GPU emulates an N-rank layout).
  virtual int layout_ranks(int world_size) const { return world_size; }
  // Layout rank this process runs (emulating every rank: 0, the first).
  virtual int layout_rank(int world_rank) const { return world_rank; }
  // Whether this one process runs the compute of every rank of the layout in turn (emulation).
  virtual bool emulates_every_rank() const { return false; }
  virtual MemoryCheck check_memory(const ModelSpec& model, const RankShard& shard, int batch,
                                   int64_t max_positions) const = 0;
  // Collective over the world communicator.
  virtual std::unique_ptr<LayerExecutor> make_executor(const ModelSpec& model,
                                                       const RankShard& shard, int batch,
                                                       int64_t seq_len, int64_t max_positions,
                                                       uint64_t seed) = 0;
  virtual LayerExecutorInfo info() const = 0;
  // Whether outputs can be checked against the single-rank reference (not in emulation, where
  // received data stands in for the peers' results).
  virtual bool can_verify() const { return true; }
  // Bytes per cached KV element, per weight element and per activation element (the element
  // sizes at which the roofline prices a schedule's Work).
  virtual int kv_elem_bytes() const { return 4; }
  virtual int weight_elem_bytes() const { return 4; }
  virtual int act_elem_bytes() const { return 4; }
  // Measures the read-only stream ceiling (collective-free; called once per job).
  virtual ReadCeiling read_ceiling() { return {}; }
  // Measures the dense GEMM rate (collective-free; called once per job).
  virtual GemmCeiling gemm_ceiling() { return {}; }
  // CUDA runtime and NCCL versions ("none" when not used).
  virtual std::string cuda_version() const { return "none"; }
  virtual std::string nccl_version() const { return "none"; }
  // Largest accepted ||out - ref|| / ||ref||.
  virtual double tolerance() const = 0;
};

// The backend `opt.backend` names; throws UsageError when unknown or not built.
std::unique_ptr<DecodeBackend> make_decode_backend(const BackendOptions& opt, const MpiComm& world);

// The CUDA backend (built when CUDA is found).
std::unique_ptr<DecodeBackend> make_cuda_backend(const BackendOptions& opt, const MpiComm& world);

// The CPU backend (fp32 reference kernels, MPI over host memory).
std::unique_ptr<DecodeBackend> make_cpu_backend(const MpiComm& world);

// Bytes one rank's weights, cache, schedule buffers and scratch take in fp32 (the CPU planner; the
// same tables the CPU executor allocates from).
int64_t cpu_rank_bytes(const ModelSpec& model, const RankShard& shard, int batch,
                       int64_t max_positions);

}  // namespace helix
