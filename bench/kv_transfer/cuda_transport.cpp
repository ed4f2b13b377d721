#include "bench/kv_transfer/cuda_transport.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "comm/cuda_check.hpp"
#include "comm/cuda_timer.hpp"
#include "comm/device_buffer.hpp"
#include "comm/device_comm.hpp"
#include "comm/error.hpp"
#include "comm/gpu_select.hpp"
#include "comm/nccl_comm.hpp"
#include "kernels/copy_segments_cuda.hpp"

namespace helix {

namespace {

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
    HELIX_CUDA_CHECK(cudaFree(nullptr));
    desc_ = describe_gpu(gpu);
    std::fprintf(stderr, "helix-bench: rank %d (node-local %d): %s%s\n", world.rank(),
                 gpu.local_rank, desc_.c_str(), gpu_sharing_note(gpu).c_str());
    // NCCL refuses two ranks on one GPU (same PCI bus id): then MPI through pinned host copies.
    if (gpu.shared)
      comm_ = make_staged_comm(world.split(0, world.rank()));
    else
      comm_ = NcclComm::create(world.raw());
    HELIX_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  ~KvTransferCudaImpl() override {
    cudaStreamSynchronize(stream_);
    comm_.reset();
    cudaStreamDestroy(stream_);
  }

  std::string device_description() const override { return desc_; }
  std::string comm_backend() const override { return comm_->kind(); }
  bool link_representative() const override { return comm_->kind() == "nccl"; }
  std::string cuda_version() const override { return cuda_versions(); }
  std::string nccl_version() const override { return NcclComm::version(); }

  KvTransferTimes run(const KvTransferJob& job, const void* prefill_cache, int warmup, int iters,
                      const std::function<int64_t(const void*)>& misplaced) override {
    const char* hint = "fewer tokens or layers, or fewer ranks per GPU";
    DeviceBuffer<unsigned char> cache(job.cache_bytes(), "the KV cache", hint);
    DeviceBuffer<float> sendbuf((job.send_total + 3) / 4, "the send buffer", hint);
    DeviceBuffer<float> recvbuf((job.recv_total + 3) / 4, "the receive buffer", hint);
    const std::vector<cpu::Segment>& segs = job.is_prefill ? job.pack : job.unpack;
    DeviceBuffer<cpu::Segment> table(int64_t(segs.size()), "the segment table", hint);
    if (!segs.empty())
      HELIX_CUDA_CHECK(cudaMemcpy(table.get(), segs.data(), segs.size() * sizeof(cpu::Segment),
                                  cudaMemcpyHostToDevice));
    if (job.is_prefill)
      HELIX_CUDA_CHECK(cudaMemcpy(cache.get(), prefill_cache, size_t(job.cache_bytes()),
                                  cudaMemcpyHostToDevice));
    const auto sc = words(job.send_bytes), sd = words(job.send_offset), rc = words(job.recv_bytes),
               rd = words(job.recv_offset);
    const cpu::Segment* seg_dev = table.get();
    CudaTimer timer;
    KvTransferTimes t;
    for (int it = 0; it < warmup + iters; ++it) {
      // Unwritten slots hold 0xFFFF, a value no cached element has.
      if (!job.is_prefill)
        HELIX_CUDA_CHECK(cudaMemsetAsync(cache.get(), 0xFF, size_t(job.cache_bytes()), stream_));
      HELIX_CUDA_CHECK(cudaStreamSynchronize(stream_));
      world_.barrier();
      timer.start(stream_);
      if (job.is_prefill)
        cuda::copy_segments(cache.get(), sendbuf.get(), seg_dev, int64_t(segs.size()), stream_);
      comm_->all_to_all_v(sendbuf.get(), sc, sd, recvbuf.get(), rc, rd, stream_);
      if (!job.is_prefill)
        cuda::copy_segments(recvbuf.get(), cache.get(), seg_dev, int64_t(segs.size()), stream_);
      timer.stop(stream_);
      double s = timer.elapsed_us() * 1e-6;
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
  std::string desc_;
  std::unique_ptr<DeviceComm> comm_;
  cudaStream_t stream_ = nullptr;
};

}  // namespace

std::unique_ptr<KvTransferCuda> KvTransferCuda::make(const MpiComm& world) {
  return std::make_unique<KvTransferCudaImpl>(world);
}

}  // namespace helix
