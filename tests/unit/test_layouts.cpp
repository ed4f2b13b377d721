// Model specs, partitions, layout defaults and validation, rank shards and schedules.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "layouts/layout.hpp"
#include "layouts/model_spec.hpp"
#include "layouts/partition.hpp"
#include "layouts/schedule.hpp"

namespace helix {
namespace {

TEST(ModelSpec, BuiltinModelsLoadWithTheirPublishedShapes) {
  const auto names = builtin_model_names();
  EXPECT_EQ(names.size(), 6u);
  const ModelSpec l = load_model("llama-3.1-405b");
  EXPECT_EQ(l.hidden, 16384);
  EXPECT_EQ(l.q_heads, 128);
  EXPECT_EQ(l.kv_heads, 8);
  EXPECT_EQ(l.ffn, 53248);
  EXPECT_EQ(l.layers, 126);
  const ModelSpec d = load_model("deepseek-r1");
  EXPECT_TRUE(d.is_mla());
  EXPECT_EQ(d.attn_qk_dim(), 576);
  EXPECT_EQ(d.attn_out_dim(), 512);
  EXPECT_EQ(d.attn_value_dim(), 128);  // partials exchanged after W_uv
  EXPECT_EQ(l.attn_value_dim(), 128);
  EXPECT_EQ(d.moe.routed_experts, 256);
  EXPECT_EQ(d.moe.top_k, 8);
  EXPECT_EQ(d.dense_layers(), 3);
  EXPECT_EQ(d.moe_layers(), 58);
}

TEST(ModelSpec, ParameterCountsMatchThePublishedTotals) {
  // DeepSeek-R1: 671B parameters, 37B active; our layer counts + embeddings + output head
  // (the MTP module excluded) should land within 1%.
  const ModelSpec d = load_model("deepseek-r1");
  const double embed = 2.0 * d.vocab * d.hidden;
  const double total = d.dense_layers() * double(d.layer_params(LayerKind::dense)) +
                       d.moe_layers() * double(d.layer_params(LayerKind::moe)) + embed;
  EXPECT_NEAR(total / 671e9, 1.0, 0.01);
  // Llama-3.1-405B: 405B (with untied embeddings).
  const ModelSpec l = load_model("llama-3.1-405b");
  const double lt = l.layers * double(l.layer_params(LayerKind::dense)) + 2.0 * l.vocab * l.hidden;
  EXPECT_NEAR(lt / 405.8e9, 1.0, 0.01);
}

TEST(ModelSpec, TestModelsAreSmallAndHaveTheRequiredShapes) {
  const ModelSpec g = load_model("tiny-gqa");
  EXPECT_GE(g.kv_heads, 4);
  EXPECT_EQ(g.group(), 4);
  EXPECT_LT(g.layer_params(LayerKind::dense) * 4, 8 << 20);  // a few MB in fp32
  const ModelSpec m = load_model("tiny-mla-moe");
  EXPECT_TRUE(m.is_mla());
  EXPECT_GE(m.moe.routed_experts, 8);
  EXPECT_GE(m.moe.top_k, 2);
  EXPECT_EQ(m.moe.shared_experts, 1);
  EXPECT_EQ(m.mla.kv_lora, 512);
  EXPECT_EQ(m.mla.qk_rope, 64);
  EXPECT_LT(m.layer_params(LayerKind::moe) * 4, 12 << 20);
}

TEST(ModelSpec, BadModelsAreRejectedWithTheField) {
  EXPECT_THROW(load_model("no-such-model"), std::invalid_argument);
  EXPECT_THROW(parse_model_json("{", "x"), std::invalid_argument);
  try {
    parse_model_json(
        R"({"name":"x","layers":1,"hidden":8,"q_heads":3,"kv_heads":2,"head_dim":4,"ffn":8})", "x");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("q_heads"), std::string::npos);
  }
}

TEST(Partition, BalancedRangesTileTheWhole) {
  for (int64_t n : {1, 7, 16, 100})
    for (int64_t parts : {1, 2, 3, 6, 8}) {
      int64_t next = 0;
      for (int64_t p = 0; p < parts; ++p) {
        const Range r = balanced_range(n, parts, p);
        EXPECT_EQ(r.begin, next);
        EXPECT_LE(r.size(), n / parts + 1);
        EXPECT_GE(r.size(), n / parts);
        next = r.end;
      }
      EXPECT_EQ(next, n);
    }
}

TEST(Partition, RoundRobinBlocksAreConsistent) {
  std::mt19937 g(7);
  for (int64_t kvp : {1, 2, 3, 8})
    for (int64_t block : {1, 4, 16}) {
      BlockPlacement p{kvp, block};
      const int64_t n = 1000 + int64_t(g() % 97);
      std::vector<int64_t> seen(static_cast<size_t>(kvp), 0);
      for (int64_t pos = 0; pos < n; ++pos) {
        const int64_t k = p.owner(pos);
        EXPECT_EQ(p.local_index(pos), seen[k]);  // local caches fill in position order
        EXPECT_EQ(p.global_pos(k, seen[k]), pos);
        ++seen[k];
      }
      for (int64_t k = 0; k < kvp; ++k) EXPECT_EQ(p.count(n, k), seen[k]);
      // Shards grow evenly: they never differ by more than one block.
      const auto [mn, mx] = std::minmax_element(seen.begin(), seen.end());
      EXPECT_LE(*mx - *mn, block);
    }
}

TEST(Layout, DefaultsFollowThePaper) {
  const ModelSpec l = load_model("llama-3.1-405b");
  const ModelSpec d = load_model("deepseek-r1");
  auto p = make_layout(LayoutKind::helix, 64, l, LayerKind::dense, 8, {});
  EXPECT_EQ(p.tpa, 8);  // TPA = min(K, N)
  EXPECT_EQ(p.kvp, 8);
  EXPECT_EQ(p.tpf, 64);
  EXPECT_EQ(p.ep, 1);
  p = make_layout(LayoutKind::helix, 4, l, LayerKind::dense, 8, {});
  EXPECT_EQ(p.tpa, 4);
  EXPECT_EQ(p.kvp, 1);
  p = make_layout(LayoutKind::helix, 32, d, LayerKind::moe, 8, {});
  EXPECT_EQ(p.tpa, 1);
  EXPECT_EQ(p.kvp, 32);
  EXPECT_EQ(p.ep, 32);
  EXPECT_EQ(p.tpf, 1);
  p = make_layout(LayoutKind::kvp, 16, l, LayerKind::dense, 8, {});
  EXPECT_EQ(p.ffn_ranks(), 8);  // Medha: the FFN stays on the TPA group
  EXPECT_EQ(p.tpf * p.ep, 8);
  p = make_layout(LayoutKind::helix_hopb, 8, l, LayerKind::dense, 2, {});
  EXPECT_EQ(p.hopb_chunks, 2);  // min(B, 4)
  EXPECT_EQ(hopb_chunks_at(8, 3), 3);
  EXPECT_EQ(hopb_chunks_at(2, 64), 2);
  // ep (data-parallel attention) is priced by the cost model only: parsed, never run.
  EXPECT_EQ(parse_layout("ep"), LayoutKind::ep);
  EXPECT_FALSE(runs_on_executors(LayoutKind::ep));
  EXPECT_TRUE(is_baseline(LayoutKind::ep));
  p = make_layout(LayoutKind::ep, 8, d, LayerKind::moe, 8, {});
  EXPECT_NE(validate_layout(p, d, LayerKind::moe, 8).find("cost model only"), std::string::npos);
  for (auto k : {LayoutKind::tp, LayoutKind::kvp, LayoutKind::helix, LayoutKind::helix_hopb})
    for (int n : {1, 2, 3, 4, 6, 8})
      for (const char* name : {"tiny-gqa", "tiny-mla-moe"}) {
        const ModelSpec m = load_model(name);
        const auto q = make_layout(k, n, m, m.default_layer_kind(), 3, {});
        EXPECT_EQ(validate_layout(q, m, m.default_layer_kind(), 3), "")
            << to_string(k) << " n=" << n << " " << name;
      }
}

std::string check(LayoutKind k, int n, const char* model, LayoutRequest r, int batch = 4) {
  const ModelSpec m = load_model(model);
  const auto p = make_layout(k, n, m, m.default_layer_kind(), batch, r);
  return validate_layout(p, m, m.default_layer_kind(), batch);
}

TEST(Layout, ValidationNamesTheParameterAndTheRule) {
  LayoutRequest r;
  r.kvp = 3;
  r.tpa = 2;
  EXPECT_NE(check(LayoutKind::helix, 4, "tiny-gqa", r).find("--kvp/--tpa"), std::string::npos);
  r = {};
  r.tpa = 8;
  r.kvp = 1;
  EXPECT_NE(check(LayoutKind::helix, 8, "tiny-gqa", r).find("TPA <= KV heads"), std::string::npos);
  r = {};
  r.tpf = 3;
  r.ep = 1;
  EXPECT_NE(check(LayoutKind::helix, 4, "tiny-gqa", r).find("--tpf/--ep"), std::string::npos);
  r = {};
  r.ep = 3;
  r.tpf = 1;
  EXPECT_NE(check(LayoutKind::helix, 3, "tiny-mla-moe", r).find("must divide the 8 routed experts"),
            std::string::npos);
  r = {};
  r.ep = 2;
  r.tpf = 2;
  EXPECT_NE(check(LayoutKind::helix, 4, "tiny-gqa", r).find("dense"), std::string::npos);
  r = {};
  EXPECT_NE(check(LayoutKind::tp, 32, "tiny-gqa", r).find("query heads"), std::string::npos);
  r.hopb_chunks = 0;
  EXPECT_NE(check(LayoutKind::helix_hopb, 2, "tiny-gqa", r).find("--hopb-chunks"),
            std::string::npos);
}

// Every head, KV head and FFN column is owned exactly once; groups partition the world.
TEST(RankShard, OwnershipTilesTheLayer) {
  for (const char* name : {"tiny-gqa", "tiny-mla-moe", "llama-3.1-405b"})
    for (auto k : {LayoutKind::tp, LayoutKind::kvp, LayoutKind::helix, LayoutKind::helix_hopb})
      for (int n : {1, 2, 3, 4, 6, 8}) {
        const ModelSpec m = load_model(name);
        const LayerKind layer = m.default_layer_kind();
        const auto p = make_layout(k, n, m, layer, 4, {});
        ASSERT_EQ(validate_layout(p, m, layer, 4), "");
        std::vector<int> o_count(size_t(m.q_heads), 0);
        int64_t cols = 0, shared = 0;
        std::map<int64_t, int> expert_cols;
        for (int r = 0; r < n; ++r) {
          const RankShard rp = rank_shard(m, layer, p, r);
          for (int64_t h = rp.o_heads.begin; h < rp.o_heads.end; ++h) ++o_count[size_t(h)];
          EXPECT_TRUE(rp.q_heads.begin >= 0 && rp.q_heads.end <= m.q_heads);
          // Every attended query head has its KV head in the cache.
          EXPECT_GE(rp.q_heads.begin / m.group(), rp.kv_heads.begin);
          EXPECT_LE((rp.q_heads.end - 1) / m.group(), rp.kv_heads.end - 1);
          cols += rp.dense_cols.size();
          shared += rp.shared_cols.size();
          for (int64_t e = rp.experts.begin; e < rp.experts.end; ++e)
            expert_cols[e] += int(rp.expert_cols.size());
          for (Group g :
               {Group::world, Group::kvp, Group::tpa, Group::ffn, Group::tpf, Group::ep}) {
            const auto members = group_members(p, g, r);
            if (members.empty()) continue;
            EXPECT_NE(std::find(members.begin(), members.end(), r), members.end());
            for (int other : members) EXPECT_EQ(group_members(p, g, other), members);
          }
        }
        for (int c : o_count) EXPECT_EQ(c, 1) << name << " " << to_string(k) << " n=" << n;
        if (layer == LayerKind::dense) {
          EXPECT_EQ(cols, m.ffn);
        }
        if (layer == LayerKind::moe) {
          EXPECT_EQ(shared, int64_t(m.moe.shared_experts) * m.moe.expert_ffn);
          EXPECT_EQ(int64_t(expert_cols.size()), m.moe.routed_experts);
          for (auto [e, c] : expert_cols) EXPECT_EQ(c, m.moe.expert_ffn);
        }
      }
}

// The heads a rank's partials carry to its KVP peers: the peers' owned heads, in KVP order,
// tiling the rank's query heads (kvp: all to k = 0).
TEST(RankShard, PeerHeadRangesTileTheQueryHeads) {
  for (const char* name : {"tiny-gqa", "tiny-mla-moe", "llama-3.1-405b"})
    for (auto k : {LayoutKind::tp, LayoutKind::kvp, LayoutKind::helix, LayoutKind::helix_hopb})
      for (int n : {1, 2, 3, 4, 6, 8}) {
        const ModelSpec m = load_model(name);
        const LayerKind layer = m.default_layer_kind();
        const auto p = make_layout(k, n, m, layer, 4, {});
        ASSERT_EQ(validate_layout(p, m, layer, 4), "");
        for (int r = 0; r < n; ++r) {
          const RankShard rp = rank_shard(m, layer, p, r);
          const std::vector<Range> heads = peer_head_ranges(m, rp);
          ASSERT_EQ(int(heads.size()), p.kvp);
          const std::vector<int> peers = group_members(p, Group::kvp, r);
          int64_t next = 0;
          for (size_t j = 0; j < heads.size(); ++j) {
            const RankShard peer = rank_shard(m, layer, p, peers[j]);
            EXPECT_EQ(heads[j].begin + rp.q_heads.begin, peer.o_heads.begin);
            EXPECT_EQ(heads[j].end + rp.q_heads.begin, peer.o_heads.end);
            if (heads[j].empty()) continue;
            EXPECT_EQ(heads[j].begin, next);
            next = heads[j].end;
          }
          EXPECT_EQ(next, rp.q_heads.size()) << name << " " << to_string(k) << " n=" << n;
        }
      }
}

int count_ops(const std::vector<Step>& s, Op op) {
  return int(std::count_if(s.begin(), s.end(), [&](const Step& x) { return x.op == op; }));
}

TEST(Schedule, StepsOfEachLayout) {
  const ModelSpec m = load_model("llama-3.1-405b");
  const int B = 8;
  const int64_t S = 1 << 20;
  LayoutRequest r;
  const auto tp = make_layout(LayoutKind::tp, 16, m, LayerKind::dense, B, r);
  auto s = build_schedule(m, rank_shard(m, LayerKind::dense, tp, 0), B, S).steps;
  EXPECT_EQ(count_ops(s, Op::a2a), 0);
  EXPECT_EQ(count_ops(s, Op::combine), 0);
  EXPECT_EQ(count_ops(s, Op::o_allreduce), 1);
  // TP 16 > 8 KV heads: each rank still reads one whole KV head (duplication).
  const auto& att =
      *std::find_if(s.begin(), s.end(), [](const Step& x) { return x.op == Op::attention; });
  EXPECT_DOUBLE_EQ(att.work.kv_elems, double(B) * 1 * (S + 1) * 2 * 128);

  const auto hx = make_layout(LayoutKind::helix, 64, m, LayerKind::dense, B, r);
  s = build_schedule(m, rank_shard(m, LayerKind::dense, hx, 0), B, S).steps;
  const auto& a2a =
      *std::find_if(s.begin(), s.end(), [](const Step& x) { return x.op == Op::a2a; });
  // helix.md step 4: the send buffer holds B x (Q/TPA) heads x (Hsz + 1 LSE), independent of S.
  EXPECT_DOUBLE_EQ(a2a.work.comm_elems, B * (128.0 / 8) * (128 + 1));
  EXPECT_EQ(a2a.work.group_size, 8);
  const auto& att2 =
      *std::find_if(s.begin(), s.end(), [](const Step& x) { return x.op == Op::attention; });
  EXPECT_NEAR(att2.work.kv_elems, double(B) * 1 * (S / 8.0) * 256, B * 256.0 * 16);

  const auto hb = make_layout(LayoutKind::helix_hopb, 64, m, LayerKind::dense, B, r);
  s = build_schedule(m, rank_shard(m, LayerKind::dense, hb, 0), B, S).steps;
  EXPECT_EQ(count_ops(s, Op::attention), 4);
  EXPECT_EQ(count_ops(s, Op::a2a_start), 4);
  EXPECT_EQ(count_ops(s, Op::a2a_wait), 1);

  const auto kv = make_layout(LayoutKind::kvp, 64, m, LayerKind::dense, B, r);
  s = build_schedule(m, rank_shard(m, LayerKind::dense, kv, 9), B, S)
          .steps;  // not in the FFN group
  EXPECT_EQ(count_ops(s, Op::gather_partials), 1);
  EXPECT_EQ(count_ops(s, Op::ffn_compute), 0);
  EXPECT_EQ(count_ops(s, Op::out_bcast), 1);
  s = build_schedule(m, rank_shard(m, LayerKind::dense, kv, 0), B, S).steps;
  EXPECT_EQ(count_ops(s, Op::ffn_compute), 1);
  const auto& f =
      *std::find_if(s.begin(), s.end(), [](const Step& x) { return x.op == Op::ffn_compute; });
  // FFN on 8 ranks only: each reads 3 H F / 8 weights.
  EXPECT_NEAR(f.work.weight_elems, 3.0 * 16384 * 53248 / 8, 16384 * 2.0);
}

const Step& first_op(const std::vector<Step>& s, Op op) {
  return *std::find_if(s.begin(), s.end(), [&](const Step& x) { return x.op == op; });
}

size_t index_of(const std::vector<Step>& s, Op op) {
  return size_t(std::find_if(s.begin(), s.end(), [&](const Step& x) { return x.op == op; }) -
                s.begin());
}

TEST(Schedule, MlaExchangesValueSpacePartials) {
  // DeepSeek-R1: 128 heads, latent 512, v_head 128. Each KV shard's latent partial is up-projected
  // by W_uv before the exchange, so every (request, head) moves v_head values + 1 LSE, not
  // kv_lora + 1.
  const ModelSpec m = load_model("deepseek-r1");
  const int B = 8;
  const int64_t S = 1 << 20;
  const double per_head = m.mla.v_head + 1;
  ASSERT_EQ(per_head, 129);
  LayoutRequest r;
  const auto hx = make_layout(LayoutKind::helix, 64, m, LayerKind::moe, B, r);
  ASSERT_EQ(hx.kvp, 64);
  const RankShard p = rank_shard(m, LayerKind::moe, hx, 5);
  auto s = build_schedule(m, p, B, S).steps;
  EXPECT_EQ(count_ops(s, Op::v_up), 1);
  EXPECT_LT(index_of(s, Op::attention), index_of(s, Op::v_up));
  EXPECT_LT(index_of(s, Op::v_up), index_of(s, Op::pack));
  EXPECT_EQ(index_of(s, Op::pack) + 1, index_of(s, Op::a2a));
  const Step& a2a = first_op(s, Op::a2a);
  EXPECT_DOUBLE_EQ(a2a.work.comm_elems, B * 128.0 * per_head);
  // W_uv of all 128 attended heads on every KVP rank; W_O only for the 2 owned heads.
  const Step& up = first_op(s, Op::v_up);
  EXPECT_EQ(up.phase, Phase::o_proj);
  EXPECT_DOUBLE_EQ(up.work.weight_elems, 128.0 * 512 * 128);
  EXPECT_DOUBLE_EQ(up.work.flops, 2.0 * B * 128 * 512 * 128);
  EXPECT_DOUBLE_EQ(first_op(s, Op::o_proj).work.weight_elems, 2.0 * 128 * m.hidden);
  EXPECT_DOUBLE_EQ(first_op(s, Op::combine).work.flops, 3.0 * 64 * B * 2 * 128);

  // HOP-B: one W_uv per chunk, before that chunk's pack and exchange; the chunks add up to the
  // same volume, and W_uv's bytes are read once (the later chunks find it in L2).
  auto hb = make_layout(LayoutKind::helix_hopb, 64, m, LayerKind::moe, B, r);
  hb.hopb_chunks = 4;
  s = build_schedule(m, rank_shard(m, LayerKind::moe, hb, 0), B, S).steps;
  EXPECT_EQ(count_ops(s, Op::v_up), 4);
  double sent = 0, wuv = 0, wuv_flops = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i].op == Op::v_up) {
      wuv += s[i].work.weight_elems;
      wuv_flops += s[i].work.flops;
    }
    if (s[i].op != Op::a2a_start) continue;
    sent += s[i].work.comm_elems;
    ASSERT_GE(i, 3u);
    EXPECT_EQ(s[i - 1].op, Op::pack);
    EXPECT_EQ(s[i - 2].op, Op::v_up);
    EXPECT_EQ(s[i - 2].chunk, s[i].chunk);
    EXPECT_EQ(s[i - 3].op, Op::attention);
  }
  EXPECT_DOUBLE_EQ(sent, B * 128.0 * per_head);
  EXPECT_DOUBLE_EQ(wuv, 128.0 * 512 * 128);
  EXPECT_DOUBLE_EQ(wuv_flops, 2.0 * B * 128 * 512 * 128);

  // kvp: the gathered output holds KVP blocks of value-space partials.
  const auto kv = make_layout(LayoutKind::kvp, 8, m, LayerKind::moe, B, r);
  s = build_schedule(m, rank_shard(m, LayerKind::moe, kv, 3), B, S).steps;
  EXPECT_DOUBLE_EQ(first_op(s, Op::gather_partials).work.comm_elems, 8.0 * B * 128 * per_head);

  // tp: no exchange, W_uv still right after attention, then W_O.
  const auto tp = make_layout(LayoutKind::tp, 8, m, LayerKind::moe, B, r);
  s = build_schedule(m, rank_shard(m, LayerKind::moe, tp, 0), B, S).steps;
  EXPECT_EQ(index_of(s, Op::v_up), index_of(s, Op::attention) + 1);
  EXPECT_DOUBLE_EQ(first_op(s, Op::v_up).work.weight_elems, 16.0 * 512 * 128);

  // GQA has no up-projection step: its partials are already head_dim wide.
  const ModelSpec g = load_model("llama-3.1-405b");
  const auto gl = make_layout(LayoutKind::helix, 64, g, LayerKind::dense, B, r);
  EXPECT_EQ(
      count_ops(build_schedule(g, rank_shard(g, LayerKind::dense, gl, 0), B, S).steps, Op::v_up),
      0);
}

TEST(Schedule, HopbChunksCoverTheBatch) {
  for (int b : {1, 3, 8, 33})
    for (int c = 1; c <= b && c <= 8; ++c) {
      const auto ch = batch_chunks(b, c);
      EXPECT_EQ(int(ch.size()), c);
      EXPECT_EQ(ch.front().begin, 0);
      EXPECT_EQ(ch.back().end, b);
      for (size_t i = 1; i < ch.size(); ++i) EXPECT_EQ(ch[i].begin, ch[i - 1].end);
    }
}

}  // namespace
}  // namespace helix
