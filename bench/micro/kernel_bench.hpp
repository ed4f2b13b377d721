// helix-kernel-bench's parts (bench/micro/kernel_bench.cpp: the command; kernel_bench_util.cpp:
// timing and ceilings; kernel_bench_mla.cpp and kernel_bench_moe.cpp: the two kernels' cases).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench/micro/gpu_buffer.hpp"

namespace helix::kbench {

using Buf = micro::GpuBuffer;

Buf alloc(int64_t bytes);

struct Row {
  std::string kernel, shape, variant;
  double us = 0, tflops = 0, gbps = 0;
  std::string ceiling;  // "gemm" or "stream"
  double fraction = 0, bar = 0;
  std::string note;
};

double median(std::vector<double> v);
// Median device microseconds of f(i) over `iters` calls after `warmup` untimed ones.
double time_us(const std::function<void(int)>& f, int warmup, int iters, cudaStream_t s);

struct Ceilings {
  double stream_gbps = 0, gemm_tflops = 0;
};

Ceilings measure_ceilings(int iters, cudaStream_t s);
// Largest relative error of a row of `a` against the same row of `b` (rows of `width`).
double max_row_rel(const std::vector<float>& a, const std::vector<float>& b, int64_t width);

struct MlaShape {
  int64_t batch, heads, tokens;
};

// Returns the number of cases whose two kernels disagree.
int bench_mla(const std::vector<MlaShape>& shapes, const Ceilings& c, int iters, cudaStream_t s,
              std::vector<Row>& rows);

struct MoeBenchShape {
  int ep;
  int64_t batch;
};

// Returns the number of cases whose output disagrees with the per-expert recomputation.
int bench_moe(const std::vector<MoeBenchShape>& shapes, const Ceilings& c, int iters,
              cudaStream_t s, std::vector<Row>& rows);

}  // namespace helix::kbench
