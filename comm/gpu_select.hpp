// One GPU per rank: the rank's index among the ranks of its node (MPI_Comm_split_type SHARED)
// modulo the devices it sees. Every CUDA backend selects its device here, and learns here whether
// ranks share a physical GPU (by PCI bus id, gpu_sharing.hpp), which rules out NCCL.
#pragma once

#include <mpi.h>

#include <string>

namespace helix {

struct GpuSelection {
  int device = 0;        // the device made current (local_rank % devices)
  int local_rank = 0;    // this rank's index among the ranks of its node
  int local_size = 1;    // ranks on this node
  int devices = 0;       // devices this rank sees
  std::string bus_id;    // PCI bus id of `device`, normalised (normalize_bus_id)
  int ranks_on_gpu = 1;  // ranks of this node whose device has this bus id, this one included
  // Two ranks of one node, on any node of `comm`, have the same bus id: NCCL cannot be used. The
  // same on every rank. A per-rank CUDA_VISIBLE_DEVICES (one device each, all different GPUs)
  // is not sharing; more ranks than GPUs on a node, or two ranks given the same GPU, is.
  bool shared = false;
};

// Collective over `comm`. Throws UsageError ("--backend cuda: no usable GPU (...)") when no device
// is visible; otherwise makes the selected device current.
GpuSelection select_gpu_by_local_rank(MPI_Comm comm);

// What a rank's device line says about sharing: "" when no ranks share a GPU, otherwise how many
// other ranks share this one (or that others do) and that communication goes through MPI host
// staging.
std::string gpu_sharing_note(const GpuSelection& g);

// "cuda:D NAME bus BUS": the device line of a rank (every CUDA backend prints and records it).
std::string describe_gpu(const GpuSelection& g);

// "runtime X.Y, driver X.Y": the CUDA versions a trace records.
std::string cuda_versions();

}  // namespace helix
