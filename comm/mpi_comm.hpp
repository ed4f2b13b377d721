// Communicator over MPI on host memory: the world, sub-groups made by split (KVP, TPA, TP, EP...),
// and the collectives the schedules use, blocking and non-blocking. Element type: fp32.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace helix {

// A pending non-blocking operation. Movable, not copyable; waits on destruction if still pending.
class MpiRequest {
 public:
  MpiRequest() = default;
  explicit MpiRequest(MPI_Request r) : req_(r) {}
  MpiRequest(MpiRequest&& o) noexcept : req_(o.req_) { o.req_ = MPI_REQUEST_NULL; }
  MpiRequest& operator=(MpiRequest&& o) noexcept;
  MpiRequest(const MpiRequest&) = delete;
  MpiRequest& operator=(const MpiRequest&) = delete;
  ~MpiRequest();

  // Blocks until complete.
  void wait();
  // Drives progress; true when complete.
  bool test();
  bool pending() const { return req_ != MPI_REQUEST_NULL; }

 private:
  MPI_Request req_ = MPI_REQUEST_NULL;
};

class MpiComm {
 public:
  MpiComm() = default;  // not a member of any group
  MpiComm(MpiComm&& o) noexcept;
  MpiComm& operator=(MpiComm&& o) noexcept;
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;
  ~MpiComm();

  // A duplicate of MPI_COMM_WORLD, with errors returned to the checking macro.
  static MpiComm world();
  // Sub-group of the ranks passing the same color, ordered by key; color < 0: not a member.
  // Collective over this communicator.
  MpiComm split(int color, int key) const;
  // Sub-group made of the given ranks of this communicator (in that order). Every rank calls it
  // with the list of its own group; ranks with an empty list get a non-member communicator.
  MpiComm subgroup(const std::vector<int>& members) const;

  bool valid() const { return comm_ != MPI_COMM_NULL; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm raw() const { return comm_; }

  void barrier() const;
  void all_reduce_sum(float* buf, size_t count) const;
  void all_reduce_max(double* buf, size_t count) const;
  void all_reduce_min(double* buf, size_t count) const;
  // recv: size() * count
  void all_gather(const float* send, size_t count, float* recv) const;
  // send: size() * count, recv: count (sum over ranks of block rank())
  void reduce_scatter_sum(const float* send, float* recv, size_t count) const;
  // send and recv: size() * count
  void all_to_all(const float* send, float* recv, size_t count) const;
  // Counts and displacements in elements, one per rank.
  void all_to_all_v(const float* send, const std::vector<int>& send_counts,
                    const std::vector<int>& send_displs, float* recv,
                    const std::vector<int>& recv_counts, const std::vector<int>& recv_displs) const;
  MpiRequest iall_to_all_v(const float* send, const std::vector<int>& send_counts,
                           const std::vector<int>& send_displs, float* recv,
                           const std::vector<int>& recv_counts,
                           const std::vector<int>& recv_displs) const;
  MpiRequest iall_reduce_sum(float* buf, size_t count) const;
  MpiRequest iall_gather(const float* send, size_t count, float* recv) const;
  // recv (root only): size() * count
  void gather(const float* send, size_t count, float* recv, int root) const;
  void bcast(float* buf, size_t count, int root) const;
  void bcast_bytes(void* buf, size_t bytes, int root) const;
  void send(const float* buf, size_t count, int dest, int tag) const;
  void recv(float* buf, size_t count, int source, int tag) const;
  MpiRequest isend(const float* buf, size_t count, int dest, int tag) const;
  MpiRequest irecv(float* buf, size_t count, int source, int tag) const;

 private:
  explicit MpiComm(MPI_Comm c);
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = -1;
  int size_ = 0;
};

// Element counts or displacements as MPI's int; fatal when one exceeds 2^31 - 1.
std::vector<int> mpi_counts(const std::vector<int64_t>& v);

// Waits for every request in the list.
void wait_all(std::vector<MpiRequest>& reqs);
// Drives progress on every pending request (non-blocking); true when all are complete.
bool test_all(std::vector<MpiRequest>& reqs);

}  // namespace helix
