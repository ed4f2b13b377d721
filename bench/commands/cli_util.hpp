// Command-line helpers shared by the subcommands.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace helix {

// Parses a comma-separated list of positive integers with optional K/M suffixes (powers of two:
// 128K = 131072, 1M = 1048576). Throws UsageError naming `option` on a bad element.
std::vector<int64_t> parse_positive_list(const std::string& text, const std::string& option);

// Splits a comma-separated list.
std::vector<std::string> split_list(const std::string& text);

// Median of a sample (copy sorted); NaN when empty.
double median(std::vector<double> v);
// q-quantile (0..1) by linear interpolation; NaN when empty.
double quantile(std::vector<double> v, double q);

// "1.23 GiB"-style byte counts.
std::string format_bytes(double bytes);

}  // namespace helix
