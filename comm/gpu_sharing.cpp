#include "comm/gpu_sharing.hpp"

#include <algorithm>
#include <cctype>
#include <set>
#include <stdexcept>

namespace helix {

std::string normalize_bus_id(std::string_view id) {
  auto blank = [](char c) { return c == '\0' || std::isspace(static_cast<unsigned char>(c)); };
  while (!id.empty() && blank(id.front())) id.remove_prefix(1);
  while (!id.empty() && blank(id.back())) id.remove_suffix(1);
  std::string s(id);
  std::transform(s.begin(), s.end(), s.begin(),
                 [](char c) { return char(std::toupper(static_cast<unsigned char>(c))); });
  return s;
}

GpuSharing gpu_sharing(const std::vector<std::string>& ids, int mine) {
  if (mine < 0 || size_t(mine) >= ids.size())
    throw std::invalid_argument("gpu_sharing: rank index " + std::to_string(mine) +
                                " outside [0, " + std::to_string(ids.size()) + ")");
  std::vector<std::string> norm(ids.size());
  std::transform(ids.begin(), ids.end(), norm.begin(), normalize_bus_id);
  GpuSharing s;
  s.on_mine = int(std::count(norm.begin(), norm.end(), norm[size_t(mine)]));
  s.any = std::set<std::string>(norm.begin(), norm.end()).size() < norm.size();
  return s;
}

}  // namespace helix
