#include "bench/kv_transfer.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>

#include "bench/cli_util.hpp"
#include "bench/h5.hpp"
#include "bench/metadata.hpp"
#include "comm/error.hpp"
#include "layouts/kv_transfer_plan.hpp"

namespace helix {

namespace {

// The value every cached element holds, exact in fp32 (below 2^24).
float kv_value(int layer, int head, int64_t pos, int64_t e) {
  return float((int64_t(layer) * 1000003 + int64_t(head) * 7919 + pos * 257 + e) % 16777213);
}

// MPI over host memory: one message per (prefill rank, decode rank) pair, the pair's moves packed
// in plan order. A NCCL transport would pack and unpack the same way.
struct PairMessages {
  std::map<int, std::vector<const KvBlockMove*>> to, from;  // by peer world rank
};

}  // namespace

CLI::App* add_kv_transfer_command(CLI::App& app, KvTransferOptions& o) {
  CLI::App* c = app.add_subcommand(
      "kv-transfer",
      "Move one request's KV cache from a tensor-parallel prefill layout (ranks 0..P-1, KV heads "
      "sharded by TP) to a Helix decode layout (the next KVP x TPA ranks, round-robin KV blocks), "
      "check every block at its destination and report GB/s. Launch P + KVP x TPA ranks.");
  c->add_option("--model", o.model, "Model (KV heads and cached values per token)")->required();
  c->add_option("--prefill-ranks", o.prefill_ranks, "P, TP width of the prefill layout")
      ->capture_default_str();
  c->add_option("--kvp", o.kvp, "KVP of the decode Helix layout")->capture_default_str();
  c->add_option("--tpa", o.tpa, "TPA of the decode Helix layout (<= KV heads)")
      ->capture_default_str();
  c->add_option("--kv-block", o.kv_block, "Tokens per round-robin block across KVP ranks")
      ->capture_default_str();
  c->add_option("--tokens", o.tokens, "Cached tokens of the request (K = 1024, M = 1048576)")
      ->capture_default_str();
  c->add_option("--layers", o.layers, "Layers moved (each one buffer per rank)")
      ->capture_default_str();
  c->add_option("--iters", o.iters, "Timed transfers (the first is also verified)")
      ->capture_default_str();
  c->add_option("--out", o.out, "HDF5 file to write (FILE.tmp.PID, renamed when complete)");
  c->add_flag("--quiet", o.quiet, "No progress lines");
  c->footer(
      "\nExample:\n  mpirun -np 6 build/bin/helix-bench kv-transfer --model llama-3.1-8b "
      "--prefill-ranks 2 --kvp 2 --tpa 2 --tokens 16K\n"
      "\nExit codes: 0 every block verified; 2 bad input (nothing written); 3 a block missed.");
  return c;
}

int run_kv_transfer(const KvTransferOptions& o, const MpiComm& world, int argc, char** argv) {
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
  const auto tv = parse_positive_list(o.tokens, "--tokens");
  if (tv.size() != 1) throw UsageError("--tokens: give one token count");
  const int64_t tokens = tv[0];
  if (o.layers < 1) throw UsageError("--layers: must be at least 1");
  if (o.iters < 1) throw UsageError("--iters: must be at least 1");
  const int P = l.prefill_ranks, D = l.decode_ranks();
  if (world.size() != P + D)
    throw UsageError("ranks: kv-transfer needs P + KVP x TPA = " + std::to_string(P) + " + " +
                     std::to_string(D) + " = " + std::to_string(P + D) + " ranks, the job has " +
                     std::to_string(world.size()));
  const int rank = world.rank();
  if (rank == 0 && !o.out.empty()) h5::File probe(o.out);
  const RunEnvironment env = collect_environment(world, argc, argv, "cpu", "cpu");

  const std::vector<KvBlockMove> plan = plan_kv_transfer(m, l, tokens);
  const bool is_prefill = rank < P;
  const int local = is_prefill ? rank : rank - P;
  const int64_t E = m.kv_elems_per_token_per_head();
  const int64_t buf_elems = is_prefill ? prefill_buffer_elems(m, l, local, tokens)
                                       : decode_buffer_elems(m, l, local, tokens);
  std::vector<std::vector<float>> buf(size_t(o.layers), std::vector<float>(size_t(buf_elems)));
  PairMessages pm;
  for (const KvBlockMove& mv : plan) {
    if (is_prefill && mv.src_rank == local) pm.to[P + mv.dst_rank].push_back(&mv);
    if (!is_prefill && mv.dst_rank == local) pm.from[mv.src_rank].push_back(&mv);
  }
  if (is_prefill) {
    const RankPlan r = prefill_rank_plan(m, l, local);
    for (int L = 0; L < o.layers; ++L)
      for (int64_t h = r.kv_heads.begin; h < r.kv_heads.end; ++h)
        for (int64_t p = 0; p < tokens; ++p)
          for (int64_t e = 0; e < E; ++e)
            buf[size_t(L)][size_t(((h - r.kv_heads.begin) * tokens + p) * E + e)] =
                kv_value(L, int(h), p, e);
  }
  auto elems_of = [](const std::vector<const KvBlockMove*>& v) {
    int64_t n = 0;
    for (const auto* mv : v) n += mv->elems;
    return n;
  };
  std::map<int, std::vector<float>> sendbuf, recvbuf;
  for (const auto& [peer, v] : pm.to) sendbuf[peer].resize(size_t(elems_of(v) * o.layers));
  for (const auto& [peer, v] : pm.from) recvbuf[peer].resize(size_t(elems_of(v) * o.layers));

  auto transfer = [&]() {
    for (auto& [peer, v] : pm.to) {  // pack
      float* out = sendbuf[peer].data();
      for (int L = 0; L < o.layers; ++L)
        for (const auto* mv : v) {
          std::copy_n(buf[size_t(L)].data() + mv->src_offset, mv->elems, out);
          out += mv->elems;
        }
    }
    std::vector<MPI_Request> req;
    for (auto& [peer, b] : recvbuf) {
      req.emplace_back();
      HELIX_MPI_CHECK(
          MPI_Irecv(b.data(), int(b.size()), MPI_FLOAT, peer, 7, world.raw(), &req.back()));
    }
    for (auto& [peer, b] : sendbuf) {
      req.emplace_back();
      HELIX_MPI_CHECK(
          MPI_Isend(b.data(), int(b.size()), MPI_FLOAT, peer, 7, world.raw(), &req.back()));
    }
    HELIX_MPI_CHECK(MPI_Waitall(int(req.size()), req.data(), MPI_STATUSES_IGNORE));
    for (auto& [peer, v] : pm.from) {  // unpack into the decode layout's cache
      const float* in = recvbuf[peer].data();
      for (int L = 0; L < o.layers; ++L)
        for (const auto* mv : v) {
          std::copy_n(in, mv->elems, buf[size_t(L)].data() + mv->dst_offset);
          in += mv->elems;
        }
    }
  };

  std::vector<double> secs;
  int64_t bad = 0;
  for (int it = 0; it < o.iters; ++it) {
    if (!is_prefill)
      for (auto& b : buf) std::fill(b.begin(), b.end(), -1.0f);
    world.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    transfer();
    world.barrier();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    world.all_reduce_max(&s, 1);
    secs.push_back(s);
    if (it == 0 && !is_prefill) {
      // Every local slot of the decode layout holds the value of its global (head, position).
      const RankPlan r = decode_rank_plan(m, l, local);
      const int64_t lt = r.local_tokens(tokens);
      for (int L = 0; L < o.layers; ++L)
        for (int64_t h = r.kv_heads.begin; h < r.kv_heads.end; ++h)
          for (int64_t i = 0; i < lt; ++i) {
            const int64_t pos = r.placement.global_pos(r.k, i);
            for (int64_t e = 0; e < E; ++e)
              bad += buf[size_t(L)][size_t(((h - r.kv_heads.begin) * lt + i) * E + e)] !=
                     kv_value(L, int(h), pos, e);
          }
    }
  }
  double bad_d = double(bad);
  world.all_reduce_max(&bad_d, 1);
  const double bytes = double(tokens) * m.kv_heads * double(E) * 4.0 * o.layers;  // fp32
  const double med = median(secs);
  if (rank == 0) {
    std::printf(
        "kv-transfer: %s, %lld tokens x %d layer(s), prefill TP %d -> decode KVP x TPA %dx%d "
        "(block %d): %zu block moves, %.3f MB, median %.3f ms, %.3f GB/s, verified %s\n",
        m.name.c_str(), static_cast<long long>(tokens), o.layers, P, l.kvp, l.tpa, l.kv_block,
        plan.size(), bytes / 1e6, med * 1e3, bytes / med / 1e9,
        bad_d == 0 ? "yes" : "NO (misplaced values)");
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
      h5::attr(g.id(), "block_moves", int64_t(plan.size()));
      h5::attr(g.id(), "bytes", bytes);
      h5::attr(g.id(), "dtype", "fp32");
      h5::attr(g.id(), "comm_backend", "mpi-host");
      h5::attr(g.id(), "verified", bad_d == 0);
      h5::attr(g.id(), "gbps_median", bytes / med / 1e9);
      h5::write(g.id(), "transfer_s", {hsize_t(secs.size())}, secs.data(), "s");
      f.commit();
    }
  }
  return bad_d == 0 ? 0 : 3;
}

}  // namespace helix
