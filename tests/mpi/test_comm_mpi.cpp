// MPI communicator: every collective against its definition, on sub-groups, with uneven counts.
// Runs under mpiexec at several rank counts; only rank 0 prints.
#include <gtest/gtest.h>
#include <mpi.h>

#include <numeric>

#include "comm/mpi_comm.hpp"

namespace helix {
namespace {

float val(int rank, size_t i) {
  return float(rank * 1000 + int(i)) * 0.5f + 0.25f;
}

class Comm : public ::testing::Test {
 protected:
  MpiComm world = MpiComm::world();
};

TEST_F(Comm, AllReduceAllGatherReduceScatter) {
  const int n = world.size(), r = world.rank();
  std::vector<float> buf(37);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = val(r, i);
  world.all_reduce_sum(buf.data(), buf.size());
  for (size_t i = 0; i < buf.size(); ++i) {
    float e = 0;
    for (int k = 0; k < n; ++k) e += val(k, i);
    EXPECT_FLOAT_EQ(buf[i], e);
  }
  std::vector<float> mine(5), all(size_t(5 * n), -1.f);
  for (size_t i = 0; i < 5; ++i) mine[i] = val(r, i);
  world.all_gather(mine.data(), 5, all.data());
  for (int k = 0; k < n; ++k)
    for (size_t i = 0; i < 5; ++i) EXPECT_EQ(all[size_t(k) * 5 + i], val(k, i));
  std::vector<float> in(size_t(3 * n)), out(3, -1.f);
  for (size_t i = 0; i < in.size(); ++i) in[i] = val(r, i);
  world.reduce_scatter_sum(in.data(), out.data(), 3);
  for (size_t i = 0; i < 3; ++i) {
    float e = 0;
    for (int k = 0; k < n; ++k) e += val(k, size_t(r) * 3 + i);
    EXPECT_FLOAT_EQ(out[i], e);
  }
}

TEST_F(Comm, AllToAllVWithUnevenCountsBlockingAndNot) {
  const int n = world.size(), r = world.rank();
  // Rank r sends (r + j + 1) elements to rank j.
  const size_t nn = static_cast<size_t>(n);
  std::vector<int> sc(nn), sd(nn), rc(nn), rd(nn);
  int so = 0, ro = 0;
  for (int j = 0; j < n; ++j) {
    sc[j] = r + j + 1;
    sd[j] = so;
    so += sc[j];
    rc[j] = j + r + 1;
    rd[j] = ro;
    ro += rc[j];
  }
  std::vector<float> send(static_cast<size_t>(so)), recv(static_cast<size_t>(ro), -1.f),
      recv2(static_cast<size_t>(ro), -1.f);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < sc[j]; ++i) send[size_t(sd[j] + i)] = float(r * 100 + j * 10 + i);
  world.all_to_all_v(send.data(), sc, sd, recv.data(), rc, rd);
  MpiRequest req = world.iall_to_all_v(send.data(), sc, sd, recv2.data(), rc, rd);
  while (!req.test()) {
  }
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < rc[j]; ++i) {
      EXPECT_EQ(recv[size_t(rd[j] + i)], float(j * 100 + r * 10 + i));
      EXPECT_EQ(recv2[size_t(rd[j] + i)], float(j * 100 + r * 10 + i));
    }
}

TEST_F(Comm, SubgroupsGatherBcastSendRecv) {
  const int n = world.size(), r = world.rank();
  // Two groups: even and odd ranks.
  std::vector<int> members;
  for (int k = r % 2; k < n; k += 2) members.push_back(k);
  MpiComm g = world.subgroup(members);
  ASSERT_TRUE(g.valid());
  EXPECT_EQ(g.size(), int(members.size()));
  float x = float(r);
  std::vector<float> got(size_t(g.size()), -1.f);
  g.gather(&x, 1, got.data(), 0);
  if (g.rank() == 0) {
    for (int i = 0; i < g.size(); ++i) EXPECT_EQ(got[size_t(i)], float(members[size_t(i)]));
  }
  float b = g.rank() == 0 ? 123.f + float(r % 2) : 0.f;
  g.bcast(&b, 1, 0);
  EXPECT_EQ(b, 123.f + float(r % 2));
  MpiComm none = world.subgroup(r == 0 ? std::vector<int>{} : std::vector<int>{});
  EXPECT_FALSE(none.valid());
  if (n >= 2) {
    std::vector<float> msg(9, float(r));
    if (r == 0) {
      world.send(msg.data(), msg.size(), 1, 7);
    } else if (r == 1) {
      std::vector<float> in(9, -1.f);
      MpiRequest q = world.irecv(in.data(), in.size(), 0, 7);
      q.wait();
      for (float v : in) EXPECT_EQ(v, 0.f);
    }
  }
}

}  // namespace
}  // namespace helix

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS();
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return failed;
}
