// helix-bench: the driver. MPI is initialized first; every rank parses the same command line, so
// bad input is detected identically everywhere and every rank exits with code 2.
#include <mpi.h>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "bench/commands/calibrate_cmd.hpp"
#include "bench/commands/decode_cmd.hpp"
#include "bench/commands/disagg_cmd.hpp"
#include "bench/commands/kv_transfer_cmd.hpp"
#include "bench/commands/model_cmd.hpp"
#include "bench/version.hpp"
#include "comm/error.hpp"
#include "comm/mpi_comm.hpp"

namespace {

int run(int argc, char** argv) {
  using namespace helix;
  MpiComm world = MpiComm::world();
  const bool root = world.rank() == 0;

  CLI::App app{
      "helix-bench: long-context LLM decoding on GPU clusters. Compares the TP, KVP, Helix and "
      "Helix HOP-B layouts on full decode layers, verifies every distributed result against a "
      "single-rank reference and writes per-rank, per-phase timings to HDF5. Launch with mpirun "
      "or srun: one rank per GPU (or per CPU process with --backend cpu)."};
  app.require_subcommand(1);
  // A repeated option takes its last value (scripts can append overrides).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.set_version_flag("--version", std::string(suite_version()) + " (" + git_sha() + ")");
  DecodeOptions decode;
  CLI::App* decode_cmd = add_decode_command(app, decode);
  ModelOptions model;
  CLI::App* model_cmd = add_model_command(app, model);
  DisaggCmdOptions disagg;
  CLI::App* disagg_cmd = add_disagg_command(app, disagg);
  KvTransferOptions kvt;
  CLI::App* kvt_cmd = add_kv_transfer_command(app, kvt);
  CalibrateOptions calibrate;
  CLI::App* calibrate_cmd = add_calibrate_command(app, calibrate);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return root ? app.exit(e) : 0;
  } catch (const CLI::CallForAllHelp& e) {
    return root ? app.exit(e) : 0;
  } catch (const CLI::CallForVersion& e) {
    return root ? app.exit(e) : 0;
  } catch (const CLI::ParseError& e) {
    if (root) {
      std::fprintf(stderr, "helix-bench: error: %s\n", e.what());
      std::fprintf(stderr, "Run with --help for usage.\n");
    }
    return 2;
  }

  try {
    if (decode_cmd->parsed()) return run_decode(decode, world, argc, argv);
    if (model_cmd->parsed()) return run_model(model, world, argc, argv);
    if (disagg_cmd->parsed()) return run_disagg(disagg, world, argc, argv);
    if (kvt_cmd->parsed()) return run_kv_transfer(kvt, world, argc, argv);
    if (calibrate_cmd->parsed()) return run_calibrate(calibrate, world, argc, argv);
  } catch (const UsageError& e) {
    if (root) std::fprintf(stderr, "helix-bench: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fatal(e.what());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  const int rc = run(argc, argv);
  std::fflush(stdout);
  std::fflush(stderr);
  MPI_Finalize();
  return rc;
}
