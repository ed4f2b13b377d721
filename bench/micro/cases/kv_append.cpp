// KV append cases: the new token's row of every (request, KV head) written into the cache, at each
// layout's shard (GQA: K and V rows of head_dim; MLA: the latent + rope key row).
#include <memory>

#include "bench/micro/cases/case_util.hpp"
#include "bench/micro/kernel_case.hpp"

namespace helix::micro {

namespace {

struct KvAppendCase final : KernelCase {
  KvAppendShape s;
  const char* kernel() const override { return "kv_append"; }
  std::vector<Operand> operands(const MicroBackend& b) const override {
    const int64_t es = b.storage_bytes();
    return {{s.batch * s.kv_heads * s.width * es, Elem::storage},
            {s.batch * s.kv_heads * s.capacity * s.width * es, Elem::storage}};
  }
  double bytes(int64_t es) const override {
    return 2.0 * double(es) * double(s.batch * s.kv_heads * s.width);
  }
  double flops() const override { return 0; }
  void launch(MicroBackend& b, const std::vector<void*>& p) const override {
    b.kv_append(s, p[0], p[1]);
  }
};

void generate(const ModelSpec* m, const CaseOptions& o, CaseSet& set) {
  if (!m) return;
  for (const LayoutShard& s :
       layout_shards(*m, m->default_layer_kind(), o.ranks, {LayoutKind::tp, LayoutKind::helix})) {
    const int64_t kvh = s.shard.kv_heads.size(), w = m->kv_elems_per_token_per_head();
    for (int64_t b : o.append_batch) {
      auto c = std::make_shared<KvAppendCase>();
      c->s = {b, kvh, w, 16, 9};
      c->name = "kv_append/" + m->name + "/B" + std::to_string(b) + "_kv" + std::to_string(kvh) +
                "_w" + std::to_string(w);
      c->shape = "KV append B=" + std::to_string(b) + " kv_heads=" + std::to_string(kvh) +
                 " width=" + std::to_string(w) +
                 (m->is_mla() ? " (latent + rope key)" : " (K and V)") + " into a 16-token cache";
      set.add(c, s.origin);
    }
  }
}

}  // namespace

HELIX_MICRO_CASES(kv_append, 50, generate);

}  // namespace helix::micro
