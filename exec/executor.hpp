// The interface every backend's executor of a decode-layer schedule implements, and the one
// definition of exposed communication.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "layouts/schedule.hpp"

namespace helix {

struct StepTiming {
  std::array<double, kNumPhases> phase_us{};  // time spent in each phase's steps
  double step_us = 0;                         // wall time of the whole step on this rank
  double exposed_comm_us = 0;                 // exposed_comm_us(phase_us, step_us)
  // Each step of the schedule, in order, as timed where it runs (a collective: from the moment
  // its stream reaches it to its completion on this rank, waits for peers included).
  std::vector<double> steps_us;
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
