// The schedule as the executors' whole contract: the exchange layouts of every rank agree with
// each other, every offset stays inside the buffers the table sizes, the combine blocks cover the
// received partials, and the steps name the buffers they read.
#include <gtest/gtest.h>

#include <algorithm>

#include "layouts/layout.hpp"
#include "layouts/schedule.hpp"

using namespace helix;

namespace {

struct Case {
  const char* model;
  LayoutKind kind;
  int n;
  LayoutRequest req;
  int batch;
};

std::vector<Case> cases() {
  std::vector<Case> v;
  for (const char* m : {"tiny-gqa", "tiny-mla-moe", "llama-3.1-70b", "deepseek-r1"})
    for (LayoutKind k :
         {LayoutKind::tp, LayoutKind::kvp, LayoutKind::helix, LayoutKind::helix_hopb})
      for (int n : {1, 2, 3, 4, 6, 8})
        for (int b : {1, 3, 8}) v.push_back({m, k, n, {}, b});
  LayoutRequest r;
  r.kvp = 4;
  r.tpa = 1;
  r.hopb_chunks = 3;
  v.push_back({"tiny-gqa", LayoutKind::helix_hopb, 4, r, 7});
  v.push_back({"tiny-gqa", LayoutKind::kvp, 4, r, 5});
  return v;
}

const Step* find(const Schedule& s, Op op) {
  for (const Step& st : s.steps)
    if (st.op == op) return &st;
  return nullptr;
}

}  // namespace

TEST(ScheduleContract, ExchangesAgreeAcrossRanksAndStayInsideTheBuffers) {
  int exchanges = 0;
  for (const Case& c : cases()) {
    const ModelSpec m = load_model(c.model);
    const LayerKind layer = m.default_layer_kind();
    const LayoutParams p = make_layout(c.kind, c.n, m, layer, c.batch, c.req);
    if (!validate_layout(p, m, layer, c.batch).empty()) continue;
    std::vector<Schedule> s;
    for (int r = 0; r < c.n; ++r)
      s.push_back(build_schedule(m, rank_shard(m, layer, p, r), c.batch, 100));
    const std::string what = std::string(c.model) + " " + to_string(c.kind) +
                             " N=" + std::to_string(c.n) + " B=" + std::to_string(c.batch);
    for (int r = 0; r < c.n; ++r) {
      const RankShard me = rank_shard(m, layer, p, r);
      const std::vector<int> kvp = group_members(p, Group::kvp, r);
      int chunk_steps = 0;
      int64_t covered = 0;
      for (const Step& st : s[size_t(r)].steps) {
        if (st.op != Op::a2a && st.op != Op::a2a_start && st.op != Op::gather_partials) continue;
        ++chunk_steps;
        ++exchanges;
        covered += st.batch.size();
        const Exchange& x = st.exchange;
        EXPECT_NE(st.input, Buffer::none) << what;
        ASSERT_EQ(x.recv_counts.size(), kvp.size()) << what;
        const BufferTable& t = s[size_t(r)].buffers;
        int64_t sent = 0;
        for (size_t j = 0; j < x.send_counts.size(); ++j) {
          EXPECT_LE(x.send_offset + x.send_displs[j] + x.send_counts[j], t[Buffer::send]) << what;
          sent += x.send_counts[j];
        }
        // What is packed is what is sent: every peer's O and LSE block of its heads.
        int64_t packed = 0;
        for (const Range& h : x.peer_heads) packed += st.batch.size() * h.size() * (x.dim + 1);
        EXPECT_EQ(packed, sent) << what;
        for (size_t j = 0; j < kvp.size(); ++j) {
          EXPECT_LE(x.recv_offset + x.recv_displs[j] + x.recv_counts[j], t[Buffer::recv]) << what;
          // Peer j's step for the same chunk sends this rank exactly what it expects.
          const Schedule& peer = s[size_t(kvp[j])];
          const auto it = std::find_if(peer.steps.begin(), peer.steps.end(), [&](const Step& q) {
            return q.op == st.op && q.chunk == st.chunk;
          });
          ASSERT_NE(it, peer.steps.end()) << what;
          const Exchange& px = it->exchange;
          const size_t me_in_group = size_t(me.kvp_index);
          const int64_t peer_sends = px.root < 0
                                         ? px.send_counts[me_in_group]
                                         : (int(me_in_group) == px.root ? px.send_counts[0] : 0);
          EXPECT_EQ(peer_sends, x.recv_counts[j]) << what << " rank " << r << " peer " << kvp[j];
        }
      }
      if (chunk_steps > 0) {
        EXPECT_EQ(covered, c.batch) << what;  // the chunks cover the batch
      }
      if (const Step* comb = find(s[size_t(r)], Op::combine)) {
        const BufferTable& t = s[size_t(r)].buffers;
        // One combine over the batch, whatever the chunks: it reads exactly what the exchanges
        // wrote, each received element once.
        ASSERT_EQ(comb->combine_blocks.size(), 1u) << what;
        const CombineBlock& b = comb->combine_blocks[0];
        EXPECT_EQ(b.parts, p.kvp);
        EXPECT_EQ(b.rows, int64_t(c.batch) * me.o_heads.size()) << what;
        EXPECT_LE(b.out_offset + b.rows * b.dim, t[Buffer::combined]) << what;
        std::vector<int> written(static_cast<size_t>(t[Buffer::recv]), 0);
        for (const Step& st : s[size_t(r)].steps) {
          if (st.op != Op::a2a && st.op != Op::a2a_start && st.op != Op::gather_partials) continue;
          const Exchange& x = st.exchange;
          for (size_t j = 0; j < x.recv_counts.size(); ++j)
            for (int64_t e = 0; e < x.recv_counts[j]; ++e)
              ++written[size_t(x.recv_offset + x.recv_displs[j] + e)];
        }
        std::vector<int> read(written.size(), 0);
        for (int i = 0; i < b.parts; ++i)
          for (int64_t row = 0; row < b.rows; ++row) {
            const int64_t at = i * b.part_stride + row * b.row_stride;
            for (int64_t d = 0; d < b.dim; ++d) ++read[size_t(b.o_offset + at + d)];
            ++read[size_t(b.lse_offset + at)];
          }
        EXPECT_EQ(read, written) << what;
        EXPECT_EQ(*std::max_element(read.begin(), read.end()), 1) << what;
      }
      if (const Step* o = find(s[size_t(r)], Op::o_proj)) {
        const Buffer want = find(s[size_t(r)], Op::combine)
                                ? Buffer::combined
                                : (m.is_mla() ? Buffer::part_v : Buffer::part_o);
        EXPECT_EQ(o->input, want) << what;
      }
      if (const Step* red = find(s[size_t(r)], Op::ffn_reduce)) {
        EXPECT_EQ(red->parts, p.ep) << what;
        EXPECT_EQ(red->input, p.ep > 1 ? Buffer::gathered : Buffer::ffn_part) << what;
      }
    }
  }
  EXPECT_GT(exchanges, 500);  // the cases above really exchange
}

