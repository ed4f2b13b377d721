// The collectives of the suite, one vocabulary for the schedules, the executors' communicators,
// the cost model, the hardware profiles and helix-micro.
//
// Sizes follow nccl-tests: a collective of size S (bytes) over n ranks moves S x busbw_factor
// bytes per rank over the bus, so busbw = S / time x factor.
//   collective      S                                   busbw factor
//   all_reduce      the buffer                          2 (n - 1) / n
//   all_gather      the gathered output                 (n - 1) / n
//   reduce_scatter  the full input                      (n - 1) / n
//   all_to_all      one rank's whole send buffer        (n - 1) / n
//   send_recv       the bytes sent                      1
//   gather          the gathered output (at the root)   (n - 1) / n   (priced as all_gather)
//   broadcast       the buffer                          1             (priced as send_recv)
#pragma once

#include <optional>
#include <string>

namespace helix {

enum class Collective {
  all_reduce,
  all_gather,
  reduce_scatter,
  all_to_all,
  send_recv,
  gather,
  broadcast
};

// "all_reduce", "all_gather", ...
const char* to_string(Collective c);
// A name as to_string prints it ('-' accepted for '_').
std::optional<Collective> parse_collective(const std::string& name);
// Bytes each rank moves over the bus per byte of S, in a group of n ranks.
double busbw_factor(Collective c, int n);
// The collective whose measured latency and bandwidth price `c` (gather: all_gather; broadcast:
// send_recv, pipelined so that each rank receives the buffer once; others: themselves).
Collective priced_as(Collective c);
// The five collectives helix-micro and `calibrate` measure, in this order.
constexpr Collective kMeasuredCollectives[] = {Collective::all_reduce, Collective::all_gather,
                                               Collective::reduce_scatter, Collective::all_to_all,
                                               Collective::send_recv};

}  // namespace helix
