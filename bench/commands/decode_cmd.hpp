// `helix-bench decode`: full-layer decode steps of the four layouts over MPI ranks, verified
// against the single-rank reference, traced to HDF5.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "comm/mpi_comm.hpp"
#include "exec/decode_backend.hpp"

namespace helix {

struct DecodeOptions {
  std::string model;
  std::string layouts = "tp,kvp,helix,helix-hopb";
  std::string seq = "1000";
  std::string batch = "1,8";
  std::string layer;  // dense | moe (default: the model's representative layer)
  std::optional<int> kvp, tpa, tpf, ep, hopb_comm_sms;
  std::optional<std::string> hopb_chunks;  // comma list; not given: the default
  int kv_block = 16;
  int decode_steps = 0;  // 0: kv_block + 1 (crosses at least one block boundary)
  int iters = 20;
  int warmup = 3;
  uint64_t seed = 1234;
  BackendOptions exec;             // --backend, and emulation (CUDA backend only)
  std::string emulate_rank = "0";  // --emulate-rank: a rank or "all" (into exec.emulate_rank)
  std::string out;
  bool no_verify = false;
  bool quiet = false;
  bool profile_once = false;  // per run: warm-up, one step inside the profiler capture, no timing
};

CLI::App* add_decode_command(CLI::App& app, DecodeOptions& opt);

// Returns the process exit code: 0 all runs verified, 3 some run failed verification,
// 2 bad input (same on every rank).
int run_decode(const DecodeOptions& opt, const MpiComm& world, int argc, char** argv);

}  // namespace helix
