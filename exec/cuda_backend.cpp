// The CUDA backend of `helix-bench decode`: one GPU per rank chosen by node-local rank, device
// communicators for the layout's groups (NCCL; MPI with host staging when ranks share a GPU: two
// ranks of a node with the same PCI bus id; or, in emulation of one rank of an N-rank layout on
// this GPU, emulated communicators priced by the cost model), the bf16 executor and the memory
// planner. The executor is the same in every case.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "analytic/cost_model.hpp"
#include "analytic/hardware.hpp"
#include "comm/cuda_check.hpp"
#include "comm/device_comm.hpp"
#include "comm/emulated_comm.hpp"
#include "comm/error.hpp"
#include "comm/gpu_select.hpp"
#include "comm/nccl_comm.hpp"
#include "exec/cuda_buffers.hpp"
#include "exec/cuda_executor.hpp"
#include "exec/decode_backend.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/gemm_cuda.hpp"

namespace helix {

namespace {

constexpr int64_t kReserveBytes = int64_t(768) << 20;  // CUDA context, NCCL and library buffers
constexpr const char* kDefaultEmulationHardware = "gb200-nvl72";

// The profile that prices emulated collectives, with the --link-* overrides applied.
HardwareProfile emulation_profile(const BackendOptions& o) {
  HardwareProfile hw = load_hardware(o.hardware.empty() ? kDefaultEmulationHardware : o.hardware);
  if (o.link_gbps || o.link_latency_us) {
    if (o.link_gbps) hw.nvlink.bw_gbps = *o.link_gbps;
    if (o.link_latency_us) hw.nvlink.latency_us = *o.link_latency_us;
    hw.collectives.clear();  // the overrides price every collective
  }
  return hw;
}

void check_options(const BackendOptions& o, const MpiComm& world) {
  if (o.emulate < 0) throw UsageError("--emulate: must be 0 (off) or a rank count >= 1");
  if (o.emulate == 0) {
    if (o.emulate_rank != 0) throw UsageError("--emulate-rank: needs --emulate N");
    if (!o.hardware.empty()) throw UsageError("--hardware: needs --emulate N");
    if (o.link_gbps) throw UsageError("--link-gbps: needs --emulate N");
    if (o.link_latency_us) throw UsageError("--link-latency-us: needs --emulate N");
    return;
  }
  if (world.size() != 1)
    throw UsageError("--emulate: runs one rank's work on one GPU; launch a single process (" +
                     std::to_string(world.size()) + " were launched)");
  if ((o.emulate_rank < 0 || o.emulate_rank >= o.emulate) && o.emulate_rank != kEmulateEveryRank)
    throw UsageError("--emulate-rank: must be 'all' or in [0, " + std::to_string(o.emulate) +
                     "), got " + std::to_string(o.emulate_rank));
  if (o.link_gbps && !(*o.link_gbps > 0)) throw UsageError("--link-gbps: must be positive");
  if (o.link_latency_us && !(*o.link_latency_us >= 0))
    throw UsageError("--link-latency-us: must be 0 or more");
}

class CudaBackend final : public DecodeBackend {
 public:
  CudaBackend(const BackendOptions& o, const MpiComm& world) : world_(world) {
    check_options(o, world);
    emulate_ = o.emulate;
    emulate_rank_ = o.emulate_rank;
    cuda_graph_ = o.cuda_graph;
    if (emulate_ > 0) {
      hw_ = emulation_profile(o);
      pricing_ = std::make_unique<CostModel>(collective_pricing(hw_));
    }
    const GpuSelection gpu = select_gpu_by_local_rank(world.raw());
    HELIX_CUDA_CHECK(cudaFree(nullptr));  // create the context now
    desc_ = describe_gpu(gpu);
    ranks_per_gpu_ = gpu.ranks_on_gpu;
    std::fprintf(stderr, "helix-bench: rank %d (node-local %d): %s%s\n", world.rank(),
                 gpu.local_rank, desc_.c_str(), gpu_sharing_note(gpu).c_str());
    if (emulate_ > 0)
      clock_ = std::make_shared<EmulationClock>();
    else if (!gpu.shared)
      nccl_ = NcclComm::create(world.raw());
  }

