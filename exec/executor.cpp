#include "exec/executor.hpp"

#include <algorithm>

namespace helix {

const char* const kExposedCommDefinition = "step_minus_compute";

std::vector<std::string> chunk_column_names() {
  return {"attention_start_us", "attention_end_us", "comm_start_us", "comm_end_us"};
}

int exchange_chunks(const Schedule& schedule) {
  int n = 0;
  for (const Step& s : schedule.steps) n += is_partials_exchange(s.op);
  return n;
}

double exposed_comm_us(const std::array<double, kNumPhases>& phase_us, double step_us) {
  double compute_us = 0;
  for (int p = 0; p < kNumPhases; ++p)
    if (!phase_is_comm(static_cast<Phase>(p))) compute_us += phase_us[size_t(p)];
  return std::max(0.0, step_us - compute_us);
}

void StepInterpreter::run_step(const Step& s, const Schedule& schedule) {
  switch (s.op) {
    case Op::attn_prologue:
      return prologue(schedule.position);
    case Op::kv_append:
      return kv_append(s.append_index, schedule.position);
    case Op::attention:
      return attention(s);
    case Op::v_up:
      return v_up(s.batch);
    case Op::pack:
      return pack(s);
    case Op::a2a:
    case Op::a2a_start:
      return exchange(s);
    case Op::a2a_wait:
      return exchange_wait();
    case Op::gather_partials:
      return gather_partials(s);
    case Op::combine:
      return combine(s);
    case Op::o_proj:
      return o_proj(s);
    case Op::o_allreduce:
      return all_reduce(s, Buffer::attn_out);
    case Op::ffn_compute:
      return ffn_compute();
    case Op::ffn_allreduce:
      return all_reduce(s, Buffer::ffn_part);
    case Op::ffn_allgather:
      return all_gather(s, Buffer::ffn_part, Buffer::gathered);
    case Op::ffn_reduce:
      return ffn_reduce(s);
    case Op::out_bcast:
      return broadcast(s, Buffer::out);
  }
}

}  // namespace helix
