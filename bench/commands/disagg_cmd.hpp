// `helix-bench disagg`: disaggregated against co-located serving, priced by the cost model.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "comm/mpi_comm.hpp"

namespace helix {

struct DisaggCmdOptions {
  std::string hardware = "gb200-nvl72";
  std::string model;
  std::string isl = "16K", osl = "2K";
  double ftl_max_s = 10;
  int domain = 0;  // 0: the profile's
  double nic_gbps = 50;
  std::string fixed_ratio;
  std::string dtype = "fp4";
  std::string gpus = "64";
  std::string prefill_gpus;  // empty: --gpus
  std::string reproduce;
  std::string out;
  bool quiet = false;
  bool frontiers_only = false;
};

CLI::App* add_disagg_command(CLI::App& app, DisaggCmdOptions& opt);
int run_disagg(const DisaggCmdOptions& opt, const MpiComm& world, int argc, char** argv);

}  // namespace helix
