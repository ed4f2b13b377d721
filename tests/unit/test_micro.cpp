// Micro-benchmark building blocks: nccl-tests bandwidth formulas, the exact verification pattern
// and its wrong-element count, byte-count parsing, kernel cases, the hardware profile writer.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <regex>
#include <set>
#include <vector>

#include "bench/micro/collectives.hpp"
#include "bench/micro/kernel_case.hpp"
#include "bench/micro/kernel_verify.hpp"
#include "bench/micro/micro_options.hpp"
#include "comm/error.hpp"

namespace helix::micro {
namespace {

TEST(MicroBusBw, FactorsFollowNcclTests) {
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::all_reduce, 8), 2.0 * 7 / 8);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::all_gather, 8), 7.0 / 8);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::reduce_scatter, 4), 3.0 / 4);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::all_to_all, 2), 0.5);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::send_recv, 8), 1.0);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::all_reduce, 1), 0.0);
  // 1 GB in 1000 us = 1000 GB/s algbw; all-reduce over 4 ranks: 1500 GB/s busbw.
  EXPECT_DOUBLE_EQ(algbw_gbps(1e9, 1000.0), 1000.0);
  EXPECT_DOUBLE_EQ(busbw_gbps(Collective::all_reduce, 4, 1e9, 1000.0), 1500.0);
  EXPECT_DOUBLE_EQ(busbw_gbps(Collective::all_gather, 4, 1e9, 1000.0), 750.0);
}

TEST(MicroBusBw, SizesAndCounts) {
  // S is the buffer (all-reduce, send/recv) or the whole group's data (the others).
  EXPECT_EQ(op_count_for_size(Collective::all_reduce, 4, 4096, DType::fp32), 1024);
  EXPECT_EQ(op_count_for_size(Collective::all_gather, 4, 4096, DType::fp32), 256);
  // one rank's block in whole 16-byte units, as nccl-tests: 1024 / 3 = 341 -> 340 floats
  EXPECT_EQ(op_count_for_size(Collective::all_to_all, 3, 4096, DType::fp32), 340);
  EXPECT_EQ(size_for_op_count(Collective::all_to_all, 3, 340, DType::fp32), 4080);
  EXPECT_EQ(op_count_for_size(Collective::all_gather, 3, 4096, DType::bf16), 680);  // 682 -> 680
  EXPECT_EQ(op_count_for_size(Collective::reduce_scatter, 4, 8, DType::fp32), 0);
  EXPECT_EQ(op_count_for_size(Collective::reduce_scatter, 4, 63, DType::fp32), 0);
  EXPECT_EQ(op_count_for_size(Collective::reduce_scatter, 4, 64, DType::fp32), 4);
  EXPECT_EQ(op_count_for_size(Collective::send_recv, 4, 8, DType::bf16), 4);
  EXPECT_EQ(op_count_for_size(Collective::all_reduce, 3, 20, DType::fp32), 5);  // no rounding
  EXPECT_EQ(size_sweep(8, 64, 2), (std::vector<int64_t>{8, 16, 32, 64}));
  EXPECT_EQ(size_sweep(8, 100, 8), (std::vector<int64_t>{8, 64}));
}

// The results every rank should hold, computed by running the collective's definition over the
// send buffers of all ranks (independently of the checker's closed forms).
std::vector<std::vector<double>> simulate(Collective c, int n, int64_t count) {
  std::vector<std::vector<double>> send(static_cast<size_t>(n)), recv(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) {
    std::vector<float> buf(size_t(send_elems(c, n, count)));
    fill_send_pattern(c, DType::fp32, r, n, count, buf.data());
    send[size_t(r)].assign(buf.begin(), buf.end());
    recv[size_t(r)].assign(size_t(recv_elems(c, n, count)), 0.0);
  }
  for (int r = 0; r < n; ++r) {
    auto& out = recv[size_t(r)];
    for (int64_t i = 0; i < int64_t(out.size()); ++i) {
      switch (c) {
        case Collective::all_reduce:
          for (int q = 0; q < n; ++q) out[size_t(i)] += send[size_t(q)][size_t(i)];
          break;
        case Collective::all_gather:
          out[size_t(i)] = send[size_t(i / count)][size_t(i % count)];
          break;
        case Collective::reduce_scatter:
          for (int q = 0; q < n; ++q) out[size_t(i)] += send[size_t(q)][size_t(r * count + i)];
          break;
        case Collective::all_to_all:
          out[size_t(i)] = send[size_t(i / count)][size_t(r * count + i % count)];
          break;
        case Collective::send_recv:
          out[size_t(i)] = send[size_t((r + n - 1) % n)][size_t(i)];
          break;
        default:
          ADD_FAILURE() << "not a measured collective: " << to_string(c);
      }
    }
  }
  return recv;
}

