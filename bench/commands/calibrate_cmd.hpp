// `helix-bench calibrate`: measures this machine's stream bandwidth, GEMM rates at decode shapes
// and (with several ranks) collective latency and bandwidth, and writes a hardware profile JSON
// (analytic/hardware.hpp) that the cost model and the emulation read.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "comm/mpi_comm.hpp"

namespace helix {

struct CalibrateOptions {
  std::string out;
  std::string backend = "cpu";
  std::string name;  // default: "calibrated-<host>-<backend>"
  bool quick = false;
  std::string stream_bytes;      // default: cpu 1G (quick 128M); cuda 4G
  std::string max_weight_bytes;  // default: cpu 16M (quick 1M); cuda 0
  std::string max_bytes;         // largest collective size; default 64M (cpu quick 1M)
  int iters = 0;                 // default 10 (quick 3)
  int coll_iters = 0;            // default 20 (quick 5)
  std::string link_fallback;     // one rank: the built-in profile giving the link figures
};

CLI::App* add_calibrate_command(CLI::App& app, CalibrateOptions& o);
// Returns the exit code (0; bad input throws UsageError on every rank).
int run_calibrate(const CalibrateOptions& o, const MpiComm& world, int argc, char** argv);

}  // namespace helix
