// The communicators a layout's schedules use, made once per run from the world communicator.
#pragma once

#include "comm/mpi_comm.hpp"
#include "layouts/schedule.hpp"

namespace helix {

struct CommGroups {
  const MpiComm* world = nullptr;
  MpiComm kvp, tpa, ffn, tpf, ep;

  const MpiComm& get(Group g) const;
};

// Collective over `world`: every rank builds the groups of its own position in `layout`.
CommGroups make_comm_groups(const MpiComm& world, const LayoutParams& layout);

}  // namespace helix
