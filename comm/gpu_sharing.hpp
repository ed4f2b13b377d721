// Whether ranks of one node drive the same physical GPU, decided from the PCI bus ids of the
// devices they selected (no MPI, no CUDA: gpu_select.cpp gathers the ids). Device indices cannot
// decide it: with a per-rank CUDA_VISIBLE_DEVICES every rank sees one device, numbered 0, and each
// is a different GPU; without it, ranks beyond the device count wrap onto GPUs already in use.
// The bus id is also what NCCL compares when it refuses two ranks on one GPU.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace helix {

// A bus id in one canonical form, so that ids compare equal whatever their formatting: leading and
// trailing white space (and NUL padding) removed, hex digits in upper case ("0000:3b:00.0 " ->
// "0000:3B:00.0").
std::string normalize_bus_id(std::string_view id);

struct GpuSharing {
  bool any = false;  // two or more of the ranks have the same bus id
  int on_mine = 1;   // ranks whose bus id equals rank `mine`'s (`mine` included)
};

// `ids`: the bus id of every rank of one node, in any formatting; `mine`: this rank's index in
// `ids`. Throws std::invalid_argument when `mine` is out of range.
GpuSharing gpu_sharing(const std::vector<std::string>& ids, int mine);

}  // namespace helix
