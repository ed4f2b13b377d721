#include "exec/comm_groups.hpp"

namespace helix {

CommGroups make_comm_groups(const MpiComm& world, const LayoutParams& layout) {
  return make_group_comms<MpiComm>(
      layout, world.rank(), [&](const std::vector<int>& members) -> std::unique_ptr<MpiComm> {
        MpiComm c = world.subgroup(members);
        if (!c.valid()) return nullptr;
        return std::make_unique<MpiComm>(std::move(c));
      });
}

}  // namespace helix
