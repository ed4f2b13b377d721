#include "bench/micro/micro_report.hpp"

#include "bench/trace/h5.hpp"

namespace helix::micro {

namespace {

template <class T, class F>
std::vector<double> column(const std::vector<T>& rows, F f) {
  std::vector<double> v;
  for (const T& r : rows) v.push_back(double(f(r)));
  return v;
}

template <class T, class F>
std::vector<int64_t> int_column(const std::vector<T>& rows, F f) {
  std::vector<int64_t> v;
  for (const T& r : rows) v.push_back(int64_t(f(r)));
  return v;
}

template <class T, class F>
std::vector<std::string> str_column(const std::vector<T>& rows, F f) {
  std::vector<std::string> v;
  for (const T& r : rows) v.push_back(f(r));
  return v;
}

void write_doubles(hid_t g, const std::string& name, const std::vector<double>& v,
                   const std::string& units) {
  h5::write(g, name, {hsize_t(v.size())}, v.data(), units);
}

}  // namespace

void write_micro_trace(const std::string& path, const RunEnvironment& env, const MicroReport& r) {
  h5::File file(path);
  write_root_attributes(file.id(), env, "micro");
  {
    h5::Group g(file.id(), "/micro");
    h5::attr(g.id(), "ceiling_gbps", r.ceiling_gbps);
    h5::attr(g.id(), "stream_bytes", r.stream_bytes);
    h5::attr(g.id(), "ceiling_scope",
             "read-only stream bandwidth of one rank, every rank reading at once (decimal GB/s)");
    h5::attr(g.id(), "backend", r.backend);
    h5::attr(g.id(), "storage_dtype", r.storage_dtype);
    h5::attr(g.id(), "comm_backend", r.comm_backend);
    h5::attr(g.id(), "link_representative", r.link_representative);
    h5::attr(g.id(), "kernel_iters", r.kernel_iters);
    h5::attr(g.id(), "coll_iters", r.coll_iters);
    h5::attr(g.id(), "warmup", r.warmup);
    h5::attr(g.id(), "timing",
             "each iteration: the maximum over ranks of each rank's time; medians over iterations");
  }
  {
    h5::Group k(file.id(), "/micro/kernels");
    const auto& v = r.kernels;
    h5::attr(k.id(), "rows", int64_t(v.size()));
    h5::write(k.id(), "name", str_column(v, [](const KernelResult& x) { return x.name; }));
    h5::write(k.id(), "kernel", str_column(v, [](const KernelResult& x) { return x.kernel; }));
    h5::write(k.id(), "shape", str_column(v, [](const KernelResult& x) { return x.shape; }));
    write_doubles(k.id(), "bytes", column(v, [](const KernelResult& x) { return x.bytes; }),
                  "bytes");
    write_doubles(k.id(), "flops", column(v, [](const KernelResult& x) { return x.flops; }),
                  "FLOP");
    h5::write(k.id(), "iters",
              int_column(v, [](const KernelResult& x) { return x.time_us.size(); }), "");
    write_doubles(k.id(), "time_us_median",
                  column(v, [](const KernelResult& x) { return x.time_us_median; }), "us");
    write_doubles(k.id(), "time_us_min",
                  column(v, [](const KernelResult& x) { return x.time_us_min; }), "us");
    write_doubles(k.id(), "time_us_max",
                  column(v, [](const KernelResult& x) { return x.time_us_max; }), "us");
    write_doubles(k.id(), "gbps", column(v, [](const KernelResult& x) { return x.gbps; }),
                  "GB/s (1e9 bytes/s)");
    write_doubles(k.id(), "tflops", column(v, [](const KernelResult& x) { return x.tflops; }),
                  "TFLOP/s (1e12 FLOP/s)");
    write_doubles(k.id(), "fraction_of_ceiling",
                  column(v, [](const KernelResult& x) { return x.fraction_of_ceiling; }), "");
    h5::write(k.id(), "verified", int_column(v, [](const KernelResult& x) { return x.verified; }),
              "1 within tolerance of the CPU reference, 0 mismatch, -1 not checked");
  }
  {
    h5::Group c(file.id(), "/micro/collectives");
    const auto& v = r.collectives;
    h5::attr(c.id(), "rows", int64_t(v.size()));
    h5::attr(c.id(), "busbw_factors",
             "all_reduce 2(n-1)/n; all_gather, reduce_scatter, all_to_all (n-1)/n; send_recv 1");
    h5::write(c.id(), "collective",
              str_column(v, [](const CollResult& x) { return std::string(to_string(x.coll)); }));
    h5::write(c.id(), "group_size", int_column(v, [](const CollResult& x) { return x.group_size; }),
              "ranks");
    h5::write(c.id(), "in_place", int_column(v, [](const CollResult& x) { return x.in_place; }),
              "");
    h5::write(c.id(), "size_bytes", int_column(v, [](const CollResult& x) { return x.size_bytes; }),
              "bytes");
    h5::write(c.id(), "count", int_column(v, [](const CollResult& x) { return x.count; }),
              "elements");
    h5::write(c.id(), "dtype", str_column(v, [](const CollResult& x) {
                return std::string(nccl_tests_name(x.dtype));
              }));
    write_doubles(c.id(), "time_us",
                  column(v, [](const CollResult& x) { return x.time_us_median; }), "us");
    write_doubles(c.id(), "algbw_gbps", column(v, [](const CollResult& x) { return x.algbw_gbps; }),
                  "GB/s");
    write_doubles(c.id(), "busbw_gbps", column(v, [](const CollResult& x) { return x.busbw_gbps; }),
                  "GB/s");
    h5::write(c.id(), "wrong", int_column(v, [](const CollResult& x) { return x.wrong; }),
              "elements");
  }
  file.commit();
}

}  // namespace helix::micro
