// What a trace records about the run that produced it: versions, command line, time, hosts,
// devices, scheduler and NCCL environment (root attributes of every HDF5 file).
#pragma once

#include <hdf5.h>

#include <string>

#include "comm/mpi_comm.hpp"

namespace helix {

struct RunEnvironment {
  std::string suite_version, git_sha, command_line, utc_time, hosts, backend, devices;
  std::string mpi_version, hdf5_version, compiler, cuda_version, nccl_version;
  std::string slurm_job_id, nccl_env;
  int world_size = 1;
};

// Collective over `world` (host names and devices are gathered from every rank).
RunEnvironment collect_environment(const MpiComm& world, int argc, char** argv,
                                   const std::string& backend, const std::string& local_device);

// Writes the root attributes (schema version included) into an open file.
void write_root_attributes(hid_t file, const RunEnvironment& env, const std::string& kind);

// Schema version of the traces this build writes (results/README.md documents it).
constexpr const char* kTraceSchemaVersion = "1.0";

}  // namespace helix
