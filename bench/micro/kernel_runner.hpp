// Timed kernel launches shared by helix-micro and `helix-bench calibrate`: operands allocated and
// filled with random data once, rotated when one set would sit in the last-level cache, each
// iteration timed on every rank and reduced to the maximum over ranks.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/micro/kernel_case.hpp"
#include "bench/micro/micro_backend.hpp"

namespace helix::micro {

class PreparedKernel {
 public:
  // Allocates enough operand sets that one cycle of launches touches rotate_bytes (at most 64
  // sets, and at most 8 x rotate_bytes of operands), each filled with fresh random values.
  // rotate_bytes 0: one set. Then one untimed launch: one-time setup of a shape (split
  // workspaces, GEMM plans, kernel attributes) never falls into a timed launch, even without
  // warm-up.
  PreparedKernel(MicroBackend& backend, const KernelCase& c, int64_t rotate_bytes, uint64_t seed);
  // Launches on the next operand set.
  void launch();
  // One launch timed by the backend (us).
  double time_once_us();
  int sets() const { return int(sets_.size()); }

 private:
  MicroBackend& backend_;
  const KernelCase& case_;
  std::vector<std::vector<std::unique_ptr<Buffer>>> sets_;
  std::vector<std::vector<void*>> ptrs_;
  size_t next_ = 0;
};

struct KernelResult {
  std::string name, kernel, shape;
  double bytes = 0, flops = 0;
  std::vector<double> time_us;  // per iteration, max over ranks
  double time_us_median = 0, time_us_min = 0, time_us_max = 0;
  double gbps = 0, tflops = 0, fraction_of_ceiling = 0;
  int verified = -1;  // 1 checked against the CPU reference and within tolerance, 0 failed, -1 not
                      // checked
};

// A result with the case's name, kernel, shape, bytes and FLOPs and no times yet.
KernelResult kernel_result(const KernelCase& c, const MicroBackend& backend);
// Fills the derived fields from time_us (bandwidth and rates at the median time).
void finish(KernelResult& r, double ceiling_gbps);

// Warm-up and `iters` timed iterations of one case on every rank of `comm`.
KernelResult measure_kernel(MicroBackend& backend, MPI_Comm comm, const KernelCase& c, int warmup,
                            int iters, double ceiling_gbps, uint64_t seed);

// Operand rotation size for a case on a backend: four last-level caches (0: the case does not
// rotate).
int64_t rotate_bytes_for(const KernelCase& c, const MicroBackend& backend);

}  // namespace helix::micro
