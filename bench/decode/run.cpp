#include "bench/decode/run.hpp"

#include <algorithm>
#include <array>
#include <functional>
#include <memory>
#include <sstream>

#include "bench/commands/cli_util.hpp"
#include "bench/decode/accounting.hpp"
#include "bench/decode/roofline.hpp"
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

// What one executor measured over the timed iterations, and what its router did in the last
// timed step (MoE layers; routed false when it ran no router).
struct Timed {
  std::vector<double> phases, steps, exposed, steps_us;  // [iters, phases], [iters] x2, [iters, S]
  int chunks = 0;                                        // exchange_chunks of the schedule
  std::vector<double> chunk_times;                       // [iters, chunks, kChunkColumns]
  bool routed = false;
  MoeActivity moe;
  bool graph_replay = false;
};

// on_timed_start (optional) runs once, before the first timed iteration.
Timed time_executor(LayerExecutor& ex, const Schedule& sched, const RunSettings& o, int max_steps,
                    const ModelSpec& m, const RankShard& shard, int batch, const MpiComm& world,
                    const std::function<void()>& on_timed_start = {}) {
  Timed t;
  t.phases.assign(size_t(o.iters * kNumPhases), 0.0);
  t.steps.assign(size_t(o.iters), 0.0);
  t.exposed.assign(size_t(o.iters), 0.0);
  t.steps_us.assign(size_t(o.iters) * size_t(max_steps), 0.0);
  t.chunks = exchange_chunks(sched);
  const size_t C = size_t(t.chunks);
  t.chunk_times.assign(size_t(o.iters) * C * kChunkColumns, 0.0);
  for (int i = 0; i < o.warmup + o.iters; ++i) {
    world.barrier();
    if (i == o.warmup && on_timed_start) on_timed_start();
    StepTiming st;
    ex.step(sched, &st);
    if (i < o.warmup) continue;
    const size_t k = size_t(i - o.warmup);
    for (int p = 0; p < kNumPhases; ++p)
      t.phases[k * kNumPhases + size_t(p)] = st.phase_us[size_t(p)];
    t.steps[k] = st.step_us;
    t.exposed[k] = st.exposed_comm_us;
    for (size_t j = 0; j < st.steps_us.size() && j < size_t(max_steps); ++j)
      t.steps_us[k * size_t(max_steps) + j] = st.steps_us[j];
    for (size_t c = 0; c < C && c < st.chunk_us.size(); ++c)
      for (size_t j = 0; j < kChunkColumns; ++j)
        t.chunk_times[(k * C + c) * kChunkColumns + j] = st.chunk_us[c][j];
  }
  if (shard.layer == LayerKind::moe) {
    std::vector<int32_t> ids(size_t(batch) * size_t(m.moe.top_k));
    t.routed = ex.get_routing(ids.data());
    if (t.routed) t.moe = moe_activity(shard, ids.data(), int64_t(ids.size()));
  }
  t.graph_replay = ex.graph_replay();
  return t;
}

// One rank's row for the roofline and the MoE load: its schedule's work per phase (bytes, then
// FLOPs, with a MoE FFN at the routing of the last timed step) and its router's counts (touched
// experts, assignments; -1 when it ran no router).
constexpr int kWorkWidth = 2 * kNumPhases + 2;
std::vector<double> rank_work(const ModelSpec& m, const RankShard& shard, const Schedule& sched,
                              const RunSettings& o, const Timed& t) {
  const PhaseWork work = phase_work(m, shard, sched, o.elem, t.routed ? &t.moe : nullptr);
  std::vector<double> v(work.bytes.begin(), work.bytes.end());
  v.insert(v.end(), work.flops.begin(), work.flops.end());
  v.push_back(t.routed ? double(t.moe.touched) : -1.0);
  v.push_back(t.routed ? double(t.moe.assignments) : -1.0);
  return v;
}

// Appends one rank_work row to the run: the roofline's work and, for MoE layers, the load.
void add_work_row(const double* w, LayerKind layer, RunRecord& r) {
  r.work_bytes.insert(r.work_bytes.end(), w, w + kNumPhases);
  r.work_flops.insert(r.work_flops.end(), w + kNumPhases, w + 2 * kNumPhases);
  if (layer != LayerKind::moe) return;
  const double touched = w[2 * kNumPhases], assignments = w[2 * kNumPhases + 1];
  r.moe_touched_experts.push_back(int64_t(touched));
  r.moe_assignments.push_back(int64_t(assignments));
  r.routed_rows.push_back(std::max(0.0, assignments));
  r.routed_experts.push_back(std::max(0.0, touched));
}

