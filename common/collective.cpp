#include "common/collective.hpp"

namespace helix {

const char* to_string(Collective c) {
  switch (c) {
    case Collective::all_reduce:
      return "all_reduce";
    case Collective::all_gather:
      return "all_gather";
    case Collective::reduce_scatter:
      return "reduce_scatter";
    case Collective::all_to_all:
      return "all_to_all";
    case Collective::send_recv:
      return "send_recv";
    case Collective::gather:
      return "gather";
    case Collective::broadcast:
      return "broadcast";
  }
  return "?";
}

std::optional<Collective> parse_collective(const std::string& name) {
  std::string s = name;
  for (char& ch : s)
    if (ch == '-') ch = '_';
  for (Collective c :
       {Collective::all_reduce, Collective::all_gather, Collective::reduce_scatter,
        Collective::all_to_all, Collective::send_recv, Collective::gather, Collective::broadcast})
    if (s == to_string(c)) return c;
  return std::nullopt;
}

double busbw_factor(Collective c, int n) {
  const double nn = n;
  switch (c) {
    case Collective::all_reduce:
      return 2.0 * (nn - 1) / nn;
    case Collective::all_gather:
    case Collective::reduce_scatter:
    case Collective::all_to_all:
    case Collective::gather:
      return (nn - 1) / nn;
    case Collective::send_recv:
    case Collective::broadcast:
      return 1.0;
  }
  return 1.0;
}

Collective priced_as(Collective c) {
  switch (c) {
    case Collective::gather:
      return Collective::all_gather;
    case Collective::broadcast:
      return Collective::send_recv;
    default:
      return c;
  }
}

}  // namespace helix
