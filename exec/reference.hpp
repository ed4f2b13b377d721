// Single-rank reference of one decode layer: the whole layer (every head, every token, every
// expert) on one process, written independently of the kernels and the schedules, accumulating in
// fp64. Every distributed run is checked against it.
#pragma once

#include <cstdint>
#include <vector>

#include "exec/layer_data.hpp"
#include "layouts/model_spec.hpp"

namespace helix {

class ReferenceLayer {
 public:
  ReferenceLayer(const ModelSpec& model, LayerKind layer, int batch, int64_t seq_len,
                 int64_t max_positions, uint64_t seed);

  // Decode step with the new tokens at position `pos` (their K/V appended there). x: [B, H].
  std::vector<float> step(const std::vector<float>& x, int64_t pos);

  // Bytes a reference needs (weights + cache), for the memory planner.
  static int64_t bytes_needed(const ModelSpec& model, LayerKind layer, int batch,
                              int64_t max_positions);

 private:
  std::vector<double> attention_gqa(const std::vector<double>& hn, int64_t b, int64_t pos);
  std::vector<double> attention_mla(const std::vector<double>& hn, int64_t b, int64_t pos);
  std::vector<double> ffn(const std::vector<double>& h2);

  const ModelSpec& m_;
  LayerKind layer_;
  int batch_;
  RankShard shard_;
  LayerWeights w_;
  KvCache cache_;
};

// ||out - ref|| / ||ref|| (Frobenius norms, fp64).
double relative_error(const std::vector<float>& out, const std::vector<float>& ref);

}  // namespace helix
