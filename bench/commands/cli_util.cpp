#include "bench/commands/cli_util.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include "comm/error.hpp"

namespace helix {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (c == ',') {
      out.push_back(cur);
      cur.clear();
    } else if (!std::isspace(static_cast<unsigned char>(c))) {
      cur.push_back(c);
    }
  }
  out.push_back(cur);
  return out;
}

std::vector<int64_t> parse_positive_list(const std::string& text, const std::string& option) {
  std::vector<int64_t> out;
  for (const std::string& item : split_list(text)) {
    std::string digits = item;
    int64_t mult = 1;
    if (!digits.empty() && (digits.back() == 'K' || digits.back() == 'k')) {
      mult = 1024;
      digits.pop_back();
    } else if (!digits.empty() && (digits.back() == 'M' || digits.back() == 'm')) {
      mult = 1024 * 1024;
      digits.pop_back();
    }
    bool ok = !digits.empty() && digits.size() <= 12;
    for (size_t i = 0; ok && i < digits.size(); ++i)
      ok = std::isdigit(static_cast<unsigned char>(digits[i])) || (i == 0 && digits[i] == '-');
    const int64_t v = ok ? std::stoll(digits) * mult : 0;
    if (!ok || v <= 0)
      throw UsageError(option + ": '" + item + "' is not a positive integer (values must be > 0)");
    out.push_back(v);
  }
  return out;
}

double median(std::vector<double> v) {
  return quantile(std::move(v), 0.5);
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const double pos = q * double(v.size() - 1);
  const size_t lo = size_t(std::floor(pos)), hi = size_t(std::ceil(pos));
  return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", bytes, units[u]);
  return buf;
}

}  // namespace helix
