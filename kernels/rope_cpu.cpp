#include <cmath>

#include "kernels/rope.hpp"

namespace helix::cpu {

void rope(float* v, int64_t dim, int64_t pos, float theta) {
  const int64_t half = dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const double freq = std::pow(double(theta), -2.0 * double(i) / double(dim));
    const double ang = double(pos) * freq;
    const float c = float(std::cos(ang)), s = float(std::sin(ang));
    const float a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
  }
}

}  // namespace helix::cpu