TEST(MicroChecker, AcceptsCorrectResultsAndCountsCorruptedElements) {
  for (DType t : {DType::fp32, DType::bf16, DType::int32})
    for (Collective coll : kMeasuredCollectives)
      for (int n : {1, 3, 4}) {
        const int64_t count = 7;
        const auto expected = simulate(coll, n, count);
        for (int r = 0; r < n; ++r) {
          const auto& e = expected[size_t(r)];
          std::vector<unsigned char> buf(e.size() * size_t(elem_bytes(t)));
          for (size_t i = 0; i < e.size(); ++i) encode(t, e[i], buf.data(), int64_t(i));
          EXPECT_EQ(count_wrong(coll, t, r, n, count, buf.data()), 0)
              << to_string(coll) << " " << nccl_tests_name(t) << " n=" << n << " rank " << r;
          // One element off by one, another replaced by the checker's sentinel.
          encode(t, e[3] + 1, buf.data(), 3);
          encode(t, -1000.0, buf.data(), int64_t(e.size() - 1));
          EXPECT_EQ(count_wrong(coll, t, r, n, count, buf.data()), 2) << to_string(coll);
        }
      }
}

TEST(MicroChecker, PatternIsNeverAllZerosAndExactInBf16) {
  std::set<double> seen;
  for (int64_t i = 0; i < 200; ++i) {
    const double v = pattern_value(3, i);
    EXPECT_GE(v, -8);
    EXPECT_LE(v, 8);
    seen.insert(v);
    unsigned char b[2];
    encode(DType::bf16, v * 32, b, 0);  // sums over 32 ranks stay exact
    EXPECT_EQ(decode(DType::bf16, b, 0), v * 32);
  }
  EXPECT_GT(seen.size(), 10u);
}

TEST(MicroOptions, ParsesByteCounts) {
  EXPECT_EQ(parse_bytes("4096", "--x"), 4096);
  EXPECT_EQ(parse_bytes("64K", "--x"), 65536);
  EXPECT_EQ(parse_bytes("16MiB", "--x"), int64_t(16) << 20);
  EXPECT_EQ(parse_bytes("1G", "--x"), int64_t(1) << 30);
  EXPECT_EQ(parse_bytes("0", "--x", true), 0);
  EXPECT_THROW(parse_bytes("0", "--x"), UsageError);
  EXPECT_THROW(parse_bytes("12x", "--x"), UsageError);
  EXPECT_THROW(parse_bytes("-5", "--x"), UsageError);
  EXPECT_THROW(parse_bytes("", "--x"), UsageError);
  try {
    parse_bytes("abc", "--stream-bytes");
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("--stream-bytes: 'abc'", 0), 0u) << e.what();
  }
}

// A dimension encoded in a case name: the digits after `key` at the start of a name field
// ("attn_gqa/m/B1_q16_kv1_d128/T1048576": q -> 16, T -> 1048576); -1 when absent.
int64_t dim(const std::string& name, const std::string& key) {
  const std::regex re("(^|[/_])" + key + "([0-9]+)");
  std::smatch m;
  return std::regex_search(name, m, re) ? std::stoll(m[2]) : -1;
}

