// Checks what helix-micro and `helix-bench calibrate` wrote: the /micro group of an HDF5 trace
// (schema of results/README.md, no wrong elements) or a hardware profile JSON.
//   helix_micro_check trace FILE.h5 RANKS [verified]
//     (verified: at least one kernel row was checked against the CPU reference)
//   helix_micro_check profile FILE.json RANKS
// Prints one line per problem and exits 1 when there is any.
#include <hdf5.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "analytic/hardware.hpp"
#include "bench/trace/h5.hpp"

namespace {

std::vector<std::string> problems;

void expect(bool ok, const std::string& what) {
  if (!ok) problems.push_back(what);
}

void check_trace(const std::string& path, int ranks, bool want_verified) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    problems.push_back("cannot open " + path);
    return;
  }
  using namespace helix::h5;
  for (const char* a : {"schema_version", "kind", "suite_version", "git_sha", "command_line",
                        "utc_time", "hosts", "devices", "backend", "world_size"})
    expect(has_attr(f, a), std::string("root attribute missing: ") + a);
  if (has_attr(f, "kind")) expect(read_attr_string(f, "kind") == "micro", "root kind is not micro");
  if (has_attr(f, "world_size"))
    expect(read_attr_int(f, "world_size") == ranks, "world_size differs from the rank count");
  if (!exists(f, "/micro")) {
    problems.push_back("no /micro group");
    H5Fclose(f);
    return;
  }
  const hid_t g = H5Gopen2(f, "/micro", H5P_DEFAULT);
  for (const char* a : {"ceiling_gbps", "stream_bytes", "backend", "comm_backend"})
    expect(has_attr(g, a), std::string("/micro attribute missing: ") + a);
  if (has_attr(g, "ceiling_gbps")) {
    const double c = read_attr_double(g, "ceiling_gbps");
    expect(std::isfinite(c) && c > 0, "ceiling_gbps is not positive");
  }
  H5Gclose(g);

  size_t rows = 0;
  for (const char* col : {"name", "kernel", "shape"}) {
    const std::string p = std::string("/micro/kernels/") + col;
    if (!exists(f, p)) {
      problems.push_back("missing " + p);
      continue;
    }
    const auto v = read_strings(f, p);
    if (rows == 0) rows = v.size();
    expect(v.size() == rows && rows > 0, p + ": wrong length");
  }
  for (const char* col : {"bytes", "flops", "time_us_median", "time_us_min", "time_us_max", "gbps",
                          "tflops", "fraction_of_ceiling"}) {
    const std::string p = std::string("/micro/kernels/") + col;
    if (!exists(f, p)) {
      problems.push_back("missing " + p);
      continue;
    }
    const auto v = read_doubles(f, p);
    expect(v.size() == rows, p + ": wrong length");
    for (double x : v) expect(std::isfinite(x) && x >= 0, p + ": value not finite or negative");
  }
  if (exists(f, "/micro/kernels/time_us_median"))
    for (double t : read_doubles(f, "/micro/kernels/time_us_median"))
      expect(t > 0, "/micro/kernels/time_us_median: zero time");
  if (!exists(f, "/micro/kernels/verified")) {
    problems.push_back("missing /micro/kernels/verified");
  } else {
    const auto v = read_doubles(f, "/micro/kernels/verified");
    expect(v.size() == rows, "/micro/kernels/verified: wrong length");
    int checked = 0;
    for (double x : v) {
      expect(x == -1 || x == 0 || x == 1, "/micro/kernels/verified: not -1, 0 or 1");
      expect(x != 0, "/micro/kernels/verified: a kernel missed the CPU reference");
      checked += x == 1;
    }
    if (want_verified) expect(checked > 0, "/micro/kernels/verified: no kernel was checked");
  }

  size_t crows = 0;
  for (const char* col : {"collective", "dtype"}) {
    const std::string p = std::string("/micro/collectives/") + col;
    if (!exists(f, p)) {
      problems.push_back("missing " + p);
      continue;
    }
    const auto v = read_strings(f, p);
    if (crows == 0) crows = v.size();
    expect(v.size() == crows && crows > 0, p + ": wrong length");
  }
  std::map<std::string, std::vector<double>> num;
  for (const char* col : {"group_size", "size_bytes", "count", "time_us", "algbw_gbps",
                          "busbw_gbps", "wrong", "in_place"}) {
    const std::string p = std::string("/micro/collectives/") + col;
    if (!exists(f, p)) {
      problems.push_back("missing " + p);
      continue;
    }
    const auto v = read_doubles(f, p);
    expect(v.size() == crows, p + ": wrong length");
    for (double x : v) {
      // wrong = -1: an in-place all_to_all or send_recv, timed but not checked (nccl-tests' N/A)
      const double lowest = col == std::string("wrong") ? -1 : 0;
      expect(std::isfinite(x) && x >= lowest,
             p + ": value not finite or below " + std::to_string(int(lowest)));
      if (col == std::string("wrong")) expect(x <= 0, p + ": wrong elements reported");
      if (col == std::string("group_size")) expect(x == ranks, p + ": group size differs");
    }
    num[col] = v;
  }
  // nccl-tests' count: the elements of one call (S for all_reduce and send_recv, one rank's block
  // otherwise); every collective has out-of-place and in-place rows.
  const auto names = read_strings(f, "/micro/collectives/collective");
  size_t in_place_rows = 0;
  for (size_t i = 0; i < crows && num.size() == 8 && names.size() == crows; ++i) {
    const bool per_rank = names[i] != "all_reduce" && names[i] != "send_recv";
    const double elems = num["size_bytes"][i] / 4;  // float
    expect(num["count"][i] == (per_rank ? elems / ranks : elems),
           "/micro/collectives/count: not nccl-tests' count for " + names[i]);
    in_place_rows += num["in_place"][i] == 1;
    const bool checked =
        num["in_place"][i] == 0 || (names[i] != "all_to_all" && names[i] != "send_recv");
    expect((num["wrong"][i] == 0) == checked,
           "/micro/collectives/wrong: " + names[i] + (checked ? " not checked" : " checked"));
  }
  expect(in_place_rows * 2 == crows, "/micro/collectives: not one in-place row per size");
  H5Fclose(f);
}

