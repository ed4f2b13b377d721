// Pareto frontiers of tokens/s/user (interactivity) against tokens/s/GPU (throughput): the points
// no other beats in both, the frontier as a curve, and comparisons of curves. One implementation
// for the decode design space (DesignPoint) and disaggregated serving (ServePoint).
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

namespace helix {

// A frontier: falling interactivity, rising throughput.
struct FrontierCurve {
  std::vector<double> user, gpu;
  // Best throughput among points with interactivity >= u (0 when none).
  double gpu_at(double u) const;
  // Best interactivity among points with throughput >= t (0 when none).
  double user_at(double t) const;
};

// Indices of the Pareto-optimal points among those `keep` accepts, by falling interactivity.
// Point: any type with tokens_per_s_per_user and tokens_per_s_per_gpu.
template <class Point, class Keep>
std::vector<size_t> pareto_indices(const std::vector<Point>& pts, Keep keep) {
  std::vector<size_t> idx;
  for (size_t i = 0; i < pts.size(); ++i)
    if (keep(pts[i])) idx.push_back(i);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    if (pts[a].tokens_per_s_per_user != pts[b].tokens_per_s_per_user)
      return pts[a].tokens_per_s_per_user > pts[b].tokens_per_s_per_user;
    return pts[a].tokens_per_s_per_gpu > pts[b].tokens_per_s_per_gpu;
  });
  std::vector<size_t> f;
  double best = -1;
  for (size_t i : idx)
    if (pts[i].tokens_per_s_per_gpu > best) {
      best = pts[i].tokens_per_s_per_gpu;
      f.push_back(i);
    }
  return f;
}

// The curve of the frontier points `idx` of `pts`.
template <class Point>
FrontierCurve curve_of(const std::vector<Point>& pts, const std::vector<size_t>& idx) {
  FrontierCurve c;
  for (size_t i : idx) {
    c.user.push_back(pts[i].tokens_per_s_per_user);
    c.gpu.push_back(pts[i].tokens_per_s_per_gpu);
  }
  return c;
}

// The frontier of (interactivity, throughput) pairs.
FrontierCurve frontier_curve(std::vector<std::pair<double, double>> pts);

// n points from lo to hi, evenly spaced in log (empty unless 0 < lo <= hi).
std::vector<double> log_grid(double lo, double hi, int n);

// Geometric mean, over a log grid of the interactivity range both curves cover, of a's
// throughput over b's (infinity when a reaches beyond b and they do not overlap, 0 the other way).
double geo_gain(const FrontierCurve& a, const FrontierCurve& b);

}  // namespace helix