// What a rank's compute depends on: its schedule's steps and, for MoE layers, its experts (they
// see other tokens); ranks with equal keys run the same work.
std::vector<double> work_key(const RankShard& shard, const Schedule& sched) {
  std::vector<double> k = {double(shard.experts.begin), double(shard.experts.end)};
  for (const Step& s : sched.steps) {
    const Work& w = s.work;
    k.insert(k.end(),
             {double(s.op), double(s.phase), double(s.group), double(s.batch.begin),
              double(s.batch.end), w.weight_elems, w.kv_elems, w.act_elems, w.flops, w.comm_elems,
              double(w.group_size), double(s.kv_tokens), double(s.append_index >= 0)});
    for (int64_t c : s.exchange.send_counts) k.push_back(double(c));
    for (int64_t c : s.exchange.recv_counts) k.push_back(double(c));
  }
  return k;
}

// One GPU emulating every rank of the layout: the compute of each distinct rank runs in turn at
// its shard shapes (its collectives priced), then the ranks' timelines are simulated together.
void run_every_rank(const RunSpec& spec, const ModelSpec& m, LayerKind layer, const RunSettings& o,
                    int64_t max_positions, const MpiComm& world, DecodeBackend& backend,
                    RunRecord& r) {
  const int n = spec.layout.n;
  std::vector<RankShard> shards;
  std::vector<Schedule> scheds;
  std::vector<int> rep(static_cast<size_t>(n));
  std::vector<std::vector<double>> keys;
  size_t max_steps = 0;
  for (int k = 0; k < n; ++k) {
    shards.push_back(rank_shard(m, layer, spec.layout, k));
    scheds.push_back(build_schedule(m, shards.back(), spec.batch, spec.seq));
    max_steps = std::max(max_steps, scheds.back().steps.size());
    keys.push_back(work_key(shards.back(), scheds.back()));
    rep[size_t(k)] = k;
    for (int j = 0; j < k; ++j)
      if (keys[size_t(j)] == keys.back()) {
        rep[size_t(k)] = j;
        break;
      }
  }
  std::vector<Timed> timed(static_cast<size_t>(n));
  for (int k = 0; k < n; ++k) {
    if (rep[size_t(k)] != k) continue;
    const MemoryCheck mem = backend.check_memory(m, shards[size_t(k)], spec.batch, max_positions);
    if (!mem.fits) {
      r.status = "refused";
      r.message = "rank " + std::to_string(k) + " needs " + format_bytes(double(mem.needed_bytes)) +
                  ", " + format_bytes(double(mem.available_bytes)) + " free";
      return;
    }
    std::unique_ptr<LayerExecutor> ex =
        backend.make_executor(m, shards[size_t(k)], spec.batch, spec.seq, max_positions, o.seed);
    if (k == 0) {
      r.weight_bytes = ex->weight_bytes();
      r.kv_bytes = ex->kv_bytes();
    }
    const std::vector<float> x0 = make_decode_input(m, spec.batch, 0, o.seed);
    ex->set_input(x0.data());
    timed[size_t(k)] = time_executor(*ex, scheds[size_t(k)], o, int(max_steps), m,
                                     shards[size_t(k)], spec.batch, world);
  }
  r.ranks = n;
  const size_t I = size_t(o.iters), P = kNumPhases, S = max_steps, N = size_t(n);
  r.phase_us.assign(I * N * P, 0.0);
  r.rank_step_us.assign(I * N, 0.0);
  r.rank_exposed_us.assign(I * N, 0.0);
  r.chunks = timed[0].chunks;
  const size_t C = size_t(r.chunks) * kChunkColumns;
  r.chunk_us.assign(I * N * C, 0.0);
  TimedSteps ts;
  ts.max_steps = int(S);
  ts.steps_us.assign(I * N * S, 0.0);
  r.cuda_graph = true;
  for (size_t k = 0; k < N; ++k) {
    const Timed& t = timed[size_t(rep[k])];
    r.row_rank.push_back(int(k));
    r.row_measured_as.push_back(rep[k]);
    ts.row_rank.push_back(int(k));
    ts.schedules.push_back(scheds[k].steps);
    add_work_row(rank_work(m, shards[k], scheds[k], o, t).data(), layer, r);
    r.cuda_graph = r.cuda_graph && t.graph_replay;
    for (size_t i = 0; i < I; ++i) {
      for (size_t p = 0; p < P; ++p) r.phase_us[(i * N + k) * P + p] = t.phases[i * P + p];
      r.rank_step_us[i * N + k] = t.steps[i];
      for (size_t j = 0; j < C && t.chunks == r.chunks; ++j)
        r.chunk_us[(i * N + k) * C + j] = t.chunk_times[i * C + j];
      for (size_t j = 0; j < S; ++j) ts.steps_us[(i * N + k) * S + j] = t.steps_us[i * S + j];
    }
  }
  account_decode_run(spec.layout, ts, Accounting::simulated, r);
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

  const Schedule sched = build_schedule(m, shard, spec.batch, spec.seq);
  for (const Step& st : sched.steps)
    if (st.op == Op::attention) {
      r.attn_kv_bytes += st.work.kv_elems * backend.kv_elem_bytes();
      r.attn_flops += st.work.flops;
    }
  if (backend.emulates_every_rank()) {
    run_every_rank(spec, m, layer, o, max_positions, world, backend, r);
    return r;
  }
  std::unique_ptr<LayerExecutor> ex =
      backend.make_executor(m, shard, spec.batch, spec.seq, max_positions, o.seed);
  r.weight_bytes = ex->weight_bytes();
  r.kv_bytes = ex->kv_bytes();

  if (verify) verify_run(m, layer, shard, ref, world, *ex, &r);

  // Timing: every iteration is one decode step at position seq (the same slot is rewritten), so
  // every rank runs the same number of collectives.
  const std::vector<float> x0 = make_decode_input(m, spec.batch, 0, o.seed);
  ex->set_input(x0.data());
  const bool cuda = o.backend == "cuda";
  if (o.profile_once) {  // warm-up, then one step for ncu / nsys inside the capture range
    for (int i = 0; i < std::max(1, o.warmup); ++i) ex->step(sched, nullptr);
    world.barrier();
    ProfilerCapture capture(cuda);
    ex->step(sched, nullptr);
    r.status = "profiled";
    return r;
  }
  double most_steps = double(sched.steps.size());
  world.all_reduce_max(&most_steps, 1);
  const int max_steps = int(most_steps);
  GpuSample gpu_before, gpu_after;
  std::string gpu_error;
  ProfilerCapture capture;  // around the timed iterations
  const Timed t = time_executor(*ex, sched, o, max_steps, m, shard, spec.batch, world, [&] {
    if (cuda) gpu_before = sample_gpu(&gpu_error);
    capture.start(cuda);
  });
  capture.stop();
  if (cuda) {
    gpu_after = sample_gpu(nullptr);
    r.gpu = gather_gpu_telemetry(world, gpu_before, gpu_after, gpu_error);
    r.has_gpu_telemetry = true;
  }
  // The roofline's work and the router's counts of this rank (after timing), gathered as
  // [ranks, kWorkWidth] on rank 0.
  const std::vector<double> work =
      gather_iter_major(world, rank_work(m, shard, sched, o, t), 1, kWorkWidth);
  double eager[1] = {t.graph_replay ? 0.0 : 1.0};
  world.all_reduce_max(eager, 1);
  r.cuda_graph = eager[0] == 0.0;
  r.ranks = world.size();
  r.phase_us = gather_iter_major(world, t.phases, o.iters, kNumPhases);
  r.rank_step_us = gather_iter_major(world, t.steps, o.iters, 1);
  r.rank_exposed_us = gather_iter_major(world, t.exposed, o.iters, 1);
  r.chunks = t.chunks;
  if (t.chunks > 0)
    r.chunk_us = gather_iter_major(world, t.chunk_times, o.iters, t.chunks * kChunkColumns);
  TimedSteps ts;
  ts.max_steps = max_steps;
  ts.steps_us = gather_iter_major(world, t.steps_us, o.iters, max_steps);
  if (world.rank() != 0) return r;
  r.step_us = max_over_ranks(r.rank_step_us, o.iters, r.ranks);
  r.exposed_us = max_over_ranks(r.rank_exposed_us, o.iters, r.ranks);
  const bool alone = r.ranks == 1 && spec.layout.n > 1;  // one emulated rank of a larger layout
  for (int k = 0; k < r.ranks; ++k) {
    const int rank = alone ? backend.layout_rank(0) : k;
    r.row_rank.push_back(rank);
    r.row_measured_as.push_back(rank);
    ts.row_rank.push_back(rank);
    ts.schedules.push_back(
        build_schedule(m, rank_shard(m, layer, spec.layout, rank), spec.batch, spec.seq).steps);
    add_work_row(work.data() + size_t(k) * kWorkWidth, layer, r);
  }
  account_decode_run(spec.layout, ts, alone ? Accounting::single_rank : Accounting::measured, r);
  return r;
}

}  // namespace helix
