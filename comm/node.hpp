// Facts about this node that the memory planners need.
#pragma once

#include <cstdint>

#include "comm/mpi_comm.hpp"

namespace helix {

// Available host memory in bytes (MemAvailable), shared by the ranks of one node.
int64_t host_available_bytes();
// Ranks on this node (collective over `world`).
int local_rank_count(const MpiComm& world);

}  // namespace helix
