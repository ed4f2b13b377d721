#include "comm/mpi_comm.hpp"

#include <climits>

#include "comm/error.hpp"

namespace helix {

namespace {
int to_int(size_t n) {
  HELIX_CHECK(n <= size_t(INT_MAX),
              "message of " + std::to_string(n) + " elements exceeds MPI's int count");
  return int(n);
}
}  // namespace

MpiRequest& MpiRequest::operator=(MpiRequest&& o) noexcept {
  if (this != &o) {
    if (req_ != MPI_REQUEST_NULL) MPI_Wait(&req_, MPI_STATUS_IGNORE);
    req_ = o.req_;
    o.req_ = MPI_REQUEST_NULL;
  }
  return *this;
}

MpiRequest::~MpiRequest() {
  if (req_ != MPI_REQUEST_NULL) MPI_Wait(&req_, MPI_STATUS_IGNORE);
}

void MpiRequest::wait() {
  if (req_ != MPI_REQUEST_NULL) HELIX_MPI_CHECK(MPI_Wait(&req_, MPI_STATUS_IGNORE));
}

bool MpiRequest::test() {
  if (req_ == MPI_REQUEST_NULL) return true;
  int done = 0;
  HELIX_MPI_CHECK(MPI_Test(&req_, &done, MPI_STATUS_IGNORE));
  return done != 0;
}

void wait_all(std::vector<MpiRequest>& reqs) {
  for (auto& r : reqs) r.wait();
}

bool test_all(std::vector<MpiRequest>& reqs) {
  bool all = true;
  for (auto& r : reqs) all = r.test() && all;
  return all;
}

MpiComm::MpiComm(MPI_Comm c) : comm_(c) {
  if (comm_ != MPI_COMM_NULL) {
    HELIX_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    HELIX_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    HELIX_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
}

MpiComm::MpiComm(MpiComm&& o) noexcept : comm_(o.comm_), rank_(o.rank_), size_(o.size_) {
  o.comm_ = MPI_COMM_NULL;
  o.rank_ = -1;
  o.size_ = 0;
}

MpiComm& MpiComm::operator=(MpiComm&& o) noexcept {
  if (this != &o) {
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
    comm_ = o.comm_;
    rank_ = o.rank_;
    size_ = o.size_;
    o.comm_ = MPI_COMM_NULL;
    o.rank_ = -1;
    o.size_ = 0;
  }
  return *this;
}

MpiComm::~MpiComm() {
  int fin = 0;
  MPI_Finalized(&fin);
  if (comm_ != MPI_COMM_NULL && !fin) MPI_Comm_free(&comm_);
}

MpiComm MpiComm::world() {
  MPI_Comm c;
  HELIX_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &c));
  return MpiComm(c);
}

MpiComm MpiComm::split(int color, int key) const {
  MPI_Comm c;
  HELIX_MPI_CHECK(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &c));
  return MpiComm(c);
}

MpiComm MpiComm::subgroup(const std::vector<int>& members) const {
  // Color: the smallest member (every member of one group computes the same value); key: the
  // position in the list.
  int color = -1, key = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i] == rank_) key = int(i);
    color = color < 0 || members[i] < color ? members[i] : color;
  }
  return split(color, key);
}

void MpiComm::barrier() const {
  HELIX_MPI_CHECK(MPI_Barrier(comm_));
}

void MpiComm::all_reduce_sum(float* buf, size_t count) const {
  HELIX_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, to_int(count), MPI_FLOAT, MPI_SUM, comm_));
}

void MpiComm::all_reduce_max(double* buf, size_t count) const {
  HELIX_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, to_int(count), MPI_DOUBLE, MPI_MAX, comm_));
}

void MpiComm::all_reduce_min(double* buf, size_t count) const {
  HELIX_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, to_int(count), MPI_DOUBLE, MPI_MIN, comm_));
}

void MpiComm::all_gather(const float* send, size_t count, float* recv) const {
  HELIX_MPI_CHECK(
      MPI_Allgather(send, to_int(count), MPI_FLOAT, recv, to_int(count), MPI_FLOAT, comm_));
}