TEST(MicroCases, ShardShapesOfTheLayouts) {
  CaseOptions o;
  const auto cases = make_kernel_cases(o);
  std::set<std::string> names;
  bool q16 = false, q8 = false, mla128 = false, expert = false, w_uv = false;
  for (const auto& c : cases) {
    const std::string& n = c->name;
    const std::string kernel = c->kernel();
    EXPECT_EQ(n.rfind(kernel + "/", 0), 0u) << n;
    EXPECT_TRUE(names.insert(n).second) << "duplicate " << n;
    EXPECT_GT(c->bytes(2), 0) << n;
    if (kernel == "attn_gqa" && dim(n, "kv") == 1 && dim(n, "T") == 1048576) {
      q16 |= dim(n, "q") == 16;  // TP 8 and Helix (TPA 8) of Llama-3.1-405B
      q8 |= dim(n, "q") == 8;    // TP 16: KV duplicated, 8 query heads per rank
    }
    if (kernel == "attn_mla") mla128 |= dim(n, "h") == 128;  // Helix: TPA 1
    if (kernel == "moe_experts")
      expert |= dim(n, "E") == 32 && dim(n, "cols") == 2048 && dim(n, "H") == 7168;
    if (kernel == "gemm" && dim(n, "batch") > 1) {  // MLA's per-head W_uv, all 128 heads
      const int64_t batch = dim(n, "batch");
      w_uv |= batch == 128 && dim(n, "K") == 512 && dim(n, "N") == 128;
      EXPECT_DOUBLE_EQ(c->flops(), 2.0 * double(batch * dim(n, "M") * dim(n, "K") * dim(n, "N")));
    }
  }
  EXPECT_TRUE(q16 && q8 && mla128 && expert && w_uv);
}

TEST(MicroCases, CapsScaleTheSweepDown) {
  CaseOptions o;
  o.models = {"llama-3.1-405b", "deepseek-r1"};  // deepseek-r1: batched per-head GEMMs too
  o.max_kv_bytes = int64_t(16) << 20;
  o.max_weight_bytes = int64_t(4) << 20;
  std::vector<int64_t> tokens;
  for (const auto& c : make_kernel_cases(o)) {
    const std::string& n = c->name;
    if (std::string(c->kernel()) == "attn_gqa" && dim(n, "q") == 16) tokens.push_back(dim(n, "T"));
    if (std::string(c->kernel()) == "gemm") {
      const int64_t batch = std::max<int64_t>(1, dim(n, "batch"));
      EXPECT_LE(batch * dim(n, "K") * dim(n, "N") * 4, o.max_weight_bytes) << n;
    }
  }
  // 1M tokens x 1 KiB (K and V, fp32, one head) scaled to 16 MiB: 16K tokens; ratios kept.
  EXPECT_EQ(tokens, (std::vector<int64_t>{2048, 4096, 8192, 16384}));
  o.models = {"no-such-model"};
  EXPECT_THROW(make_kernel_cases(o), UsageError);
}

TEST(MicroCases, ExplicitGqaShapes) {
  const auto v = parse_gqa_shapes("B1_q64_kv8_T1M,B16_q16_kv1_d128_T64K", "--gqa-shapes");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].batch, 1);
  EXPECT_EQ(v[0].q_heads, 64);
  EXPECT_EQ(v[0].kv_heads, 8);
  EXPECT_EQ(v[0].tokens, 1048576);
  EXPECT_EQ(v[1].batch, 16);
  EXPECT_EQ(v[1].tokens, 65536);
  EXPECT_TRUE(parse_gqa_shapes("", "--gqa-shapes").empty());
  for (const char* bad : {"B1_q6_kv4_T1M", "B1_q8_T1M", "B1_q8_kv1_d64_T1K", "B1_q8_kv1_T1G",
                          "q8_kv1_T1K", "B0_q8_kv1_T1K"})
    EXPECT_THROW(parse_gqa_shapes(bad, "--gqa-shapes"), UsageError) << bad;
  CaseOptions o;
  o.models = {};
  o.extra_gqa = v;
  o.storage_bytes = 2;
  const auto cases = make_kernel_cases(o);
  ASSERT_EQ(cases.size(), 2u);
  EXPECT_EQ(cases[0]->name, "attn_gqa/custom/B1_q64_kv8_d128/T1048576");
  // Explicit shapes scale alone under the KV cap (CPU runs).
  o.max_kv_bytes = int64_t(1) << 20;
  EXPECT_EQ(dim(make_kernel_cases(o)[0]->name, "T"), 256);  // 1 MiB / 4 KiB per token (bf16)
}

