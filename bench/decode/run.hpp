// One decode run: a layout at one batch and sequence length on the job's ranks, from the memory
// check through verification against the reference to the timed steps, producing its RunRecord.
#pragma once

#include <cstdint>
#include <vector>

#include "bench/decode/record.hpp"
#include "bench/decode/roofline.hpp"
#include "comm/mpi_comm.hpp"
#include "exec/decode_backend.hpp"
#include "exec/reference.hpp"
#include "layouts/layout.hpp"
#include "layouts/model_spec.hpp"

namespace helix {

struct RunSpec {
  LayoutParams layout;
  int batch = 1;
  int64_t seq = 1;
};

// What every run of a job shares.
struct RunSettings {
  std::string backend;  // recorded name (cpu | cuda)
  int iters = 20, warmup = 3;
  int decode_steps = 1;  // verified steps, positions seq .. seq + decode_steps - 1
  uint64_t seed = 1234;
  bool profile_once = false;  // warm-up, then one step inside the profiler capture; no timing
  ElemBytes elem;             // the backend's element sizes, for the roofline's work
};

// Collective over `world`. verify: checked against `reference` (rank 0's, bench/decode/verify.hpp).
// The per-rank arrays of the record are filled on rank 0 only.
RunRecord run_decode_point(const RunSpec& spec, const ModelSpec& model, LayerKind layer,
                           const RunSettings& settings, bool verify, ReferenceRun* reference,
                           const MpiComm& world, DecodeBackend& backend);

}  // namespace helix
