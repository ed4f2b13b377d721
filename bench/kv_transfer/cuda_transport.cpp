#include "bench/kv_transfer/cuda_transport.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "comm/cuda_check.hpp"
#include "comm/device_comm.hpp"
#include "comm/error.hpp"
#include "comm/gpu_select.hpp"
#include "kernels/copy_segments_cuda.hpp"

namespace helix {

namespace {

// Device memory that names what it is for when it cannot be allocated (the job aborts).
class DeviceBytes {
 public:
  DeviceBytes(int64_t bytes, const char* what) : bytes_(bytes) {
    const cudaError_t rc = cudaMalloc(&p_, size_t(std::max<int64_t>(bytes, 16)));
    if (rc != cudaSuccess) {
      (void)cudaGetLastError();
      fatal(std::string("kv-transfer: cannot allocate ") + std::to_string(bytes) +
            " bytes on the GPU for the " + what + " (" + cudaGetErrorString(rc) +
            "): fewer tokens or layers, or fewer ranks per GPU");
    }
  }
  ~DeviceBytes() { cudaFree(p_); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  void* get() const { return p_; }
  int64_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  int64_t bytes_ = 0;
};

// Byte counts and offsets as the fp32 element counts of DeviceComm (every part is 16-byte aligned
// and padded to whole fp32 words; the padding travels but is never unpacked).
std::vector<int64_t> words(const std::vector<int64_t>& bytes) {
  std::vector<int64_t> w(bytes.size());
  for (size_t i = 0; i < bytes.size(); ++i) w[i] = (bytes[i] + 3) / 4;
  return w;
}

class KvTransferCudaImpl final : public KvTransferCuda {
 public:
  explicit KvTransferCudaImpl(const MpiComm& world) : world_(world) {
    const GpuSelection gpu = select_gpu_by_local_rank(world.raw());
    device_ = gpu.device;
    HELIX_CUDA_CHECK(cudaFree(nullptr));
    cudaDeviceProp prop{};
    HELIX_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    desc_ = "cuda:" + std::to_string(device_) + " " + prop.name + " bus " + gpu.bus_id;
    std::fprintf(stderr, "helix-bench: rank %d (node-local %d): %s%s\n", world.rank(),
                 gpu.local_rank, desc_.c_str(), gpu_sharing_note(gpu).c_str());
    // NCCL refuses two ranks on one GPU (same PCI bus id): then MPI through pinned host copies.
    if (gpu.shared) {
      comm_ = make_staged_comm(world.split(0, world.rank()));
    } else {
      nccl_ = std::make_unique<NcclWorld>(world);
      comm_ = nccl_->world();
    }
    HELIX_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    HELIX_CUDA_CHECK(cudaEventCreate(&start_));
    HELIX_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~KvTransferCudaImpl() override {
    cudaStreamSynchronize(stream_);
    comm_.reset();
    nccl_.reset();
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
    cudaStreamDestroy(stream_);
  }

  std::string device_description() const override { return desc_; }
  std::string comm_backend() const override { return comm_->kind(); }
  bool link_representative() const override { return nccl_ != nullptr; }
  std::string cuda_version() const override { return cuda_versions(); }
  std::string nccl_version() const override { return NcclWorld::version(); }

  KvTransferTimes run(const KvTransferJob& job, const void* prefill_cache, int warmup, int iters,
                      const std::function<int64_t(const void*)>& misplaced) override {
    DeviceBytes cache(job.cache_bytes(), "KV cache");
    DeviceBytes sendbuf(job.send_total, "send buffer"), recvbuf(job.recv_total, "receive buffer");
    const std::vector<cpu::Segment>& segs = job.is_prefill ? job.pack : job.unpack;
    DeviceBytes table(int64_t(segs.size() * sizeof(cpu::Segment)), "segment table");
    if (!segs.empty())
      HELIX_CUDA_CHECK(cudaMemcpy(table.get(), segs.data(), segs.size() * sizeof(cpu::Segment),
                                  cudaMemcpyHostToDevice));
    if (job.is_prefill)
      HELIX_CUDA_CHECK(cudaMemcpy(cache.get(), prefill_cache, size_t(job.cache_bytes()),
                                  cudaMemcpyHostToDevice));
    const auto sc = words(job.send_bytes), sd = words(job.send_offset), rc = words(job.recv_bytes),
               rd = words(job.recv_offset);
    const auto* seg_dev = static_cast<const cpu::Segment*>(table.get());
    KvTransferTimes t;
    for (int it = 0; it < warmup + iters; ++it) {
      // Unwritten slots hold 0xFFFF, a value no cached element has.
      if (!job.is_prefill)
        HELIX_CUDA_CHECK(cudaMemsetAsync(cache.get(), 0xFF, size_t(job.cache_bytes()), stream_));
      HELIX_CUDA_CHECK(cudaStreamSynchronize(stream_));
      world_.barrier();
      HELIX_CUDA_CHECK(cudaEventRecord(start_, stream_));
      if (job.is_prefill)
        cuda::copy_segments(cache.get(), sendbuf.get(), seg_dev, int64_t(segs.size()), stream_);
      comm_->all_to_all_v(static_cast<const float*>(sendbuf.get()), sc, sd,
                          static_cast<float*>(recvbuf.get()), rc, rd, stream_);
      if (!job.is_prefill)
        cuda::copy_segments(recvbuf.get(), cache.get(), seg_dev, int64_t(segs.size()), stream_);
      HELIX_CUDA_CHECK(cudaEventRecord(stop_, stream_));
      HELIX_CUDA_CHECK(cudaEventSynchronize(stop_));
      float ms = 0;
      HELIX_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
      double s = double(ms) * 1e-3;
      world_.all_reduce_max(&s, 1);
      if (it < warmup) continue;
      t.secs.push_back(s);
      if (it == warmup && !job.is_prefill) {
        std::vector<unsigned char> host(size_t(job.cache_bytes()));
        HELIX_CUDA_CHECK(cudaMemcpy(host.data(), cache.get(), host.size(), cudaMemcpyDeviceToHost));
        t.misplaced = misplaced(host.data());
      }
    }
    double bad = double(t.misplaced);
    world_.all_reduce_max(&bad, 1);
    t.misplaced = int64_t(bad);
    return t;
  }

 private:
  const MpiComm& world_;
  int device_ = 0;
  std::string desc_;
  std::unique_ptr<NcclWorld> nccl_;
  std::unique_ptr<DeviceComm> comm_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

}  // namespace

std::unique_ptr<KvTransferCuda> KvTransferCuda::make(const MpiComm& world) {
  return std::make_unique<KvTransferCudaImpl>(world);
}

}  // namespace helix
