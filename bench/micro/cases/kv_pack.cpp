// KV-transfer pack cases: the blocks of one request's KV cache bound for one decode peer
// (helix-bench kv-transfer), blocks of 16 tokens of one (layer, KV head), every other block of the
// cache (two peers, round robin), gathered into a packed send buffer by kernels/copy_segments.
#include <algorithm>
#include <memory>

#include "bench/micro/cases/case_util.hpp"
#include "bench/micro/kernel_case.hpp"

namespace helix::micro {

namespace {

struct KvPackCase final : KernelCase {
  KvPackShape s;
  const char* kernel() const override { return "kv_pack"; }
  std::vector<Operand> operands(const MicroBackend&) const override {
    return {{2 * s.blocks * s.block_bytes, Elem::storage},
            {s.blocks * s.block_bytes, Elem::storage}};
  }
  double bytes(int64_t) const override {  // each packed block read once and written once
    return 2.0 * double(s.blocks) * double(s.block_bytes);
  }
  double flops() const override { return 0; }
  void launch(MicroBackend& b, const std::vector<void*>& p) const override {
    b.kv_pack(s, p[0], p[1]);
  }
};

void generate(const ModelSpec* m, const CaseOptions& o, CaseSet& set) {
  if (!m) return;
  const int64_t block_bytes = 16 * m->kv_elems_per_token_per_head() * o.storage_bytes;
  for (int64_t b0 : o.pack_blocks) {
    int64_t b = b0;
    if (o.max_kv_bytes > 0)
      b = std::max<int64_t>(1, std::min(b, o.max_kv_bytes / (2 * block_bytes)));
    auto c = std::make_shared<KvPackCase>();
    c->s = {b, block_bytes};
    c->name = "kv_pack/" + m->name + "/blocks" + std::to_string(b) + "_bytes" +
              std::to_string(block_bytes);
    c->shape = "KV pack for one peer: " + std::to_string(b) + " blocks of 16 tokens x " +
               std::to_string(m->kv_elems_per_token_per_head()) +
               " values (every other block of the cache)" +
               scaled_note(b != b0, std::to_string(b0) + " blocks");
    set.add(c, "KV transfer, prefill to decode layout");
  }
}

}  // namespace

HELIX_MICRO_CASES(kv_pack, 60, generate);

}  // namespace helix::micro
