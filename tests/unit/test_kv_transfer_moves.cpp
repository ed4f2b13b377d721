// The KV transfer moves from a TP prefill layout to a Helix decode layout, checked by applying it
// in memory: every decode slot must receive the value of its global (head, position).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <tuple>

#include "bench/kv_transfer/job.hpp"
#include "kernels/copy_segments.hpp"
#include "layouts/kv_transfer_moves.hpp"

namespace helix {
namespace {

double value(int64_t head, int64_t pos, int64_t e) {
  return double(head * 1000000 + pos * 1000 + e);
}

// Applies the moves to filled prefill buffers; returns the decode buffers.
std::vector<std::vector<double>> apply(const ModelSpec& m, const KvTransferLayouts& l,
                                       int64_t tokens, const std::vector<KvBlockMove>& moves) {
  const int64_t E = m.kv_elems_per_token_per_head();
  std::vector<std::vector<double>> src(size_t(l.prefill_ranks)), dst(size_t(l.decode_ranks()));
  for (int p = 0; p < l.prefill_ranks; ++p) {
    const RankShard r = prefill_rank_shard(m, l, p);
    src[size_t(p)].resize(size_t(prefill_buffer_elems(m, l, p, tokens)));
    for (int64_t h = r.kv_heads.begin; h < r.kv_heads.end; ++h)
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t e = 0; e < E; ++e)
          src[size_t(p)][size_t(((h - r.kv_heads.begin) * tokens + t) * E + e)] = value(h, t, e);
  }
  for (int d = 0; d < l.decode_ranks(); ++d)
    dst[size_t(d)].assign(size_t(decode_buffer_elems(m, l, d, tokens)), -1.0);
  for (const KvBlockMove& mv : moves) {
    auto& s = src[size_t(mv.src_rank)];
    auto& d = dst[size_t(mv.dst_rank)];
    if (mv.src_offset < 0 || mv.dst_offset < 0 || mv.src_offset + mv.elems > int64_t(s.size()) ||
        mv.dst_offset + mv.elems > int64_t(d.size())) {
      ADD_FAILURE() << "move out of its buffers: head " << mv.head << " pos " << mv.pos_begin;
      continue;
    }
    for (int64_t i = 0; i < mv.elems; ++i) {
      EXPECT_EQ(d[size_t(mv.dst_offset + i)], -1.0) << "slot written twice";
      d[size_t(mv.dst_offset + i)] = s[size_t(mv.src_offset + i)];
    }
  }
  return dst;
}

void check_landed(const ModelSpec& m, const KvTransferLayouts& l, int64_t tokens) {
  ASSERT_EQ(validate_kv_transfer(m, l), "");
  const auto moves = kv_transfer_moves(m, l, tokens);
  const auto dst = apply(m, l, tokens, moves);
  const int64_t E = m.kv_elems_per_token_per_head();
  for (int d = 0; d < l.decode_ranks(); ++d) {
    const RankShard r = decode_rank_shard(m, l, d);
    const int64_t lt = r.local_tokens(tokens);
    for (int64_t h = r.kv_heads.begin; h < r.kv_heads.end; ++h)
      for (int64_t i = 0; i < lt; ++i)
        for (int64_t e = 0; e < E; e += E - 1)
          ASSERT_EQ(dst[size_t(d)][size_t(((h - r.kv_heads.begin) * lt + i) * E + e)],
                    value(h, r.placement.global_pos(r.kvp_index, i), e))
              << "decode rank " << d << " head " << h << " local " << i;
  }
}

TEST(KvTransferPlan, EveryBlockLandsWhereTheDecodeLayoutExpectsIt) {
  const ModelSpec g = load_model("tiny-gqa");  // 4 KV heads
  for (auto [P, kvp, tpa, block, tokens] :
       std::vector<std::tuple<int, int, int, int, int64_t>>{{2, 2, 2, 16, 1000},
                                                            {1, 4, 1, 7, 333},
                                                            {8, 1, 4, 16, 64},
                                                            {3, 3, 2, 5, 101},
                                                            {16, 2, 4, 4, 17}}) {
    KvTransferLayouts l;
    l.prefill_ranks = P;
    l.kvp = kvp;
    l.tpa = tpa;
    l.kv_block = block;
    SCOPED_TRACE(::testing::Message() << "P " << P << " KVPxTPA " << kvp << "x" << tpa);
    check_landed(g, l, tokens);
  }
  KvTransferLayouts l;
  l.prefill_ranks = 4;
  l.kvp = 3;
  l.tpa = 1;
  l.kv_block = 8;
  check_landed(load_model("tiny-mla-moe"), l, 250);
}

TEST(KvTransferPlan, DuplicatedHeadsShareTheEgress) {
  // MLA: one latent, every TP prefill rank holds it; blocks take turns over the replicas.
  const ModelSpec m = load_model("tiny-mla-moe");
  KvTransferLayouts l;
  l.prefill_ranks = 4;
  l.kvp = 2;
  l.kv_block = 16;
  std::vector<int64_t> sent(4, 0);
  for (const auto& mv : kv_transfer_moves(m, l, 16 * 40)) sent[size_t(mv.src_rank)] += mv.elems;
  for (int64_t s : sent) EXPECT_EQ(s, sent[0]);
  EXPECT_GT(sent[0], 0);
}

// Every rank's job of `helix-bench kv-transfer`, run in memory: prefill ranks pack, each peer's
// part travels to the matching part of the receiver's buffer, decode ranks unpack; then every
// decode cache holds the value of its global (layer, head, position). Both element sizes (fp32 on
// the CPU backend, 16 bits on CUDA).
void check_jobs(const ModelSpec& m, const KvTransferLayouts& l, int64_t tokens, int layers,
                int elem_bytes) {
  const auto moves = kv_transfer_moves(m, l, tokens);
  const int W = l.prefill_ranks + l.decode_ranks();
  std::vector<KvTransferJob> jobs;
  const size_t nw = size_t(W);
  std::vector<std::vector<unsigned char>> cache(nw), sendbuf(nw), recvbuf(nw);
  for (int r = 0; r < W; ++r) {
    jobs.push_back(make_kv_transfer_job(m, l, moves, r, tokens, layers, elem_bytes));
    const KvTransferJob& j = jobs.back();
    cache[size_t(r)].assign(size_t(j.cache_bytes()), 0xFF);
    sendbuf[size_t(r)].resize(size_t(j.send_total));
    recvbuf[size_t(r)].resize(size_t(j.recv_total));
    if (j.is_prefill) fill_prefill_cache(m, l, j, cache[size_t(r)].data());
    for (int64_t off : j.send_offset) EXPECT_EQ(off % 16, 0);
    for (int64_t off : j.recv_offset) EXPECT_EQ(off % 16, 0);
  }
  for (int r = 0; r < W; ++r)
    cpu::copy_segments(cache[size_t(r)].data(), sendbuf[size_t(r)].data(),
                       jobs[size_t(r)].pack.data(), int64_t(jobs[size_t(r)].pack.size()));
  for (int s = 0; s < W; ++s)
    for (int r = 0; r < W; ++r) {
      const int64_t n = jobs[size_t(s)].send_bytes[size_t(r)];
      ASSERT_EQ(n, jobs[size_t(r)].recv_bytes[size_t(s)]) << s << " -> " << r;
      std::copy_n(sendbuf[size_t(s)].begin() + jobs[size_t(s)].send_offset[size_t(r)], n,
                  recvbuf[size_t(r)].begin() + jobs[size_t(r)].recv_offset[size_t(s)]);
    }
  for (int r = l.prefill_ranks; r < W; ++r) {
    const KvTransferJob& j = jobs[size_t(r)];
    EXPECT_GT(count_misplaced(m, l, j, cache[size_t(r)].data()), 0) << "nothing landed yet";
    cpu::copy_segments(recvbuf[size_t(r)].data(), cache[size_t(r)].data(), j.unpack.data(),
                       int64_t(j.unpack.size()));
    EXPECT_EQ(count_misplaced(m, l, j, cache[size_t(r)].data()), 0) << "decode rank " << r;
  }
}

TEST(KvTransferJob, PackTravelUnpackLandsEveryValue) {
  KvTransferLayouts l;
  l.prefill_ranks = 3;
  l.kvp = 2;
  l.tpa = 2;
  l.kv_block = 5;
  for (int eb : {4, 2}) check_jobs(load_model("tiny-gqa"), l, 77, 2, eb);
  l.prefill_ranks = 2;
  l.kvp = 3;
  l.tpa = 1;
  l.kv_block = 7;
  for (int eb : {4, 2}) check_jobs(load_model("tiny-mla-moe"), l, 999, 2, eb);
}

TEST(KvTransferJob, MisplacedValuesAreCounted) {
  const ModelSpec m = load_model("tiny-gqa");
  KvTransferLayouts l;
  l.prefill_ranks = 1;
  l.kvp = 2;
  l.tpa = 1;
  l.kv_block = 4;
  for (int eb : {4, 2}) {
    const auto moves = kv_transfer_moves(m, l, 40);
    const KvTransferJob j = make_kv_transfer_job(m, l, moves, 1, 40, 1, eb);
    std::vector<unsigned char> c(size_t(j.cache_bytes()), 0xFF);  // nothing landed
    const int64_t elems = j.cache_bytes() / eb;
    EXPECT_EQ(count_misplaced(m, l, j, c.data()), elems);
    // 16-bit values never take the fill 0xFFFF; fp32 values are integers, never NaN.
    EXPECT_NE(kv_value_u16(0, 0, 0, 0), 0xFFFFu);
  }
}

TEST(KvTransferPlan, BadLayoutsAreNamed) {
  const ModelSpec g = load_model("tiny-gqa");
  KvTransferLayouts l;
  l.tpa = 8;
  EXPECT_NE(validate_kv_transfer(g, l).find("--tpa"), std::string::npos);
  l.tpa = 1;
  l.prefill_ranks = 17;
  EXPECT_NE(validate_kv_transfer(g, l).find("--prefill-ranks"), std::string::npos);
}

}  // namespace
}  // namespace helix
