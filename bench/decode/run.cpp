#include "bench/decode/run.hpp"

#include <algorithm>
#include <memory>
#include <sstream>

#include "bench/commands/cli_util.hpp"
#include "bench/decode/verify.hpp"
#include "comm/error.hpp"
#include "exec/layer_data.hpp"
#include "exec/nvtx_range.hpp"
#include "layouts/schedule.hpp"

namespace helix {

namespace {

// Gathers a per-rank [iters, width] array into [iters, ranks, width] on rank 0.
std::vector<double> gather_iter_major(const MpiComm& world, const std::vector<double>& mine,
                                      int iters, int width) {
  const int n = world.size();
  std::vector<double> all(size_t(world.rank() == 0 ? n * iters * width : 0));
  HELIX_MPI_CHECK(MPI_Gather(mine.data(), iters * width, MPI_DOUBLE, all.data(), iters * width,
                             MPI_DOUBLE, 0, world.raw()));
  std::vector<double> out;
  if (world.rank() != 0) return out;
  out.resize(all.size());
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < iters; ++i)
      for (int w = 0; w < width; ++w)
        out[size_t((i * n + r) * width + w)] = all[size_t((r * iters + i) * width + w)];
  return out;
}

// Max over ranks of each iteration of a [iters, ranks] array.
std::vector<double> max_over_ranks(const std::vector<double>& v, int iters, int ranks) {
  std::vector<double> out;
  for (int i = 0; i < iters; ++i) {
    double mx = 0;
    for (int k = 0; k < ranks; ++k) mx = std::max(mx, v[size_t(i * ranks + k)]);
    out.push_back(mx);
  }
  return out;
}

}  // namespace

