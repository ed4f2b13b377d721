#include "exec/cuda_executor.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "comm/cuda_check.hpp"
#include "comm/error.hpp"
#include "exec/nvtx_range.hpp"
#include "kernels/cuda_kernels.hpp"
#include "kernels/partials_cuda.hpp"

namespace helix {

namespace {
constexpr const char* kHint = "a smaller batch, or fewer ranks per GPU";
}  // namespace

CudaExecutor::CudaExecutor(const ModelSpec& m, const RankShard& shard,
                           std::shared_ptr<DeviceGroups> groups, int batch, int64_t seq_len,
                           int64_t max_positions, uint64_t seed)
    : m_(m), shard_(shard), groups_(std::move(groups)), batch_(batch) {
  HELIX_CUDA_CHECK(cudaStreamCreateWithFlags(&s_compute_, cudaStreamNonBlocking));
  // The communication stream at the highest priority: a chunk's exchange kernels are scheduled
  // onto SMs before the pending blocks of the next chunk's attention.
  int least = 0, greatest = 0;
  HELIX_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  HELIX_CUDA_CHECK(cudaStreamCreateWithPriority(&s_comm_, cudaStreamNonBlocking, greatest));
  gemm_ = std::make_unique<cuda::Gemm>(size_t(kGemmWorkspaceBytes));
  qk_dim_ = m.attn_qk_dim();
  out_dim_ = m.attn_out_dim();
  val_dim_ = m.attn_value_dim();
  weights_ = make_device_weights(m, shard, seed, s_compute_);
  cache_ = make_device_cache(m, shard, batch, seq_len, max_positions, seed, s_compute_);
  // Every buffer of the schedule and every scratch area, from the tables the planner reads.
  const BufferTable table = activation_buffers(m, shard, batch);
  for (int b = 0; b < kNumBuffers; ++b)
    bufs_[size_t(b)] = DeviceBuffer<unsigned char>(
        table.elems[size_t(b)] * cuda_elem_bytes(Buffer(b)), buffer_name(Buffer(b)), kHint);
  const auto scratch = cuda_scratch(m, shard, batch, cache_.capacity);
  for (int s = 0; s < kNumScratch; ++s)
    scratch_[size_t(s)] =
        DeviceBuffer<unsigned char>(scratch[size_t(s)].bytes(), scratch[size_t(s)].name, kHint);
  if (const auto shape = grouped_moe_shape(m, shard, batch)) {
    cuda::MoeFfnWeights w;
    w.router = weights_.router.get();
    w.gate = weights_.e_gate.get();
    w.up = weights_.e_up.get();
    w.down = weights_.e_down.get();
    if (shape->shared_cols > 0) {
      w.s_gate = weights_.s_gate.get();
      w.s_up = weights_.s_up.get();
      w.s_down = weights_.s_down.get();
    }
    moe_ = std::make_unique<cuda::MoeFfn>(*shape, w);
  }
  const int64_t assignments = table[Buffer::route_expert];
  if (assignments > 0 && !moe_) {
    HELIX_CUDA_CHECK(cudaMallocHost(&host_route_e_, size_t(assignments) * sizeof(int32_t) * 2));
    HELIX_CUDA_CHECK(cudaMallocHost(&host_route_w_, size_t(assignments) * sizeof(float) * 2));
  }
  HELIX_CUDA_CHECK(cudaStreamSynchronize(s_compute_));
  if (delay_.on()) delay_clock_ = std::make_unique<EmulationClock>();
  if (m.is_mla() && shard.layout.kind == LayoutKind::helix_hopb && shard.layout.hopb_chunks > 1)
    keep_wuv_in_l2();
}

// HOP-B runs W_uv once per chunk (a chunk's value-space partials exist only after it); its weights
// (DeepSeek-R1: 128 heads x 512 x 128 bf16 = 16.8 MB per rank) would otherwise be read from
// memory once per chunk, the chunk's attention streaming its KV through L2 in between. A
// persisting access window over W_uv on the compute stream keeps the lines the first chunk's GEMM
// brings in; run() resets them at the start of every step, so each step reads W_uv from memory
// once, as the helix schedule does (and as a model of many layers would: another layer's W_uv
// sits between two steps of this one).
void CudaExecutor::keep_wuv_in_l2() {
  int dev = 0, max_persist = 0, max_window = 0;
  HELIX_CUDA_CHECK(cudaGetDevice(&dev));
  HELIX_CUDA_CHECK(cudaDeviceGetAttribute(&max_persist, cudaDevAttrMaxPersistingL2CacheSize, dev));
  HELIX_CUDA_CHECK(cudaDeviceGetAttribute(&max_window, cudaDevAttrMaxAccessPolicyWindowSize, dev));
  const int64_t bytes = weights_.wuv.bytes();
  if (max_persist <= 0 || max_window <= 0 || bytes <= 0) return;  // not supported (e.g. MIG)
  l2_wuv_bytes_ = std::min<int64_t>({bytes, max_persist, max_window});
  HELIX_CUDA_CHECK(cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, size_t(l2_wuv_bytes_)));
  cudaStreamAttrValue v{};
  v.accessPolicyWindow.base_ptr = weights_.wuv.get();
  v.accessPolicyWindow.num_bytes = size_t(l2_wuv_bytes_);
  v.accessPolicyWindow.hitRatio = 1.0f;
  v.accessPolicyWindow.hitProp = cudaAccessPropertyPersisting;
  v.accessPolicyWindow.missProp = cudaAccessPropertyStreaming;
  HELIX_CUDA_CHECK(cudaStreamSetAttribute(s_compute_, cudaStreamAttributeAccessPolicyWindow, &v));
}

