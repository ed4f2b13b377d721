// One GPU per rank: the rank's index among the ranks of its node (MPI_Comm_split_type SHARED)
// modulo the devices it sees. Every CUDA backend selects its device here.
#pragma once

#include <mpi.h>

namespace helix {

struct GpuSelection {
  int device = 0;       // the device made current (local_rank % devices)
  int local_rank = 0;   // this rank's index among the ranks of its node
  int local_size = 1;   // ranks on this node
  int devices = 0;      // devices this rank sees
  bool shared = false;  // more ranks on the node than devices: some share a GPU
};

// Collective over `comm`. Throws UsageError ("--backend cuda: no usable GPU (...)") when no device
// is visible; otherwise makes the selected device current.
GpuSelection select_gpu_by_local_rank(MPI_Comm comm);

// Whether two ranks of one node use the same physical GPU, by the PCI bus id of `device` on each
// (per-rank CUDA_VISIBLE_DEVICES can make device 0 a different GPU on every rank). Collective over
// `comm`; every rank gets the same answer (true when it holds on any node).
bool node_ranks_share_gpu(MPI_Comm comm, int device);

}  // namespace helix
