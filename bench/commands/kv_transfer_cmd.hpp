// `helix-bench kv-transfer`: moves one request's KV cache from a TP prefill layout to a Helix
// decode layout (the block moves of layouts/kv_transfer_moves.hpp) over the job's ranks, checks
// that every block landed where the decode layout expects it, and reports the bandwidth. CPU
// backend: fp32 caches in host memory, MPI; CUDA backend: 16-bit caches in device memory, NCCL (MPI
// with host staging when ranks share a GPU).
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "comm/mpi_comm.hpp"

namespace helix {

struct KvTransferOptions {
  std::string model;
  int prefill_ranks = 1;
  int kvp = 1, tpa = 1;
  int kv_block = 16;
  std::string tokens = "16K";
  int layers = 1;
  int iters = 5;
  int warmup = 1;
  std::string backend = "cpu";
  std::string out;
  bool quiet = false;
  bool link_check = false;  // send/recv and all-to-all bus bandwidth of the same job
  std::string hardware;     // profile pricing the disaggregation model's transfer term
};

CLI::App* add_kv_transfer_command(CLI::App& app, KvTransferOptions& opt);
// Exit code: 0 every block verified, 3 a block missed; bad input throws UsageError on every rank.
int run_kv_transfer(const KvTransferOptions& opt, const MpiComm& world, int argc, char** argv);

}  // namespace helix
