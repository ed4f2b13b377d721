// The CUDA micro-benchmark backend: the decode kernels of kernels/ (bf16 storage, fp32 partials and
// LSE, cuBLASLt GEMMs) on one GPU per rank, timed with CUDA events on the backend's stream.
//
// Device: node-local rank (MPI_Comm_split_type over MPI_COMM_WORLD) modulo the visible devices,
// printed per rank with its PCI bus id. Every launch is asynchronous on one non-blocking stream;
// time_us holds the stream busy for a moment (so host launch overhead is not timed), records
// events around the launch and waits for the second.
#include <cuda_runtime.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "bench/micro/gpu_buffer.hpp"
#include "bench/micro/micro_backend.hpp"
#include "comm/cuda_check.hpp"
#include "comm/cuda_timer.hpp"
#include "comm/error.hpp"
#include "comm/gpu_select.hpp"
#include "comm/nccl_comm.hpp"
#include "kernels/copy_segments_cuda.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/gemm_cuda.hpp"
#include "kernels/moe_cuda.hpp"
#include "kernels/partials_cuda.hpp"
#include "kernels/rng.hpp"

namespace helix::micro {

namespace {

using cuda::bf16;

constexpr int64_t kHoldNs = 50000;  // 50 us: more than the host needs to enqueue one launch

constexpr const char* kWho = "helix-micro (cuda)";
constexpr const char* kHint =
    "use fewer ranks per GPU, a smaller --stream-bytes, or --max-kv-bytes / --max-weight-bytes";

std::unique_ptr<GpuBuffer> cuda_buffer(int64_t bytes) {
  return std::make_unique<GpuBuffer>(bytes, kWho, kHint);
}

// Byte offsets of the MoE scratch: gate and up outputs (fp32), the activation (bf16), each
// aligned to 256 bytes.
struct MoeScratch {
  int64_t g = 0, u = 0, act = 0, total = 0;
};
MoeScratch moe_scratch(const MoeShape& s) {
  auto up = [](int64_t b) { return (b + 255) / 256 * 256; };
  const int64_t rc = s.rows_per_expert * s.cols;
  MoeScratch m;
  m.g = 0;
  m.u = up(rc * 4);
  m.act = m.u + up(rc * 4);
  m.total = m.act + up(rc * 2);
  return m;
}

class CudaMicroBackend final : public MicroBackend, public DeviceMemory {
 public:
  CudaMicroBackend() : DeviceMemory(kWho, kHint) {
    cuda::check_attention_variant_env();
    int init = 0;
    HELIX_MPI_CHECK(MPI_Initialized(&init));
    HELIX_CHECK(init != 0, "the cuda micro backend needs MPI to be initialized");
    const GpuSelection gpu = select_gpu_by_local_rank(MPI_COMM_WORLD);
    int world_rank = 0;
    HELIX_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
    device_ = gpu.device;
    HELIX_CUDA_CHECK(cudaFree(nullptr));  // create the context now
    cudaDeviceProp prop{};
    HELIX_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    desc_ = describe_gpu(gpu);
    memory_ = int64_t(prop.totalGlobalMem);
    int l2 = 0;
    HELIX_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device_));
    l2_ = l2 > 0 ? int64_t(l2) : int64_t(50) << 20;
    std::fprintf(stderr, "helix-micro: rank %d (node-local %d): %s, L2 %lld MiB%s\n", world_rank,
                 gpu.local_rank, desc_.c_str(), (long long)(l2_ >> 20),
                 gpu.ranks_on_gpu > 1
                     ? " (GPU shared with other ranks of this node: kernel timings interfere)"
                     : "");
    HELIX_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    copy_stream_ = stream_;
    gemm_ = std::make_unique<cuda::Gemm>();
  }

  ~CudaMicroBackend() override {
    cudaStreamSynchronize(stream_);
    workspaces_.clear();
    grouped_.clear();
    gemm_.reset();
    cudaStreamDestroy(stream_);
  }
  CudaMicroBackend(const CudaMicroBackend&) = delete;
  CudaMicroBackend& operator=(const CudaMicroBackend&) = delete;

