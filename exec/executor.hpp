// The interface every backend's executor of a decode-layer schedule implements, and the one
// definition of exposed communication.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "layouts/schedule.hpp"

namespace helix {

// Timestamps of the partials exchange per chunk, in us from the start of the step (the executor's
// clock: host clock on the CPU, CUDA events on the GPU): when the chunk's attention started and
// ended, and when its exchange (a2a, a2a_start or gather_partials) started and ended. One row per
// chunk: HOP-B's batch chunks, one for helix and kvp, none for tp. On the GPU a HOP-B chunk's
// exchange starts when the communication stream reaches it (its pack done and the previous
// chunk's exchange finished); on the CPU when the non-blocking call is posted, and it ends when a
// progress poll (between requests of the next chunks' attention) or the final wait first sees it
// complete.
enum ChunkColumn : int { kAttentionStart = 0, kAttentionEnd, kCommStart, kCommEnd };
constexpr int kChunkColumns = 4;
// "attention_start_us", "attention_end_us", "comm_start_us", "comm_end_us".
std::vector<std::string> chunk_column_names();
// Chunks of a schedule's partials exchange (its a2a, a2a_start and gather_partials steps).
int exchange_chunks(const Schedule& schedule);
// The chunk row of a step (0 for a step over the whole batch).
inline int chunk_row(const Step& s) {
  return s.chunk < 0 ? 0 : s.chunk;
}
inline bool is_partials_exchange(Op op) {
  return op == Op::a2a || op == Op::a2a_start || op == Op::gather_partials;
}

struct StepTiming {
  std::array<double, kNumPhases> phase_us{};  // time spent in each phase's steps
  double step_us = 0;                         // wall time of the whole step on this rank
  double exposed_comm_us = 0;                 // exposed_comm_us(phase_us, step_us)
  // Each step of the schedule, in order, as timed where it runs (a collective: from the moment
  // its stream reaches it to its completion on this rank, waits for peers included).
  std::vector<double> steps_us;
  // [exchange_chunks(schedule)] rows of ChunkColumn timestamps (NaN where nothing ran).
  std::vector<std::array<double, kChunkColumns>> chunk_us;
};

// Exposed communication, one definition for every backend (CPU, CUDA over NCCL or host staging,
// emulated): the part of a rank's step time not covered by its compute steps, i.e. step_us minus
// the sum of the compute phases' times (each compute step timed where it runs: the host clock on
// the CPU, CUDA events on the compute stream on the GPU), clamped at 0. It is what blocking
// collectives, waits for non-blocking ones and any idle gap add to the step; communication that
// overlaps computation (HOP-B's All-to-All behind the next chunk's attention) is not counted. On
// the GPU it includes the slowdown a concurrent collective causes to no compute step (that shows
// in the compute phases instead).
double exposed_comm_us(const std::array<double, kNumPhases>& phase_us, double step_us);
// The name of the definition above, as the trace records it (run attribute
// exposed_comm_definition): "step_minus_compute". Traces written before the attribute existed
// used other definitions on the GPU (results/README.md); helix-compare never compares exposed
// communication across definitions.
extern const char* const kExposedCommDefinition;

class LayerExecutor {
 public:
  virtual ~LayerExecutor() = default;
  // Input hidden states of the next step(s): [batch, H] on the host.
  virtual void set_input(const float* x) = 0;
  // Runs one decode step: the steps of `schedule` in order (the new token of every request at
  // schedule.position, its K/V appended there, overwriting what an earlier step at the same
  // position wrote). `timing` (optional) receives the phase and step times.
  virtual void step(const Schedule& schedule, StepTiming* timing) = 0;
  // The layer output of the last step: [batch, H] on the host.
  virtual void get_output(float* out) = 0;
  // MoE layers: the routed experts this rank's router chose in the last step, [batch, top_k] on
  // the host; false when this rank ran no router (dense layers, ranks outside the FFN).
  virtual bool get_routing(int32_t* /*experts*/) { return false; }
  // Whether the last step ran as a replayed CUDA graph (--cuda-graph).
  virtual bool graph_replay() const { return false; }
  // Bytes of weights and KV cache this rank holds.
  virtual int64_t weight_bytes() const = 0;
  virtual int64_t kv_bytes() const = 0;
};

// The ops of a schedule as an executor implements them, and the one mapping from a step to its op
// (run_step). An executor interprets a schedule by calling run_step for each step in order; what
// the step covers (requests, exchange layout, combine blocks, input buffers) is in the step.
class StepInterpreter {
 public:
  virtual ~StepInterpreter() = default;

 protected:
  void run_step(const Step& s, const Schedule& schedule);

  virtual void prologue(int64_t pos) = 0;                  // attn_prologue
  virtual void kv_append(int64_t index, int64_t pos) = 0;  // index -1: another rank's token
  virtual void attention(const Step& s) = 0;
  virtual void v_up(Range batch) = 0;
  virtual void pack(const Step& s) = 0;      // the step's rows into the send buffer
  virtual void exchange(const Step& s) = 0;  // a2a (blocking) and a2a_start (non-blocking)
  virtual void exchange_wait() = 0;          // a2a_wait: every non-blocking exchange done
  virtual void gather_partials(const Step& s) = 0;
  virtual void combine(const Step& s) = 0;
  virtual void o_proj(const Step& s) = 0;
  virtual void ffn_compute() = 0;
  virtual void ffn_reduce(const Step& s) = 0;
  // Collectives over the step's group on [batch, H] buffers.
  virtual void all_reduce(const Step& s, Buffer b) = 0;
  virtual void all_gather(const Step& s, Buffer from, Buffer to) = 0;
  virtual void broadcast(const Step& s, Buffer b) = 0;
};

}  // namespace helix