TEST(MicroOptions, CudaRunsTheRealSizesAndVerifies) {
  MicroOptions mo;
  mo.backend = "cuda";
  MicroConfig p = resolve_micro_options(mo, 2);
  EXPECT_EQ(p.cases.max_kv_bytes, 0);
  EXPECT_EQ(p.cases.max_weight_bytes, 0);
  EXPECT_TRUE(p.verify);
  int64_t most_kv = 0;
  for (const auto& c : make_kernel_cases(p.cases))
    if (std::string(c->kernel()) == "attn_gqa") {
      const std::string& n = c->name;
      EXPECT_EQ(c->shape.find("scaled"), std::string::npos) << n;
      most_kv = std::max(most_kv, 2 * dim(n, "kv") * dim(n, "T") * dim(n, "d") * 2);
    }
  EXPECT_EQ(most_kv, int64_t(512) << 20);  // one KV head, 1M tokens, K and V in bf16
  mo.no_verify = true;
  EXPECT_FALSE(resolve_micro_options(mo, 2).verify);
  mo.backend = "cpu";
  mo.no_verify = false;
  EXPECT_FALSE(resolve_micro_options(mo, 4).verify);
}

TEST(MicroVerify, CpuBackendMatchesItsReference) {
  auto b = make_cpu_micro_backend();
  CaseOptions o;
  o.models = {"tiny-gqa"};
  o.extra_gqa = parse_gqa_shapes("B2_q8_kv2_T8K", "--gqa-shapes");
  int checked = 0;
  for (const auto& c : make_kernel_cases(o)) {
    if (!verifiable(*c)) continue;
    if (std::string(c->kernel()) == "attn_gqa") {  // checked on at most 4037 tokens
      EXPECT_LE(dim(c->verify_key(), "T"), 4037) << c->name;
    }
    const VerifyResult r = verify_case(*b, *c, 7);
    EXPECT_TRUE(r.ok) << c->name << ": " << r.detail;
    ++checked;
  }
  EXPECT_GT(checked, 1);
}

// The CPU backend with one kernel off by a little: its LSE combine adds 0.01 to every output.
class SkewedCombine final : public MicroBackend {
 public:
  SkewedCombine() : cpu_(make_cpu_micro_backend()) {}
  std::string name() const override { return "skewed"; }
  std::string device_description() const override { return "cpu"; }
  std::string storage_dtype() const override { return cpu_->storage_dtype(); }
  int64_t storage_bytes() const override { return cpu_->storage_bytes(); }
  int64_t memory_bytes() const override { return cpu_->memory_bytes(); }
  int64_t cache_bytes() const override { return cpu_->cache_bytes(); }
  std::unique_ptr<Buffer> allocate(int64_t bytes) override { return cpu_->allocate(bytes); }
  void upload(Buffer& d, const void* h, int64_t n) override { cpu_->upload(d, h, n); }
  void download(const Buffer& s, void* h, int64_t n) override { cpu_->download(s, h, n); }
  void fill_random(Buffer& b, Elem e, uint64_t seed) override { cpu_->fill_random(b, e, seed); }
  void synchronize() override {}
  double time_us(const std::function<void()>& f) override { return cpu_->time_us(f); }
  void stream_read(const void* b, int64_t n, float* s) override { cpu_->stream_read(b, n, s); }
  void attention_gqa(const GqaDecodeShape& s, const void* q, const void* k, const void* v,
                     float* out, float* lse) override {
    cpu_->attention_gqa(s, q, k, v, out, lse);
  }
  void attention_mla(const MlaDecodeShape& s, const void* q, const void* kv, float* out,
                     float* lse) override {
    cpu_->attention_mla(s, q, kv, out, lse);
  }
  void lse_combine(const CombineShape& s, const float* o, const float* lse, float* out,
                   float* lse_out) override {
    cpu_->lse_combine(s, o, lse, out, lse_out);
    for (int64_t i = 0; i < s.rows * s.dim; ++i) out[i] += 0.01f;
  }
  void pack_partials(const PackShape& s, const float* o, const float* lse, float* dst) override {
    cpu_->pack_partials(s, o, lse, dst);
  }
  void lse_combine_rows(const CombineShape& s, const float* rows, float* out,
                        float* lse_out) override {
    cpu_->lse_combine_rows(s, rows, out, lse_out);
    for (int64_t i = 0; i < s.rows * s.dim; ++i) out[i] += 0.01f;
  }
  void gemm(const GemmShape& s, const void* x, const void* w, void* y) override {
    cpu_->gemm(s, x, w, y);
  }
  int64_t moe_scratch_bytes(const MoeShape& s) const override { return cpu_->moe_scratch_bytes(s); }
  void moe_experts(const MoeShape& s, const void* x, const void* g, const void* u, const void* d,
                   void* out, void* scratch) override {
    cpu_->moe_experts(s, x, g, u, d, out, scratch);
  }
  void kv_append(const KvAppendShape& s, const void* n, void* c) override {
    cpu_->kv_append(s, n, c);
  }
  void kv_pack(const KvPackShape& s, const void* src, void* dst) override {
    cpu_->kv_pack(s, src, dst);
  }

