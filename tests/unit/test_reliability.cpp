// The integer parser and its limits, the output-path policy, files written atomically, the
// checked readers of model files and Google Benchmark's flags. (The bad-input matrix of
// tests/bad_input runs every subcommand end to end; this is the unit level.)
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>

#include "bench/commands/cli_util.hpp"
#include "bench/micro/benchmark_flags.hpp"
#include "bench/trace/output_path.hpp"
#include "comm/error.hpp"
#include "layouts/model_spec.hpp"

namespace helix {
namespace {

std::string scratch_dir() {
  char tmpl[] = "/tmp/helix-reliability-XXXXXX";
  const char* d = mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d ? d : "/tmp";
}

int count_entries(const std::string& dir) {
  int n = 0;
  for (const char* name : {"a.h5", "a.h5.tmp", "in.json", "sub", "fifo", "out.h5"}) {
    struct stat st;
    n += stat((dir + "/" + name).c_str(), &st) == 0;
  }
  return n;
}

TEST(IntegerParser, AcceptsValuesInRangeWithSuffixes) {
  EXPECT_EQ(parse_int("42", "--iters", 1, 100), 42);
  EXPECT_EQ(parse_int("0", "--warmup", 0, 10), 0);
  EXPECT_EQ(parse_int("4K", "--seq", 1, kMaxTokens, Suffix::tokens), 4096);
  EXPECT_EQ(parse_int("1m", "--seq", 1, kMaxTokens, Suffix::tokens), 1 << 20);
  EXPECT_EQ(parse_int("16MiB", "--stream-bytes", 1, int64_t(1) << 40, Suffix::bytes), 16 << 20);
  EXPECT_EQ(parse_int("9223372036854775807", "--seed", 0, INT64_MAX), INT64_MAX);
}

TEST(IntegerParser, RefusesEverythingElseNamingTheOption) {
  const char* bad[] = {"",
                       "-",
                       "+",
                       "abc",
                       "1.5",
                       "1e3",
                       "0x10",
                       " 5",
                       "5 ",
                       "4K",
                       "99999999999999999999",
                       "-99999999999999999999",
                       "2147483647"};
  for (const char* v : bad) {
    try {
      parse_int(v, "--iters", 1, 1000000);
      ADD_FAILURE() << "accepted '" << v << "'";
    } catch (const UsageError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("--iters: '", 0), 0u) << e.what();
    }
  }
  EXPECT_EQ(parse_int("64M", "--seq", 1, kMaxTokens, Suffix::tokens), kMaxTokens);
  EXPECT_THROW(parse_int("65M", "--seq", 1, kMaxTokens, Suffix::tokens), UsageError);
  EXPECT_THROW(parse_int("999999999999M", "--isl", 1, kMaxTokens, Suffix::tokens), UsageError);
  EXPECT_THROW(parse_int("8589934592G", "--stream-bytes", 1, INT64_MAX, Suffix::bytes), UsageError);
}

TEST(IntegerParser, RealsMustBeFiniteAndInRange) {
  EXPECT_DOUBLE_EQ(parse_real("2.5", "--ftl-max", 0, 10, true), 2.5);
  for (const char* v : {"nan", "inf", "-inf", "1e400", "", "x", "0", "11"})
    EXPECT_THROW(parse_real(v, "--ftl-max", 0, 10, true), UsageError) << v;
  EXPECT_DOUBLE_EQ(parse_real("0", "--link-latency-us", 0, 10), 0.0);
}

TEST(IntegerParser, ListsAreBoundedInValueAndLength) {
  EXPECT_EQ(parse_positive_list("1,4K", "--seq"), (std::vector<int64_t>{1, 4096}));
  EXPECT_THROW(parse_positive_list("1,,2", "--seq"), UsageError);
  EXPECT_THROW(parse_positive_list("0", "--batch", kMaxBatch), UsageError);
  EXPECT_THROW(parse_positive_list("65537", "--batch", kMaxBatch), UsageError);
  std::string many = "1";
  for (int i = 0; i < 1024; ++i) many += ",1";
  EXPECT_THROW(parse_positive_list(many, "--seq"), UsageError);
}

TEST(OutputPolicy, RegularFilesOnlyNeverAnInput) {
  const std::string d = scratch_dir();
  const std::string in = d + "/in.json", sub = d + "/sub", fifo = d + "/fifo";
  std::ofstream(in) << "{}";
  mkdir(sub.c_str(), 0755);
  mkfifo(fifo.c_str(), 0644);
  EXPECT_NO_THROW(check_output_paths({{"--out", d + "/out.h5"}}, {}));
  EXPECT_NO_THROW(check_output_paths({{"--out", in}}, {}));  // an existing file is replaced
  const std::pair<std::string, const char*> bad[] = {
      {sub, "is a directory"},           {sub + "/", "names a directory"},
      {fifo, "is not a regular file"},   {d + "/none/x.h5", "does not exist"},
      {in + "/x.h5", "Not a directory"}, {in, "is the --model input"}};
  for (const auto& [path, why] : bad) {
    try {
      check_output_paths({{"--out", path}}, {{"--model", in}});
      ADD_FAILURE() << "accepted " << path;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).rfind("--out: ", 0), 0u) << e.what();
    }
  }
  EXPECT_THROW(check_output_paths({{"--out", d + "/a.h5"}, {"--benchmark_out", d + "/a.h5"}}, {}),
               UsageError);
  EXPECT_EQ(count_entries(d), 3);  // in.json, sub, fifo: no probe left
}

