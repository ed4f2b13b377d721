#include "comm/nccl_comm.hpp"

#include <nccl.h>

#include <string>

#include "comm/cuda_check.hpp"
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

ncclComm_t raw(void* c) {
  return static_cast<ncclComm_t>(c);
}

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::fp32:
      return ncclFloat32;
    case DType::bf16:
      return ncclBfloat16;
    case DType::int32:
      return ncclInt32;
    default:
      fatal(std::string("no NCCL collectives of ") + to_string(t));
  }
}

size_t bytes_of(int64_t count, DType t) {
  return size_t(double(count) * dtype_bytes(t));
}

}  // namespace

NcclComm::NcclComm(void* comm) : c_(comm) {
  HELIX_NCCL_CHECK(ncclCommUserRank(raw(c_), &rank_));
  HELIX_NCCL_CHECK(ncclCommCount(raw(c_), &size_));
}

NcclComm::~NcclComm() {
  if (c_) ncclCommDestroy(raw(c_));
}

std::unique_ptr<NcclComm> NcclComm::create(MPI_Comm comm) {
  int rank = 0, size = 1;
  HELIX_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  HELIX_MPI_CHECK(MPI_Comm_size(comm, &size));
  ncclUniqueId id{};
  if (rank == 0) HELIX_NCCL_CHECK(ncclGetUniqueId(&id));
  HELIX_MPI_CHECK(MPI_Bcast(&id, int(sizeof id), MPI_BYTE, 0, comm));
  ncclComm_t c = nullptr;
  HELIX_NCCL_CHECK(ncclCommInitRank(&c, size, id, rank));
  return std::make_unique<NcclComm>(c);
}

void NcclComm::all_reduce(const void* send, void* recv, int64_t n, DType t, cudaStream_t s) {
  HELIX_NCCL_CHECK(ncclAllReduce(send, recv, size_t(n), nccl_type(t), ncclSum, raw(c_), s));
}

void NcclComm::all_gather(const void* send, void* recv, int64_t n, DType t, cudaStream_t s) {
  HELIX_NCCL_CHECK(ncclAllGather(send, recv, size_t(n), nccl_type(t), raw(c_), s));
}

void NcclComm::reduce_scatter(const void* send, void* recv, int64_t n, DType t, cudaStream_t s) {
  HELIX_NCCL_CHECK(ncclReduceScatter(send, recv, size_t(n), nccl_type(t), ncclSum, raw(c_), s));
}

void NcclComm::all_to_all(const void* send, void* recv, int64_t n, DType t, cudaStream_t s) {
  const size_t block = bytes_of(n, t);
  const char* src = static_cast<const char*>(send);
  char* dst = static_cast<char*>(recv);
  if (src != dst)  // in place (helix-micro, as nccl-tests): the own block stays where it is
    HELIX_CUDA_CHECK(cudaMemcpyAsync(dst + size_t(rank_) * block, src + size_t(rank_) * block,
                                     block, cudaMemcpyDeviceToDevice, s));
  HELIX_NCCL_CHECK(ncclGroupStart());
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) continue;
    HELIX_NCCL_CHECK(ncclSend(src + size_t(p) * block, size_t(n), nccl_type(t), p, raw(c_), s));
    HELIX_NCCL_CHECK(ncclRecv(dst + size_t(p) * block, size_t(n), nccl_type(t), p, raw(c_), s));
  }
  HELIX_NCCL_CHECK(ncclGroupEnd());
}

void NcclComm::send_recv(const void* send, int send_to, void* recv, int recv_from, int64_t n,
                         DType t, cudaStream_t s) {
  if (send_to == rank_ && recv_from == rank_) {  // one rank: the ring is a device copy
    if (send != recv)
      HELIX_CUDA_CHECK(cudaMemcpyAsync(recv, send, bytes_of(n, t), cudaMemcpyDeviceToDevice, s));
    return;
  }
  HELIX_NCCL_CHECK(ncclGroupStart());
  HELIX_NCCL_CHECK(ncclSend(send, size_t(n), nccl_type(t), send_to, raw(c_), s));
  HELIX_NCCL_CHECK(ncclRecv(recv, size_t(n), nccl_type(t), recv_from, raw(c_), s));
  HELIX_NCCL_CHECK(ncclGroupEnd());
}