CudaExecutor::~CudaExecutor() {
  cudaDeviceSynchronize();
  for (auto& g : graph_cache_) cudaGraphExecDestroy(g.second);
  if (l2_wuv_bytes_ > 0) {  // give the L2 set-aside back to the next run
    cudaCtxResetPersistingL2Cache();
    cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, 0);
  }
  if (host_route_e_) cudaFreeHost(host_route_e_);
  if (host_route_w_) cudaFreeHost(host_route_w_);
  if (s_compute_) cudaStreamDestroy(s_compute_);
  if (s_comm_) cudaStreamDestroy(s_comm_);
}

void CudaExecutor::set_input(const float* x) {
  // Ordered on the compute stream and waited for: a plain cudaMemcpy from pageable memory may
  // return before its DMA lands, and the non-blocking compute stream would not wait for it.
  HELIX_CUDA_CHECK(cudaMemcpyAsync(f32(Buffer::x), x, size_t(bufs_[size_t(Buffer::x)].bytes()),
                                   cudaMemcpyHostToDevice, s_compute_));
  HELIX_CUDA_CHECK(cudaStreamSynchronize(s_compute_));
}

void CudaExecutor::get_output(float* out) {
  HELIX_CUDA_CHECK(cudaMemcpyAsync(out, f32(Buffer::out),
                                   size_t(bufs_[size_t(Buffer::out)].bytes()),
                                   cudaMemcpyDeviceToHost, s_compute_));
  HELIX_CUDA_CHECK(cudaStreamSynchronize(s_compute_));
}

// The routing of the last step, copied from the device when asked (never on the timed path).
bool CudaExecutor::get_routing(int32_t* experts) {
  if (shard_.layer != LayerKind::moe || !shard_.in_ffn) return false;
  HELIX_CUDA_CHECK(cudaMemcpyAsync(experts, buf<int32_t>(Buffer::route_expert),
                                   size_t(batch_ * m_.moe.top_k) * sizeof(int32_t),
                                   cudaMemcpyDeviceToHost, s_compute_));
  HELIX_CUDA_CHECK(cudaStreamSynchronize(s_compute_));
  return true;
}

// A non-blocking exchange runs on the communication stream when its communicator only enqueues
// (NCCL, the emulation); host-staged MPI blocks the host, so it stays in order on the compute
// stream.
cudaStream_t CudaExecutor::stream_of(const Step& s) const {
  return s.op == Op::a2a_start && groups_->get(s.group).stream_ordered() ? s_comm_ : s_compute_;
}

