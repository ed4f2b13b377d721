// `helix-bench model`: the cost model's sweep of the decode design space (Pareto frontier of
// tokens/s/user against tokens/s/GPU), the Helix paper's reproduction, and the validation of the
// model against a decode trace.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "comm/mpi_comm.hpp"

namespace helix {

struct ModelOptions {
  std::string hardware;
  std::string model;
  std::string seq = "1M";
  std::string gpus = "1-64";
  std::string dtype = "fp4";
  int max_batch = 4096;
  double workspace_gib = 2.0;
  std::string reproduce;
  std::string validate;
  std::string out;
  int frontier_rows = 40;
  bool quiet = false;
};

CLI::App* add_model_command(CLI::App& app, ModelOptions& opt);
// Returns the exit code (0; bad input throws UsageError on every rank). Runs on rank 0 only.
int run_model(const ModelOptions& opt, const MpiComm& world, int argc, char** argv);

}  // namespace helix