TEST(OutputPolicy, AtomicOutputRenamesOnCommitAndRemovesOtherwise) {
  const std::string d = scratch_dir();
  const std::string path = d + "/out.h5";
  {
    AtomicOutput out(path);
    std::ofstream(out.tmp()) << "half";
  }  // destroyed uncommitted
  struct stat st;
  EXPECT_NE(stat(path.c_str(), &st), 0);
  EXPECT_NE(stat(temporary_name(path).c_str(), &st), 0);
  {
    AtomicOutput out(path);
    std::ofstream(out.tmp()) << "whole";
    EXPECT_TRUE(out.commit());
  }
  std::string text;
  std::ifstream(path) >> text;
  EXPECT_EQ(text, "whole");
  EXPECT_NE(stat(temporary_name(path).c_str(), &st), 0);
}

TEST(ModelFiles, FieldsAreTypedAndBounded) {
  const std::string good = R"({"name": "m", "layers": 2, "hidden": 256, "q_heads": 16,
    "kv_heads": 4, "head_dim": 128, "ffn": 512})";
  EXPECT_NO_THROW(parse_model_json(good, "m.json"));
  for (const char* bad :
       {R"({"name": "m", "layers": 2147483648, "hidden": 256, "q_heads": 16, "kv_heads": 4,
            "head_dim": 128, "ffn": 512})",
        R"({"name": "m", "layers": 2, "hidden": "256", "q_heads": 16, "kv_heads": 4,
            "head_dim": 128, "ffn": 512})",
        R"({"name": "m", "layers": 2, "hidden": 256, "q_heads": 16, "kv_heads": 4,
            "head_dim": 128, "ffn": 512, "rms_eps": "x"})",
        R"({"name": "m", "layers": 18446744073709551615, "hidden": 256, "q_heads": 16,
            "kv_heads": 4, "head_dim": 128, "ffn": 512})",
        R"([1])", R"({"name": 5})"})
    EXPECT_THROW(parse_model_json(bad, "m.json"), std::invalid_argument) << bad;
}

TEST(BenchmarkFlags, FilterMustCompileAndFlagsMustBeKnown) {
  auto check = [](std::vector<std::string> args) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    return micro::check_benchmark_flags(int(argv.size()), argv.data());
  };
  const micro::BenchmarkFlags f = check({"helix-micro", "--benchmark_filter=attn|coll"});
  EXPECT_TRUE(micro::filter_selects(f, "attn_gqa/x/iterations:3/manual_time"));
  EXPECT_FALSE(micro::filter_selects(f, "gemm/x/iterations:3/manual_time"));
  EXPECT_TRUE(
      micro::filter_selects(check({"helix-micro", "--benchmark_filter=-gemm"}), "attn_gqa/x"));
  for (const char* bad : {"--benchmark_filter=[", "--benchmark_repetitions=0",
                          "--benchmark_format=xml", "--benchmark_bogus=1", "--benchmark_out="})
    EXPECT_THROW(check({"helix-micro", bad}), UsageError) << bad;
}

}  // namespace
}  // namespace helix
