#include "bench/micro/kernel_runner.hpp"

#include <algorithm>

#include "bench/commands/cli_util.hpp"
#include "bench/micro/collectives.hpp"

namespace helix::micro {

PreparedKernel::PreparedKernel(MicroBackend& backend, const KernelCase& c, int64_t rotate_bytes,
                               uint64_t seed)
    : backend_(backend), case_(c) {
  const std::vector<Operand> ops = c.operands(backend);
  int64_t set_bytes = 0;
  for (const Operand& o : ops) set_bytes += o.bytes;
  // Enough sets that one cycle touches rotate_bytes (a launch touches the case's bytes, which can
  // be much less than its operands, e.g. a KV append), at most 64 sets and 8 x rotate_bytes.
  const int64_t touched = std::max<int64_t>(1, int64_t(c.bytes(backend.storage_bytes())));
  int64_t n = 1;
  if (rotate_bytes > 0 && set_bytes > 0) {
    n = std::clamp<int64_t>((rotate_bytes + touched - 1) / touched, 1, 64);
    n = std::max<int64_t>(1, std::min(n, 8 * rotate_bytes / set_bytes));
  }
  for (int64_t s = 0; s < n; ++s) {
    std::vector<std::unique_ptr<Buffer>> bufs;
    std::vector<void*> ptrs;
    for (size_t i = 0; i < ops.size(); ++i) {
      bufs.push_back(backend.allocate(ops[i].bytes));
      backend.fill_random(*bufs.back(), ops[i].elem, seed + uint64_t(s) * 1000 + i);
      ptrs.push_back(bufs.back()->data());
    }
    sets_.push_back(std::move(bufs));
    ptrs_.push_back(std::move(ptrs));
  }
  c.launch(backend, ptrs_[0]);
  backend.synchronize();
}

void PreparedKernel::launch() {
  case_.launch(backend_, ptrs_[next_]);
  next_ = (next_ + 1) % ptrs_.size();
}

double PreparedKernel::time_once_us() {
  return backend_.time_us([this] { launch(); });
}

void finish(KernelResult& r, double ceiling_gbps) {
  if (r.time_us.empty()) return;
  r.time_us_median = median(r.time_us);
  r.time_us_min = *std::min_element(r.time_us.begin(), r.time_us.end());
  r.time_us_max = *std::max_element(r.time_us.begin(), r.time_us.end());
  const double s = r.time_us_median * 1e-6;
  r.gbps = s > 0 ? r.bytes / s / 1e9 : 0;
  r.tflops = s > 0 ? r.flops / s / 1e12 : 0;
  r.fraction_of_ceiling = ceiling_gbps > 0 ? r.gbps / ceiling_gbps : 0;
}

KernelResult kernel_result(const KernelCase& c, const MicroBackend& backend) {
  KernelResult r;
  r.name = c.name;
  r.kernel = c.kernel();
  r.shape = c.shape;
  r.bytes = c.bytes(backend.storage_bytes());
  r.flops = c.flops();
  return r;
}

KernelResult measure_kernel(MicroBackend& backend, MPI_Comm comm, const KernelCase& c, int warmup,
                            int iters, double ceiling_gbps, uint64_t seed) {
  KernelResult r = kernel_result(c, backend);
  PreparedKernel k(backend, c, rotate_bytes_for(c, backend), seed);
  for (int i = 0; i < warmup; ++i) k.launch();
  backend.synchronize();
  for (int i = 0; i < iters; ++i)
    r.time_us.push_back(timed_iteration_us([&] { return k.time_once_us(); }, comm));
  finish(r, ceiling_gbps);
  return r;
}

int64_t rotate_bytes_for(const KernelCase& c, const MicroBackend& backend) {
  return c.rotates() ? 4 * backend.cache_bytes() : 0;
}

}  // namespace helix::micro
