#include "bench/commands/kv_transfer_cmd.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include "analytic/cost_model.hpp"
#include "analytic/hardware.hpp"
#include "bench/commands/cli_util.hpp"
#include "bench/kv_transfer/job.hpp"
#include "bench/micro/collectives.hpp"
#include "bench/trace/h5.hpp"
#include "bench/trace/metadata.hpp"
#include "bench/trace/output_path.hpp"
#include "comm/error.hpp"
#include "comm/node.hpp"
#include "kernels/copy_segments.hpp"
#include "layouts/kv_transfer_moves.hpp"
#ifdef HELIX_CUDA_BACKEND
#include "bench/kv_transfer/cuda_transport.hpp"
#endif

namespace helix {

namespace {

// The CPU backend: fp32 caches in host memory; per transfer, the blocks bound for each peer are
// packed into one message, sent with MPI_Isend / MPI_Irecv (one message per peer), and unpacked
// into the decode layout's cache; timed barrier to barrier, the maximum over ranks.
struct KvTransferTimesCpu {
  std::vector<double> secs;
  int64_t misplaced = 0;
};

KvTransferTimesCpu run_cpu(const KvTransferJob& job, std::vector<float>& cache,
                           const MpiComm& world, int warmup, int iters,
                           const std::function<int64_t(const void*)>& misplaced) {
  std::vector<float> sendbuf(size_t(job.send_total / 4)), recvbuf(size_t(job.recv_total / 4));
  auto transfer = [&]() {
    if (job.is_prefill)
      cpu::copy_segments(cache.data(), sendbuf.data(), job.pack.data(), int64_t(job.pack.size()));
    std::vector<MPI_Request> req;
    for (size_t peer = 0; peer < job.recv_bytes.size(); ++peer)
      if (job.recv_bytes[peer] > 0) {
        req.emplace_back();
        HELIX_MPI_CHECK(MPI_Irecv(recvbuf.data() + job.recv_offset[peer] / 4,
                                  int((job.recv_bytes[peer] + 3) / 4), MPI_FLOAT, int(peer), 7,
                                  world.raw(), &req.back()));
      }
    for (size_t peer = 0; peer < job.send_bytes.size(); ++peer)
      if (job.send_bytes[peer] > 0) {
        req.emplace_back();
        HELIX_MPI_CHECK(MPI_Isend(sendbuf.data() + job.send_offset[peer] / 4,
                                  int((job.send_bytes[peer] + 3) / 4), MPI_FLOAT, int(peer), 7,
                                  world.raw(), &req.back()));
      }
    HELIX_MPI_CHECK(MPI_Waitall(int(req.size()), req.data(), MPI_STATUSES_IGNORE));
    if (!job.is_prefill)
      cpu::copy_segments(recvbuf.data(), cache.data(), job.unpack.data(),
                         int64_t(job.unpack.size()));
  };
  KvTransferTimesCpu t;
  for (int it = 0; it < warmup + iters; ++it) {
    if (!job.is_prefill) std::fill(cache.begin(), cache.end(), -1.0f);
    world.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    transfer();
    world.barrier();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    world.all_reduce_max(&s, 1);
    if (it < warmup) continue;
    t.secs.push_back(s);
    if (it == warmup && !job.is_prefill) t.misplaced = misplaced(cache.data());
  }
  double bad = double(t.misplaced);
  world.all_reduce_max(&bad, 1);
  t.misplaced = int64_t(bad);
  return t;
}

// Sizes beyond what the transport or this node's memory holds are bad input, on every rank and
// before any allocation: at most kMaxMoves block moves (segments of every layer), at most 8 GiB
// received by one rank (MPI counts are int), and each rank's buffers within its share of the
// node's available memory (CPU: cache, send and receive buffers; CUDA: a prefill rank's host copy).
void check_transfer_size(const ModelSpec& m, const KvTransferLayouts& l, int64_t tokens, int layers,
                         int elem_bytes, bool cuda, const MpiComm& world) {
  constexpr double kMaxMoves = double(int64_t(1) << 22);
  const double blocks = std::ceil(double(tokens) / l.kv_block);
  if (blocks * m.kv_heads * layers > kMaxMoves)
    throw UsageError("--tokens: " + std::to_string(tokens) + " tokens in blocks of " +
                     std::to_string(l.kv_block) + " x " + std::to_string(m.kv_heads) +
                     " KV heads x " + std::to_string(layers) +
                     " layers exceed 4194304 block moves (raise --kv-block or lower --tokens)");
  const int P = l.prefill_ranks, rank = world.rank();
  const bool prefill = rank < P;
  const double layer_elems = prefill ? double(prefill_buffer_elems(m, l, rank, tokens))
                                     : double(decode_buffer_elems(m, l, rank - P, tokens));
  const double bytes = layer_elems * layers * elem_bytes;
  double mine[2] = {cuda ? (prefill ? bytes : 0.0) : 2 * bytes,
                    double(host_available_bytes()) / std::max(1, local_rank_count(world))};
  std::vector<double> all(size_t(2 * world.size()));
  HELIX_MPI_CHECK(MPI_Allgather(mine, 2, MPI_DOUBLE, all.data(), 2, MPI_DOUBLE, world.raw()));
  double received = 0;
  for (int d = 0; d < l.decode_ranks(); ++d)
    received =
        std::max(received, double(decode_buffer_elems(m, l, d, tokens)) * layers * elem_bytes);
  if (received > 8.0 * double(int64_t(1) << 30))
    throw UsageError("--tokens: one decode rank would receive " + format_bytes(received) +
                     " (at most 8 GiB per rank; lower --tokens or --layers, or raise --kvp)");
  for (int r = 0; r < world.size(); ++r)
    if (all[size_t(2 * r)] > all[size_t(2 * r + 1)])
      throw UsageError("--tokens: rank " + std::to_string(r) + " needs " +
                       format_bytes(all[size_t(2 * r)]) + " of host memory, its share of the " +
                       "node has " + format_bytes(all[size_t(2 * r + 1)]) +
                       " (lower --tokens or --layers)");
}

}  // namespace

CLI::App* add_kv_transfer_command(CLI::App& app, KvTransferOptions& o) {
  CLI::App* c = app.add_subcommand(
      "kv-transfer",
      "Move one request's KV cache from a tensor-parallel prefill layout (ranks 0..P-1, KV heads "
      "sharded by TP) to a Helix decode layout (the next KVP x TPA ranks, round-robin KV blocks), "
      "check every block at its destination and report GB/s. Launch P + KVP x TPA ranks.");
  c->add_option("--model", o.model, "Model (KV heads and cached values per token)")->required();
  add_int_option(c, "--prefill-ranks", o.prefill_ranks, 1, kMaxRanks,
                 "P, TP width of the prefill layout");
  add_int_option(c, "--kvp", o.kvp, 1, kMaxRanks, "KVP of the decode Helix layout");
  add_int_option(c, "--tpa", o.tpa, 1, kMaxRanks, "TPA of the decode Helix layout (<= KV heads)");
  add_int_option(c, "--kv-block", o.kv_block, 1, kMaxKvBlock,
                 "Tokens per round-robin block across KVP ranks");
  c->add_option("--tokens", o.tokens, "Cached tokens of the request (K = 1024, M = 1048576)")
      ->capture_default_str();
  add_int_option(c, "--layers", o.layers, 1, kMaxModelLayers,
                 "Layers moved (each one buffer per rank)");
  add_int_option(c, "--iters", o.iters, 1, kMaxIters,
                 "Timed transfers (the first is also verified)");
  add_int_option(c, "--warmup", o.warmup, 0, kMaxIters, "Untimed transfers before the timed ones");
  c->add_option("--backend", o.backend,
                "cpu (fp32 caches in host memory, MPI) or cuda (16-bit caches in device memory, "
                "NCCL send/recv; MPI with host staging when ranks share a GPU)")
      ->capture_default_str();
  c->add_option("--out", o.out, "HDF5 file to write (FILE.tmp.PID, renamed when complete)");
  c->add_flag("--quiet", o.quiet, "No progress lines");
  c->add_flag("--link-check", o.link_check,
              "After the transfers, measure in the same job the send/recv (ring) bus bandwidth at "
              "the largest message one rank sends, and the all-to-all bus bandwidth with that "
              "message to every peer (nccl-tests conventions)");
  c->add_option("--hardware", o.hardware,
                "Profile (built-in name or .json, e.g. from calibrate) pricing the disaggregation "
                "model's transfer term for this move: each decode GPU receives its share of the "
                "distinct KV over a send/recv link at the profile's figures");
  c->footer(
      "\nExamples:\n  mpirun -np 6 build/bin/helix-bench kv-transfer --model llama-3.1-8b "
      "--prefill-ranks 2 --kvp 2 --tpa 2 --tokens 16K\n"
      "  mpirun -np 4 build/bin/helix-bench kv-transfer --backend cuda --model deepseek-r1 "
      "--prefill-ranks 1 --kvp 3 --tpa 1 --tokens 128K --layers 4\n"
      "\nExit codes: 0 every block verified; 2 bad input (nothing written); 3 a block missed.");
  return c;
}

int run_kv_transfer(const KvTransferOptions& o, const MpiComm& world, int argc, char** argv) {
  check_output_paths(world, {{"--out", o.out}}, {{"--model", o.model}, {"--hardware", o.hardware}});
  ModelSpec m;
  try {
    m = load_model(o.model);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  KvTransferLayouts l;
  l.prefill_ranks = o.prefill_ranks;
  l.kvp = o.kvp;
  l.tpa = o.tpa;
  l.kv_block = o.kv_block;
  const std::string err = validate_kv_transfer(m, l);
  if (!err.empty()) throw UsageError(err);
  const auto tv = parse_positive_list(o.tokens, "--tokens", kMaxTokens);
  if (tv.size() != 1) throw UsageError("--tokens: give one token count");
  const int64_t tokens = tv[0];
  if (o.layers < 1) throw UsageError("--layers: must be at least 1");
  if (o.iters < 1) throw UsageError("--iters: must be at least 1");
  if (o.warmup < 0) throw UsageError("--warmup: must be 0 or more");
  if (o.backend != "cpu" && o.backend != "cuda")
    throw UsageError("--backend: must be 'cpu' or 'cuda', got '" + o.backend + "'");
#ifndef HELIX_CUDA_BACKEND
  if (o.backend == "cuda")
    throw UsageError("--backend cuda: this build has no CUDA backend (configure with nvcc found)");
#endif
  const int P = l.prefill_ranks, D = l.decode_ranks();
  if (world.size() != P + D)
    throw UsageError("ranks: kv-transfer needs P + KVP x TPA = " + std::to_string(P) + " + " +
                     std::to_string(D) + " = " + std::to_string(P + D) + " ranks, the job has " +
                     std::to_string(world.size()));
  const int rank = world.rank();
  HardwareProfile hw;
  if (!o.hardware.empty()) hw = load_hardware(o.hardware);
  const bool cuda = o.backend == "cuda";
  check_transfer_size(m, l, tokens, o.layers, cuda ? 2 : 4, cuda, world);
#ifdef HELIX_CUDA_BACKEND
  std::unique_ptr<KvTransferCuda> gpu;
  if (cuda) gpu = KvTransferCuda::make(world);
#endif
  std::string device = "cpu", comm_backend = "mpi-host";
  bool link_representative = false;
  RunEnvironment env;
#ifdef HELIX_CUDA_BACKEND
  if (gpu) {
    device = gpu->device_description();
    comm_backend = gpu->comm_backend();
    link_representative = gpu->link_representative();
  }
#endif
  env = collect_environment(world, argc, argv, o.backend, device);
#ifdef HELIX_CUDA_BACKEND
  if (gpu) {
    env.cuda_version = gpu->cuda_version();
    env.nccl_version = gpu->nccl_version();
  }
#endif

  // The CPU backend moves fp32 values; the CUDA backend the 16 bits of a bf16 cache.
  const int elem_bytes = cuda ? 2 : 4;
  const std::vector<KvBlockMove> moves = kv_transfer_moves(m, l, tokens);
  const KvTransferJob job = make_kv_transfer_job(m, l, moves, rank, tokens, o.layers, elem_bytes);
  // Host cache: the CPU backend's, or the values a CUDA prefill rank places on its GPU.
  std::vector<float> cache(!cuda || job.is_prefill ? size_t((job.cache_bytes() + 3) / 4) : 0);
  if (job.is_prefill) fill_prefill_cache(m, l, job, cache.data());
  auto misplaced = [&](const void* c) { return count_misplaced(m, l, job, c); };
  std::vector<double> secs;
  int64_t bad = 0;
  if (!cuda) {
    const KvTransferTimesCpu t = run_cpu(job, cache, world, o.warmup, o.iters, misplaced);
    secs = t.secs;
    bad = t.misplaced;
  }
#ifdef HELIX_CUDA_BACKEND
  if (gpu) {
    const KvTransferTimes t = gpu->run(job, cache.data(), o.warmup, o.iters, misplaced);
    secs = t.secs;
    bad = t.misplaced;
  }
#endif
  const int64_t E = m.kv_elems_per_token_per_head();
  const double bytes = double(tokens) * m.kv_heads * double(E) * elem_bytes * o.layers;
  const double med = median(secs);
  // The link of the same job, at the sizes of this move (every rank measures).
  double sr_gbps = 0, a2a_gbps = 0, link_bytes = 0;
  if (o.link_check) {
    double biggest = 0;
    for (int64_t b : job.send_bytes) biggest = std::max(biggest, double(b));
    world.all_reduce_max(&biggest, 1);
    link_bytes = biggest;
    std::unique_ptr<micro::CollectiveBackend> cb =
        micro::make_collective_backend(o.backend, world.raw());
    const int n = world.size();
    const int64_t s = std::max<int64_t>(int64_t(biggest), 4 * n);
    sr_gbps = micro::measure_collective(*cb, world.raw(), Collective::send_recv, DType::fp32, s,
                                        false, o.warmup + 1, o.iters)
                  .busbw_gbps;
    a2a_gbps = micro::measure_collective(*cb, world.raw(), Collective::all_to_all, DType::fp32,
                                         s * n, false, o.warmup + 1, o.iters)
                   .busbw_gbps;
  }
  // The disaggregation model's transfer term: each decode GPU (KVP x TPA of them, each holding
  // distinct KV) receives its share over a link priced by the profile.
  double model_s = 0;
  if (!o.hardware.empty()) {
    const CostModel cm = collective_pricing(hw);
    model_s = cm.collective_us(Collective::send_recv, 2, bytes / D, false) * 1e-6;
  }
  const char* dtype = cuda ? "bf16" : "fp32";
  if (rank == 0) {
    std::printf(
        "kv-transfer: %s, %lld tokens x %d layer(s), prefill TP %d -> decode KVP x TPA %dx%d "
        "(block %d), %s %s over %s: %zu block moves, %.3f MB, median %.3f ms, %.3f GB/s, "
        "verified %s\n",
        m.name.c_str(), static_cast<long long>(tokens), o.layers, P, l.kvp, l.tpa, l.kv_block,
        o.backend.c_str(), dtype, comm_backend.c_str(), moves.size(), bytes / 1e6, med * 1e3,
        bytes / med / 1e9, bad == 0 ? "yes" : "NO (misplaced values)");
    if (o.link_check)
      std::printf(
          "kv-transfer: same job: send/recv busbw %.1f GB/s at %s, all-to-all busbw %.1f "
          "GB/s at %s per peer\n",
          sr_gbps, format_bytes(link_bytes).c_str(), a2a_gbps, format_bytes(link_bytes).c_str());
    if (model_s > 0)
      std::printf("kv-transfer: model (%s): %.3f ms, measured / model = %.2f\n", hw.name.c_str(),
                  model_s * 1e3, med / model_s);
    if (!o.out.empty()) {
      h5::File f(o.out);
      write_root_attributes(f.id(), env, "kv-transfer");
      h5::Group g(f.id(), "/kv_transfer");
      h5::attr(g.id(), "model", m.name);
      h5::attr(g.id(), "prefill_ranks", P);
      h5::attr(g.id(), "kvp", l.kvp);
      h5::attr(g.id(), "tpa", l.tpa);
      h5::attr(g.id(), "kv_block", l.kv_block);
      h5::attr(g.id(), "tokens", tokens);
      h5::attr(g.id(), "layers", o.layers);
      h5::attr(g.id(), "block_moves", int64_t(moves.size()));
      h5::attr(g.id(), "bytes", bytes);
      h5::attr(g.id(), "backend", o.backend);
      h5::attr(g.id(), "dtype", dtype);
      h5::attr(g.id(), "comm_backend", comm_backend);
      h5::attr(g.id(), "link_representative", link_representative);
      h5::attr(g.id(), "warmup", o.warmup);
      h5::attr(g.id(), "verified", bad == 0);
      h5::attr(g.id(), "gbps_median", bytes / med / 1e9);
      h5::write(g.id(), "transfer_s", {hsize_t(secs.size())}, secs.data(), "s");
      if (o.link_check) {
        h5::attr(g.id(), "link_check_bytes", link_bytes);
        h5::attr(g.id(), "send_recv_busbw_gbps", sr_gbps);
        h5::attr(g.id(), "all_to_all_busbw_gbps", a2a_gbps);
      }
      if (model_s > 0) {
        h5::attr(g.id(), "model_hardware", hw.name);
        h5::attr(g.id(), "model_transfer_s", model_s);
      }
      f.commit();
    }
  }
  return bad == 0 ? 0 : 3;
}

}  // namespace helix
