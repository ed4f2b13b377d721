#include "exec/comm_groups.hpp"

#include "comm/error.hpp"

namespace helix {

const MpiComm& CommGroups::get(Group g) const {
  switch (g) {
    case Group::world:
      return *world;
    case Group::kvp:
      return kvp;
    case Group::tpa:
      return tpa;
    case Group::ffn:
      return ffn;
    case Group::tpf:
      return tpf;
    case Group::ep:
      return ep;
    case Group::none:
      break;
  }
  fatal("no communicator for group none");
}

CommGroups make_comm_groups(const MpiComm& world, const LayoutParams& layout) {
  CommGroups g;
  g.world = &world;
  const int r = world.rank();
  g.kvp = world.subgroup(group_members(layout, Group::kvp, r));
  g.tpa = world.subgroup(group_members(layout, Group::tpa, r));
  g.ffn = world.subgroup(group_members(layout, Group::ffn, r));
  g.tpf = world.subgroup(group_members(layout, Group::tpf, r));
  g.ep = world.subgroup(group_members(layout, Group::ep, r));
  return g;
}

}  // namespace helix
