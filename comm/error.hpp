// Error handling shared by every module: one checking macro per API, each naming the call, the
// file, the line and the rank. A failure on any rank aborts the whole job (nothing hangs).
#pragma once

#include <mpi.h>

#include <string>

#include "common/usage_error.hpp"

namespace helix {

// World rank of this process (-1 before MPI_Init).
int world_rank_or_minus1();

// Prints "helix-bench: rank R: message" to stderr and aborts every rank (MPI_Abort, exit code 1).
[[noreturn]] void fatal(const std::string& message);

// A function fatal() runs before aborting (e.g. removing a half-written output file). One slot;
// nullptr clears it. Must be async-signal-safe: it may also run from a signal handler.
void set_abort_cleanup(void (*cleanup)());
void run_abort_cleanup();

// Where a failed call is reported from.
std::string call_site(const char* call, const char* file, int line);

}  // namespace helix

#define HELIX_MPI_CHECK(call)                                               \
  do {                                                                      \
    const int helix_mpi_rc_ = (call);                                       \
    if (helix_mpi_rc_ != MPI_SUCCESS) {                                     \
      char helix_mpi_msg_[MPI_MAX_ERROR_STRING];                            \
      int helix_mpi_len_ = 0;                                               \
      MPI_Error_string(helix_mpi_rc_, helix_mpi_msg_, &helix_mpi_len_);     \
      ::helix::fatal(::helix::call_site(#call, __FILE__, __LINE__) + ": " + \
                     std::string(helix_mpi_msg_, size_t(helix_mpi_len_)));  \
    }                                                                       \
  } while (0)

#define HELIX_CHECK(cond, msg)                                                                 \
  do {                                                                                         \
    if (!(cond)) ::helix::fatal(::helix::call_site(#cond, __FILE__, __LINE__) + ": " + (msg)); \
  } while (0)