void CudaExecutor::step(const Schedule& schedule, StepTiming* timing) {
  run(schedule, timing != nullptr);
  if (!timing) return;
  StepTiming t;
  t.chunk_us.assign(size_t(exchange_chunks(schedule)), {NAN, NAN, NAN, NAN});
  for (size_t i = 0; i < schedule.steps.size(); ++i) {
    const Step& s = schedule.steps[i];
    const double us = CudaEvent::elapsed_us(begin_[i], end_[i]);
    t.steps_us.push_back(us);
    // The wait for the exchanges is no phase of its own: each chunk's exchange is timed on the
    // communication stream, and what the wait adds to the step is exposed communication.
    if (s.op == Op::a2a_wait) continue;
    t.phase_us[size_t(s.phase)] += us;
    if (t.chunk_us.empty() || (s.op != Op::attention && !is_partials_exchange(s.op))) continue;
    auto& row = t.chunk_us[size_t(std::min<int>(chunk_row(s), int(t.chunk_us.size()) - 1))];
    const int first = s.op == Op::attention ? kAttentionStart : kCommStart;
    row[size_t(first)] = CudaEvent::elapsed_us(step0_, begin_[i]);
    row[size_t(first + 1)] = CudaEvent::elapsed_us(step0_, end_[i]);
  }
  t.step_us = CudaEvent::elapsed_us(step0_, step1_);
  t.exposed_comm_us = exposed_comm_us(t.phase_us, t.step_us);
  delay_.observe(schedule.steps, t.steps_us, delay_applied_us_);
  *timing = std::move(t);
}

bool CudaExecutor::capturable() const {
  for (Group g : {Group::world, Group::kvp, Group::tpa, Group::ffn, Group::tpf, Group::ep})
    if (const DeviceComm* c = groups_->find(g); c && !c->stream_ordered()) return false;
  return !(shard_.layer == LayerKind::moe && shard_.in_ffn && !moe_);
}

void CudaExecutor::run(const Schedule& schedule, bool timed) {
  HELIX_CHECK(schedule.batch == batch_, "schedule of another batch size");
  for (int b = 0; b < kNumBuffers; ++b)
    HELIX_CHECK(
        schedule.buffers.elems[size_t(b)] * cuda_elem_bytes(Buffer(b)) <= bufs_[size_t(b)].bytes(),
        std::string("schedule needs a larger buffer ") + buffer_name(Buffer(b)));
  while (begin_.size() < schedule.steps.size()) {
    begin_.emplace_back();
    end_.emplace_back();
    ready_.emplace_back(false);
  }
  // Every step reads W_uv from memory once (keep_wuv_in_l2); the previous step has finished.
  if (l2_wuv_bytes_ > 0) HELIX_CUDA_CHECK(cudaCtxResetPersistingL2Cache());
  // NVTX: the step, and in it every step of the schedule under its phase's trace name (the
  // collectives under attn_comm, o_comm, ffn_comm, out_comm). With --cuda-graph the phase ranges
  // are pushed while the step is captured, once; a replay is inside "step" only.
  NvtxRange step_range("step");
  delay_applied_us_ = 0;
  // The test-only delay differs from step to step: a step that carries it is never replayed.
  graph_replayed_ = graphs_ && capturable() && !delay_.on();
  if (!graph_replayed_) {
    enqueue(schedule, timed, false);
    step1_.synchronize();
    return;
  }
  // The events' records are nodes of the graph: every replay records them again, so they time
  // the replay. The schedule of a timed run is the same every iteration (one capture).
  const auto key = std::make_tuple(schedule.position, timed, schedule.steps.size());
  auto it = graph_cache_.find(key);
  if (it == graph_cache_.end()) {
    cudaGraph_t graph = nullptr;
    HELIX_CUDA_CHECK(cudaStreamBeginCapture(s_compute_, cudaStreamCaptureModeRelaxed));
    enqueue(schedule, timed, true);
    const cudaError_t rc = cudaStreamEndCapture(s_compute_, &graph);
    if (rc != cudaSuccess)
      fatal(std::string("--cuda-graph: capturing the decode step failed (") +
            cudaGetErrorString(rc) + "); run without --cuda-graph");
    cudaGraphExec_t exec = nullptr;
    HELIX_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    HELIX_CUDA_CHECK(cudaGraphDestroy(graph));
    it = graph_cache_.emplace(key, exec).first;
  }
  HELIX_CUDA_CHECK(cudaGraphLaunch(it->second, s_compute_));
  HELIX_CUDA_CHECK(cudaStreamSynchronize(s_compute_));
}