RunRecord run_decode_point(const RunSpec& spec, const ModelSpec& m, LayerKind layer,
                           const RunSettings& o, bool verify, ReferenceRun* ref,
                           const MpiComm& world, DecodeBackend& backend) {
  RunRecord r;
  r.layout = spec.layout;
  r.batch = spec.batch;
  r.seq = spec.seq;
  r.backend = o.backend;
  r.info = backend.info();
  r.iters = o.iters;
  r.warmup = o.warmup;
  r.decode_steps = o.decode_steps;
  r.seed = o.seed;
  r.tolerance = backend.tolerance();
  const RankShard shard = rank_shard(m, layer, spec.layout, backend.layout_rank(world.rank()));
  const int64_t max_positions = spec.seq + std::max(o.decode_steps, 1);

  // Memory planner: refuse (on every rank) a run that does not fit.
  const MemoryCheck mem = backend.check_memory(m, shard, spec.batch, max_positions);
  double worst[2] = {mem.fits ? 0.0 : 1.0, double(mem.needed_bytes)};
  world.all_reduce_max(worst, 2);
  r.needed_bytes = mem.needed_bytes;
  r.available_bytes = mem.available_bytes;
  if (worst[0] > 0) {
    r.status = "refused";
    std::ostringstream msg;
    msg << "needs " << format_bytes(worst[1]) << " per rank, "
        << format_bytes(double(mem.available_bytes)) << " free";
    r.message = msg.str();
    return r;
  }

  std::unique_ptr<LayerExecutor> ex =
      backend.make_executor(m, shard, spec.batch, spec.seq, max_positions, o.seed);
  r.weight_bytes = ex->weight_bytes();
  r.kv_bytes = ex->kv_bytes();

  if (verify) verify_run(m, layer, shard, ref, world, *ex, &r);

  // Timing: every iteration is one decode step at position seq (the same slot is rewritten), so
  // every rank runs the same number of collectives.
  const Schedule sched = build_schedule(m, shard, spec.batch, spec.seq);
  for (const Step& st : sched.steps)
    if (st.op == Op::attention) r.attn_kv_bytes += st.work.kv_elems * backend.kv_elem_bytes();
  const std::vector<float> x0 = make_decode_input(m, spec.batch, 0, o.seed);
  ex->set_input(x0.data());
  std::vector<double> phases(size_t(o.iters * kNumPhases)), steps(size_t(o.iters)),
      exposed(size_t(o.iters));
  const bool cuda = o.backend == "cuda";
  if (o.profile_once) {  // warm-up, then one step for ncu / nsys inside the capture range
    for (int i = 0; i < std::max(1, o.warmup); ++i) ex->step(sched, nullptr);
    world.barrier();
    ProfilerCapture capture(cuda);
    ex->step(sched, nullptr);
    r.status = "profiled";
    return r;
  }
  GpuSample gpu_before, gpu_after;
  std::string gpu_error;
  ProfilerCapture capture;  // around the timed iterations
  const int chunks = exchange_chunks(sched);
  std::vector<double> chunk_times(size_t(o.iters * chunks * kChunkColumns));
  for (int i = 0; i < o.warmup + o.iters; ++i) {
    world.barrier();
    if (i == o.warmup) {
      if (cuda) gpu_before = sample_gpu(&gpu_error);
      capture.start(cuda);
    }
    StepTiming t;
    ex->step(sched, &t);
    if (i < o.warmup) continue;
    const int k = i - o.warmup;
    for (int p = 0; p < kNumPhases; ++p) phases[size_t(k * kNumPhases + p)] = t.phase_us[size_t(p)];
    steps[size_t(k)] = t.step_us;
    exposed[size_t(k)] = t.exposed_comm_us;
    for (int c = 0; c < chunks && c < int(t.chunk_us.size()); ++c)
      for (int j = 0; j < kChunkColumns; ++j)
        chunk_times[size_t((k * chunks + c) * kChunkColumns + j)] =
            t.chunk_us[size_t(c)][size_t(j)];
  }
  capture.stop();
  if (cuda) {
    gpu_after = sample_gpu(nullptr);
    r.gpu = gather_gpu_telemetry(world, gpu_before, gpu_after, gpu_error);
    r.has_gpu_telemetry = true;
  }
  // The roofline's work on this rank: its schedule's compute steps, a MoE FFN at the routing of
  // the timed step (read back after timing), gathered as [ranks, phases] on rank 0.
  MoeActivity moe;
  bool routed = false;
  if (layer == LayerKind::moe) {
    std::vector<int32_t> ids(size_t(spec.batch * m.moe.top_k));
    routed = ex->get_routing(ids.data());
    if (routed) moe = moe_activity(shard, ids.data(), int64_t(ids.size()));
  }
  const PhaseWork work = phase_work(m, shard, sched, o.elem, routed ? &moe : nullptr);
  r.work_bytes = gather_iter_major(world, std::vector<double>(work.bytes.begin(), work.bytes.end()),
                                   1, kNumPhases);
  r.work_flops = gather_iter_major(world, std::vector<double>(work.flops.begin(), work.flops.end()),
                                   1, kNumPhases);
  if (layer == LayerKind::moe) {
    const std::vector<double> counts = gather_iter_major(
        world, {routed ? double(moe.touched) : -1.0, routed ? double(moe.assignments) : -1.0}, 1,
        2);
    for (size_t k = 0; k < counts.size(); k += 2) {
      r.moe_touched_experts.push_back(int64_t(counts[k]));
      r.moe_assignments.push_back(int64_t(counts[k + 1]));
    }
  }
  double eager[1] = {ex->graph_replay() ? 0.0 : 1.0};
  world.all_reduce_max(eager, 1);
  r.cuda_graph = eager[0] == 0.0;
  r.ranks = world.size();
  r.phase_us = gather_iter_major(world, phases, o.iters, kNumPhases);
  r.rank_step_us = gather_iter_major(world, steps, o.iters, 1);
  r.rank_exposed_us = gather_iter_major(world, exposed, o.iters, 1);
  r.chunks = chunks;
  if (chunks > 0)
    r.chunk_us = gather_iter_major(world, chunk_times, o.iters, chunks * kChunkColumns);
  if (world.rank() == 0) {
    r.step_us = max_over_ranks(r.rank_step_us, o.iters, r.ranks);
    r.exposed_us = max_over_ranks(r.rank_exposed_us, o.iters, r.ranks);
  }
  return r;
}

}  // namespace helix