TEST(ScheduleContract, HopbRunsPerChunkOnlyWhatItsExchangeNeeds) {
  // Per chunk: its attention (MLA: and W_uv), the pack of its rows and the start of its
  // All-to-All, in that order; then one wait, and from the combine on every step covers the whole
  // batch once, exactly as in the helix schedule of the same rank.
  for (const char* model : {"tiny-gqa", "tiny-mla-moe", "deepseek-r1", "llama-3.1-405b"}) {
    const ModelSpec m = load_model(model);
    const LayerKind layer = m.default_layer_kind();
    for (int chunks : {1, 2, 3, 8}) {
      const int B = 8, n = 4;
      LayoutRequest req;
      req.kvp = n;
      req.tpa = 1;
      req.hopb_chunks = chunks;
      const LayoutParams hp = make_layout(LayoutKind::helix_hopb, n, m, layer, B, req);
      const LayoutParams xp = make_layout(LayoutKind::helix, n, m, layer, B, req);
      ASSERT_EQ(validate_layout(hp, m, layer, B), "") << model;
      for (int r = 0; r < n; ++r) {
        const auto hs = build_schedule(m, rank_shard(m, layer, hp, r), B, 1000).steps;
        const auto xs = build_schedule(m, rank_shard(m, layer, xp, r), B, 1000).steps;
        const std::string what = std::string(model) + " C=" + std::to_string(chunks);
        size_t i = 2;  // after the prologue and the KV append, which cover the batch
        ASSERT_EQ(hs[0].op, Op::attn_prologue);
        ASSERT_EQ(hs[1].op, Op::kv_append);
        for (int c = 0; c < chunks; ++c) {
          std::vector<Op> want = {Op::attention, Op::pack, Op::a2a_start};
          if (m.is_mla()) want.insert(want.begin() + 1, Op::v_up);
          for (Op op : want) {
            ASSERT_LT(i, hs.size()) << what;
            EXPECT_EQ(hs[i].op, op) << what << " chunk " << c;
            EXPECT_EQ(hs[i].chunk, c) << what;
            EXPECT_EQ(hs[i].batch, batch_chunks(B, chunks)[size_t(c)]) << what;
            ++i;
          }
        }
        ASSERT_LT(i, hs.size()) << what;
        EXPECT_EQ(hs[i++].op, Op::a2a_wait) << what;
        // The rest is the helix schedule's rest, step for step, over the whole batch.
        const auto after =
            std::find_if(xs.begin(), xs.end(), [](const Step& st) { return st.op == Op::combine; });
        ASSERT_NE(after, xs.end());
        ASSERT_EQ(hs.size() - i, size_t(xs.end() - after)) << what;
        for (auto x = after; x != xs.end(); ++x, ++i) {
          EXPECT_EQ(hs[i].op, x->op) << what;
          EXPECT_EQ(hs[i].chunk, -1) << what;
          EXPECT_EQ(hs[i].batch, (Range{0, B})) << what;
          EXPECT_DOUBLE_EQ(hs[i].work.weight_elems, x->work.weight_elems) << what;
          EXPECT_DOUBLE_EQ(hs[i].work.flops, x->work.flops) << what;
          EXPECT_DOUBLE_EQ(hs[i].work.comm_elems, x->work.comm_elems) << what;
        }
        // The attention weights are read as often as in helix (W_uv once: later chunks hit L2).
        double hw = 0, xw = 0;
        for (const Step& st : hs) hw += reads_attention_weights(st.op) ? st.work.weight_elems : 0;
        for (const Step& st : xs) xw += reads_attention_weights(st.op) ? st.work.weight_elems : 0;
        EXPECT_DOUBLE_EQ(hw, xw) << what;
      }
    }
  }
}

