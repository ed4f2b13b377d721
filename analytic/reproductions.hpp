// Reproductions of published results from the suite's own models: the Helix paper's headline
// comparisons from the decode design space (Bhatia et al., arXiv 2507.07120), and the findings of
// "Beyond the Buzz" on disaggregated serving (Mitra et al., arXiv 2506.05508) from the serving
// sweeps. Each row states the published figure, ours, and whether the published claim holds.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "analytic/design_space.hpp"
#include "analytic/disagg.hpp"
#include "analytic/hardware.hpp"

namespace helix {

// The Helix paper's headline comparisons (GB200 NVL72, FP4, S = 1M, 1 to 64 GPUs).
struct ReproRow {
  std::string quantity;
  double paper = 0, ours = 0;
  std::string bar;
  bool holds = false;
};
struct ReproModelSweep {
  std::string model;
  SweepResult result;
  double seconds = 0;
};
std::vector<ReproRow> helix_paper_rows(const std::vector<DesignPoint>& deepseek,
                                       const std::vector<DesignPoint>& llama405b);

// Largest prefill instance of the reproduction, TP x PP: TP 16 (the sweep's widest, inside the
// NVLink domain) times the paper's 32-stage chunked pipeline; results/README.md explains why 1M
// prompts need more than 64 GPUs.
constexpr int kBuzzPrefillGpus = 16 * 32;

struct BuzzRow {
  std::string finding, paper, ours;
  bool holds = false;
};
// The disaggregated frontier of one 16k/2k sweep of the reproduction (NVLink domain 72) with its
// optimal ratio, falling interactivity.
struct BuzzCurve {
  std::string model;
  std::vector<double> tokens_per_s_per_user, tokens_per_s_per_gpu, ratio;
};
// The paper's findings, from sweeps run inside (GB200 NVL72 profile, FP4). `curves` (optional)
// receives the disaggregated frontier of every 16k/2k model sweep.
std::vector<BuzzRow> beyond_the_buzz_rows(
    const HardwareProfile& hw, const std::function<void(const std::string&)>& progress = {},
    std::vector<BuzzCurve>* curves = nullptr);

}  // namespace helix
