// Google Benchmark's flags, checked by helix-micro before any work (Google Benchmark itself
// accepts a filter that does not compile, or matches nothing, and runs nothing; some bad values
// make it exit 0 from every rank): a bad value is bad input naming the flag (exit code 2).
#pragma once

#include <string>
#include <vector>

namespace helix::micro {

struct BenchmarkFlags {
  std::string filter = ".";  // --benchmark_filter (or BENCHMARK_FILTER)
  bool negative = false;     // a filter starting with '-': run what does not match
  std::string out;           // --benchmark_out (or BENCHMARK_OUT): written by rank 0
  bool list_tests = false;
};

// Reads and checks every --benchmark_* argument (the --flag=value form) and the environment
// variables Google Benchmark reads. Throws UsageError naming the flag.
BenchmarkFlags check_benchmark_flags(int argc, char** argv);

// Whether Google Benchmark would run the benchmark `name` under `flags` (a regex search, POSIX
// extended syntax, as Google Benchmark matches).
bool filter_selects(const BenchmarkFlags& flags, const std::string& name);

}  // namespace helix::micro
