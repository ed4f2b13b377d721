// Collective micro-benchmarks in the nccl-tests conventions (sizes S and bus-bandwidth factors of
// common/collective.hpp): an exact verification pattern with a count of wrong elements, and the
// timed measurement shared by helix-micro and `helix-bench calibrate`.
// algbw = S / t and busbw = algbw * busbw_factor, in decimal GB/s.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/micro/collective_backend.hpp"

namespace helix::micro {

// Decimal GB/s of `size_bytes` moved in `time_us`.
double algbw_gbps(double size_bytes, double time_us);
double busbw_gbps(Collective c, int n, double size_bytes, double time_us);

// Elements passed as `count` to the backend call for a size S, as nccl-tests derives them: S /
// element size for all_reduce and send_recv; for the others one rank's block, S / n elements
// rounded down to a multiple of 16 bytes (0 when S is below one such block per rank).
int64_t op_count_for_size(Collective c, int n, int64_t size_bytes, DType t);
// S of a call with that `count` (the size actually measured).
int64_t size_for_op_count(Collective c, int n, int64_t op_count, DType t);
// Elements of the send and receive buffers (out of place) of a call.
int64_t send_elems(Collective c, int n, int64_t op_count);
int64_t recv_elems(Collective c, int n, int64_t op_count);
// Whether the in-place result is checked. Every collective runs in place too (as nccl-tests
// does: all_to_all and send_recv on one buffer for send and receive), but only all_reduce,
// all_gather and reduce_scatter have a defined in-place result; the others print N/A in #wrong.
bool in_place_checked(Collective c);
// nccl-tests' `redop` column: "sum" for the reductions and send_recv, "none" for the others.
const char* redop_name(Collective c);

// Sizes min, min*factor, ... <= max (bytes).
std::vector<int64_t> size_sweep(int64_t min_bytes, int64_t max_bytes, int64_t factor);

// Verification pattern: small integers in [-8, 8] (exact in fp32, bf16 and int32, and so are
// their sums over up to 32 ranks), a pure function of (rank, element).
double pattern_value(int rank, int64_t index);
void encode(DType t, double v, void* host, int64_t index);
double decode(DType t, const void* host, int64_t index);

// This rank's send data (send_elems values) for a call.
void fill_send_pattern(Collective c, DType t, int rank, int n, int64_t op_count, void* host_send);
// Elements of this rank's result (recv_elems values) that differ from the exact expected value.
int64_t count_wrong(Collective c, DType t, int rank, int n, int64_t op_count,
                    const void* host_recv);

// One collective call with its buffers allocated on the backend (in place or not); n-th rank
// sends to rank + 1 and receives from rank - 1 for send_recv.
class PreparedCollective {
 public:
  PreparedCollective(CollectiveBackend& cb, Collective c, DType t, int64_t op_count, bool in_place);
  // Fresh pattern in, one call, result downloaded and compared: wrong elements on this rank.
  int64_t check();
  void launch();
  double time_once_us();

 private:
  const void* send_ptr() const;
  void* recv_ptr();
  CollectiveBackend& cb_;
  Collective c_;
  DType t_;
  int64_t count_;
  bool in_place_;
  std::unique_ptr<Buffer> a_, b_;
};

// pc.check() summed over the ranks of `comm`; -1 when the result is not checked.
int64_t checked_wrong(PreparedCollective& pc, MPI_Comm comm);

// One timed iteration: barrier, this rank's time, maximum over the ranks of `comm`.
double timed_iteration_us(const std::function<double()>& time_once, MPI_Comm comm);

struct CollResult {
  Collective coll = Collective::all_reduce;
  DType dtype = DType::fp32;
  int group_size = 1;
  bool in_place = false;
  int64_t size_bytes = 0;       // S: the larger of the send and receive buffers
  int64_t count = 0;            // elements passed to the call (nccl-tests' count)
  int64_t wrong = 0;            // summed over ranks; -1: not checked (in_place_checked)
  std::vector<double> time_us;  // per iteration, max over ranks
  double time_us_median = 0, algbw_gbps = 0, busbw_gbps = 0;
};

// Fills the derived fields (median, algbw, busbw) from time_us.
void finish(CollResult& r);

// Check, warm-up and `iters` timed iterations of one collective at size S. Collective over the
// backend's ranks (`comm` holds the same ranks).
CollResult measure_collective(CollectiveBackend& cb, MPI_Comm comm, Collective c, DType t,
                              int64_t size_bytes, bool in_place, int warmup, int iters);

// The table of one collective exactly as nccl-tests prints it (the same printf formats, written
// here from reading its source, util.cu): a title line of helix-micro's own, the three header
// lines, one row per size with the out-of-place and in-place results (an in-place result not run,
// e.g. filtered out, leaves its columns blank as nccl-tests does), and the footer with
// "Out of bounds values" (checks that found wrong elements) and "Avg bus bandwidth" (the mean
// busbw over every printed result).
void print_collective_table(std::FILE* f, Collective c, int n, const std::string& backend,
                            const std::vector<CollResult>& results);
// nccl-tests' number format: the value in `width` characters, with 2, 1 or 0 decimals or in
// exponent form, whichever fits first.
std::string nccl_tests_number(double value, int width);

}  // namespace helix::micro
