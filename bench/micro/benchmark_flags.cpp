#include "bench/micro/benchmark_flags.hpp"

#include <cstdlib>
#include <cstring>
#include <regex>

#include "bench/commands/cli_util.hpp"
#include "comm/error.hpp"

namespace helix::micro {

namespace {

bool is_bool(const std::string& v) {
  for (const char* b : {"true", "false", "yes", "no", "on", "off", "1", "0", "t", "f", "y", "n"})
    if (v == b) return true;
  return false;
}

bool truthy(const std::string& v) {
  return v == "true" || v == "yes" || v == "on" || v == "1" || v == "t" || v == "y";
}

void one_of(const std::string& flag, const std::string& v, std::vector<std::string> allowed) {
  for (const std::string& a : allowed)
    if (v == a) return;
  std::string list;
  for (const std::string& a : allowed) list += (list.empty() ? "" : ", ") + a;
  throw UsageError(flag + ": '" + v + "' is not one of " + list);
}

std::regex compile(const std::string& flag, const std::string& spec) {
  try {
    return std::regex(spec, std::regex_constants::extended);
  } catch (const std::regex_error&) {
    throw UsageError(flag + ": '" + spec + "' is not a valid regular expression (POSIX extended)");
  }
}

}  // namespace

BenchmarkFlags check_benchmark_flags(int argc, char** argv) {
  BenchmarkFlags f;
  if (const char* e = std::getenv("BENCHMARK_FILTER")) f.filter = e;
  if (const char* e = std::getenv("BENCHMARK_OUT")) f.out = e;
  std::string filter_flag = std::getenv("BENCHMARK_FILTER") ? "BENCHMARK_FILTER" : "";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--benchmark_", 0) != 0 && a.rfind("--v=", 0) != 0) continue;
    const auto eq = a.find('=');
    const std::string flag = a.substr(0, eq);
    if (eq == std::string::npos)
      throw UsageError(flag + ": give a value as " + flag + "=VALUE (see --help)");
    const std::string v = a.substr(eq + 1);
    if (flag == "--benchmark_filter") {
      f.filter = v;
      filter_flag = flag;
    } else if (flag == "--benchmark_out") {
      if (v.empty()) throw UsageError(flag + ": give a file name");
      f.out = v;
    } else if (flag == "--benchmark_out_format" || flag == "--benchmark_format") {
      one_of(flag, v, {"console", "json", "csv"});
    } else if (flag == "--benchmark_repetitions") {
      parse_int(v, flag, 1, 1000);
    } else if (flag == "--benchmark_min_time" || flag == "--benchmark_min_warmup_time") {
      parse_real(v, flag, 0, 1e6);
    } else if (flag == "--benchmark_time_unit") {
      one_of(flag, v, {"ns", "us", "ms", "s"});
    } else if (flag == "--benchmark_color") {
      if (v != "auto" && !is_bool(v))
        throw UsageError(flag + ": '" + v + "' is not auto, true or false");
    } else if (flag == "--benchmark_list_tests" || flag == "--benchmark_counters_tabular" ||
               flag == "--benchmark_display_aggregates_only" ||
               flag == "--benchmark_report_aggregates_only" ||
               flag == "--benchmark_enable_random_interleaving") {
      if (!is_bool(v)) throw UsageError(flag + ": '" + v + "' is not true or false");
      if (flag == "--benchmark_list_tests") f.list_tests = truthy(v);
    } else if (flag == "--benchmark_context") {
      for (const std::string& kv : split_list(v))
        if (kv.find('=') == std::string::npos || kv.front() == '=')
          throw UsageError(flag + ": '" + kv + "' is not KEY=VALUE");
    } else if (flag == "--v") {
      parse_int(v, flag, 0, 10);
    } else if (flag == "--benchmark_perf_counters") {
      throw UsageError(flag + ": hardware performance counters are not supported by helix-micro");
    } else {
      throw UsageError(flag + ": unknown Google Benchmark flag (see --help)");
    }
  }
  if (filter_flag.empty()) filter_flag = "--benchmark_filter";
  if (f.filter.empty() || f.filter == "all") f.filter = ".";
  if (f.filter[0] == '-') {
    f.negative = true;
    f.filter = f.filter.substr(1);
  }
  compile(filter_flag, f.filter);
  return f;
}

bool filter_selects(const BenchmarkFlags& flags, const std::string& name) {
  const std::regex re(flags.filter, std::regex_constants::extended);
  return std::regex_search(name, re) != flags.negative;
}

}  // namespace helix::micro
