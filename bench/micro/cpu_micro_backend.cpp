// The CPU micro-benchmark backend: fp32 reference kernels (kernels/*_cpu.cpp) on host memory,
// timed with steady_clock. One thread per rank, as in the CPU decode executor.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <utility>
#include <vector>

#include "bench/micro/micro_backend.hpp"
#include "comm/error.hpp"
#include "kernels/attention.hpp"
#include "kernels/ceilings.hpp"
#include "kernels/combine.hpp"
#include "kernels/copy_segments.hpp"
#include "kernels/gemm.hpp"
#include "kernels/moe.hpp"
#include "kernels/partials.hpp"
#include "kernels/rng.hpp"

namespace helix::micro {

HostBuffer::HostBuffer(int64_t bytes) : bytes_(bytes) {
  constexpr int64_t kAlign = 64;
  const int64_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  ptr_ = std::aligned_alloc(size_t(kAlign), size_t(rounded > 0 ? rounded : kAlign));
  HELIX_CHECK(ptr_ != nullptr, "cannot allocate " + std::to_string(bytes) + " bytes");
}

HostBuffer::~HostBuffer() {
  std::free(ptr_);
}

std::unique_ptr<Buffer> HostMemory::allocate(int64_t bytes) {
  return std::make_unique<HostBuffer>(bytes);
}

void HostMemory::upload(Buffer& dst, const void* host, int64_t bytes) {
  std::memcpy(dst.data(), host, size_t(bytes));
}

void HostMemory::download(const Buffer& src, void* host, int64_t bytes) {
  std::memcpy(host, src.data(), size_t(bytes));
}

namespace {

// Size of the last-level cache from sysfs (index3 = L3 on x86; the highest index present).
int64_t host_llc_bytes() {
  int64_t best = 0;
  for (int idx = 0; idx < 8; ++idx) {
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(idx) + "/size");
    std::string s;
    if (!(f >> s) || s.empty()) continue;
    int64_t v = std::atoll(s.c_str());
    const char unit = s.back();
    if (unit == 'K') v <<= 10;
    if (unit == 'M') v <<= 20;
    if (v > best) best = v;
  }
  return best > 0 ? best : int64_t(32) << 20;
}

const float* f32(const void* p) {
  return static_cast<const float*>(p);
}
float* f32(void* p) {
  return static_cast<float*>(p);
}

class CpuMicroBackend final : public MicroBackend, public HostMemory {
 public:
  std::string name() const override { return "cpu"; }
  std::string device_description() const override { return "cpu"; }
  std::string storage_dtype() const override { return "fp32"; }
  int64_t storage_bytes() const override { return 4; }
  int64_t memory_bytes() const override {
    return int64_t(sysconf(_SC_PHYS_PAGES)) * int64_t(sysconf(_SC_PAGESIZE));
  }
  int64_t cache_bytes() const override { return llc_; }

  void fill_random(Buffer& buf, Elem, uint64_t seed) override {
    float* p = f32(buf.data());
    const int64_t n = buf.bytes() / 4;
    const uint64_t key = mix64(seed ^ 0x6d6963726f000000ull);
    for (int64_t i = 0; i < n; ++i) p[i] = uniform_pm1(key, uint64_t(i));
  }

  void synchronize() override {}

  double time_us(const std::function<void()>& launch) override {
    const auto t0 = std::chrono::steady_clock::now();
    launch();
    const auto t1 = std::chrono::steady_clock::now();
    return std::chrono::duration<double, std::micro>(t1 - t0).count();
  }

  void stream_read(const void* buf, int64_t bytes, float* sink) override {
    *sink = cpu::read_sum(f32(buf), bytes / 4);
  }

  void attention_gqa(const GqaDecodeShape& s, const void* q, const void* k, const void* v,
                     float* out, float* lse) override {
    cpu::GqaAttention a;
    a.batch = s.batch;
    a.q_heads = s.q_heads;
    a.kv_heads = s.kv_heads;
    a.group = s.q_heads / s.kv_heads;
    a.head_dim = s.head_dim;
    a.tokens = s.tokens;
    a.capacity = s.tokens;
    a.scale = 1.0f / std::sqrt(float(s.head_dim));
    a.q = f32(q);
    a.k = f32(k);
    a.v = f32(v);
    a.out = out;
    a.lse = lse;
    cpu::attention_gqa(a);
  }

