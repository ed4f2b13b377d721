#include <cmath>
#include <limits>
#include <vector>

#include "kernels/attention.hpp"

namespace helix::cpu {

namespace {

// Softmax over `scores` (already scaled) in place; returns the natural-log LSE.
float softmax_lse(std::vector<float>& scores, int64_t n) {
  if (n == 0) return -std::numeric_limits<float>::infinity();
  float m = scores[0];
  for (int64_t i = 1; i < n; ++i) m = scores[i] > m ? scores[i] : m;
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    scores[i] = std::exp(scores[i] - m);
    sum += scores[i];
  }
  const float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) scores[i] *= inv;
  return m + float(std::log(sum));
}

}  // namespace

void attention_gqa(const GqaAttention& a) {
  std::vector<float> p(size_t(a.tokens > 0 ? a.tokens : 1));
  const int64_t d = a.head_dim;
  for (int64_t b = 0; b < a.batch; ++b) {
    for (int64_t j = 0; j < a.q_heads; ++j) {
      const int64_t kvh = (a.q_begin + j) / a.group - a.kv_begin;
      const float* q = a.q + (b * a.q_heads + j) * d;
      const float* k = a.k + (b * a.kv_heads + kvh) * a.capacity * d;
      const float* v = a.v + (b * a.kv_heads + kvh) * a.capacity * d;
      for (int64_t t = 0; t < a.tokens; ++t) {
        float s = 0;
        for (int64_t i = 0; i < d; ++i) s += q[i] * k[t * d + i];
        p[t] = s * a.scale;
      }
      a.lse[b * a.q_heads + j] = softmax_lse(p, a.tokens);
      float* o = a.out + (b * a.q_heads + j) * d;
      for (int64_t i = 0; i < d; ++i) o[i] = 0.0f;
      for (int64_t t = 0; t < a.tokens; ++t)
        for (int64_t i = 0; i < d; ++i) o[i] += p[t] * v[t * d + i];
    }
  }
}

void attention_mla(const MlaAttention& a) {
  std::vector<float> p(size_t(a.tokens > 0 ? a.tokens : 1));
  const int64_t w = a.kv_lora + a.rope;
  for (int64_t b = 0; b < a.batch; ++b) {
    const float* kv = a.kv + b * a.capacity * w;
    for (int64_t h = 0; h < a.heads; ++h) {
      const float* q = a.q + (b * a.heads + h) * w;
      for (int64_t t = 0; t < a.tokens; ++t) {
        float s = 0;
        for (int64_t i = 0; i < w; ++i) s += q[i] * kv[t * w + i];
        p[t] = s * a.scale;
      }
      a.lse[b * a.heads + h] = softmax_lse(p, a.tokens);
      float* o = a.out + (b * a.heads + h) * a.kv_lora;
      for (int64_t i = 0; i < a.kv_lora; ++i) o[i] = 0.0f;
      for (int64_t t = 0; t < a.tokens; ++t)
        for (int64_t i = 0; i < a.kv_lora; ++i) o[i] += p[t] * kv[t * w + i];
    }
  }
}

}  // namespace helix::cpu
