#include "comm/gpu_select.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <vector>

#include "comm/cuda_check.hpp"
#include "comm/error.hpp"
#include "comm/gpu_sharing.hpp"

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
  s.device = s.local_rank % s.devices;
  HELIX_CUDA_CHECK(cudaSetDevice(s.device));

  // The bus id of every rank of the node ("dddd:bb:dd.f", fixed-size NUL-padded slots).
  constexpr int kSlot = 32;
  char bus[kSlot] = {0};
  HELIX_CUDA_CHECK(cudaDeviceGetPCIBusId(bus, kSlot - 1, s.device));
  std::vector<char> all(size_t(s.local_size) * kSlot);
  HELIX_MPI_CHECK(MPI_Allgather(bus, kSlot, MPI_CHAR, all.data(), kSlot, MPI_CHAR, node));
  HELIX_MPI_CHECK(MPI_Comm_free(&node));
  std::vector<std::string> ids(size_t(s.local_size));
  for (size_t i = 0; i < ids.size(); ++i) {
    const char* slot = all.data() + i * kSlot;
    ids[i].assign(slot, std::find(slot, slot + kSlot, '\0'));
  }
  const GpuSharing sharing = gpu_sharing(ids, s.local_rank);
  s.bus_id = normalize_bus_id(ids[size_t(s.local_rank)]);
  s.ranks_on_gpu = sharing.on_mine;
  int any = sharing.any ? 1 : 0;
  HELIX_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, comm));
  s.shared = any != 0;
  return s;
}

std::string gpu_sharing_note(const GpuSelection& g) {
  if (!g.shared) return "";
  if (g.ranks_on_gpu > 1)
    return " (shared with " + std::to_string(g.ranks_on_gpu - 1) + " other rank" +
           (g.ranks_on_gpu > 2 ? "s" : "") +
           ": MPI host staging, timings not representative of links)";
  return " (own GPU, but other ranks share one: MPI host staging, timings not representative of "
         "links)";
}

std::string describe_gpu(const GpuSelection& g) {
  cudaDeviceProp prop{};
  HELIX_CUDA_CHECK(cudaGetDeviceProperties(&prop, g.device));
  return "cuda:" + std::to_string(g.device) + " " + prop.name + " bus " + g.bus_id;
}

std::string cuda_versions() {
  int rt = 0, drv = 0;
  cudaRuntimeGetVersion(&rt);
  cudaDriverGetVersion(&drv);
  auto v = [](int x) { return std::to_string(x / 1000) + "." + std::to_string((x % 1000) / 10); };
  return "runtime " + v(rt) + ", driver " + v(drv);
}

}  // namespace helix