  std::string description() const override {
    std::string d = "cuda (bf16 kernels, ";
    if (emulate_ > 0) {
      char b[160];
      std::snprintf(b, sizeof b, "communication emulated at %s's links: %.0f GB/s, %.1f us)",
                    hw_.name.c_str(), hw_.nvlink.bw_gbps, hw_.nvlink.latency_us);
      const std::string who = emulate_rank_ == kEmulateEveryRank
                                  ? "every rank in turn"
                                  : "rank " + std::to_string(emulate_rank_);
      return d + "emulating " + who + " of " + std::to_string(emulate_) + ", " + b;
    }
    return d + (nccl_ ? "NCCL)" : "MPI host staging: ranks share GPUs)");
  }
  std::string device_description() const override { return desc_; }
  int layout_ranks(int world_size) const override { return emulate_ > 0 ? emulate_ : world_size; }
  int layout_rank(int world_rank) const override {
    return emulate_ > 0 ? std::max(0, emulate_rank_) : world_rank;
  }
  bool emulates_every_rank() const override {
    return emulate_ > 0 && emulate_rank_ == kEmulateEveryRank;
  }
  bool can_verify() const override { return emulate_ == 0; }

  MemoryCheck check_memory(const ModelSpec& m, const RankShard& shard, int batch,
                           int64_t max_positions) const override {
    MemoryCheck p;
    p.needed_bytes = cuda_footprint(m, shard, batch, max_positions).total();
    size_t free_b = 0, total_b = 0;
    HELIX_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    p.available_bytes = int64_t(free_b) / ranks_per_gpu_ - kReserveBytes;
    p.fits = p.needed_bytes <= p.available_bytes;
    return p;
  }

  std::unique_ptr<LayerExecutor> make_executor(const ModelSpec& m, const RankShard& shard,
                                               int batch, int64_t seq_len, int64_t max_positions,
                                               uint64_t seed) override {
    auto ex = std::make_unique<CudaExecutor>(m, shard, groups(shard), batch, seq_len, max_positions,
                                             seed);
    ex->use_graphs(cuda_graph_);
    return ex;
  }

  LayerExecutorInfo info() const override {
    LayerExecutorInfo i;
    i.dtype = "bf16";
    i.comm_backend = emulate_ > 0 ? "modeled" : (nccl_ ? "nccl" : "mpi-host-staged");
    i.link_representative = emulate_ == 0 && nccl_ != nullptr;
    i.emulated_ranks = emulate_;
    i.emulated_rank = emulate_rank_;
    if (emulate_ > 0) {
      i.emulation_hardware = hw_.name;
      i.emulation_hardware_kind = hw_.kind;
      i.link_gbps = hw_.nvlink.bw_gbps;
      i.link_latency_us = hw_.nvlink.latency_us;
      i.network_gbps = hw_.network.bw_gbps;
      i.network_latency_us = hw_.network.latency_us;
      i.nvlink_domain_gpus = hw_.nvlink.domain_gpus;
      i.measured_collectives = int(hw_.collectives.size());
      i.emulation_floor_us = clock_->floor_us();
      for (int p = 0; p < kNumPhases; ++p)
        i.phase_modeled[size_t(p)] = phase_is_comm(static_cast<Phase>(p)) ? 1 : 0;
    }
    return i;
  }
  double tolerance() const override { return 2e-2; }
  int kv_elem_bytes() const override { return 2; }
  int weight_elem_bytes() const override { return 2; }
  ReadCeiling read_ceiling() override {
    size_t free_b = 0, total_b = 0;
    HELIX_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    // 4 GiB (80x the L2 of an H100) when it fits next to the other ranks on this GPU.
    int64_t bytes = int64_t(4) << 30;
    while (bytes > (int64_t(64) << 20) && bytes > int64_t(free_b) / (2 * ranks_per_gpu_))
      bytes /= 2;
    const cuda::StreamResult s = cuda::stream_read(bytes, 20, nullptr);
    return {s.gbps_median, s.bytes};
  }

