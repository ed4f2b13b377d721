#include "bench/micro/kernel_case.hpp"

#include <algorithm>
#include <cctype>
#include <stdexcept>

#include "comm/error.hpp"

namespace helix::micro {

namespace {

struct Registered {
  const char* kernel;
  int order;
  CaseGenerator generate;
};

std::vector<Registered>& registry() {
  static std::vector<Registered> r;
  return r;
}

}  // namespace

CheckSpec KernelCase::check_spec(int64_t) const {
  return {};
}

void CaseSet::add(std::shared_ptr<KernelCase> c, const std::string& origin) {
  auto it = index_.find(c->name);
  if (it == index_.end()) {
    c->shape += "; used by: " + origin;
    index_.emplace(c->name, cases_.size());
    cases_.push_back(std::move(c));
    return;
  }
  std::string& s = cases_[it->second]->shape;
  if (s.find(origin) == std::string::npos) s += ", " + origin;
}

std::vector<CasePtr> CaseSet::take() {
  std::vector<CasePtr> v(cases_.begin(), cases_.end());
  cases_.clear();
  index_.clear();
  return v;
}

bool register_cases(const char* kernel, int order, CaseGenerator generate) {
  registry().push_back({kernel, order, generate});
  std::stable_sort(registry().begin(), registry().end(),
                   [](const Registered& a, const Registered& b) { return a.order < b.order; });
  return true;
}

std::vector<CasePtr> make_kernel_cases(const CaseOptions& o) {
  CaseSet set;
  for (const Registered& r : registry()) r.generate(nullptr, o, set);
  for (const std::string& name : o.models) {
    ModelSpec m;
    try {
      m = load_model(name);
    } catch (const std::invalid_argument& e) {
      std::string msg = e.what();
      if (msg.rfind("--model:", 0) == 0) msg = msg.substr(8);
      throw UsageError("--models:" + (msg[0] == ' ' ? msg : " " + msg));
    }
    for (const Registered& r : registry()) r.generate(&m, o, set);
  }
  return set.take();
}

void fit_gemm_weights(int64_t* k, int64_t* n, int64_t cap_bytes, int64_t storage_bytes) {
  if (cap_bytes <= 0) return;
  while (*k * *n * storage_bytes > cap_bytes && (*n > 64 || *k > 64)) {
    if (*n >= *k)
      *n = (*n + 1) / 2;
    else
      *k = (*k + 1) / 2;
  }
}

std::vector<GqaDecodeShape> parse_gqa_shapes(const std::string& text, const std::string& option) {
  std::vector<GqaDecodeShape> v;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, end - start);
    start = end + 1;
    if (item.empty()) continue;
    const std::string rule = option + ": '" + item +
                             "' is not B<batch>_q<q heads>_kv<KV heads>[_d128]_T<tokens> (e.g. "
                             "B1_q16_kv1_T1M; q heads a multiple of KV heads)";
    // Fields: a letter prefix and digits (T: an optional K or M suffix), separated by '_'.
    std::vector<std::pair<std::string, std::string>> fields;
    size_t i = 0;
    while (i < item.size()) {
      size_t j = item.find('_', i);
      if (j == std::string::npos) j = item.size();
      const std::string f = item.substr(i, j - i);
      size_t k = 0;
      while (k < f.size() && std::isalpha(static_cast<unsigned char>(f[k]))) ++k;
      fields.emplace_back(f.substr(0, k), f.substr(k));
      i = j + 1;
    }
    auto number = [&](const std::string& digits, bool suffix) -> int64_t {
      size_t k = 0;
      while (k < digits.size() && std::isdigit(static_cast<unsigned char>(digits[k]))) ++k;
      if (k == 0 || k > 9) throw UsageError(rule);
      int64_t n = std::stoll(digits.substr(0, k));
      const std::string rest = digits.substr(k);
      if (suffix && (rest == "K" || rest == "k"))
        n <<= 10;
      else if (suffix && (rest == "M" || rest == "m"))
        n <<= 20;
      else if (!rest.empty())
        throw UsageError(rule);
      if (n < 1) throw UsageError(rule);
      return n;
    };
    GqaDecodeShape g;
    g.head_dim = 128;
    bool has_b = false, has_q = false, has_kv = false, has_t = false;
    for (const auto& f : fields) {
      if (f.first == "B" && !has_b) {
        g.batch = number(f.second, false);
        has_b = true;
      } else if (f.first == "q" && !has_q) {
        g.q_heads = number(f.second, false);
        has_q = true;
      } else if (f.first == "kv" && !has_kv) {
        g.kv_heads = number(f.second, false);
        has_kv = true;
      } else if (f.first == "d" && number(f.second, false) == 128) {
      } else if (f.first == "T" && !has_t) {
        g.tokens = number(f.second, true);
        has_t = true;
      } else {
        throw UsageError(rule);
      }
    }
    if (!(has_b && has_q && has_kv && has_t) || g.q_heads % g.kv_heads != 0) throw UsageError(rule);
    v.push_back(g);
  }
  return v;
}

std::vector<cpu::HeadRange> pack_peer_heads(const PackShape& s) {
  std::vector<cpu::HeadRange> v;
  for (int64_t j = 0; j < s.peers; ++j) {
    const int64_t base = s.heads / s.peers, extra = s.heads % s.peers;
    const int64_t begin = j * base + std::min(j, extra);
    v.push_back({begin, begin + base + (j < extra ? 1 : 0)});
  }
  return v;
}

}  // namespace helix::micro
