// The CUDA backend of `helix-bench decode`: one GPU per rank chosen by node-local rank, NCCL
// communicators for the layout's groups (MPI with host staging when ranks share a GPU: two ranks
// of a node with the same PCI bus id), the bf16 executor, the memory planner, and emulation of
// one rank of an N-rank layout on this GPU.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "bench/cuda_executor.hpp"
#include "bench/decode.hpp"
#include "bench/decode_backend.hpp"
#include "comm/cuda_check.hpp"
#include "comm/device_comm.hpp"
#include "comm/error.hpp"
#include "comm/gpu_select.hpp"
#include "kernels/cuda_kernels.hpp"

namespace helix {

namespace {

constexpr int64_t kReserveBytes = int64_t(768) << 20;  // CUDA context, NCCL and library buffers

class CudaBackend final : public DecodeBackend {
 public:
  CudaBackend(const DecodeOptions& o, const MpiComm& world) : world_(world) {
    if (o.emulate < 0) throw UsageError("--emulate: must be 0 (off) or a rank count >= 1");
    if (o.emulate > 0) {
      if (world.size() != 1)
        throw UsageError("--emulate: runs one rank's work on one GPU; launch a single process (" +
                         std::to_string(world.size()) + " were launched)");
      if (o.emulate_rank < 0 || o.emulate_rank >= o.emulate)
        throw UsageError("--emulate-rank: must be in [0, " + std::to_string(o.emulate) + "), got " +
                         std::to_string(o.emulate_rank));
      if (!(o.link_gbps > 0)) throw UsageError("--link-gbps: must be positive");
      if (!(o.link_latency_us >= 0)) throw UsageError("--link-latency-us: must be 0 or more");
    } else if (o.emulate_rank != 0) {
      throw UsageError("--emulate-rank: needs --emulate N");
    }
    emulate_ = o.emulate;
    emulate_rank_ = o.emulate_rank;
    link_.bw_gbps = o.link_gbps;
    link_.latency_us = o.link_latency_us;

    const GpuSelection gpu = select_gpu_by_local_rank(world.raw());
    device_ = gpu.device;
    HELIX_CUDA_CHECK(cudaFree(nullptr));  // create the context now
    cudaDeviceProp prop{};
    HELIX_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    desc_ = "cuda:" + std::to_string(device_) + " " + prop.name + " bus " + gpu.bus_id;
    ranks_per_gpu_ = gpu.ranks_on_gpu;
    shared_ = gpu.shared;
    std::fprintf(stderr, "helix-bench: rank %d (node-local %d): %s%s\n", world.rank(),
                 gpu.local_rank, desc_.c_str(), gpu_sharing_note(gpu).c_str());
    if (emulate_ == 0 && !shared_) nccl_ = std::make_unique<NcclWorld>(world);
  }

  std::string description() const override {
    std::string d = "cuda (bf16 kernels, ";
    if (emulate_ > 0)
      return d + "emulating rank " + std::to_string(emulate_rank_) + " of " +
             std::to_string(emulate_) + ", communication modeled at " +
             std::to_string(int(link_.bw_gbps)) + " GB/s)";
    return d + (nccl_ ? "NCCL)" : "MPI host staging: ranks share GPUs)");
  }
  std::string device_description() const override { return desc_; }
  int layout_ranks(int world_size) const override { return emulate_ > 0 ? emulate_ : world_size; }
  int plan_rank(int world_rank) const override { return emulate_ > 0 ? emulate_rank_ : world_rank; }
  bool can_verify() const override { return emulate_ == 0; }

  MemoryPlan plan_memory(const ModelSpec& m, const RankPlan& plan, int batch,
                         int64_t max_positions) const override {
    MemoryPlan p;
    p.needed_bytes = cuda_footprint(m, plan, batch, max_positions).total();
    size_t free_b = 0, total_b = 0;
    HELIX_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    p.available_bytes = int64_t(free_b) / ranks_per_gpu_ - kReserveBytes;
    p.fits = p.needed_bytes <= p.available_bytes;
    return p;
  }

  std::unique_ptr<LayerExecutor> make_executor(const ModelSpec& m, const RankPlan& plan, int batch,
                                               int64_t seq_len, int64_t max_positions,
                                               uint64_t seed) override {
    std::shared_ptr<DeviceGroups> groups;
    if (emulate_ == 0) {
      // Communicators are made once per distinct layout (splitting is collective and slow) and
      // reused by later runs of the same layout; every rank runs the same sequence of runs.
      const LayoutParams& L = plan.layout;
      const std::string key = std::string(to_string(L.kind)) + ":" + std::to_string(L.n) + ":" +
                              std::to_string(L.kvp) + ":" + std::to_string(L.tpa) + ":" +
                              std::to_string(L.tpf) + ":" + std::to_string(L.ep);
      auto it = group_cache_.find(key);
      if (it == group_cache_.end()) {
        auto made = std::make_shared<DeviceGroups>();
        const int r = world_.rank();
        auto make = [&](Group g) -> std::unique_ptr<DeviceComm> {
          const std::vector<int> members = group_members(L, g, r);
          if (nccl_) return nccl_->split(members);
          MpiComm c = world_.subgroup(members);
          if (!c.valid()) return nullptr;
          return make_staged_comm(std::move(c));
        };
        made->world = make(Group::world);
        made->kvp = make(Group::kvp);
        made->tpa = make(Group::tpa);
        made->ffn = make(Group::ffn);
        made->tpf = make(Group::tpf);
        made->ep = make(Group::ep);
        it = group_cache_.emplace(key, std::move(made)).first;
      }
      groups = it->second;
    }
    return std::make_unique<CudaExecutor>(m, plan, std::move(groups), link_, batch, seq_len,
                                          max_positions, seed);
  }

  LayerExecutorInfo info() const override {
    LayerExecutorInfo i;
    i.dtype = "bf16";
    i.comm_backend = emulate_ > 0 ? "modeled" : (nccl_ ? "nccl" : "mpi-host-staged");
    i.link_representative = emulate_ == 0 && nccl_ != nullptr;
    i.emulated_ranks = emulate_;
    i.emulated_rank = emulate_rank_;
    if (emulate_ > 0) {
      i.link_gbps = link_.bw_gbps;
      i.link_latency_us = link_.latency_us;
      for (int p = 0; p < kNumPhases; ++p)
        i.phase_modeled[size_t(p)] = phase_is_comm(static_cast<Phase>(p)) ? 1 : 0;
    }
    return i;
  }
  double tolerance() const override { return 2e-2; }
  int kv_elem_bytes() const override { return 2; }
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

  std::string cuda_version() const override { return cuda_versions(); }
  std::string nccl_version() const override { return NcclWorld::version(); }

 private:
  const MpiComm& world_;
  int emulate_ = 0, emulate_rank_ = 0;
  LinkModel link_;
  int device_ = 0, ranks_per_gpu_ = 1;  // ranks_per_gpu_: ranks of this node on this GPU
  bool shared_ = false;
  std::string desc_;
  std::unique_ptr<NcclWorld> nccl_;
  std::map<std::string, std::shared_ptr<DeviceGroups>> group_cache_;
};

}  // namespace

std::unique_ptr<DecodeBackend> make_cuda_backend(const DecodeOptions& o, const MpiComm& world) {
  cuda::check_attention_variant_env();
  return std::make_unique<CudaBackend>(o, world);
}

}  // namespace helix
