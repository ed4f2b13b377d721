// The output-path policy of every subcommand, and files written under a temporary name.
//
// Policy: an output path is written only when it is absent or an existing regular file (never a
// directory, device, FIFO or socket), when it is none of the command's inputs (nor another of its
// outputs, nor the running executable), and when its directory accepts a new file. It is checked
// before any work, on the rank that writes, and the verdict is shared with every rank (bad input:
// exit code 2 everywhere). The file is written as "<path>.tmp.<pid>" and renamed to <path> when
// complete; until the rename has returned, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGXFSZ,
// SIGABRT, a crash signal, exit() and fatal() remove the temporary file, so an interrupted run
// leaves either no file or the previous one untouched.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "comm/mpi_comm.hpp"

namespace helix {

// A path given on the command line, with the option that named it.
struct PathArg {
  std::string option;  // e.g. "--out"
  std::string path;    // empty: not given
};

// Checks `outputs` against the policy; `inputs` are the files the command reads (entries that
// are not existing files, e.g. built-in model names, are ignored). Throws UsageError naming the
// option.
void check_output_paths(const std::vector<PathArg>& outputs, const std::vector<PathArg>& inputs);

// Runs `check` on rank 0 and shares its verdict: when it throws UsageError, every rank throws
// UsageError with the same message (collective over `world`).
void check_on_root(const MpiComm& world, const std::function<void()>& check);

// check_output_paths on rank 0 (the rank that writes), its verdict shared with every rank.
void check_output_paths(const MpiComm& world, const std::vector<PathArg>& outputs,
                        const std::vector<PathArg>& inputs);

// Runs `work` on rank 0 and returns its exit code on every rank; a UsageError it throws is
// rethrown on every rank (collective over `world`; the other ranks wait for rank 0).
int run_on_root(const MpiComm& world, const std::function<int()>& work);

// A file written under "<path>.tmp.<pid>" (the caller creates and writes tmp()) and renamed to
// <path> by commit(). Destroyed uncommitted, or interrupted by one of the signals above, it
// removes the temporary file.
class AtomicOutput {
 public:
  explicit AtomicOutput(std::string path);
  ~AtomicOutput();
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  const std::string& path() const { return path_; }
  const std::string& tmp() const { return tmp_; }
  // Renames the closed temporary file to the final name. On failure the temporary file is
  // removed and false returned (errno set by rename).
  bool commit();

 private:
  std::string path_, tmp_;
  int slot_ = -1;
  bool committed_ = false;
};

// The temporary name of `path` for this process: "<path>.tmp.<pid>".
std::string temporary_name(const std::string& path);

}  // namespace helix
