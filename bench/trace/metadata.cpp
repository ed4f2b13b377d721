#include "bench/trace/metadata.hpp"

#include <unistd.h>

#include <ctime>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "bench/trace/h5.hpp"
#include "bench/version.hpp"
#include "comm/error.hpp"

extern char** environ;

namespace helix {

namespace {

// Gathers one string from every rank; returns them (rank 0 only; empty elsewhere).
std::vector<std::string> gather_strings(const MpiComm& world, const std::string& s) {
  const int n = world.size();
  int len = int(s.size());
  std::vector<int> lens(static_cast<size_t>(n));
  HELIX_MPI_CHECK(MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, world.raw()));
  std::vector<int> displs(static_cast<size_t>(n), 0);
  int total = 0;
  for (int i = 0; i < n; ++i) {
    displs[i] = total;
    total += lens[i];
  }
  std::string all(size_t(world.rank() == 0 ? total : 0), '\0');
  HELIX_MPI_CHECK(MPI_Gatherv(s.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(),
                              MPI_CHAR, 0, world.raw()));
  std::vector<std::string> out;
  if (world.rank() == 0)
    for (int i = 0; i < n; ++i) out.push_back(all.substr(size_t(displs[i]), size_t(lens[i])));
  return out;
}

std::string join_unique(const std::vector<std::string>& v) {
  std::set<std::string> seen;
  std::string out;
  for (const auto& s : v)
    if (seen.insert(s).second) out += (out.empty() ? "" : ",") + s;
  return out;
}

}  // namespace

RunEnvironment collect_environment(const MpiComm& world, int argc, char** argv,
                                   const std::string& backend, const std::string& local_device) {
  RunEnvironment e;
  e.suite_version = suite_version();
  e.git_sha = git_sha();
  for (int i = 0; i < argc; ++i) e.command_line += (i ? " " : "") + std::string(argv[i]);
  char buf[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  e.utc_time = buf;
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  e.hosts = join_unique(gather_strings(world, host));
  const auto devices = gather_strings(world, local_device);
  for (size_t i = 0; i < devices.size(); ++i)
    e.devices += (i ? ";" : "") + std::string("rank") + std::to_string(i) + "=" + devices[i];
  e.backend = backend;
  char mpiv[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int len = 0;
  MPI_Get_library_version(mpiv, &len);
  e.mpi_version = std::string(mpiv, size_t(len));
  while (!e.mpi_version.empty() && (e.mpi_version.back() == '\n' || e.mpi_version.back() == '\0'))
    e.mpi_version.pop_back();
  e.hdf5_version = h5::library_version();
#if defined(__clang__)
  e.compiler = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  e.compiler = std::string("gcc ") + __VERSION__;
#endif
  e.cuda_version = "none";
  e.nccl_version = "none";
  if (const char* j = std::getenv("SLURM_JOB_ID")) e.slurm_job_id = j;
  for (char** v = environ; *v; ++v)
    if (std::string(*v).rfind("NCCL_", 0) == 0)
      e.nccl_env += (e.nccl_env.empty() ? "" : ";") + std::string(*v);
  e.world_size = world.size();
  return e;
}

void write_root_attributes(hid_t file, const RunEnvironment& e, const std::string& kind) {
  h5::attr(file, "schema_version", kTraceSchemaVersion);
  h5::attr(file, "kind", kind);
  h5::attr(file, "suite_version", e.suite_version);
  h5::attr(file, "git_sha", e.git_sha);
  h5::attr(file, "command_line", e.command_line);
  h5::attr(file, "utc_time", e.utc_time);
  h5::attr(file, "hosts", e.hosts);
  h5::attr(file, "devices", e.devices);
  h5::attr(file, "backend", e.backend);
  h5::attr(file, "world_size", e.world_size);
  h5::attr(file, "mpi_version", e.mpi_version);
  h5::attr(file, "hdf5_version", e.hdf5_version);
  h5::attr(file, "compiler", e.compiler);
  h5::attr(file, "cuda_version", e.cuda_version);
  h5::attr(file, "nccl_version", e.nccl_version);
  h5::attr(file, "slurm_job_id", e.slurm_job_id);
  h5::attr(file, "nccl_env", e.nccl_env);
}

}  // namespace helix
