// Verification of a decode run against the single-rank reference, outside the timed loop:
// decode_steps consecutive steps with fresh inputs, KV appended at positions seq .. seq +
// decode_steps - 1 (crossing KV block boundaries). MoE layers: the reference follows the run's
// expert choice where it is explained by bf16 rounding of the router (ReferenceRun::output_for);
// every flip is counted, one that is not explained fails the run, as does a disagreement between
// the ranks that ran a router.
#pragma once

#include "bench/decode/record.hpp"
#include "comm/mpi_comm.hpp"
#include "exec/executor.hpp"
#include "exec/reference.hpp"
#include "layouts/model_spec.hpp"
#include "layouts/rank_shard.hpp"

namespace helix {

// Collective over `world`; `ref` on rank 0 only. Fills the verification fields of `r` (its
// batch, seq, decode_steps, seed and tolerance must be set).
void verify_run(const ModelSpec& model, LayerKind layer, const RankShard& shard, ReferenceRun* ref,
                const MpiComm& world, LayerExecutor& ex, RunRecord* r);

}  // namespace helix