 private:
  std::unique_ptr<MicroBackend> cpu_;
};

TEST(MicroVerify, CatchesAKernelThatMissesItsReference) {
  SkewedCombine b;
  CaseOptions o;
  o.models = {"tiny-gqa"};
  int combines = 0;
  for (const auto& c : make_kernel_cases(o)) {
    if (!verifiable(*c)) continue;
    const VerifyResult r = verify_case(b, *c, 7);
    if (std::string(c->kernel()) == "lse_combine" ||
        std::string(c->kernel()) == "lse_combine_rows") {
      EXPECT_FALSE(r.ok) << c->name << ": " << r.detail;
      ++combines;
    } else {
      EXPECT_TRUE(r.ok) << c->name << ": " << r.detail;
    }
  }
  EXPECT_GT(combines, 0);
}

TEST(MicroNcclTestsFormat, Numbers) {
  // two decimals while they fit, then one, then none, then the exponent form
  EXPECT_EQ(nccl_tests_number(12.3456, 7), "  12.35");
  EXPECT_EQ(nccl_tests_number(12345.6, 7), "12345.6");
  EXPECT_EQ(nccl_tests_number(1234567.8, 7), "1234568");
  EXPECT_EQ(nccl_tests_number(123456789.0, 7), "1.2e+08");
  EXPECT_EQ(nccl_tests_number(0.0, 6), "  0.00");
  EXPECT_EQ(nccl_tests_number(1234.56, 6), "1234.6");
  EXPECT_EQ(nccl_tests_number(1234567.0, 6), " 1e+06");
}

TEST(MicroNcclTestsFormat, Table) {
  CollResult o;
  o.coll = Collective::all_to_all;
  o.group_size = 4;
  o.size_bytes = 1048576;
  o.count = 65536;
  o.time_us_median = 45.25;
  o.algbw_gbps = 23.17;
  o.busbw_gbps = 17.38;
  CollResult ip = o;
  ip.in_place = true;
  ip.wrong = -1;
  ip.busbw_gbps = 18.38;
  std::vector<CollResult> rows = {o, ip};
  char buf[4096] = {};
  std::FILE* f = fmemopen(buf, sizeof buf - 1, "w");
  ASSERT_NE(f, nullptr);
  print_collective_table(f, Collective::all_to_all, 4, "nccl", rows);
  std::fclose(f);
  const std::string text = buf;
  EXPECT_NE(text.find("\n#       size         count      type   redop    root     time   algbw   "
                      "busbw  #wrong     time   algbw   busbw  #wrong \n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\n     1048576         65536     float    none      -1    45.25   23.17   "
                      "17.38       0    45.25   23.17   18.38    N/A\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\n# Out of bounds values : 0 OK\n# Avg bus bandwidth    : 17.88 \n#\n"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace helix::micro