  // bf16 8192^3 (384 MiB of operands) when it fits next to the other ranks on this GPU.
  GemmCeiling gemm_ceiling() override {
    size_t free_b = 0, total_b = 0;
    HELIX_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    int64_t n = 8192;
    while (n > 1024 && 3 * n * n * 2 > int64_t(free_b) / (2 * ranks_per_gpu_)) n /= 2;
    const int iters = 10;
    const cuda::GemmRate g = cuda::gemm_rate(n, iters, nullptr);
    const std::string d = std::to_string(n);
    return {g.tflops_median,
            "bf16 " + d + " x " + d + " x " + d + ", cuBLASLt, median of " + std::to_string(iters)};
  }

  std::string cuda_version() const override { return cuda_versions(); }
  std::string nccl_version() const override { return NcclComm::version(); }

 private:
  // The device communicators of `shard`'s groups, made once per distinct layout (splitting NCCL
  // communicators is collective and slow) and reused by later runs of the same layout; every rank
  // runs the same sequence of runs.
  std::shared_ptr<DeviceGroups> groups(const RankShard& shard) {
    const LayoutParams& L = shard.layout;
    const int rank = emulate_ > 0 ? shard.rank : world_.rank();
    const std::string key = std::string(to_string(L.kind)) + ":" + std::to_string(L.n) + ":" +
                            std::to_string(L.kvp) + ":" + std::to_string(L.tpa) + ":" +
                            std::to_string(L.tpf) + ":" + std::to_string(L.ep) + ":" +
                            std::to_string(rank) + ":" + std::to_string(attention_reserved_sms(L));
    auto it = group_cache_.find(key);
    if (it != group_cache_.end()) return it->second;
    const auto leaves = emulate_ > 0 ? groups_leaving_domain(L, rank, hw_.nvlink.domain_gpus)
                                     : std::array<bool, kNumGroups>{};
    auto made = std::make_shared<DeviceGroups>();
    // HOP-B's chunk exchanges (the KVP group) run beside the next chunk's attention on the SMs it
    // leaves free: at most that many CTAs.
    const int reserved = attention_reserved_sms(L);
    for (Group g : {Group::world, Group::kvp, Group::tpa, Group::ffn, Group::tpf, Group::ep})
      made->set(g, make_comm(group_members(L, g, rank), rank, leaves[size_t(g)],
                             g == Group::kvp ? reserved : 0));
    return group_cache_.emplace(key, std::move(made)).first->second;
  }

  std::unique_ptr<DeviceComm> make_comm(const std::vector<int>& members, int rank, bool network,
                                        int max_ctas) {
    if (emulate_ > 0) {
      if (members.empty()) return nullptr;
      const int me = int(std::find(members.begin(), members.end(), rank) - members.begin());
      // The cost model's one pricing function, for this group's link.
      const CostModel* cm = pricing_.get();
      CollectivePrice price = [cm, network](Collective c, int n, double bytes) {
        return cm->collective_us(c, n, bytes, network);
      };
      return std::make_unique<EmulatedComm>(me, int(members.size()), std::move(price), clock_);
    }
    if (nccl_) return nccl_->split(members, max_ctas);
    MpiComm c = world_.subgroup(members);
    if (!c.valid()) return nullptr;
    return make_staged_comm(std::move(c));
  }

  const MpiComm& world_;
  int emulate_ = 0, emulate_rank_ = 0;
  bool cuda_graph_ = false;
  HardwareProfile hw_;                  // emulation: the profile pricing the collectives
  std::unique_ptr<CostModel> pricing_;  // emulation
  std::shared_ptr<EmulationClock> clock_;
  int ranks_per_gpu_ = 1;  // ranks of this node on this GPU
  std::string desc_;
  std::unique_ptr<NcclComm> nccl_;
  std::map<std::string, std::shared_ptr<DeviceGroups>> group_cache_;
};

}  // namespace

std::unique_ptr<DecodeBackend> make_cuda_backend(const BackendOptions& o, const MpiComm& world) {
  cuda::check_attention_variant_env();
  return std::make_unique<CudaBackend>(o, world);
}

}  // namespace helix