void check_profile(const std::string& path, int ranks) {
  helix::HardwareProfile p;
  try {
    p = helix::load_hardware(path);
  } catch (const std::exception& e) {
    problems.push_back(e.what());
    return;
  }
  expect(p.kind == "calibrated", "kind is not calibrated");
  expect(p.stream_gbps > 0 && p.mem_bw_gbps == p.stream_gbps, "stream_gbps / mem_bw_gbps");
  expect(p.memory_bytes > 0, "memory_bytes");
  expect(p.flops_tflops.count(helix::DType::bf16) && p.flops_tflops.at(helix::DType::bf16) > 0,
         "flops_tflops.bf16");
  expect(!p.gemm_efficiency.empty(), "gemm_efficiency is empty");
  for (const auto& g : p.gemm_efficiency)
    expect(g.efficiency > 0 && g.efficiency <= 1.0, "gemm_efficiency out of (0, 1]");
  expect(p.gemm_launch_us > 0 && p.kernel_launch_us > 0, "launch_us not measured");
  expect(!p.decode_attention.empty(), "decode_attention is empty");
  for (const auto& a : p.decode_attention)
    expect(a.efficiency > 0 && a.efficiency <= 1.0 && a.kv_bytes > 0, "decode_attention point");
  expect(p.sources.count("*") == 1, "sources['*'] missing");
  expect(p.nvlink.bw_gbps > 0 && p.network.bw_gbps > 0, "link figures not positive");
  if (ranks > 1) {
    // Every collective for every group size 2, 4, ... dividing the ranks, and all of them.
    size_t sizes = 0;
    for (int g = 2; g < ranks; g *= 2) sizes += ranks % g == 0;
    expect(p.collectives.size() == 5 * (sizes + 1), "expected 5 collectives per group size");
    for (const auto& c : p.collectives) {
      const std::string name = helix::to_string(c.collective);
      expect(c.latency_us > 0 && c.busbw_gbps > 0, name + ": figures not positive");
      expect(c.points.size() >= 2, name + ": no curve");
      for (size_t i = 1; i < c.points.size(); ++i)
        expect(c.points[i].size_bytes > c.points[i - 1].size_bytes, name + ": curve not sorted");
    }
    expect(p.nvlink.domain_gpus == ranks, "nvlink.domain_gpus");
    expect(p.sources.count("nvlink.bw_gbps") == 0, "measured link figures marked as fallback");
  } else {
    expect(p.collectives.empty(), "collectives with one rank");
    expect(p.sources.count("nvlink.bw_gbps") == 1 && p.sources.count("network.latency_us") == 1,
           "one rank: the fallback link figures are not named in sources");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && !(argc == 5 && std::string(argv[4]) == "verified")) {
    std::fprintf(stderr, "usage: %s trace|profile FILE RANKS [verified]\n", argv[0]);
    return 2;
  }
  const std::string kind = argv[1], path = argv[2];
  const int ranks = std::atoi(argv[3]);
  if (kind == "trace")
    check_trace(path, ranks, argc == 5);
  else if (kind == "profile")
    check_profile(path, ranks);
  else
    problems.push_back("unknown kind " + kind);
  for (const auto& p : problems)
    std::printf("helix_micro_check: %s: %s\n", path.c_str(), p.c_str());
  if (problems.empty()) std::printf("helix_micro_check: %s: ok\n", path.c_str());
  return problems.empty() ? 0 : 1;
}