TEST(ScheduleContract, AppendIndexAndTokensComeFromThePlacement) {
  const ModelSpec m = load_model("tiny-gqa");
  LayoutRequest req;
  req.kvp = 4;
  req.tpa = 1;
  req.kv_block = 4;
  const LayoutParams p = make_layout(LayoutKind::helix, 4, m, LayerKind::dense, 2, req);
  for (int64_t pos : {0, 3, 4, 17, 250})
    for (int r = 0; r < 4; ++r) {
      const RankShard sh = rank_shard(m, LayerKind::dense, p, r);
      const Schedule s = build_schedule(m, sh, 2, pos);
      EXPECT_EQ(s.position, pos);
      const Step* a = find(s, Op::kv_append);
      ASSERT_NE(a, nullptr);
      EXPECT_EQ(a->append_index, sh.owns_position(pos) ? sh.placement.local_index(pos) : -1);
      EXPECT_EQ(find(s, Op::attention)->kv_tokens, sh.local_tokens(pos + 1));
    }
}

TEST(ScheduleContract, BufferTableHoldsOnlyWhatTheLayoutUses) {
  const ModelSpec m = load_model("tiny-mla-moe");
  const auto table = [&](LayoutKind k, int n, int rank) {
    const LayoutParams p = make_layout(k, n, m, LayerKind::moe, 4, {});
    return activation_buffers(m, rank_shard(m, LayerKind::moe, p, rank), 4);
  };
  EXPECT_EQ(table(LayoutKind::tp, 4, 0)[Buffer::recv], 0);  // tp exchanges no partials
  EXPECT_GT(table(LayoutKind::helix, 4, 1)[Buffer::recv], 0);
  EXPECT_EQ(table(LayoutKind::kvp, 4, 1)[Buffer::recv], 0);  // only KVP rank 0 gathers
  EXPECT_GT(table(LayoutKind::kvp, 4, 0)[Buffer::recv], 0);
  EXPECT_GT(table(LayoutKind::helix, 4, 0)[Buffer::route_expert], 0);
  EXPECT_GT(table(LayoutKind::helix, 4, 0)[Buffer::part_v], 0);  // MLA: W_uv before the exchange
  EXPECT_STREQ(buffer_name(Buffer::combined), "combined");
}
