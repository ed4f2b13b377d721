// Command-line helpers shared by the subcommands: the one integer (and real) parser every option
// goes through, the limits on sizes, lists, and small statistics.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace helix {

// Limits on what any subcommand accepts; larger values are bad input (exit code 2, before any
// work), so that an absurd size fails in milliseconds instead of running for minutes or dying in
// an allocation.
constexpr int64_t kMaxTokens = int64_t(1) << 26;  // KV lengths, prompt and output lengths (64M)
constexpr int64_t kMaxBatch = 65536;              // requests in one batch
constexpr int64_t kMaxRanks = 4096;               // ranks / GPUs of one layout or instance
constexpr int64_t kMaxIters = 1000000;            // timed or warm-up iterations
constexpr int64_t kMaxListItems = 1024;           // elements of one comma-separated list
constexpr int64_t kMaxKvBlock = 65536;            // tokens of one round-robin KV block
constexpr int64_t kMaxDecodeSteps = 4096;         // verified decode steps of one run
// Bytes of one layer's KV cache (all ranks together) beyond which a decode or transfer size is
// refused as absurd (4 PiB); below it every byte count fits in int64 with room to spare.
constexpr double kMaxLayerKvBytes = 4.0 * 1125899906842624.0;

// Multipliers an integer may carry: none; tokens (K = 2^10, M = 2^20, G = 2^30); bytes (the same,
// optionally followed by "B" or "iB", or a bare "B").
enum class Suffix { none, tokens, bytes };

// The integer parser of every option and list element: optional sign, decimal digits, the
// allowed suffix, no blanks; the value must lie in [lo, hi]. Throws UsageError whose message
// starts with `option` (e.g. "--iters: '2147483647' is out of range: 1 to 1000000").
int64_t parse_int(const std::string& text, const std::string& option, int64_t lo, int64_t hi,
                  Suffix suffix = Suffix::none);

// A finite real number in [lo, hi] (lo excluded when lo_open). Throws UsageError naming `option`.
double parse_real(const std::string& text, const std::string& option, double lo, double hi,
                  bool lo_open = false);

// A comma-separated list of integers in [1, hi] with K/M/G suffixes (powers of two: 128K =
// 131072, 1M = 1048576), at most kMaxListItems elements. Throws UsageError naming `option`.
std::vector<int64_t> parse_positive_list(const std::string& text, const std::string& option,
                                         int64_t hi = kMaxTokens);

// Registers an option parsed by parse_int / parse_real (a bad value is a CLI parse error, exit
// code 2 on every rank, naming the option). The default shown in --help is the target's value
// unless show_default is false.
CLI::Option* add_int_option(CLI::App* app, const std::string& name, int& target, int64_t lo,
                            int64_t hi, const std::string& help, bool show_default = true);
CLI::Option* add_int_option(CLI::App* app, const std::string& name, uint64_t& target, int64_t lo,
                            int64_t hi, const std::string& help, bool show_default = true);
CLI::Option* add_int_option(CLI::App* app, const std::string& name, std::optional<int>& target,
                            int64_t lo, int64_t hi, const std::string& help);
CLI::Option* add_real_option(CLI::App* app, const std::string& name, double& target, double lo,
                             double hi, bool lo_open, const std::string& help);
CLI::Option* add_real_option(CLI::App* app, const std::string& name, std::optional<double>& target,
                             double lo, double hi, bool lo_open, const std::string& help);

// Splits a comma-separated list.
std::vector<std::string> split_list(const std::string& text);

// Median of a sample (copy sorted); NaN when empty.
double median(std::vector<double> v);
// q-quantile (0..1) by linear interpolation; NaN when empty.
double quantile(std::vector<double> v, double q);

// "1.23 GiB"-style byte counts.
std::string format_bytes(double bytes);

}  // namespace helix
