#include "comm/error.hpp"

#include <cstdio>
#include <cstdlib>

namespace helix {

namespace {
void (*g_abort_cleanup)() = nullptr;
}  // namespace

void set_abort_cleanup(void (*cleanup)()) {
  g_abort_cleanup = cleanup;
}
void run_abort_cleanup() {
  if (g_abort_cleanup) g_abort_cleanup();
}

int world_rank_or_minus1() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (!init || fin) return -1;
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

std::string call_site(const char* call, const char* file, int line) {
  std::string f = file;
  const auto slash = f.find_last_of('/');
  if (slash != std::string::npos) f = f.substr(slash + 1);
  return std::string(call) + " failed at " + f + ":" + std::to_string(line);
}

void fatal(const std::string& message) {
  const int r = world_rank_or_minus1();
  std::fprintf(stderr, "helix-bench: rank %d: %s\n", r, message.c_str());
  std::fflush(stderr);
  run_abort_cleanup();
  if (r >= 0) MPI_Abort(MPI_COMM_WORLD, 1);
  std::exit(1);
}

}  // namespace helix
