#include "comm/gpu_select.hpp"

#include <cuda_runtime.h>

#include <set>
#include <string>
#include <vector>

#include "comm/cuda_check.hpp"
#include "comm/error.hpp"

namespace helix {

GpuSelection select_gpu_by_local_rank(MPI_Comm comm) {
  GpuSelection s;
  const cudaError_t rc = cudaGetDeviceCount(&s.devices);
  if (rc != cudaSuccess || s.devices == 0)
    throw UsageError(std::string("--backend cuda: no usable GPU (") +
                     (rc != cudaSuccess ? cudaGetErrorString(rc) : "none visible") + ")");
  MPI_Comm node = MPI_COMM_NULL;
  HELIX_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  HELIX_MPI_CHECK(MPI_Comm_rank(node, &s.local_rank));
  HELIX_MPI_CHECK(MPI_Comm_size(node, &s.local_size));
  HELIX_MPI_CHECK(MPI_Comm_free(&node));
  s.device = s.local_rank % s.devices;
  s.shared = s.local_size > s.devices;
  HELIX_CUDA_CHECK(cudaSetDevice(s.device));
  return s;
}

bool node_ranks_share_gpu(MPI_Comm comm, int device) {
  char bus[32] = {0};
  HELIX_CUDA_CHECK(cudaDeviceGetPCIBusId(bus, sizeof bus, device));
  MPI_Comm node = MPI_COMM_NULL;
  HELIX_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int local_size = 1;
  HELIX_MPI_CHECK(MPI_Comm_size(node, &local_size));
  std::vector<char> all(size_t(local_size) * sizeof bus);
  HELIX_MPI_CHECK(
      MPI_Allgather(bus, int(sizeof bus), MPI_CHAR, all.data(), int(sizeof bus), MPI_CHAR, node));
  HELIX_MPI_CHECK(MPI_Comm_free(&node));
  std::set<std::string> ids;
  for (int i = 0; i < local_size; ++i) ids.insert(std::string(all.data() + size_t(i) * sizeof bus));
  int shared = int(ids.size()) < local_size ? 1 : 0;
  HELIX_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &shared, 1, MPI_INT, MPI_MAX, comm));
  return shared != 0;
}

}  // namespace helix
