// Collectives over MPI on host memory (the CI and laptop transport; not representative of a GPU
// interconnect). Also the option parsers of the collectives' element types and names.
#include <chrono>
#include <cstring>
#include <vector>

#include "bench/micro/collective_backend.hpp"
#include "comm/error.hpp"

namespace helix::micro {

DType parse_element_type(const std::string& s, const std::string& option) {
  const auto t = parse_dtype(s);
  if (t == DType::fp32 || t == DType::bf16 || t == DType::int32) return *t;
  throw UsageError(option + ": unknown element type '" + s + "' (known: float, bfloat16, int32)");
}

Collective parse_measured_collective(const std::string& text, const std::string& option) {
  const auto c = parse_collective(text);
  for (Collective m : kMeasuredCollectives)
    if (c == m) return m;
  throw UsageError(option + ": unknown collective '" + text +
                   "' (known: all_reduce, all_gather, reduce_scatter, all_to_all, send_recv)");
}

namespace {

MPI_Datatype mpi_type(DType t) {
  HELIX_CHECK(t != DType::bf16, "mpi-host collectives have no bfloat16 reduction");
  return t == DType::fp32 ? MPI_FLOAT : MPI_INT32_T;
}

// MPI counts are int: every size of the sweep (<= 2 GiB of one element type) fits.
int icount(int64_t count) {
  HELIX_CHECK(count >= 0 && count <= int64_t(INT32_MAX), "element count exceeds MPI's int range");
  return int(count);
}

class MpiCollectives final : public CollectiveBackend, public HostMemory {
 public:
  explicit MpiCollectives(MPI_Comm comm) {
    HELIX_MPI_CHECK(MPI_Comm_dup(comm, &comm_));
    HELIX_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    HELIX_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    HELIX_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
  ~MpiCollectives() override { MPI_Comm_free(&comm_); }
  MpiCollectives(const MpiCollectives&) = delete;
  MpiCollectives& operator=(const MpiCollectives&) = delete;

  std::string name() const override { return "mpi-host"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool link_representative() const override { return false; }
  bool supports(DType t) const override { return t != DType::bf16; }

  void barrier() override { HELIX_MPI_CHECK(MPI_Barrier(comm_)); }
  double time_us(const std::function<void()>& launch) override {
    const auto t0 = std::chrono::steady_clock::now();
    launch();
    const auto t1 = std::chrono::steady_clock::now();
    return std::chrono::duration<double, std::micro>(t1 - t0).count();
  }

  void all_reduce(const void* send, void* recv, int64_t count, DType t) override {
    const void* s = send == recv ? MPI_IN_PLACE : send;
    HELIX_MPI_CHECK(MPI_Allreduce(s, recv, icount(count), mpi_type(t), MPI_SUM, comm_));
  }

  void all_gather(const void* send, void* recv, int64_t count, DType t) override {
    const int64_t block = count * elem_bytes(t);
    const bool in_place = send == static_cast<const char*>(recv) + rank_ * block;
    HELIX_MPI_CHECK(MPI_Allgather(in_place ? MPI_IN_PLACE : send, icount(count), mpi_type(t), recv,
                                  icount(count), mpi_type(t), comm_));
  }

  // MPI's in-place reduce-scatter leaves the result at the start of the buffer; the NCCL
  // convention (and this interface) puts it at block rank(): moved there afterwards.
  void reduce_scatter(const void* send, void* recv, int64_t count, DType t) override {
    const int64_t block = count * elem_bytes(t);
    char* base = static_cast<char*>(const_cast<void*>(send));
    if (recv == base + rank_ * block) {
      HELIX_MPI_CHECK(
          MPI_Reduce_scatter_block(MPI_IN_PLACE, base, icount(count), mpi_type(t), MPI_SUM, comm_));
      if (rank_ != 0) std::memmove(recv, base, size_t(block));
      return;
    }
    HELIX_MPI_CHECK(
        MPI_Reduce_scatter_block(send, recv, icount(count), mpi_type(t), MPI_SUM, comm_));
  }

  // In place (send == recv, as nccl-tests runs every collective): MPI_IN_PLACE, and
  // MPI_Sendrecv_replace for send/recv (MPI forbids aliased send and receive buffers).
  void all_to_all(const void* send, void* recv, int64_t count, DType t) override {
    const void* s = send == recv ? MPI_IN_PLACE : send;
    HELIX_MPI_CHECK(
        MPI_Alltoall(s, icount(count), mpi_type(t), recv, icount(count), mpi_type(t), comm_));
  }

  void send_recv(const void* send, void* recv, int64_t count, DType t, int send_to,
                 int recv_from) override {
    if (send == recv) {
      HELIX_MPI_CHECK(MPI_Sendrecv_replace(recv, icount(count), mpi_type(t), send_to, 7, recv_from,
                                           7, comm_, MPI_STATUS_IGNORE));
      return;
    }
    HELIX_MPI_CHECK(MPI_Sendrecv(send, icount(count), mpi_type(t), send_to, 7, recv, icount(count),
                                 mpi_type(t), recv_from, 7, comm_, MPI_STATUS_IGNORE));
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<CollectiveBackend> make_mpi_collective_backend(MPI_Comm comm) {
  return std::make_unique<MpiCollectives>(comm);
}

std::unique_ptr<CollectiveBackend> make_collective_backend(const std::string& backend,
                                                           MPI_Comm comm) {
  if (backend == "cuda") {
#if defined(HELIX_MICRO_CUDA)
    return make_nccl_collective_backend(comm);
#else
    throw UsageError("--backend cuda: built without CUDA (configure with nvcc found)");
#endif
  }
  return make_mpi_collective_backend(comm);
}

}  // namespace helix::micro
