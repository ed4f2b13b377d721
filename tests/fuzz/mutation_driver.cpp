// A seeded mutation loop for the fuzz targets where libFuzzer is not available (a compiler other
// than clang): replays every file of the corpus folders given, then mutates corpus entries (bit
// flips, interesting bytes, insertions, deletions, duplicated ranges, splices, JSON tokens) and
// runs the target on each mutant until the time or run budget is spent. A crash (an uncaught
// exception, a sanitizer report, a signal) ends the process; the input that caused it is written
// to ./crash-input first. Same command-line shape as libFuzzer's for the options used here:
//   fuzz_target [-max_total_time=S] [-runs=N] [-seed=N] CORPUS_DIR...
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<uint8_t> g_current;
int g_crash_fd = -1;

extern "C" void on_crash(int sig) {
  if (g_crash_fd >= 0) {
    ssize_t w = write(g_crash_fd, g_current.data(), g_current.size());
    (void)w;
    close(g_crash_fd);
  }
  const char msg[] = "mutation_driver: crash; the input is in ./crash-input\n";
  ssize_t w = write(2, msg, sizeof msg - 1);
  (void)w;
  signal(sig, SIG_DFL);
  raise(sig);
}

void run(const std::vector<uint8_t>& input) {
  g_current = input;
  LLVMFuzzerTestOneInput(input.data(), input.size());
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string s = ss.str();
  return std::vector<uint8_t>(s.begin(), s.end());
}

const char* const kTokens[] = {"{",
                               "}",
                               "[",
                               "]",
                               ",",
                               ":",
                               "\"",
                               "null",
                               "true",
                               "false",
                               "-1",
                               "0",
                               "1e308",
                               "-0.0",
                               "2147483648",
                               "9223372036854775808",
                               "1.5",
                               "\"x\"",
                               "{}",
                               "[]",
                               "\"name\"",
                               "\"moe\"",
                               "\"mla\"",
                               "\"nvlink\"",
                               "\"flops_tflops\"",
                               "NaN",
                               "\\u0000"};

std::vector<uint8_t> mutate(std::vector<uint8_t> v, const std::vector<std::vector<uint8_t>>& corpus,
                            std::mt19937_64& rng) {
  auto pick = [&](size_t n) { return n == 0 ? 0 : size_t(rng() % n); };
  const int rounds = 1 + int(rng() % 4);
  for (int r = 0; r < rounds; ++r) {
    switch (rng() % 8) {
      case 0:
        if (!v.empty()) v[pick(v.size())] ^= uint8_t(1u << (rng() % 8));
        break;
      case 1: {
        static const uint8_t interesting[] = {0, 1, 0x7f, 0x80, 0xff, '"', '{', '[', '9', '-'};
        if (!v.empty()) v[pick(v.size())] = interesting[rng() % sizeof interesting];
        break;
      }
      case 2: {
        const size_t at = pick(v.size() + 1), n = 1 + rng() % 8;
        for (size_t k = 0; k < n; ++k) v.insert(v.begin() + long(at), uint8_t(rng()));
        break;
      }
      case 3:
        if (!v.empty()) {
          const size_t at = pick(v.size()), n = std::min(v.size() - at, size_t(1 + rng() % 16));
          v.erase(v.begin() + long(at), v.begin() + long(at + n));
        }
        break;
      case 4:
        if (!v.empty()) {
          const size_t at = pick(v.size()), n = std::min(v.size() - at, size_t(1 + rng() % 32));
          const std::vector<uint8_t> chunk(v.begin() + long(at), v.begin() + long(at + n));
          v.insert(v.begin() + long(pick(v.size() + 1)), chunk.begin(), chunk.end());
        }
        break;
      case 5: {
        const std::vector<uint8_t>& o = corpus[pick(corpus.size())];
        if (!o.empty()) {
          const size_t cut = pick(v.size() + 1), from = pick(o.size());
          v.resize(cut);
          v.insert(v.end(), o.begin() + long(from), o.end());
        }
        break;
      }
      case 6: {
        const char* t = kTokens[rng() % (sizeof kTokens / sizeof kTokens[0])];
        v.insert(v.begin() + long(pick(v.size() + 1)), t, t + std::strlen(t));
        break;
      }
      case 7:
        if (!v.empty()) {  // a digit run replaced by a large or odd number
          const size_t at = pick(v.size());
          const std::string n = std::to_string(int64_t(rng()) >> (rng() % 64));
          v.insert(v.begin() + long(at), n.begin(), n.end());
        }
        break;
    }
  }
  if (v.size() > 65536) v.resize(65536);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 10;
  long long runs = -1;
  uint64_t seed = 1;
  std::vector<std::string> dirs;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("-max_total_time=", 0) == 0)
      seconds = std::atof(a.c_str() + 16);
    else if (a.rfind("-runs=", 0) == 0)
      runs = std::atoll(a.c_str() + 6);
    else if (a.rfind("-seed=", 0) == 0)
      seed = std::strtoull(a.c_str() + 6, nullptr, 10);
    else if (!a.empty() && a[0] == '-')
      continue;  // other libFuzzer options have no meaning here
    else
      dirs.push_back(a);
  }
  for (int s : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) signal(s, on_crash);

  std::vector<std::vector<uint8_t>> corpus;
  for (const std::string& d : dirs) {
    DIR* dir = opendir(d.c_str());
    if (!dir) {
      std::fprintf(stderr, "mutation_driver: cannot read corpus folder %s\n", d.c_str());
      return 2;
    }
    std::vector<std::string> names;
    while (dirent* e = readdir(dir))
      if (e->d_name[0] != '.') names.push_back(d + "/" + e->d_name);
    closedir(dir);
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) corpus.push_back(read_file(n));
  }
  if (corpus.empty()) corpus.push_back({});
  // Written only when a crash happens; removed after a clean run.
  g_crash_fd = open("crash-input", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  long long done = 0;
  for (const auto& c : corpus) {
    run(c);
    ++done;
  }
  std::mt19937_64 rng(seed);
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  while ((runs < 0 || done < runs) && elapsed() < seconds) {
    run(mutate(corpus[size_t(rng() % corpus.size())], corpus, rng));
    ++done;
  }
  close(g_crash_fd);
  unlink("crash-input");
  std::printf("mutation_driver: %lld inputs (%zu from the corpus) in %.1f s, no crash\n", done,
              corpus.size(), elapsed());
  return 0;
}