void MpiComm::reduce_scatter_sum(const float* send, float* recv, size_t count) const {
  HELIX_MPI_CHECK(MPI_Reduce_scatter_block(send, recv, to_int(count), MPI_FLOAT, MPI_SUM, comm_));
}

void MpiComm::all_to_all(const float* send, float* recv, size_t count) const {
  HELIX_MPI_CHECK(
      MPI_Alltoall(send, to_int(count), MPI_FLOAT, recv, to_int(count), MPI_FLOAT, comm_));
}

void MpiComm::all_to_all_v(const float* send, const std::vector<int>& sc,
                           const std::vector<int>& sd, float* recv, const std::vector<int>& rc,
                           const std::vector<int>& rd) const {
  HELIX_MPI_CHECK(MPI_Alltoallv(send, sc.data(), sd.data(), MPI_FLOAT, recv, rc.data(), rd.data(),
                                MPI_FLOAT, comm_));
}

MpiRequest MpiComm::iall_to_all_v(const float* send, const std::vector<int>& sc,
                                  const std::vector<int>& sd, float* recv,
                                  const std::vector<int>& rc, const std::vector<int>& rd) const {
  MPI_Request r;
  HELIX_MPI_CHECK(MPI_Ialltoallv(send, sc.data(), sd.data(), MPI_FLOAT, recv, rc.data(), rd.data(),
                                 MPI_FLOAT, comm_, &r));
  return MpiRequest(r);
}

MpiRequest MpiComm::iall_reduce_sum(float* buf, size_t count) const {
  MPI_Request r;
  HELIX_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf, to_int(count), MPI_FLOAT, MPI_SUM, comm_, &r));
  return MpiRequest(r);
}

MpiRequest MpiComm::iall_gather(const float* send, size_t count, float* recv) const {
  MPI_Request r;
  HELIX_MPI_CHECK(
      MPI_Iallgather(send, to_int(count), MPI_FLOAT, recv, to_int(count), MPI_FLOAT, comm_, &r));
  return MpiRequest(r);
}

void MpiComm::gather(const float* send, size_t count, float* recv, int root) const {
  HELIX_MPI_CHECK(
      MPI_Gather(send, to_int(count), MPI_FLOAT, recv, to_int(count), MPI_FLOAT, root, comm_));
}

void MpiComm::bcast(float* buf, size_t count, int root) const {
  HELIX_MPI_CHECK(MPI_Bcast(buf, to_int(count), MPI_FLOAT, root, comm_));
}

void MpiComm::bcast_bytes(void* buf, size_t bytes, int root) const {
  HELIX_MPI_CHECK(MPI_Bcast(buf, to_int(bytes), MPI_BYTE, root, comm_));
}

void MpiComm::send(const float* buf, size_t count, int dest, int tag) const {
  HELIX_MPI_CHECK(MPI_Send(buf, to_int(count), MPI_FLOAT, dest, tag, comm_));
}

void MpiComm::recv(float* buf, size_t count, int source, int tag) const {
  HELIX_MPI_CHECK(MPI_Recv(buf, to_int(count), MPI_FLOAT, source, tag, comm_, MPI_STATUS_IGNORE));
}

MpiRequest MpiComm::isend(const float* buf, size_t count, int dest, int tag) const {
  MPI_Request r;
  HELIX_MPI_CHECK(MPI_Isend(buf, to_int(count), MPI_FLOAT, dest, tag, comm_, &r));
  return MpiRequest(r);
}

MpiRequest MpiComm::irecv(float* buf, size_t count, int source, int tag) const {
  MPI_Request r;
  HELIX_MPI_CHECK(MPI_Irecv(buf, to_int(count), MPI_FLOAT, source, tag, comm_, &r));
  return MpiRequest(r);
}

std::vector<int> mpi_counts(const std::vector<int64_t>& v) {
  std::vector<int> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    HELIX_CHECK(v[i] <= INT32_MAX, "MPI exchange larger than 2^31 elements");
    out[i] = int(v[i]);
  }
  return out;
}

}  // namespace helix