void NcclComm::all_to_all_v(const float* send, const std::vector<int64_t>& sc,
                            const std::vector<int64_t>& sd, float* recv,
                            const std::vector<int64_t>& rc, const std::vector<int64_t>& rd,
                            cudaStream_t stream) {
  HELIX_NCCL_CHECK(ncclGroupStart());
  for (int p = 0; p < size_; ++p) {
    if (sc[size_t(p)] > 0)
      HELIX_NCCL_CHECK(
          ncclSend(send + sd[size_t(p)], size_t(sc[size_t(p)]), ncclFloat32, p, raw(c_), stream));
    if (rc[size_t(p)] > 0)
      HELIX_NCCL_CHECK(
          ncclRecv(recv + rd[size_t(p)], size_t(rc[size_t(p)]), ncclFloat32, p, raw(c_), stream));
  }
  HELIX_NCCL_CHECK(ncclGroupEnd());
}

void NcclComm::all_reduce_sum(float* buf, int64_t n, cudaStream_t stream) {
  if (size_ == 1 || n == 0) return;
  all_reduce(buf, buf, n, DType::fp32, stream);
}

void NcclComm::all_gather(const float* send, int64_t n, float* recv, cudaStream_t stream) {
  all_gather(send, recv, n, DType::fp32, stream);
}

void NcclComm::reduce_scatter_sum(const float* send, float* recv, int64_t n, cudaStream_t stream) {
  reduce_scatter(send, recv, n, DType::fp32, stream);
}

void NcclComm::gather(const float* send, int64_t n, float* recv, int root, cudaStream_t stream) {
  HELIX_NCCL_CHECK(ncclGroupStart());
  if (rank_ == root) {
    for (int p = 0; p < size_; ++p)
      if (p == root)
        HELIX_CUDA_CHECK(cudaMemcpyAsync(recv + int64_t(p) * n, send, size_t(n) * sizeof(float),
                                         cudaMemcpyDeviceToDevice, stream));
      else
        HELIX_NCCL_CHECK(
            ncclRecv(recv + int64_t(p) * n, size_t(n), ncclFloat32, p, raw(c_), stream));
  } else {
    HELIX_NCCL_CHECK(ncclSend(send, size_t(n), ncclFloat32, root, raw(c_), stream));
  }
  HELIX_NCCL_CHECK(ncclGroupEnd());
}

void NcclComm::bcast(float* buf, int64_t n, int root, cudaStream_t stream) {
  if (size_ == 1) return;
  HELIX_NCCL_CHECK(ncclBroadcast(buf, buf, size_t(n), ncclFloat32, root, raw(c_), stream));
}

void NcclComm::send(const float* buf, int64_t n, int peer, cudaStream_t stream) {
  HELIX_NCCL_CHECK(ncclSend(buf, size_t(n), ncclFloat32, peer, raw(c_), stream));
}

void NcclComm::recv(float* buf, int64_t n, int peer, cudaStream_t stream) {
  HELIX_NCCL_CHECK(ncclRecv(buf, size_t(n), ncclFloat32, peer, raw(c_), stream));
}

std::unique_ptr<NcclComm> NcclComm::split(const std::vector<int>& members, int max_ctas) const {
  int color = NCCL_SPLIT_NOCOLOR, key = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i] == rank_) key = int(i);
    if (i == 0 || members[i] < color) color = members[i];
  }
  ncclComm_t c = nullptr;
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  if (max_ctas > 0) {
    config.minCTAs = 1;
    config.maxCTAs = max_ctas;
  }
  HELIX_NCCL_CHECK(ncclCommSplit(raw(c_), color, key, &c, max_ctas > 0 ? &config : nullptr));
  if (members.empty()) return nullptr;
  return std::make_unique<NcclComm>(c);
}

std::string NcclComm::version() {
  int v = 0;
  ncclGetVersion(&v);
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." +
         std::to_string(v % 100);
}

}  // namespace helix
