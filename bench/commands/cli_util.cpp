#include "bench/commands/cli_util.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "comm/error.hpp"

namespace helix {

namespace {

std::string range_text(int64_t lo, int64_t hi) {
  return std::to_string(lo) + " to " + std::to_string(hi);
}

std::string real_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// The multiplier a suffix stands for (0: not allowed).
int64_t multiplier(const std::string& s, Suffix suffix) {
  if (s.empty()) return 1;
  if (suffix == Suffix::none) return 0;
  const char u = char(std::toupper(static_cast<unsigned char>(s[0])));
  const std::string rest = s.substr(1);
  if (suffix == Suffix::bytes && u == 'B' && rest.empty()) return 1;
  if (!(rest.empty() || (suffix == Suffix::bytes && (rest == "B" || rest == "iB")))) return 0;
  if (u == 'K') return int64_t(1) << 10;
  if (u == 'M') return int64_t(1) << 20;
  if (u == 'G') return int64_t(1) << 30;
  return 0;
}

[[noreturn]] void throw_parse_error(const std::string& message) {
  throw CLI::ValidationError(message);
}

}  // namespace

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

int64_t parse_int(const std::string& text, const std::string& option, int64_t lo, int64_t hi,
                  Suffix suffix) {
  const std::string quoted = "'" + (text.size() > 40 ? text.substr(0, 40) + "..." : text) + "'";
  const std::string what = suffix == Suffix::tokens  ? " (digits with an optional K or M suffix)"
                           : suffix == Suffix::bytes ? " (digits with an optional K, M or G suffix)"
                                                     : "";
  size_t i = 0;
  const bool negative = !text.empty() && text[0] == '-';
  if (!text.empty() && (text[0] == '-' || text[0] == '+')) i = 1;
  const size_t first = i;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  const int64_t mult = multiplier(text.substr(i), suffix);
  if (i == first || mult == 0)
    throw UsageError(option + ": " + quoted + " is not an integer" + what);
  // Accumulate with overflow detection; anything beyond int64 is out of range.
  int64_t v = 0;
  bool overflow = false;
  for (size_t k = first; k < i; ++k) {
    const int d = text[k] - '0';
    if (v > (INT64_MAX - d) / 10) {
      overflow = true;
      break;
    }
    v = v * 10 + d;
  }
  if (!overflow && v > INT64_MAX / mult) overflow = true;
  if (!overflow) v = (negative ? -v : v) * mult;
  const bool below = !overflow ? v < lo : negative;
  const bool above = !overflow ? v > hi : !negative;
  if (below && lo == 1 && (overflow || v < 1))
    throw UsageError(option + ": " + quoted + " is not a positive integer (values must be " +
                     range_text(lo, hi) + ")");
  if (below || above)
    throw UsageError(option + ": " + quoted + " is out of range: must be " + range_text(lo, hi));
  return v;
}

double parse_real(const std::string& text, const std::string& option, double lo, double hi,
                  bool lo_open) {
  const std::string quoted = "'" + (text.size() > 40 ? text.substr(0, 40) + "..." : text) + "'";
  const std::string range =
      std::string(lo_open ? "> " : ">= ") + real_text(lo) + " and <= " + real_text(hi);
  bool ok = !text.empty() && !std::isspace(static_cast<unsigned char>(text[0]));
  double v = 0;
  if (ok) {
    char* end = nullptr;
    errno = 0;
    v = std::strtod(text.c_str(), &end);
    ok = end && *end == '\0' && errno != ERANGE && std::isfinite(v);
  }
  if (!ok)
    throw UsageError(option + ": " + quoted + " is not a finite number (must be " + range + ")");
  if (v > hi || v < lo || (lo_open && v == lo))
    throw UsageError(option + ": " + quoted + " is out of range: must be " + range);
  return v;
}

std::vector<int64_t> parse_positive_list(const std::string& text, const std::string& option,
                                         int64_t hi) {
  const std::vector<std::string> items = split_list(text);
  if (int64_t(items.size()) > kMaxListItems)
    throw UsageError(option + ": " + std::to_string(items.size()) + " elements (at most " +
                     std::to_string(kMaxListItems) + ")");
  std::vector<int64_t> out;
  for (const std::string& item : items)
    out.push_back(parse_int(item, option, 1, hi, Suffix::tokens));
  return out;
}

namespace {

// An option whose value `set` parses (and stores); the UsageError it throws becomes the CLI parse
// error that names the option.
CLI::Option* add_checked_option(CLI::App* app, const std::string& name, const std::string& help,
                                const char* type, std::function<void(const std::string&)> set) {
  return app
      ->add_option_function<std::string>(
          name,
          [set = std::move(set)](const std::string& s) {
            try {
              set(s);
            } catch (const UsageError& e) {
              throw_parse_error(e.what());
            }
          },
          help)
      ->type_name(type);
}

}  // namespace

CLI::Option* add_int_option(CLI::App* app, const std::string& name, int& target, int64_t lo,
                            int64_t hi, const std::string& help, bool show_default) {
  CLI::Option* o = add_checked_option(app, name, help, "INT", [&target, name, lo, hi](auto& s) {
    target = int(parse_int(s, name, lo, std::min<int64_t>(hi, INT32_MAX)));
  });
  return show_default ? o->default_str(std::to_string(target)) : o;
}

CLI::Option* add_int_option(CLI::App* app, const std::string& name, uint64_t& target, int64_t lo,
                            int64_t hi, const std::string& help, bool show_default) {
  CLI::Option* o = add_checked_option(app, name, help, "INT", [&target, name, lo, hi](auto& s) {
    target = uint64_t(parse_int(s, name, std::max<int64_t>(lo, 0), hi));
  });
  return show_default ? o->default_str(std::to_string(target)) : o;
}

CLI::Option* add_int_option(CLI::App* app, const std::string& name, std::optional<int>& target,
                            int64_t lo, int64_t hi, const std::string& help) {
  return add_checked_option(app, name, help, "INT", [&target, name, lo, hi](auto& s) {
    target = int(parse_int(s, name, lo, std::min<int64_t>(hi, INT32_MAX)));
  });
}

CLI::Option* add_real_option(CLI::App* app, const std::string& name, double& target, double lo,
                             double hi, bool lo_open, const std::string& help) {
  return add_checked_option(app, name, help, "FLOAT",
                            [&target, name, lo, hi, lo_open](auto& s) {
                              target = parse_real(s, name, lo, hi, lo_open);
                            })
      ->default_str(real_text(target));
}

CLI::Option* add_real_option(CLI::App* app, const std::string& name, std::optional<double>& target,
                             double lo, double hi, bool lo_open, const std::string& help) {
  return add_checked_option(app, name, help, "FLOAT", [&target, name, lo, hi, lo_open](auto& s) {
    target = parse_real(s, name, lo, hi, lo_open);
  });
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
