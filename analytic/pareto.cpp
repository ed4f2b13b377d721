#include "analytic/pareto.hpp"

#include <cmath>

namespace helix {

double FrontierCurve::gpu_at(double u) const {
  double best = 0;
  for (size_t i = 0; i < user.size() && user[i] >= u; ++i) best = gpu[i];
  return best;
}

double FrontierCurve::user_at(double t) const {
  for (size_t i = 0; i < gpu.size(); ++i)
    if (gpu[i] >= t) return user[i];
  return 0;
}

FrontierCurve frontier_curve(std::vector<std::pair<double, double>> pts) {
  std::sort(pts.begin(), pts.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second > b.second;
  });
  FrontierCurve c;
  double best = -1;
  for (const auto& [u, t] : pts)
    if (t > best) {
      best = t;
      c.user.push_back(u);
      c.gpu.push_back(t);
    }
  return c;
}

std::vector<double> log_grid(double lo, double hi, int n) {
  std::vector<double> v;
  if (!(lo > 0) || !(hi >= lo)) return v;
  for (int i = 0; i < n; ++i) v.push_back(lo * std::pow(hi / lo, double(i) / (n - 1)));
  return v;
}

double geo_gain(const FrontierCurve& a, const FrontierCurve& b) {
  if (a.user.empty() || b.user.empty()) return NAN;
  const double lo = std::max(a.user.back(), b.user.back());
  const double hi = std::min(a.user.front(), b.user.front());
  if (!(hi > lo)) return a.user.front() > b.user.front() ? INFINITY : 0.0;
  double s = 0;
  int n = 0;
  for (int i = 0; i < 100; ++i) {
    const double u = lo * std::pow(hi / lo, i / 99.0);
    const double ga = a.gpu_at(u), gb = b.gpu_at(u);
    if (ga > 0 && gb > 0) {
      s += std::log(ga / gb);
      ++n;
    }
  }
  return n ? std::exp(s / n) : NAN;
}

}  // namespace helix
