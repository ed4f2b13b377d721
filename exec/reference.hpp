// Single-rank reference of one decode layer: the whole layer (every head, every token, every
// expert) on one process, written independently of the kernels and the schedules, accumulating in
// fp64. Every distributed run is checked against it.
//
// Top-k routing is discontinuous: where two experts' router logits are closer than the rounding
// of a bf16 router, an exact executor may pick the other one, and the layer output jumps by a
// whole expert's contribution. The reference therefore records, per step and token, its router
// logits and their rounding bounds, and ReferenceRun::output_for() follows an executor's expert
// choice wherever that choice is explained by rounding (counting every such flip), and keeps its
// own choice (so the run fails) where it is not.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "exec/layer_data.hpp"
#include "layouts/model_spec.hpp"

namespace helix {

// Unit roundoff of bf16 (8 significant bits): |round(x) - x| <= 2^-8 |x|.
constexpr double kBf16Roundoff = 1.0 / 256.0;
// The router-logit rounding bound in units of u times the root-sum-square of the products.
constexpr double kRouterBoundUnits = 8.0;

// What the reference's router saw for one token of one step (MoE layers).
struct RouterRecord {
  std::vector<double> logits;  // [experts], fp64
  // [experts]: how far bf16 rounding can move a logit, 8 u sqrt(sum_i (h_i w_ie)^2), u = 2^-8.
  // Rounding both operands of the router (the normalized hidden state and the weights) to bf16
  // perturbs each product by a relative error of at most 2u, independently and with zero mean,
  // so the logit's error has a standard deviation of about u sqrt(2/3) times the root-sum-square
  // of the products; the bound is ten of those, leaving room for an error of the same size that
  // the bf16 layers before the router put into h. (The worst case, 2u sum_i |h_i w_ie|, is
  // sqrt(H) times looser and would let real routing errors pass.)
  std::vector<double> bound;
  std::vector<int32_t> topk;  // [top_k] the reference's choice (score desc, index asc)
  std::vector<double> base;   // [H] x1 + shared experts: the output without routed experts
  std::vector<double> h2;     // [H] the FFN input
};

// One expert an executor chose that the reference did not (paired with one it dropped).
struct RoutingFlip {
  int step = 0;
  int token = 0;
  int32_t executor_expert = -1;   // chosen by the executor, not by the reference
  int32_t reference_expert = -1;  // chosen by the reference, not by the executor (-1: none)
  double logit_gap = 0;           // reference logit of reference_expert minus executor_expert's
  double bound = 0;               // sum of the two logits' rounding bounds
  bool accepted = false;          // the token's whole choice is explained by rounding
};

class ReferenceLayer {
 public:
  ReferenceLayer(const ModelSpec& model, LayerKind layer, int batch, int64_t seq_len,
                 int64_t max_positions, uint64_t seed);

  // Decode step with the new tokens at position `pos` (their K/V appended there). x: [B, H].
  // MoE layers: `routers` (when given) receives one record per token.
  std::vector<float> step(const std::vector<float>& x, int64_t pos,
                          std::vector<RouterRecord>* routers = nullptr);

  // Output row of one token of a MoE layer whose routed experts are `experts` (top_k of them),
  // from its record: base + sum_e w_e SwiGLU_e(h2), w normalized over `experts`.
  std::vector<double> moe_output(const RouterRecord& rec, const int32_t* experts);

  // Bytes a reference needs (weights + cache), for the memory planner.
  static int64_t bytes_needed(const ModelSpec& model, LayerKind layer, int batch,
                              int64_t max_positions);

 private:
  struct Expert {
    std::vector<float> gate, up, down;  // [H, F], [H, F], [F, H]
  };
  std::vector<double> attention_gqa(const std::vector<double>& hn, int64_t b, int64_t pos);
  std::vector<double> attention_mla(const std::vector<double>& hn, int64_t b, int64_t pos);
  std::vector<double> ffn(const std::vector<double>& h2, RouterRecord* rec);
  // Routed expert weights, generated on first use (a real model's experts are tens of GB).
  const Expert& expert(int64_t e);

  const ModelSpec& m_;
  LayerKind layer_;
  int batch_;
  uint64_t seed_;
  RankShard shard_;
  LayerWeights w_;  // every weight but the routed experts
  std::map<int64_t, Expert> experts_;
  KvCache cache_;
};

// The reference outputs of `steps` consecutive decode steps (inputs make_decode_input(step),
// positions seq .. seq + steps - 1) and, for MoE layers, the router records that let a run's
// expert choice be followed. Built on one rank.
class ReferenceRun {
 public:
  ReferenceRun(const ModelSpec& model, LayerKind layer, int batch, int64_t seq, int steps,
               uint64_t seed);

  int steps() const { return int(outputs_.size()); }
  bool routed() const { return !routers_.empty(); }
  // The router record of one token of one step (MoE layers).
  const RouterRecord& router(int step, int token) const {
    return routers_[size_t(step)][size_t(token)];
  }
  // The reference's own output of `step`: [B, H].
  const std::vector<float>& own_output(int step) const { return outputs_[size_t(step)]; }

  // The output of `step` when the executor routed token t to experts[t * top_k .. +top_k)
  // (`experts` null, or a dense layer: the reference's own output). Tokens whose choice differs
  // from the reference's add one RoutingFlip per changed expert to `flips`; where every flip of
  // a token is explained by rounding (min over the executor's experts of logit + bound >= max
  // over the others of logit - bound) the token's row follows the executor, otherwise it keeps
  // the reference's own row.
  std::vector<float> output_for(int step, const int32_t* experts, std::vector<RoutingFlip>* flips);

 private:
  const ModelSpec& m_;
  int batch_;
  std::unique_ptr<ReferenceLayer> layer_;
  std::vector<std::vector<float>> outputs_;         // [steps][B * H]
  std::vector<std::vector<RouterRecord>> routers_;  // [steps][B] (MoE layers)
};

// ||out - ref|| / ||ref|| (Frobenius norms, fp64).
double relative_error(const std::vector<float>& out, const std::vector<float>& ref);

}  // namespace helix
