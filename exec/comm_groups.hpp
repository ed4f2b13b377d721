// The communicators of one rank's groups in a layout (world, KVP, TPA, FFN, TPF, EP), looked up by
// the Group a schedule step names. One template for every backend: MPI communicators on the CPU,
// device communicators (NCCL, host-staged MPI, emulated) on the GPU.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "comm/error.hpp"
#include "comm/mpi_comm.hpp"
#include "layouts/rank_shard.hpp"

namespace helix {

template <class Comm>
class GroupComms {
 public:
  // The communicator of group `g`; fatal when this rank is not a member.
  Comm& get(Group g) const {
    const std::unique_ptr<Comm>& c = comms_[size_t(g)];
    HELIX_CHECK(c != nullptr, std::string("no communicator for group ") + group_name(g));
    return *c;
  }
  // Null when this rank is not a member.
  Comm* find(Group g) const { return comms_[size_t(g)].get(); }
  void set(Group g, std::unique_ptr<Comm> c) { comms_[size_t(g)] = std::move(c); }

 private:
  std::array<std::unique_ptr<Comm>, kNumGroups> comms_;
};

// Every group of `rank` in `layout`, each made by make(members): the world ranks of the group in
// group order (empty when the rank is not a member; make returns null then). Collective when make
// is (every rank calls it for the groups in the same order).
template <class Comm, class Make>
GroupComms<Comm> make_group_comms(const LayoutParams& layout, int rank, Make make) {
  GroupComms<Comm> g;
  for (Group grp : {Group::world, Group::kvp, Group::tpa, Group::ffn, Group::tpf, Group::ep})
    g.set(grp, make(group_members(layout, grp, rank)));
  return g;
}

// The MPI communicators of the CPU executor, split from `world`. Collective over `world`.
using CommGroups = GroupComms<MpiComm>;
CommGroups make_comm_groups(const MpiComm& world, const LayoutParams& layout);

}  // namespace helix
