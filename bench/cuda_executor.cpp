#include "bench/cuda_executor.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "bench/layer_data.hpp"
#include "bench/nvtx_range.hpp"
#include "comm/cuda_check.hpp"
#include "comm/error.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/rng.hpp"

namespace helix {

// ---------------------------------------------------------------------------------------------
// Device arrays

template <class T>
DeviceArray<T>& DeviceArray<T>::operator=(DeviceArray&& o) noexcept {
  if (this != &o) {
    release();
    p_ = o.p_;
    n_ = o.n_;
    o.p_ = nullptr;
    o.n_ = 0;
  }
  return *this;
}

template <class T>
void DeviceArray<T>::resize(int64_t n) {
  release();
  if (n <= 0) return;
  void* p = nullptr;
  HELIX_CUDA_CHECK(cudaMalloc(&p, size_t(n) * sizeof(T)));
  p_ = static_cast<T*>(p);
  n_ = n;
}

template <class T>
void DeviceArray<T>::release() {
  if (p_) cudaFree(p_);
  p_ = nullptr;
  n_ = 0;
}

template class DeviceArray<float>;
template class DeviceArray<bf16>;
template class DeviceArray<int32_t>;

DeviceComm& DeviceGroups::get(Group g) const {
  const std::unique_ptr<DeviceComm>* c = nullptr;
  switch (g) {
    case Group::world:
      c = &world;
      break;
    case Group::kvp:
      c = &kvp;
      break;
    case Group::tpa:
      c = &tpa;
      break;
    case Group::ffn:
      c = &ffn;
      break;
    case Group::tpf:
      c = &tpf;
      break;
    case Group::ep:
      c = &ep;
      break;
    case Group::none:
      break;
  }
  HELIX_CHECK(c && *c, std::string("no device communicator for group ") + group_name(g));
  return **c;
}

double LinkModel::collective_us(const Work& w, int64_t elem_bytes) const {
  const int n = w.group_size;
  if (n <= 1 || w.coll == Collective::none) return 0.0;
  double factor = 1.0;
  switch (w.coll) {
    case Collective::all_reduce:
      factor = 2.0 * (n - 1) / n;
      break;
    case Collective::all_to_all:
    case Collective::all_gather:
    case Collective::gather:
      factor = double(n - 1) / n;
      break;
    case Collective::broadcast:
    case Collective::none:
      factor = 1.0;
      break;
  }
  const double bytes = w.comm_elems * double(elem_bytes);
  if (bytes <= 0) return 0.0;
  return latency_us + bytes * factor / (bw_gbps * 1e3);  // GB/s = 1e3 bytes/us
}

// ---------------------------------------------------------------------------------------------
// Weights on the device

int64_t DeviceShard::bytes() const {
  int64_t n = 0;
  for (const DeviceArray<float>* a : {&attn_norm, &q_norm, &kv_norm, &ffn_norm}) n += a->bytes();
  for (const DeviceArray<bf16>* a :
       {&wq, &wk, &wv, &wdq, &wuq, &wdkv, &wuk_t, &wuv, &wo, &w_gate, &w_up, &w_down, &router,
        &e_gate, &e_up, &e_down, &s_gate, &s_up, &s_down})
    n += a->bytes();
  return n;
}

namespace {

float fan_scale(double fan_in) {
  return float(std::sqrt(3.0 / fan_in));
}

void fill(DeviceArray<bf16>& dst, uint64_t key, int64_t cols, Range rows, Range colr, double fan_in,
          cudaStream_t s) {
  dst.resize(rows.size() * colr.size());
  cuda::fill_slice(dst.get(), key, cols, rows.begin, rows.end, colr.begin, colr.end,
                   fan_scale(fan_in), s);
}

void fill_norm(DeviceArray<float>& dst, uint64_t key, int64_t n, cudaStream_t s) {
  dst.resize(n);
  cuda::fill_slice_f32(dst.get(), key, n, 0, 1, 0, n, 0.25f, 1.0f, s);
}

}  // namespace

DeviceShard make_device_shard(const ModelSpec& m, const RankPlan& p, uint64_t seed,
                              cudaStream_t st) {
  DeviceShard s;
  const int64_t H = m.hidden;
  const Range all_h{0, H};
  auto key = [&](TensorId t, uint64_t a = 0) { return tensor_key(seed, t, a); };
  fill_norm(s.attn_norm, key(TensorId::attn_norm), H, st);
  if (m.is_mla()) {
    const auto& a = m.mla;
    const int64_t qk = a.qk_nope + a.qk_rope;
    fill(s.wdq, key(TensorId::mla_wdq), a.q_lora, all_h, {0, a.q_lora}, double(H), st);
    fill_norm(s.q_norm, key(TensorId::mla_qnorm), a.q_lora, st);
    fill(s.wuq, key(TensorId::mla_wuq), m.q_heads * qk, {0, a.q_lora},
         {p.q_heads.begin * qk, p.q_heads.end * qk}, double(a.q_lora), st);
    fill(s.wdkv, key(TensorId::mla_wdkv), a.kv_lora + a.qk_rope, all_h, {0, a.kv_lora + a.qk_rope},
         double(H), st);
    fill_norm(s.kv_norm, key(TensorId::mla_kvnorm), a.kv_lora, st);
    s.wuk_t.resize(p.q_heads.size() * a.qk_nope * a.kv_lora);
    cuda::fill_wuk_t(s.wuk_t.get(), key(TensorId::mla_wuk), p.q_heads.begin, p.q_heads.end,
                     a.kv_lora, a.qk_nope, fan_scale(a.kv_lora), st);
    fill(s.wuv, key(TensorId::mla_wuv), a.v_head,
         {p.q_heads.begin * a.kv_lora, p.q_heads.end * a.kv_lora}, {0, a.v_head}, double(a.kv_lora),
         st);
    fill(s.wo, key(TensorId::wo), H, {p.o_heads.begin * a.v_head, p.o_heads.end * a.v_head}, all_h,
         double(m.q_heads) * a.v_head, st);
  } else {
    const int64_t D = m.head_dim;
    fill(s.wq, key(TensorId::wq), m.q_heads * D, all_h, {p.q_heads.begin * D, p.q_heads.end * D},
         double(H), st);
    fill(s.wk, key(TensorId::wk), m.kv_heads * D, all_h, {p.kv_heads.begin * D, p.kv_heads.end * D},
         double(H), st);
    fill(s.wv, key(TensorId::wv), m.kv_heads * D, all_h, {p.kv_heads.begin * D, p.kv_heads.end * D},
         double(H), st);
    fill(s.wo, key(TensorId::wo), H, {p.o_heads.begin * D, p.o_heads.end * D}, all_h,
         double(m.q_heads) * double(D), st);
  }
  if (!p.in_ffn) return s;
  fill_norm(s.ffn_norm, key(TensorId::ffn_norm), H, st);
  if (p.layer == LayerKind::dense) {
    const Range c = p.dense_cols;
    fill(s.w_gate, key(TensorId::w_gate), m.ffn, all_h, c, double(H), st);
    fill(s.w_up, key(TensorId::w_up), m.ffn, all_h, c, double(H), st);
    fill(s.w_down, key(TensorId::w_down), H, c, all_h, double(m.ffn), st);
  } else {
    const int64_t E = m.moe.routed_experts, F = m.moe.expert_ffn;
    const int64_t cols = p.expert_cols.size(), ne = p.experts.size();
    fill(s.router, key(TensorId::router), E, all_h, {0, E}, double(H), st);
    s.e_gate.resize(ne * H * cols);
    s.e_up.resize(ne * H * cols);
    s.e_down.resize(ne * cols * H);
    for (int64_t e = p.experts.begin; e < p.experts.end; ++e) {
      const int64_t le = e - p.experts.begin;
      const float sg = fan_scale(double(H)), sd = fan_scale(double(F));
      cuda::fill_slice(s.e_gate.get() + le * H * cols, key(TensorId::exp_gate, uint64_t(e)), F, 0,
                       H, p.expert_cols.begin, p.expert_cols.end, sg, st);
      cuda::fill_slice(s.e_up.get() + le * H * cols, key(TensorId::exp_up, uint64_t(e)), F, 0, H,
                       p.expert_cols.begin, p.expert_cols.end, sg, st);
      cuda::fill_slice(s.e_down.get() + le * cols * H, key(TensorId::exp_down, uint64_t(e)), H,
                       p.expert_cols.begin, p.expert_cols.end, 0, H, sd, st);
    }
    const int64_t Fs = int64_t(m.moe.shared_experts) * F;
    if (Fs > 0) {
      fill(s.s_gate, key(TensorId::sh_gate), Fs, all_h, p.shared_cols, double(H), st);
      fill(s.s_up, key(TensorId::sh_up), Fs, all_h, p.shared_cols, double(H), st);
      fill(s.s_down, key(TensorId::sh_down), H, p.shared_cols, all_h, double(Fs), st);
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Footprint (the memory planner and the allocations below agree on these sizes)

namespace {

struct Sizes {
  // dv: attention kernel output width (MLA: latent); dx: exchanged width (MLA: after W_uv).
  int64_t B, H, qh, oh, kvh, qk, dv, dx, cap, recv_heads, kvp, ep, widest, assignments;
};

Sizes sizes_of(const ModelSpec& m, const RankPlan& p, int batch, int64_t max_positions) {
  Sizes z{};
  z.B = batch;
  z.H = m.hidden;
  z.qh = p.q_heads.size();
  z.oh = p.o_heads.size();
  z.kvh = m.is_mla() ? 1 : p.kv_heads.size();
  z.qk = m.attn_qk_dim();
  z.dv = m.attn_out_dim();
  z.dx = m.attn_value_dim();
  z.cap = std::max<int64_t>(1, p.local_tokens(max_positions));
  z.kvp = p.layout.kvp;
  z.recv_heads = p.layout.kind == LayoutKind::kvp ? z.qh : z.oh;
  z.ep = p.layout.ep;
  z.widest = std::max<int64_t>(
      {p.dense_cols.size(), p.expert_cols.size(), p.shared_cols.size(), int64_t(1)});
  z.assignments = p.layer == LayerKind::moe ? int64_t(batch) * m.moe.top_k : 0;
  return z;
}

cuda::DecodeAttention attention_shape(const ModelSpec& m, const RankPlan& p, int64_t batch,
                                      int64_t tokens, int64_t capacity) {
  cuda::DecodeAttention a;
  a.mla = m.is_mla();
  a.batch = batch;
  a.heads = p.q_heads.size();
  a.q_begin = p.q_heads.begin;
  a.kv_begin = m.is_mla() ? 0 : p.kv_heads.begin;
  a.kv_heads = m.is_mla() ? 1 : p.kv_heads.size();
  a.group = m.is_mla() ? p.q_heads.size() : m.group();
  a.tokens = tokens;
  a.capacity = capacity;
  a.scale = m.softmax_scale();
  return a;
}

// Split-KV workspace large enough for any batch chunk of up to `batch` requests (smaller chunks
// take more splits).
int64_t attention_workspace_max(const ModelSpec& m, const RankPlan& p, int64_t batch,
                                int64_t capacity) {
  int64_t most = 0;
  for (int64_t nb = 1; nb <= batch; ++nb) {
    const cuda::DecodeAttention a = attention_shape(m, p, nb, capacity, capacity);
    most = std::max(most, cuda::attention_workspace_floats(a, cuda::attention_splits(a)));
  }
  return most;
}

}  // namespace

CudaFootprint cuda_footprint(const ModelSpec& m, const RankPlan& p, int batch,
                             int64_t max_positions) {
  const Sizes z = sizes_of(m, p, batch, max_positions);
  CudaFootprint f;
  f.weights = 2 * shard_elements(m, p);
  f.kv = 2 * cache_elements(m, p, batch, max_positions);
  int64_t act = 0;                                    // fp32 elements
  act += 2 * z.B * z.H;                               // x, out
  act += z.B * z.qh * z.qk + 2 * z.B * z.kvh * z.qk;  // q, k_new, v_new
  if (m.is_mla()) {
    const auto& a = m.mla;
    act += z.B * a.q_lora + z.B * z.qh * (a.qk_nope + a.qk_rope) + z.B * z.qk;
  }
  act += z.B * z.qh * (z.dv + 1);                  // partials, LSE
  if (m.is_mla()) act += z.B * z.qh * z.dx;        // up-projected partials
  act += z.B * z.qh * (z.dx + 1);                  // send
  act += z.kvp * z.B * z.recv_heads * (z.dx + 1);  // receive
  act += 3 * z.B * z.H + 2 * z.B * z.widest + z.ep * z.B * z.H;
  if (p.layer == LayerKind::moe) act += z.B * m.moe.routed_experts + 2 * z.assignments;
  act += z.assignments * z.H;  // expert outputs
  int64_t bf = 0;              // bf16 elements
  bf += 3 * z.B * z.H + z.B * z.qh * z.dx + z.B * z.widest + z.assignments * z.H;
  if (m.is_mla())
    bf += z.B * (m.mla.q_lora + z.qh * (m.mla.qk_nope + m.mla.qk_rope)) + z.B * z.qh * z.dv;
  f.activations = 4 * act + 2 * bf;
  // Split-KV workspace at the largest split count, and the cuBLASLt workspace.
  f.workspace = 4 * attention_workspace_max(m, p, batch, z.cap) + (int64_t(32) << 20);
  return f;
}

// ---------------------------------------------------------------------------------------------
// Executor

CudaExecutor::CudaExecutor(const ModelSpec& m, const RankPlan& plan,
                           std::shared_ptr<DeviceGroups> groups, const LinkModel& link, int batch,
                           int64_t seq_len, int64_t max_positions, uint64_t seed)
    : m_(m),
      plan_(plan),
      groups_(std::move(groups)),
      link_(link),
      emulated_(groups_ == nullptr),
      batch_(batch) {
  stream_ordered_comm_ = !emulated_ && groups_->world->kind() == "nccl";
  HELIX_CUDA_CHECK(cudaStreamCreateWithFlags(&s_compute_, cudaStreamNonBlocking));
  HELIX_CUDA_CHECK(cudaStreamCreateWithFlags(&s_comm_, cudaStreamNonBlocking));
  gemm_ = std::make_unique<cuda::Gemm>();
  qk_dim_ = m.attn_qk_dim();
  out_dim_ = m.attn_out_dim();
  val_dim_ = m.attn_value_dim();
  peer_heads_ = peer_head_ranges(m, plan);
  const Sizes z = sizes_of(m, plan, batch, max_positions);
  capacity_ = z.cap;
  cudaStream_t st = s_compute_;

  shard_ = make_device_shard(m, plan, seed, st);
  // KV cache, filled like make_kv_cache.
  const int64_t filled = plan.local_tokens(seq_len);
  if (m.is_mla()) {
    const int64_t w = z.qk;
    k_cache_.resize(z.B * z.cap * w);
    for (int64_t b = 0; b < z.B; ++b)
      cuda::fill_kv_rows(k_cache_.get() + b * z.cap * w,
                         tensor_key(seed, TensorId::latent_cache, uint64_t(b), 0), w, filled, z.cap,
                         plan.placement.kvp, plan.placement.block, plan.k, st);
  } else {
    const int64_t D = m.head_dim;
    k_cache_.resize(z.B * z.kvh * z.cap * D);
    v_cache_.resize(z.B * z.kvh * z.cap * D);
    for (int64_t b = 0; b < z.B; ++b)
      for (int64_t h = 0; h < z.kvh; ++h) {
        const uint64_t g = uint64_t(plan.kv_heads.begin + h);
        const int64_t off = (b * z.kvh + h) * z.cap * D;
        cuda::fill_kv_rows(k_cache_.get() + off,
                           tensor_key(seed, TensorId::k_cache, uint64_t(b), g), D, filled, z.cap,
                           plan.placement.kvp, plan.placement.block, plan.k, st);
        cuda::fill_kv_rows(v_cache_.get() + off,
                           tensor_key(seed, TensorId::v_cache, uint64_t(b), g), D, filled, z.cap,
                           plan.placement.kvp, plan.placement.block, plan.k, st);
      }
  }

  const int64_t B = z.B, H = z.H, qh = z.qh;
  x_.resize(B * H);
  out_.resize(B * H);
  hn_bf_.resize(B * H);
  q_.resize(B * qh * qk_dim_);
  if (m.is_mla()) {
    const auto& a = m.mla;
    cq_.resize(B * a.q_lora);
    cq_bf_.resize(B * a.q_lora);
    qfull_.resize(B * qh * (a.qk_nope + a.qk_rope));
    qfull_bf_.resize(B * qh * (a.qk_nope + a.qk_rope));
    ckv_.resize(B * qk_dim_);
    lat_bf_.resize(B * qh * out_dim_);
    part_v_.resize(B * qh * val_dim_);
  } else {
    k_new_.resize(B * z.kvh * m.head_dim);
    v_new_.resize(B * z.kvh * m.head_dim);
  }
  part_o_.resize(B * qh * out_dim_);
  part_lse_.resize(B * qh);
  attn_ws_.resize(attention_workspace_max(m, plan, B, z.cap));
  send_.resize(B * qh * (val_dim_ + 1));
  recv_.resize(z.kvp * B * z.recv_heads * (val_dim_ + 1));
  comb_bf_.resize(B * std::max(qh, z.recv_heads) * val_dim_);
  attn_out_.resize(B * H);
  x1_.resize(B * H);
  h2_bf_.resize(B * H);
  ffn_part_.resize(B * H);
  gathered_.resize(z.ep * B * H);
  g_.resize(std::max(B, z.assignments) * z.widest);
  u_.resize(std::max(B, z.assignments) * z.widest);
  act_bf_.resize(std::max(B, z.assignments) * z.widest);
  if (plan.layer == LayerKind::moe) {
    const int64_t E = m.moe.routed_experts;
    logits_.resize(B * E);
    route_e_.resize(z.assignments);
    route_w_.resize(z.assignments);
    exp_rows_.resize(z.assignments);
    exp_w_.resize(z.assignments);
    xe_bf_.resize(z.assignments * H);
    ye_.resize(z.assignments * H);
    HELIX_CUDA_CHECK(cudaMallocHost(&host_route_e_, size_t(z.assignments) * sizeof(int32_t) * 2));
    HELIX_CUDA_CHECK(cudaMallocHost(&host_route_w_, size_t(z.assignments) * sizeof(float) * 2));
  }
  HELIX_CUDA_CHECK(cudaEventCreate(&ev_step0_));
  HELIX_CUDA_CHECK(cudaEventCreate(&ev_step1_));
  HELIX_CUDA_CHECK(cudaEventCreateWithFlags(&ev_join_, cudaEventDisableTiming));
  HELIX_CUDA_CHECK(cudaStreamSynchronize(st));
}

CudaExecutor::~CudaExecutor() {
  cudaDeviceSynchronize();
  for (auto* v : {&ev_begin_, &ev_end_, &ev_chunk_})
    for (cudaEvent_t e : *v) cudaEventDestroy(e);
  for (cudaEvent_t e : {ev_step0_, ev_step1_, ev_join_})
    if (e) cudaEventDestroy(e);
  if (host_route_e_) cudaFreeHost(host_route_e_);
  if (host_route_w_) cudaFreeHost(host_route_w_);
  if (s_compute_) cudaStreamDestroy(s_compute_);
  if (s_comm_) cudaStreamDestroy(s_comm_);
}

void CudaExecutor::set_input(const float* x) {
  // Ordered on the compute stream and waited for: a plain cudaMemcpy from pageable memory may
  // return before its DMA lands, and the non-blocking compute stream would not wait for it.
  HELIX_CUDA_CHECK(cudaMemcpyAsync(x_.get(), x, size_t(x_.size()) * sizeof(float),
                                   cudaMemcpyHostToDevice, s_compute_));
  HELIX_CUDA_CHECK(cudaStreamSynchronize(s_compute_));
}

void CudaExecutor::get_output(float* out) {
  HELIX_CUDA_CHECK(cudaMemcpyAsync(out, out_.get(), size_t(out_.size()) * sizeof(float),
                                   cudaMemcpyDeviceToHost, s_compute_));
  HELIX_CUDA_CHECK(cudaStreamSynchronize(s_compute_));
}

bool CudaExecutor::get_routing(int32_t* experts) {
  if (plan_.layer != LayerKind::moe || !plan_.in_ffn) return false;
  // ffn_experts() copied the assignments to the host and waited for them.
  std::copy(host_route_e_, host_route_e_ + batch_ * m_.moe.top_k, experts);
  return true;
}

cudaStream_t CudaExecutor::stream_of(const Step& s) const {
  return s.op == Op::a2a_start && stream_ordered_comm_ ? s_comm_ : s_compute_;
}

void CudaExecutor::step(const std::vector<Step>& schedule, int64_t pos, StepTiming* timing) {
  if (!timing) {
    run(schedule, pos, emulated_, nullptr, nullptr);
    return;
  }
  std::vector<float> ms;
  float total_ms = 0;
  run(schedule, pos, emulated_, &ms, &total_ms);
  StepTiming t;
  double compute_us = 0;
  for (size_t i = 0; i < schedule.size(); ++i) {
    const Step& s = schedule[i];
    const bool comm = phase_is_comm(s.phase);
    double us = double(ms[i]) * 1e3;
    if (emulated_ && comm) us = link_.collective_us(s.work, sizeof(float));
    t.phase_us[size_t(static_cast<int>(s.phase))] += us;
    if (!comm) compute_us += us;
  }
  if (!emulated_) {
    t.step_us = double(total_ms) * 1e3;
    // Exposed communication: this step minus the same step with every collective skipped.
    float skip_ms = 0;
    run(schedule, pos, true, nullptr, &skip_ms);
    t.exposed_comm_us = std::max(0.0, t.step_us - double(skip_ms) * 1e3);
  } else {
    // Modeled: compute as measured; HOP-B chunk exchanges pipelined behind the next chunks'
    // attention (chunk c's exchange starts when both its compute, attention and MLA's W_uv, and
    // the previous exchange are done); every other collective fully exposed.
    double t_attn = 0, t_comm_end = 0, exposed = 0;
    double attn_total = 0;
    bool hopb = false;
    for (size_t i = 0; i < schedule.size(); ++i) {
      const Step& s = schedule[i];
      if (s.chunk >= 0 && !phase_is_comm(s.phase)) {  // a chunk's attention (and MLA's W_uv)
        t_attn += double(ms[i]) * 1e3;
        attn_total = t_attn;
        hopb = true;
      } else if (s.op == Op::a2a_start) {
        t_comm_end = std::max(t_comm_end, t_attn) + link_.collective_us(s.work, sizeof(float));
      } else if (phase_is_comm(s.phase) && s.op != Op::a2a_wait) {
        exposed += link_.collective_us(s.work, sizeof(float));
      }
    }
    if (hopb) exposed += std::max(0.0, t_comm_end - attn_total);
    t.exposed_comm_us = exposed;
    t.step_us = compute_us + exposed;
  }
  *timing = t;
}

void CudaExecutor::run(const std::vector<Step>& schedule, int64_t pos, bool skip_comm,
                       std::vector<float>* step_ms, float* total_ms) {
  const bool timed = step_ms != nullptr;
  if (timed && ev_begin_.size() < schedule.size()) {
    for (size_t i = ev_begin_.size(); i < schedule.size(); ++i) {
      cudaEvent_t a = nullptr, b = nullptr;
      HELIX_CUDA_CHECK(cudaEventCreate(&a));
      HELIX_CUDA_CHECK(cudaEventCreate(&b));
      ev_begin_.push_back(a);
      ev_end_.push_back(b);
    }
  }
  const int chunks = plan_.layout.kind == LayoutKind::helix_hopb ? plan_.layout.hopb_chunks : 1;
  while (int(ev_chunk_.size()) < chunks) {
    cudaEvent_t e = nullptr;
    HELIX_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    ev_chunk_.push_back(e);
  }
  combined_valid_ = false;
  // NVTX: the step, and in it every step of the schedule under its phase's trace name (the
  // collectives under attn_comm, o_comm, ffn_comm, out_comm); the re-run without collectives
  // that measures exposed communication is a range of its own.
  NvtxRange step_range(skip_comm && !emulated_ ? "step_without_collectives" : "step");
  HELIX_CUDA_CHECK(cudaEventRecord(ev_step0_, s_compute_));
  for (size_t i = 0; i < schedule.size(); ++i) {
    const Step& s = schedule[i];
    NvtxRange phase_range(phase_name(s.phase));
    cudaStream_t st = stream_of(s);
    // A chunk's exchange waits for that chunk's compute (attention, MLA's W_uv: everything
    // enqueued on the compute stream so far) before its timing starts.
    if (s.op == Op::a2a_start && stream_ordered_comm_) {
      HELIX_CUDA_CHECK(cudaEventRecord(ev_chunk_[size_t(s.chunk)], s_compute_));
      HELIX_CUDA_CHECK(cudaStreamWaitEvent(s_comm_, ev_chunk_[size_t(s.chunk)], 0));
    }
    if (timed) HELIX_CUDA_CHECK(cudaEventRecord(ev_begin_[i], st));
    exec(s, pos, skip_comm);
    if (timed) HELIX_CUDA_CHECK(cudaEventRecord(ev_end_[i], st));
  }
  HELIX_CUDA_CHECK(cudaEventRecord(ev_step1_, s_compute_));
  HELIX_CUDA_CHECK(cudaEventSynchronize(ev_step1_));
  if (total_ms) HELIX_CUDA_CHECK(cudaEventElapsedTime(total_ms, ev_step0_, ev_step1_));
  if (timed) {
    step_ms->assign(schedule.size(), 0.0f);
    for (size_t i = 0; i < schedule.size(); ++i)
      HELIX_CUDA_CHECK(cudaEventElapsedTime(&(*step_ms)[i], ev_begin_[i], ev_end_[i]));
  }
}

void CudaExecutor::exec(const Step& s, int64_t pos, bool skip_comm) {
  cudaStream_t st = s_compute_;
  switch (s.op) {
    case Op::attn_prologue:
      prologue(pos);
      break;
    case Op::kv_append:
      kv_append(pos);
      break;
    case Op::attention:
      attention(s.batch, pos);
      break;
    case Op::v_up:
      v_up(s.batch);
      break;
    case Op::a2a:
      exchange(s, st, skip_comm);
      break;
    case Op::a2a_start:
      exchange(s, stream_ordered_comm_ ? s_comm_ : st, skip_comm);
      break;
    case Op::a2a_wait:
      if (stream_ordered_comm_) {
        HELIX_CUDA_CHECK(cudaEventRecord(ev_join_, s_comm_));
        HELIX_CUDA_CHECK(cudaStreamWaitEvent(s_compute_, ev_join_, 0));
      }
      break;
    case Op::gather_partials:
      gather_partials(skip_comm);
      break;
    case Op::combine:
      combine();
      break;
    case Op::o_proj:
      o_proj();
      break;
    case Op::o_allreduce:
      if (!skip_comm) groups_->get(s.group).all_reduce_sum(attn_out_.get(), attn_out_.size(), st);
      break;
    case Op::ffn_compute:
      ffn_compute();
      break;
    case Op::ffn_allreduce:
      if (!skip_comm) groups_->tpf->all_reduce_sum(ffn_part_.get(), ffn_part_.size(), st);
      break;
    case Op::ffn_allgather:
      if (skip_comm) {
        if (emulated_)  // every EP peer's partial sums: this rank's, of the right size
          for (int e = 0; e < plan_.layout.ep; ++e)
            HELIX_CUDA_CHECK(cudaMemcpyAsync(gathered_.get() + int64_t(e) * ffn_part_.size(),
                                             ffn_part_.get(), size_t(ffn_part_.bytes()),
                                             cudaMemcpyDeviceToDevice, st));
      } else {
        groups_->ep->all_gather(ffn_part_.get(), ffn_part_.size(), gathered_.get(), st);
      }
      break;
    case Op::ffn_reduce:
      ffn_reduce();
      break;
    case Op::out_bcast:
      if (!skip_comm) groups_->kvp->bcast(out_.get(), out_.size(), 0, st);
      break;
  }
}

void CudaExecutor::prologue(int64_t pos) {
  cudaStream_t st = s_compute_;
  const int64_t B = batch_, H = m_.hidden, qh = plan_.q_heads.size();
  cuda::rmsnorm(x_.get(), H, shard_.attn_norm.get(), B, H, m_.rms_eps, hn_bf_.get(), nullptr, st);
  cuda::GemmShape g;
  if (m_.is_mla()) {
    const auto& a = m_.mla;
    const int64_t qk = a.qk_nope + a.qk_rope, w = a.kv_lora + a.qk_rope;
    g = {B, H, a.q_lora, H, a.q_lora, a.q_lora};
    gemm_->run(g, hn_bf_.get(), shard_.wdq.get(), cq_.get(), st);
    cuda::rmsnorm(cq_.get(), a.q_lora, shard_.q_norm.get(), B, a.q_lora, m_.rms_eps, cq_bf_.get(),
                  nullptr, st);
    g = {B, a.q_lora, qh * qk, a.q_lora, qh * qk, qh * qk};
    gemm_->run(g, cq_bf_.get(), shard_.wuq.get(), qfull_.get(), st);
    cuda::to_bf16(qfull_.get(), qfull_bf_.get(), qfull_.size(), st);
    // Absorb W_uk per head: q[b, h, :kv_lora] = q_nope[b, h] @ W_uk_t[h] (a strided batch).
    cuda::GemmShape ab{B, a.qk_nope, a.kv_lora, qh * qk, a.kv_lora, qh * w};
    ab.batch = int(qh);
    ab.stride_x = qk;
    ab.stride_w = a.qk_nope * a.kv_lora;
    ab.stride_y = w;
    gemm_->run(ab, qfull_bf_.get(), shard_.wuk_t.get(), q_.get(), st);
    cuda::mla_q_rope(qfull_.get(), B, qh, a.qk_nope, a.qk_rope, q_.get(), a.kv_lora, pos,
                     m_.rope_theta, st);
    g = {B, H, w, H, w, w};
    gemm_->run(g, hn_bf_.get(), shard_.wdkv.get(), ckv_.get(), st);
  } else {
    const int64_t D = m_.head_dim, kvh = plan_.kv_heads.size();
    g = {B, H, qh * D, H, qh * D, qh * D};
    gemm_->run(g, hn_bf_.get(), shard_.wq.get(), q_.get(), st);
    g = {B, H, kvh * D, H, kvh * D, kvh * D};
    gemm_->run(g, hn_bf_.get(), shard_.wk.get(), k_new_.get(), st);
    gemm_->run(g, hn_bf_.get(), shard_.wv.get(), v_new_.get(), st);
    cuda::rope(q_.get(), B * qh, 1, D, 0, D, pos, m_.rope_theta, st);
    cuda::rope(k_new_.get(), B * kvh, 1, D, 0, D, pos, m_.rope_theta, st);
  }
}

void CudaExecutor::kv_append(int64_t pos) {
  if (!plan_.owns_position(pos)) return;
  const int64_t li = plan_.placement.local_index(pos);
  HELIX_CHECK(li < capacity_, "KV cache full: position " + std::to_string(pos));
  if (m_.is_mla()) {
    cuda::kv_append_mla(ckv_.get(), shard_.kv_norm.get(), batch_, m_.mla.kv_lora, m_.mla.qk_rope,
                        m_.rms_eps, pos, m_.rope_theta, k_cache_.get(), capacity_, li, s_compute_);
  } else {
    cuda::kv_append_gqa(k_new_.get(), v_new_.get(), batch_, plan_.kv_heads.size(), m_.head_dim,
                        k_cache_.get(), v_cache_.get(), capacity_, li, s_compute_);
  }
}

void CudaExecutor::attention(Range batch, int64_t pos) {
  const int64_t qh = plan_.q_heads.size(), nb = batch.size();
  if (nb == 0 || qh == 0) return;
  cuda::DecodeAttention a = attention_shape(m_, plan_, nb, plan_.local_tokens(pos + 1), capacity_);
  const int64_t kvh = m_.is_mla() ? 1 : plan_.kv_heads.size();
  const int64_t kv_req = kvh * capacity_ * qk_dim_;  // cache elements per request (K)
  a.q = q_.get() + batch.begin * qh * qk_dim_;
  a.k = k_cache_.get() + batch.begin * kv_req;
  a.v = m_.is_mla() ? nullptr : v_cache_.get() + batch.begin * kv_req;
  a.out = part_o_.get() + batch.begin * qh * out_dim_;
  a.lse = part_lse_.get() + batch.begin * qh;
  a.workspace = attn_ws_.get();
  a.splits = cuda::attention_splits(a);
  HELIX_CHECK(cuda::attention_workspace_floats(a, a.splits) <= attn_ws_.size(),
              "attention split workspace too small");
  cuda::attention_decode(a, s_compute_);
}

// MLA: each head's latent partial up-projected to the value width before the exchange,
// part_v_[b, h] = part_o_[b, h] @ W_uv[h] (one strided-batched GEMM over the heads, fp32 out, as
// the partials are exchanged in fp32). Exact: the combine weights are scalars per (request, head).
void CudaExecutor::v_up(Range batch) {
  cudaStream_t st = s_compute_;
  const auto& a = m_.mla;
  const int64_t qh = plan_.q_heads.size(), nb = batch.size();
  if (nb == 0 || qh == 0) return;
  const int64_t off = batch.begin * qh * out_dim_;
  cuda::to_bf16(part_o_.get() + off, lat_bf_.get() + off, nb * qh * out_dim_, st);
  cuda::GemmShape up{nb, a.kv_lora, a.v_head, qh * a.kv_lora, a.v_head, qh * a.v_head};
  up.batch = int(qh);
  up.stride_x = a.kv_lora;
  up.stride_w = a.kv_lora * a.v_head;
  up.stride_y = a.v_head;
  gemm_->run(up, lat_bf_.get() + off, shard_.wuv.get(), part_v_.get() + batch.begin * qh * val_dim_,
             st);
}

// Send layout of a chunk [b0, b1) (as the CPU executor): from b0 * q_heads * (D + 1), one message
// per KVP peer j: O block [nb, heads_j, D], then LSE block [nb, heads_j] (D: the value width).
void CudaExecutor::pack_chunk(Range batch, cudaStream_t st) {
  const int64_t D = val_dim_, qh = plan_.q_heads.size(), nb = batch.size();
  const float* part = partials();
  float* dst = send_.get() + batch.begin * qh * (D + 1);
  for (const Range& hr : peer_heads_) {
    const int64_t nh = hr.size();
    if (nh > 0 && nb > 0) {
      HELIX_CUDA_CHECK(cudaMemcpy2DAsync(
          dst, size_t(nh * D) * sizeof(float), part + (batch.begin * qh + hr.begin) * D,
          size_t(qh * D) * sizeof(float), size_t(nh * D) * sizeof(float), size_t(nb),
          cudaMemcpyDeviceToDevice, st));
      dst += nb * nh * D;
      HELIX_CUDA_CHECK(cudaMemcpy2DAsync(dst, size_t(nh) * sizeof(float),
                                         part_lse_.get() + batch.begin * qh + hr.begin,
                                         size_t(qh) * sizeof(float), size_t(nh) * sizeof(float),
                                         size_t(nb), cudaMemcpyDeviceToDevice, st));
      dst += nb * nh;
    }
  }
}

void CudaExecutor::exchange(const Step& s, cudaStream_t st, bool skip_comm) {
  const int64_t D = val_dim_, qh = plan_.q_heads.size(), oh = plan_.o_heads.size();
  const int64_t nb = s.batch.size();
  const int kvp = plan_.layout.kvp;
  if (skip_comm && !emulated_) return;
  pack_chunk(s.batch, st);
  float* send = send_.get() + s.batch.begin * qh * (D + 1);
  float* recv = recv_.get() + s.batch.begin * kvp * oh * (D + 1);
  const int64_t block = nb * oh * (D + 1);
  if (emulated_) {
    // Every peer's partials for the heads this rank owns: its own, of the right size.
    int64_t off = 0;
    for (int j = 0; j < plan_.k; ++j) off += nb * peer_heads_[size_t(j)].size() * (D + 1);
    for (int i = 0; i < kvp; ++i)
      HELIX_CUDA_CHECK(cudaMemcpyAsync(recv + i * block, send + off, size_t(block) * sizeof(float),
                                       cudaMemcpyDeviceToDevice, st));
    return;
  }
  const size_t np = size_t(kvp);
  std::vector<int64_t> sc(np), sd(np), rc(np), rd(np);
  int64_t off = 0;
  for (int j = 0; j < kvp; ++j) {
    sc[size_t(j)] = nb * peer_heads_[size_t(j)].size() * (D + 1);
    sd[size_t(j)] = off;
    off += sc[size_t(j)];
    rc[size_t(j)] = block;
    rd[size_t(j)] = j * block;
  }
  groups_->kvp->all_to_all_v(send, sc, sd, recv, rc, rd, st);
}

void CudaExecutor::gather_partials(bool skip_comm) {
  const int64_t D = val_dim_, qh = plan_.q_heads.size(), B = batch_;
  const int64_t n_o = B * qh * D;
  cudaStream_t st = s_compute_;
  if (skip_comm && !emulated_) return;
  float* send = send_.get();
  HELIX_CUDA_CHECK(
      cudaMemcpyAsync(send, partials(), size_t(n_o) * sizeof(float), cudaMemcpyDeviceToDevice, st));
  HELIX_CUDA_CHECK(cudaMemcpyAsync(send + n_o, part_lse_.get(), size_t(part_lse_.bytes()),
                                   cudaMemcpyDeviceToDevice, st));
  const int64_t n = B * qh * (D + 1);
  if (emulated_) {
    if (plan_.k == 0)
      for (int i = 0; i < plan_.layout.kvp; ++i)
        HELIX_CUDA_CHECK(cudaMemcpyAsync(recv_.get() + i * n, send, size_t(n) * sizeof(float),
                                         cudaMemcpyDeviceToDevice, st));
    return;
  }
  groups_->kvp->gather(send, n, recv_.get(), 0, st);
}

void CudaExecutor::combine() {
  const int64_t D = val_dim_, oh = plan_.o_heads.size();
  const int kvp = plan_.layout.kvp;
  const auto chunks = plan_.layout.kind == LayoutKind::helix_hopb
                          ? batch_chunks(batch_, plan_.layout.hopb_chunks)
                          : std::vector<Range>{Range{0, batch_}};
  for (const Range& c : chunks) {
    const int64_t rows = c.size() * oh, stride = rows * (D + 1);
    const float* base = recv_.get() + c.begin * kvp * oh * (D + 1);
    cuda::lse_combine(kvp, rows, D, base, stride, base + rows * D, stride, nullptr,
                      comb_bf_.get() + c.begin * oh * D, nullptr, s_compute_);
  }
  combined_valid_ = true;
}

void CudaExecutor::o_proj() {
  cudaStream_t st = s_compute_;
  const int64_t B = batch_, H = m_.hidden, oh = plan_.o_heads.size(), D = val_dim_;
  if (oh == 0) {
    HELIX_CUDA_CHECK(cudaMemsetAsync(attn_out_.get(), 0, size_t(attn_out_.bytes()), st));
    return;
  }
  // tp: the local partials are complete (o_heads = q_heads); MLA's are already up-projected.
  if (!combined_valid_) cuda::to_bf16(partials(), comb_bf_.get(), B * oh * D, st);
  cuda::GemmShape g{B, oh * D, H, oh * D, H, H};
  gemm_->run(g, comb_bf_.get(), shard_.wo.get(), attn_out_.get(), st);
}

void CudaExecutor::ffn_compute() {
  cudaStream_t st = s_compute_;
  const int64_t B = batch_, H = m_.hidden;
  cuda::add(x_.get(), attn_out_.get(), x1_.get(), B * H, st);
  cuda::rmsnorm(x1_.get(), H, shard_.ffn_norm.get(), B, H, m_.rms_eps, h2_bf_.get(), nullptr, st);
  HELIX_CUDA_CHECK(cudaMemsetAsync(ffn_part_.get(), 0, size_t(ffn_part_.bytes()), st));
  auto swiglu = [&](const bf16* x, int64_t rows, int64_t cols, const bf16* wg, const bf16* wu,
                    const bf16* wd, const float* row_scale, float* out) {
    if (rows == 0 || cols == 0) return;
    cuda::GemmShape g{rows, H, cols, H, cols, cols};
    gemm_->run(g, x, wg, g_.get(), st);
    gemm_->run(g, x, wu, u_.get(), st);
    cuda::silu_mul(g_.get(), u_.get(), row_scale, rows, cols, act_bf_.get(), st);
    cuda::GemmShape d{rows, cols, H, cols, H, H};
    d.accumulate = true;
    gemm_->run(d, act_bf_.get(), wd, out, st);
  };
  if (plan_.layer == LayerKind::dense) {
    swiglu(h2_bf_.get(), B, plan_.dense_cols.size(), shard_.w_gate.get(), shard_.w_up.get(),
           shard_.w_down.get(), nullptr, ffn_part_.get());
    return;
  }
  ffn_experts();
  if (shard_.s_gate.size() > 0)
    swiglu(h2_bf_.get(), B, plan_.shared_cols.size(), shard_.s_gate.get(), shard_.s_up.get(),
           shard_.s_down.get(), nullptr, ffn_part_.get());
}

// Routed experts: the router runs on the GPU; the (token, expert) assignments come back to the
// host (a few hundred bytes), which launches the GEMMs of the held experts that received tokens.
void CudaExecutor::ffn_experts() {
  cudaStream_t st = s_compute_;
  const int64_t B = batch_, H = m_.hidden, E = m_.moe.routed_experts, K = m_.moe.top_k;
  const int64_t cols = plan_.expert_cols.size();
  cuda::GemmShape r{B, H, E, H, E, E};
  gemm_->run(r, h2_bf_.get(), shard_.router.get(), logits_.get(), st);
  cuda::moe_route(logits_.get(), B, E, K, m_.moe.routed_scale, route_e_.get(), route_w_.get(), st);
  const int64_t n = B * K;
  HELIX_CUDA_CHECK(cudaMemcpyAsync(host_route_e_, route_e_.get(), size_t(n) * sizeof(int32_t),
                                   cudaMemcpyDeviceToHost, st));
  HELIX_CUDA_CHECK(cudaMemcpyAsync(host_route_w_, route_w_.get(), size_t(n) * sizeof(float),
                                   cudaMemcpyDeviceToHost, st));
  HELIX_CUDA_CHECK(cudaStreamSynchronize(st));
  // Rows per held expert, concatenated (second half of the pinned buffers).
  int32_t* rows = host_route_e_ + n;
  float* wts = host_route_w_ + n;
  std::vector<std::pair<int64_t, int64_t>> spans;  // (expert, first row), one per held expert
  int64_t used = 0;
  for (int64_t e = plan_.experts.begin; e < plan_.experts.end; ++e) {
    spans.emplace_back(e, used);
    for (int64_t t = 0; t < B; ++t)
      for (int64_t i = 0; i < K; ++i)
        if (host_route_e_[t * K + i] == int32_t(e)) {
          rows[used] = int32_t(t);
          wts[used] = host_route_w_[t * K + i];
          ++used;
        }
  }
  if (used == 0 || cols == 0) return;
  HELIX_CUDA_CHECK(cudaMemcpyAsync(exp_rows_.get(), rows, size_t(used) * sizeof(int32_t),
                                   cudaMemcpyHostToDevice, st));
  HELIX_CUDA_CHECK(
      cudaMemcpyAsync(exp_w_.get(), wts, size_t(used) * sizeof(float), cudaMemcpyHostToDevice, st));
  for (size_t i = 0; i < spans.size(); ++i) {
    const int64_t e = spans[i].first, r0 = spans[i].second;
    const int64_t r1 = i + 1 < spans.size() ? spans[i + 1].second : used;
    const int64_t nr = r1 - r0;
    if (nr == 0) continue;
    const int64_t le = e - plan_.experts.begin;
    bf16* xe = xe_bf_.get() + r0 * H;
    cuda::gather_rows(h2_bf_.get(), exp_rows_.get() + r0, nr, H, xe, st);
    cuda::GemmShape g{nr, H, cols, H, cols, cols};
    gemm_->run(g, xe, shard_.e_gate.get() + le * H * cols, g_.get(), st);
    gemm_->run(g, xe, shard_.e_up.get() + le * H * cols, u_.get(), st);
    cuda::silu_mul(g_.get(), u_.get(), exp_w_.get() + r0, nr, cols, act_bf_.get(), st);
    cuda::GemmShape d{nr, cols, H, cols, H, H};
    float* ye = ye_.get() + r0 * H;
    gemm_->run(d, act_bf_.get(), shard_.e_down.get() + le * cols * H, ye, st);
    cuda::scatter_add_rows(ye, exp_rows_.get() + r0, nr, H, ffn_part_.get(), st);
  }
}

void CudaExecutor::ffn_reduce() {
  const int ep = plan_.layout.ep;
  const int64_t n = x1_.size();
  if (ep > 1)
    cuda::residual_sum(x1_.get(), gathered_.get(), ep, out_.get(), n, s_compute_);
  else
    cuda::residual_sum(x1_.get(), ffn_part_.get(), 1, out_.get(), n, s_compute_);
}

}  // namespace helix