  std::string name() const override { return "cuda"; }
  std::string device_description() const override { return desc_; }
  std::string cuda_version() const override { return cuda_versions(); }
  std::string nccl_version() const override { return NcclComm::version(); }
  std::string storage_dtype() const override { return "bf16"; }
  int64_t storage_bytes() const override { return 2; }
  int64_t memory_bytes() const override { return memory_; }
  int64_t cache_bytes() const override { return l2_; }

  // Counter-based fills of kernels/rng.hpp: uniform in [-1, 1), never zeros.
  void fill_random(Buffer& buf, Elem elem, uint64_t seed) override {
    const uint64_t key = mix64(seed ^ 0x6d6963726f000000ull);
    if (elem == Elem::storage) {
      const int64_t n = buf.bytes() / 2;
      cuda::fill_slice(static_cast<bf16*>(buf.data()), key, n, 0, 1, 0, n, 1.0f, stream_);
    } else {
      const int64_t n = buf.bytes() / 4;
      cuda::fill_slice_f32(static_cast<float*>(buf.data()), key, n, 0, 1, 0, n, 1.0f, 0.0f,
                           stream_);
    }
  }

  void synchronize() override { HELIX_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  // Device time: the stream is held busy for kHoldNs first, so the start event fires only after
  // the host has enqueued the launch (host launch overhead is not counted).
  double time_us(const std::function<void()>& launch) override {
    cuda::hold_stream(kHoldNs, stream_);
    timer_.start(stream_);
    launch();
    timer_.stop(stream_);
    return timer_.elapsed_us();
  }

  void stream_read(const void* buf, int64_t bytes, float* sink) override {
    cuda::stream_read_pass(buf, bytes, reinterpret_cast<uint32_t*>(sink), stream_);
  }

  void attention_gqa(const GqaDecodeShape& s, const void* q, const void* k, const void* v,
                     float* out, float* lse) override {
    HELIX_CHECK(s.head_dim == 128,
                "cuda attention_gqa: head_dim must be 128, got " + std::to_string(s.head_dim));
    HELIX_CHECK(s.kv_heads > 0 && s.q_heads % s.kv_heads == 0,
                "cuda attention_gqa: q_heads must be a multiple of kv_heads");
    cuda::DecodeAttention a;
    a.mla = false;
    a.batch = s.batch;
    a.heads = s.q_heads;
    a.kv_heads = s.kv_heads;
    a.group = s.q_heads / s.kv_heads;
    a.tokens = s.tokens;
    a.capacity = s.tokens;
    a.scale = 1.0f / std::sqrt(float(s.head_dim));
    a.q = static_cast<const float*>(q);
    a.k = static_cast<const bf16*>(k);
    a.v = static_cast<const bf16*>(v);
    a.out = out;
    a.lse = lse;
    run_attention(a);
  }

  void attention_mla(const MlaDecodeShape& s, const void* q, const void* kv, float* out,
                     float* lse) override {
    HELIX_CHECK(s.kv_lora == 512 && s.rope == 64,
                "cuda attention_mla: needs kv_lora 512 and rope 64, got " +
                    std::to_string(s.kv_lora) + " and " + std::to_string(s.rope));
    cuda::DecodeAttention a;
    a.mla = true;
    a.batch = s.batch;
    a.heads = s.heads;
    a.kv_heads = 1;
    a.group = 1;
    a.tokens = s.tokens;
    a.capacity = s.tokens;
    a.scale = 1.0f / std::sqrt(float(s.kv_lora + s.rope));
    a.q = static_cast<const float*>(q);
    a.k = static_cast<const bf16*>(kv);
    a.v = nullptr;
    a.out = out;
    a.lse = lse;
    run_attention(a);
  }

  void lse_combine(const CombineShape& s, const float* o, const float* lse, float* out,
                   float* lse_out) override {
    cuda::lse_combine(s.parts, s.rows, s.dim, o, s.rows * s.dim, lse, s.rows, out, nullptr, lse_out,
                      stream_);
  }

  void pack_partials(const PackShape& s, const float* o, const float* lse, float* dst) override {
    const auto heads = pack_peer_heads(s);
    cuda::pack_partials(o, s.heads * s.dim, lse, s.heads, s.batch, s.dim, heads.data(),
                        int(heads.size()), dst, stream_);
  }

  void lse_combine_rows(const CombineShape& s, const float* rows, float* out,
                        float* lse_out) override {
    const int64_t w = cpu::partial_row(s.dim);
    cuda::lse_combine_rows(s.parts, s.rows, s.dim, rows, s.rows * w, w, rows + s.dim, s.rows * w, w,
                           out, nullptr, lse_out, stream_);
  }

  void gemm(const GemmShape& s, const void* x, const void* w, void* y) override {
    GemmShape g = s;
    g.y_bf16 = true;
    gemm_->run(g, static_cast<const bf16*>(x), static_cast<const bf16*>(w), y, stream_);
  }

  int64_t moe_scratch_bytes(const MoeShape& s) const override { return moe_scratch(s).total; }

  // On Hopper, up to 32 rows per expert, the grouped kernel of kernels/moe_cuda.hpp (every token
  // routed to its own expert, top-1, weight 1; output to bf16; more rows would stream each
  // expert's weights once per 32); HELIX_MOE_GROUPED=0, or otherwise, as the CUDA executor's
  // experts: per expert, gate and up GEMMs (fp32 out), SiLU x up (bf16), down GEMM (bf16 out into
  // the expert's rows of `out`).
  void moe_experts(const MoeShape& s, const void* x, const void* w_gate, const void* w_up,
                   const void* w_down, void* out, void* scratch) override {
    if (cuda::MoeFfn::enabled() && s.rows_per_expert <= 32 &&
        cuda::MoeFfn::unsupported(grouped_shape(s)).empty()) {
      grouped_moe(s, x, w_gate, w_up, w_down, out);
      return;
    }
    const int64_t m = s.rows_per_expert, h = s.hidden, c = s.cols;
    const MoeScratch z = moe_scratch(s);
    char* base = static_cast<char*>(scratch);
    float* g = reinterpret_cast<float*>(base + z.g);
    float* u = reinterpret_cast<float*>(base + z.u);
    bf16* act = reinterpret_cast<bf16*>(base + z.act);
    const bf16* xb = static_cast<const bf16*>(x);
    const bf16* wg = static_cast<const bf16*>(w_gate);
    const bf16* wu = static_cast<const bf16*>(w_up);
    const bf16* wd = static_cast<const bf16*>(w_down);
    bf16* yb = static_cast<bf16*>(out);
    const GemmShape up = GemmShape::packed(m, h, c);
    GemmShape down = GemmShape::packed(m, c, h);
    down.y_bf16 = true;
    for (int64_t e = 0; e < s.experts; ++e) {
      const bf16* xe = xb + e * m * h;
      gemm_->run(up, xe, wg + e * h * c, g, stream_);
      gemm_->run(up, xe, wu + e * h * c, u, stream_);
      cuda::silu_mul(g, u, nullptr, m, c, act, stream_);
      gemm_->run(down, act, wd + e * c * h, yb + e * m * h, stream_);
    }
  }

  void kv_append(const KvAppendShape& s, const void* new_kv, void* cache) override {
    cuda::kv_append_rows(static_cast<const bf16*>(new_kv), s.batch * s.kv_heads, s.width,
                         static_cast<bf16*>(cache), s.capacity, s.position, stream_);
  }

  // The segment table (every other block into consecutive slots) is uploaded once per shape.
  void kv_pack(const KvPackShape& s, const void* src, void* dst) override {
    auto& table = pack_tables_[{s.blocks, s.block_bytes}];
    if (!table) {
      std::vector<cpu::Segment> segs;
      for (int64_t i = 0; i < s.blocks; ++i)
        segs.push_back({2 * i * s.block_bytes, i * s.block_bytes, s.block_bytes});
      const int64_t bytes = int64_t(segs.size() * sizeof(cpu::Segment));
      table = cuda_buffer(bytes);
      HELIX_CUDA_CHECK(
          cudaMemcpy(table->data(), segs.data(), size_t(bytes), cudaMemcpyHostToDevice));
    }
    cuda::copy_segments(src, dst, static_cast<const cpu::Segment*>(table->data()), s.blocks,
                        stream_);
  }

 private:
  struct GroupedMoe {
    std::unique_ptr<GpuBuffer> logits, work, out, expert, weight, margin;
  };

  // A moe_experts case as the grouped kernel's shape: every expert held, top-1, no shared expert.
  static cuda::MoeFfnShape grouped_shape(const MoeShape& s) {
    return {s.hidden, s.experts, 1, 0, s.experts, s.cols, 0, 1.0f, s.experts * s.rows_per_expert};
  }

  // The grouped launch for a moe_experts case; its routing (token e * rows + r to expert e), plan
  // workspace and fp32 output are kept per shape, made at the first (untimed) launch.
  void grouped_moe(const MoeShape& s, const void* x, const void* w_gate, const void* w_up,
                   const void* w_down, void* out) {
    const int64_t T = s.experts * s.rows_per_expert;
    const cuda::MoeFfnShape sh = grouped_shape(s);
    cuda::MoeFfnWeights w;
    w.gate = static_cast<const bf16*>(w_gate);
    w.up = static_cast<const bf16*>(w_up);
    w.down = static_cast<const bf16*>(w_down);
    const cuda::MoeFfn moe(sh, w);  // tensor maps of this operand set (host work, not timed)
    GroupedMoe& g = grouped_[{s.experts, s.rows_per_expert, s.hidden, s.cols}];
    if (!g.logits) {
      std::vector<float> logits(size_t(T * s.experts), -8.0f);
      for (int64_t t = 0; t < T; ++t) logits[size_t(t * s.experts + t / s.rows_per_expert)] = 8.0f;
      g.logits = cuda_buffer(int64_t(logits.size()) * 4);
      HELIX_CUDA_CHECK(
          cudaMemcpy(g.logits->data(), logits.data(), logits.size() * 4, cudaMemcpyHostToDevice));
      g.work = cuda_buffer(moe.workspace_bytes());
      g.out = cuda_buffer(T * s.hidden * 4);
      g.expert = cuda_buffer(T * 4);
      g.weight = cuda_buffer(T * 4);
      g.margin = cuda_buffer(T * 4);
    }
    const cuda::MoeRouting routing{static_cast<int32_t*>(g.expert->data()),
                                   static_cast<float*>(g.weight->data()),
                                   static_cast<float*>(g.margin->data())};
    moe.run_from_logits(static_cast<const bf16*>(x), static_cast<const float*>(g.logits->data()), T,
                        g.work->data(), static_cast<float*>(g.out->data()), routing, stream_);
    cuda::to_bf16(static_cast<const float*>(g.out->data()), static_cast<bf16*>(out), T * s.hidden,
                  stream_);
  }

  // The split workspace of one attention shape, allocated at its first launch (the harness makes
  // one untimed launch of every case before timing it) and kept.
  void run_attention(cuda::DecodeAttention& a) {
    const auto key = std::make_tuple(a.mla, a.batch, a.heads, a.kv_heads, a.tokens);
    auto it = workspaces_.find(key);
    if (it == workspaces_.end()) {
      Workspace w;
      w.splits = cuda::attention_splits(a);
      const int64_t floats = cuda::attention_workspace_floats(a, w.splits);
      if (floats > 0) w.buf = cuda_buffer(floats * 4);
      it = workspaces_.emplace(key, std::move(w)).first;
    }
    a.splits = it->second.splits;
    a.workspace = it->second.buf ? static_cast<float*>(it->second.buf->data()) : nullptr;
    cuda::attention_decode(a, stream_);
  }

  struct Workspace {
    int splits = 1;
    std::unique_ptr<GpuBuffer> buf;
  };

  int device_ = 0;
  std::string desc_;
  int64_t memory_ = 0, l2_ = 0;
  cudaStream_t stream_ = nullptr;
  CudaTimer timer_;
  std::unique_ptr<cuda::Gemm> gemm_;
  std::map<std::tuple<bool, int64_t, int64_t, int64_t, int64_t>, Workspace> workspaces_;
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<GpuBuffer>> pack_tables_;
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t>, GroupedMoe> grouped_;
};

}  // namespace

std::unique_ptr<MicroBackend> make_cuda_micro_backend() {
  return std::make_unique<CudaMicroBackend>();
}

}  // namespace helix::micro
