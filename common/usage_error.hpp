// Bad user input: thrown by every parser and validator (no MPI, no CUDA); the driver prints the
// message and exits with code 2 on every rank.
#pragma once

#include <stdexcept>

namespace helix {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace helix