// The schedule's steps on their streams; in_graph: while s_compute_ is being captured (the
// communication stream joins the capture through the events that order it).
void CudaExecutor::enqueue(const Schedule& schedule, bool timed, bool in_graph) {
  auto mark = [in_graph](CudaEvent& e, cudaStream_t st) {
    if (in_graph)
      e.record_in_graph(st);
    else
      e.record(st);
  };
  const int slow_step = timed && !in_graph ? delay_.last_step(schedule.steps) : -1;
  const double delay_us = slow_step >= 0 ? delay_.next_us() : 0.0;
  mark(step0_, s_compute_);
  for (size_t i = 0; i < schedule.steps.size(); ++i) {
    const Step& s = schedule.steps[i];
    NvtxRange phase_range(phase_name(s.phase));
    const cudaStream_t st = stream_of(s);
    // A step on the communication stream starts after everything enqueued on the compute stream
    // so far (its chunk's attention, W_uv and pack), before its timing starts.
    if (st != s_compute_) {
      ready_[i].record(s_compute_);
      ready_[i].wait_on(st);
    }
    if (timed) mark(begin_[i], st);
    stream_ = st;
    run_step(s, schedule);
    if (int(i) == slow_step && delay_us > 0) {  // test-only: inside the step's timing
      delay_clock_->run({}, delay_us, st);      // one launch holding the stream
      delay_applied_us_ = std::max(delay_us, delay_clock_->floor_us());
    }
    if (timed) mark(end_[i], st);
  }
  mark(step1_, s_compute_);
}

void CudaExecutor::exchange_wait() {  // the compute stream waits for the other stream's exchanges
  join_.record(s_comm_);
  join_.wait_on(s_compute_);
}

void CudaExecutor::all_reduce(const Step& s, Buffer b) {
  groups_->get(s.group).all_reduce_sum(f32(b), int64_t(batch_) * m_.hidden, stream_);
}

void CudaExecutor::all_gather(const Step& s, Buffer from, Buffer to) {
  groups_->get(s.group).all_gather(f32(from), int64_t(batch_) * m_.hidden, f32(to), stream_);
}

void CudaExecutor::broadcast(const Step& s, Buffer b) {
  groups_->get(s.group).bcast(f32(b), int64_t(batch_) * m_.hidden, 0, stream_);
}

// The step's rows (values then LSE per request and head) for each peer in group order, in one
// launch on the compute stream: the chunk's exchange can start as soon as it is done.
void CudaExecutor::pack(const Step& s) {
  const Exchange& x = s.exchange;
  const int64_t qh = shard_.q_heads.size();
  std::vector<cpu::HeadRange> heads;
  for (const Range& r : x.peer_heads) heads.push_back({r.begin, r.end});
  cuda::pack_partials(f32(s.input) + s.batch.begin * qh * x.dim, qh * x.dim,
                      f32(Buffer::part_lse) + s.batch.begin * qh, qh, s.batch.size(), x.dim,
                      heads.data(), int(heads.size()), f32(Buffer::send) + x.send_offset,
                      s_compute_);
}

void CudaExecutor::exchange(const Step& s) {
  const Exchange& x = s.exchange;
  groups_->get(s.group).all_to_all_v(f32(Buffer::send) + x.send_offset, x.send_counts,
                                     x.send_displs, f32(Buffer::recv) + x.recv_offset,
                                     x.recv_counts, x.recv_displs, stream_);
}

void CudaExecutor::gather_partials(const Step& s) {
  const Exchange& x = s.exchange;
  groups_->get(s.group).gather(f32(Buffer::send) + x.send_offset, x.send_counts[0],
                               f32(Buffer::recv) + x.recv_offset, x.root, stream_);
}

// The received rows combined in place into the bf16 projection input: one launch for the batch,
// HOP-B's chunks included.
void CudaExecutor::combine(const Step& s) {
  const float* recv = f32(Buffer::recv);
  for (const CombineBlock& b : s.combine_blocks)
    cuda::lse_combine_rows(b.parts, b.rows, b.dim, recv + b.o_offset, b.part_stride, b.row_stride,
                           recv + b.lse_offset, b.part_stride, b.row_stride, nullptr,
                           buf<bf16>(Buffer::combined) + b.out_offset, nullptr, s_compute_);
}

void CudaExecutor::o_proj(const Step& s) {
  cudaStream_t st = s_compute_;
  const int64_t B = batch_, H = m_.hidden, oh = shard_.o_heads.size(), D = val_dim_;
  float* attn_out = f32(Buffer::attn_out);
  if (oh == 0) {
    HELIX_CUDA_CHECK(cudaMemsetAsync(attn_out, 0, size_t(B * H) * sizeof(float), st));
    return;
  }
  // Rows not combined (tp: the local partials are complete) are converted to the GEMM's bf16.
  bf16* in = buf<bf16>(Buffer::combined);
  if (s.input != Buffer::combined) cuda::to_bf16(f32(s.input), in, B * oh * D, st);
  const GemmShape g{B, oh * D, H, oh * D, H, H};
  gemm_->run(g, in, weights_.wo.get(), attn_out, st);
}

}  // namespace helix