  void attention_mla(const MlaDecodeShape& s, const void* q, const void* kv, float* out,
                     float* lse) override {
    cpu::MlaAttention a;
    a.batch = s.batch;
    a.heads = s.heads;
    a.kv_lora = s.kv_lora;
    a.rope = s.rope;
    a.tokens = s.tokens;
    a.capacity = s.tokens;
    a.scale = 1.0f / std::sqrt(float(s.kv_lora + s.rope));
    a.q = f32(q);
    a.kv = f32(kv);
    a.out = out;
    a.lse = lse;
    cpu::attention_mla(a);
  }

  void lse_combine(const CombineShape& s, const float* o, const float* lse, float* out,
                   float* lse_out) override {
    cpu::lse_combine(s.parts, s.rows, s.dim, o, s.rows * s.dim, lse, s.rows, out, lse_out);
  }

  void pack_partials(const PackShape& s, const float* o, const float* lse, float* dst) override {
    const auto heads = pack_peer_heads(s);
    cpu::pack_partials(o, s.heads * s.dim, lse, s.heads, s.batch, s.dim, heads.data(),
                       int(heads.size()), dst);
  }

  void lse_combine_rows(const CombineShape& s, const float* rows, float* out,
                        float* lse_out) override {
    const int64_t w = cpu::partial_row(s.dim);
    cpu::lse_combine_rows(s.parts, s.rows, s.dim, rows, s.rows * w, w, rows + s.dim, s.rows * w, w,
                          out, lse_out);
  }

  void gemm(const GemmShape& s, const void* x, const void* w, void* y) override {
    for (int64_t b = 0; b < s.batch; ++b)
      cpu::gemm(f32(x) + b * s.stride_x, s.ldx, f32(w) + b * s.stride_w, s.ldw,
                f32(y) + b * s.stride_y, s.ldy, s.m, s.k, s.n, false);
  }

  int64_t moe_scratch_bytes(const MoeShape& s) const override {
    return 2 * s.rows_per_expert * s.cols * 4;
  }

  void moe_experts(const MoeShape& s, const void* x, const void* w_gate, const void* w_up,
                   const void* w_down, void* out, void* scratch) override {
    const int64_t m = s.rows_per_expert, h = s.hidden, c = s.cols;
    for (int64_t e = 0; e < s.experts; ++e)
      cpu::swiglu_ffn(f32(x) + e * m * h, m, h, c, f32(w_gate) + e * h * c, f32(w_up) + e * h * c,
                      f32(w_down) + e * c * h, nullptr, f32(out) + e * m * h, f32(scratch));
  }

  void kv_append(const KvAppendShape& s, const void* new_kv, void* cache) override {
    const int64_t rows = s.batch * s.kv_heads, w = s.width;
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(f32(cache) + (r * s.capacity + s.position) * w, f32(new_kv) + r * w,
                  size_t(w) * 4);
  }

  void kv_pack(const KvPackShape& s, const void* src, void* dst) override {
    const auto& segs = pack_segments(s);
    cpu::copy_segments(src, dst, segs.data(), int64_t(segs.size()));
  }

 private:
  // Every other block of the cache into consecutive slots; built once per shape (not timed).
  const std::vector<cpu::Segment>& pack_segments(const KvPackShape& s) {
    auto& v = segments_[{s.blocks, s.block_bytes}];
    if (v.empty())
      for (int64_t i = 0; i < s.blocks; ++i)
        v.push_back({2 * i * s.block_bytes, i * s.block_bytes, s.block_bytes});
    return v;
  }

  int64_t llc_ = host_llc_bytes();
  std::map<std::pair<int64_t, int64_t>, std::vector<cpu::Segment>> segments_;
};

}  // namespace

std::unique_ptr<MicroBackend> make_cpu_micro_backend() {
  return std::make_unique<CpuMicroBackend>();
}

std::unique_ptr<MicroBackend> make_micro_backend(const std::string& name,
                                                 const std::string& option) {
  if (name == "cpu") return make_cpu_micro_backend();
  if (name == "cuda") {
#if defined(HELIX_MICRO_CUDA)
    return make_cuda_micro_backend();
#else
    throw UsageError(option + " cuda: built without CUDA (configure with nvcc found)");
#endif
  }
  throw UsageError(option + ": must be 'cpu' or 'cuda', got '" + name + "'");
}

}  // namespace helix::micro
