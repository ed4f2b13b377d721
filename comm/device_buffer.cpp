#include "comm/device_buffer.hpp"

#include <algorithm>
#include <cstdio>

#include "comm/error.hpp"

namespace helix::detail {

namespace {
std::string gib(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f GiB", bytes / double(int64_t(1) << 30));
  return b;
}
}  // namespace

void* device_alloc(int64_t bytes, const char* what, const char* hint) {
  void* p = nullptr;
  const cudaError_t rc = cudaMalloc(&p, size_t(std::max<int64_t>(bytes, 256)));
  if (rc == cudaSuccess) return p;
  (void)cudaGetLastError();  // not sticky; cleared so the message below names the cause
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  fatal(std::string("cannot allocate ") + gib(double(bytes)) + " on the GPU for " + what + " (" +
        cudaGetErrorString(rc) + "; " + gib(double(free_b)) + " free of " + gib(double(total_b)) +
        "); " + hint);
}

}  // namespace helix::detail
