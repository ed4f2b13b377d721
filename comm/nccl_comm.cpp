#include <nccl.h>

#include <string>

#include "comm/cuda_check.hpp"
#include "comm/device_comm.hpp"
#include "comm/error.hpp"

#define HELIX_NCCL_CHECK(call)                                                                     \
  do {                                                                                             \
    const ncclResult_t helix_nccl_rc_ = (call);                                                    \
    if (helix_nccl_rc_ != ncclSuccess)                                                             \
      ::helix::fatal(::helix::call_site(#call, __FILE__, __LINE__) + ": " +                        \
                     ncclGetErrorString(helix_nccl_rc_) + " (" + ncclGetLastError(nullptr) + ")"); \
  } while (0)

namespace helix {

namespace {

class NcclComm final : public DeviceComm {
 public:
  explicit NcclComm(ncclComm_t c) : c_(c) {
    HELIX_NCCL_CHECK(ncclCommUserRank(c_, &rank_));
    HELIX_NCCL_CHECK(ncclCommCount(c_, &size_));
  }
  ~NcclComm() override {
    if (c_) ncclCommDestroy(c_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string kind() const override { return "nccl"; }

  void all_to_all_v(const float* send, const std::vector<int64_t>& sc,
                    const std::vector<int64_t>& sd, float* recv, const std::vector<int64_t>& rc,
                    const std::vector<int64_t>& rd, cudaStream_t stream) override {
    HELIX_NCCL_CHECK(ncclGroupStart());
    for (int p = 0; p < size_; ++p) {
      if (sc[size_t(p)] > 0)
        HELIX_NCCL_CHECK(
            ncclSend(send + sd[size_t(p)], size_t(sc[size_t(p)]), ncclFloat32, p, c_, stream));
      if (rc[size_t(p)] > 0)
        HELIX_NCCL_CHECK(
            ncclRecv(recv + rd[size_t(p)], size_t(rc[size_t(p)]), ncclFloat32, p, c_, stream));
    }
    HELIX_NCCL_CHECK(ncclGroupEnd());
  }
  void all_reduce_sum(float* buf, int64_t n, cudaStream_t stream) override {
    if (size_ == 1 || n == 0) return;
    HELIX_NCCL_CHECK(ncclAllReduce(buf, buf, size_t(n), ncclFloat32, ncclSum, c_, stream));
  }
  void all_gather(const float* send, int64_t n, float* recv, cudaStream_t stream) override {
    HELIX_NCCL_CHECK(ncclAllGather(send, recv, size_t(n), ncclFloat32, c_, stream));
  }
  void reduce_scatter_sum(const float* send, float* recv, int64_t n, cudaStream_t stream) override {
    HELIX_NCCL_CHECK(ncclReduceScatter(send, recv, size_t(n), ncclFloat32, ncclSum, c_, stream));
  }
  void gather(const float* send, int64_t n, float* recv, int root, cudaStream_t stream) override {
    HELIX_NCCL_CHECK(ncclGroupStart());
    if (rank_ == root) {
      for (int p = 0; p < size_; ++p)
        if (p == root)
          HELIX_CUDA_CHECK(cudaMemcpyAsync(recv + int64_t(p) * n, send, size_t(n) * sizeof(float),
                                           cudaMemcpyDeviceToDevice, stream));
        else
          HELIX_NCCL_CHECK(ncclRecv(recv + int64_t(p) * n, size_t(n), ncclFloat32, p, c_, stream));
    } else {
      HELIX_NCCL_CHECK(ncclSend(send, size_t(n), ncclFloat32, root, c_, stream));
    }
    HELIX_NCCL_CHECK(ncclGroupEnd());
  }
  void bcast(float* buf, int64_t n, int root, cudaStream_t stream) override {
    if (size_ == 1) return;
    HELIX_NCCL_CHECK(ncclBroadcast(buf, buf, size_t(n), ncclFloat32, root, c_, stream));
  }
  void send(const float* buf, int64_t n, int peer, cudaStream_t stream) override {
    HELIX_NCCL_CHECK(ncclSend(buf, size_t(n), ncclFloat32, peer, c_, stream));
  }
  void recv(float* buf, int64_t n, int peer, cudaStream_t stream) override {
    HELIX_NCCL_CHECK(ncclRecv(buf, size_t(n), ncclFloat32, peer, c_, stream));
  }

 private:
  ncclComm_t c_ = nullptr;
  int rank_ = 0, size_ = 1;
};

}  // namespace

NcclWorld::NcclWorld(const MpiComm& world) : rank_(world.rank()) {
  ncclUniqueId id{};
  if (world.rank() == 0) HELIX_NCCL_CHECK(ncclGetUniqueId(&id));
  world.bcast_bytes(&id, sizeof(id), 0);
  ncclComm_t c = nullptr;
  HELIX_NCCL_CHECK(ncclCommInitRank(&c, world.size(), id, world.rank()));
  comm_ = c;
}

NcclWorld::~NcclWorld() {
  if (comm_) ncclCommDestroy(static_cast<ncclComm_t>(comm_));
}

std::unique_ptr<DeviceComm> NcclWorld::world() const {
  ncclComm_t c = nullptr;
  // A private copy (split with one color), so the world object keeps its own communicator.
  HELIX_NCCL_CHECK(ncclCommSplit(static_cast<ncclComm_t>(comm_), 0, rank_, &c, nullptr));
  return std::make_unique<NcclComm>(c);
}

std::unique_ptr<DeviceComm> NcclWorld::split(const std::vector<int>& members) const {
  int color = NCCL_SPLIT_NOCOLOR, key = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i] == rank_) key = int(i);
    if (i == 0 || members[i] < color) color = members[i];
  }
  ncclComm_t c = nullptr;
  HELIX_NCCL_CHECK(ncclCommSplit(static_cast<ncclComm_t>(comm_), color, key, &c, nullptr));
  if (members.empty()) return nullptr;
  return std::make_unique<NcclComm>(c);
}

std::string NcclWorld::version() {
  int v = 0;
  ncclGetVersion(&v);
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." +
         std::to_string(v % 100);
}

}  // namespace helix
