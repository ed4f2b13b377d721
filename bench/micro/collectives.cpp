#include "bench/micro/collectives.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "bench/commands/cli_util.hpp"
#include "comm/error.hpp"
#include "kernels/rng.hpp"

namespace helix::micro {

double algbw_gbps(double size_bytes, double time_us) {
  return time_us > 0 ? size_bytes / (time_us * 1e3) : 0.0;  // bytes / us / 1e3 = GB/s
}

double busbw_gbps(Collective c, int n, double size_bytes, double time_us) {
  return algbw_gbps(size_bytes, time_us) * busbw_factor(c, n);
}

namespace {
// Whether S spans every rank's block (S = n * count elements) or one buffer (S = count).
bool size_is_per_group(Collective c) {
  return c == Collective::all_gather || c == Collective::reduce_scatter ||
         c == Collective::all_to_all;
}
}  // namespace

int64_t op_count_for_size(Collective c, int n, int64_t size_bytes, DType t) {
  const int64_t elems = size_bytes / elem_bytes(t);
  if (!size_is_per_group(c)) return elems;
  const int64_t align = std::max<int64_t>(1, 16 / elem_bytes(t));  // whole 16-byte blocks
  return elems / n / align * align;
}

int64_t size_for_op_count(Collective c, int n, int64_t op_count, DType t) {
  return (size_is_per_group(c) ? op_count * n : op_count) * elem_bytes(t);
}

int64_t send_elems(Collective c, int n, int64_t op_count) {
  return c == Collective::reduce_scatter || c == Collective::all_to_all ? op_count * n : op_count;
}

int64_t recv_elems(Collective c, int n, int64_t op_count) {
  return c == Collective::all_gather || c == Collective::all_to_all ? op_count * n : op_count;
}

bool in_place_checked(Collective c) {
  return c == Collective::all_reduce || c == Collective::all_gather ||
         c == Collective::reduce_scatter;
}

const char* redop_name(Collective c) {
  return c == Collective::all_gather || c == Collective::all_to_all ? "none" : "sum";
}

std::vector<int64_t> size_sweep(int64_t min_bytes, int64_t max_bytes, int64_t factor) {
  std::vector<int64_t> v;
  for (int64_t s = min_bytes; s <= max_bytes; s *= factor) {
    v.push_back(s);
    if (factor < 2) break;
  }
  return v;
}

double pattern_value(int rank, int64_t index) {
  const uint64_t h = mix64((uint64_t(rank) << 40) ^ uint64_t(index) ^ 0x636f6c6cull);
  return double(int64_t(h % 17) - 8);
}

void encode(DType t, double v, void* host, int64_t i) {
  switch (t) {
    case DType::fp32:
      static_cast<float*>(host)[i] = float(v);
      break;
    case DType::int32:
      static_cast<int32_t*>(host)[i] = int32_t(v);
      break;
    case DType::bf16: {
      const float f = float(v);
      uint32_t bits = 0;
      std::memcpy(&bits, &f, 4);
      bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest even
      static_cast<uint16_t*>(host)[i] = uint16_t(bits >> 16);
      break;
    }
    default:
      fatal(std::string("collective element type ") + to_string(t) + " is not measured");
  }
}

double decode(DType t, const void* host, int64_t i) {
  switch (t) {
    case DType::fp32:
      return static_cast<const float*>(host)[i];
    case DType::int32:
      return static_cast<const int32_t*>(host)[i];
    case DType::bf16: {
      const uint32_t bits = uint32_t(static_cast<const uint16_t*>(host)[i]) << 16;
      float f = 0;
      std::memcpy(&f, &bits, 4);
      return f;
    }
    default:
      break;
  }
  return NAN;
}

// Every collective sends element j of its send buffer as pattern_value(rank, j); the expected
// results below follow from each collective's definition.
void fill_send_pattern(Collective c, DType t, int rank, int n, int64_t op_count, void* host_send) {
  const int64_t m = send_elems(c, n, op_count);
  for (int64_t j = 0; j < m; ++j) encode(t, pattern_value(rank, j), host_send, j);
}

namespace {

double expected_value(Collective c, int rank, int n, int64_t count, int64_t i) {
  switch (c) {
    case Collective::all_reduce: {
      double s = 0;
      for (int r = 0; r < n; ++r) s += pattern_value(r, i);
      return s;
    }
    case Collective::all_gather:  // block r comes from rank r's element i % count
      return pattern_value(int(i / count), i % count);
    case Collective::reduce_scatter: {  // sum over ranks of their block `rank`
      double s = 0;
      for (int r = 0; r < n; ++r) s += pattern_value(r, rank * count + i);
      return s;
    }
    case Collective::all_to_all:  // block p comes from rank p's block `rank`
      return pattern_value(int(i / count), rank * count + i % count);
    case Collective::send_recv:
      return pattern_value((rank + n - 1) % n, i);
    default:  // not one of kMeasuredCollectives
      break;
  }
  return NAN;
}

}  // namespace

int64_t count_wrong(Collective c, DType t, int rank, int n, int64_t op_count,
                    const void* host_recv) {
  int64_t wrong = 0;
  const int64_t m = recv_elems(c, n, op_count);
  for (int64_t i = 0; i < m; ++i)
    if (decode(t, host_recv, i) != expected_value(c, rank, n, op_count, i)) ++wrong;
  return wrong;
}

// ---------------------------------------------------------------------------------------------

PreparedCollective::PreparedCollective(CollectiveBackend& cb, Collective c, DType t,
                                       int64_t op_count, bool in_place)
    : cb_(cb), c_(c), t_(t), count_(op_count), in_place_(in_place) {
  const int n = cb.size();
  const int64_t es = elem_bytes(t);
  if (in_place_) {
    a_ = cb.allocate(std::max(send_elems(c, n, op_count), recv_elems(c, n, op_count)) * es);
  } else {
    a_ = cb.allocate(send_elems(c, n, op_count) * es);
    b_ = cb.allocate(recv_elems(c, n, op_count) * es);
  }
}

const void* PreparedCollective::send_ptr() const {
  const char* base = static_cast<const char*>(a_->data());
  if (in_place_ && c_ == Collective::all_gather) return base + cb_.rank() * count_ * elem_bytes(t_);
  return base;
}

void* PreparedCollective::recv_ptr() {
  if (!in_place_) return b_->data();
  char* base = static_cast<char*>(a_->data());
  if (c_ == Collective::reduce_scatter) return base + cb_.rank() * count_ * elem_bytes(t_);
  return base;
}

void PreparedCollective::launch() {
  const int n = cb_.size(), r = cb_.rank();
  switch (c_) {
    case Collective::all_reduce:
      cb_.all_reduce(send_ptr(), recv_ptr(), count_, t_);
      break;
    case Collective::all_gather:
      cb_.all_gather(send_ptr(), recv_ptr(), count_, t_);
      break;
    case Collective::reduce_scatter:
      cb_.reduce_scatter(send_ptr(), recv_ptr(), count_, t_);
      break;
    case Collective::all_to_all:
      cb_.all_to_all(send_ptr(), recv_ptr(), count_, t_);
      break;
    case Collective::send_recv:
      cb_.send_recv(send_ptr(), recv_ptr(), count_, t_, (r + 1) % n, (r + n - 1) % n);
      break;
    default:
      fatal(std::string("helix-micro does not measure ") + to_string(c_));
  }
}

double PreparedCollective::time_once_us() {
  return cb_.time_us([this] { launch(); });
}

int64_t PreparedCollective::check() {
  if (in_place_ && !in_place_checked(c_)) return -1;
  const int n = cb_.size(), r = cb_.rank();
  const int64_t es = elem_bytes(t_);
  const int64_t ns = send_elems(c_, n, count_), nr = recv_elems(c_, n, count_);
  constexpr double kSentinel = -1000.0;  // never a valid result (|results| <= 8 * ranks)
  std::vector<unsigned char> send(size_t(ns * es)), recv(size_t(nr * es));
  fill_send_pattern(c_, t_, r, n, count_, send.data());
  if (in_place_) {
    // One buffer: the send data where the call reads it, sentinels elsewhere.
    const int64_t total = a_->bytes() / es;
    std::vector<unsigned char> init(size_t(total * es));
    for (int64_t j = 0; j < total; ++j) encode(t_, kSentinel, init.data(), j);
    const int64_t off = c_ == Collective::all_gather ? r * count_ : 0;
    std::memcpy(init.data() + off * es, send.data(), size_t(ns * es));
    cb_.upload(*a_, init.data(), a_->bytes());
  } else {
    for (int64_t j = 0; j < nr; ++j) encode(t_, kSentinel, recv.data(), j);
    cb_.upload(*a_, send.data(), ns * es);
    cb_.upload(*b_, recv.data(), nr * es);
  }
  launch();
  if (in_place_) {
    std::vector<unsigned char> all(size_t(a_->bytes()));
    cb_.download(*a_, all.data(), a_->bytes());
    const int64_t off = c_ == Collective::reduce_scatter ? r * count_ : 0;
    std::memcpy(recv.data(), all.data() + off * es, size_t(nr * es));
  } else {
    cb_.download(*b_, recv.data(), nr * es);
  }
  return count_wrong(c_, t_, r, n, count_, recv.data());
}

int64_t checked_wrong(PreparedCollective& pc, MPI_Comm comm) {
  int64_t wrong = pc.check();  // -1 on every rank when not checked
  if (wrong < 0) return -1;
  HELIX_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_INT64_T, MPI_SUM, comm));
  return wrong;
}

double timed_iteration_us(const std::function<double()>& time_once, MPI_Comm comm) {
  HELIX_MPI_CHECK(MPI_Barrier(comm));
  double t = time_once();
  HELIX_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, comm));
  return t;
}

void finish(CollResult& r) {
  r.time_us_median = median(r.time_us);
  r.algbw_gbps = algbw_gbps(double(r.size_bytes), r.time_us_median);
  r.busbw_gbps = busbw_gbps(r.coll, r.group_size, double(r.size_bytes), r.time_us_median);
}

CollResult measure_collective(CollectiveBackend& cb, MPI_Comm comm, Collective c, DType t,
                              int64_t size_bytes, bool in_place, int warmup, int iters) {
  CollResult r;
  r.coll = c;
  r.dtype = t;
  r.group_size = cb.size();
  r.in_place = in_place;
  const int64_t count = op_count_for_size(c, cb.size(), size_bytes, t);
  r.size_bytes = size_for_op_count(c, cb.size(), count, t);
  r.count = count;
  if (count == 0) return r;
  PreparedCollective pc(cb, c, t, count, r.in_place);
  r.wrong = checked_wrong(pc, comm);
  for (int i = 0; i < warmup; ++i) pc.launch();
  for (int i = 0; i < iters; ++i)
    r.time_us.push_back(timed_iteration_us([&] { return pc.time_once_us(); }, comm));
  finish(r);
  return r;
}

std::string nccl_tests_number(double value, int width) {
  char buf[64];
  for (int decimals : {2, 1, 0}) {
    const int len = std::snprintf(buf, sizeof buf, "%*.*f", width, decimals, value);
    if (len <= width) return buf;
  }
  std::snprintf(buf, sizeof buf, width >= 7 ? "%*.1e" : "%*.0e", width, value);
  return std::string(buf).substr(0, size_t(width));
}

void print_collective_table(std::FILE* f, Collective c, int n, const std::string& backend,
                            const std::vector<CollResult>& results) {
  std::fprintf(f, "# helix-micro collective %s: %d ranks, %s, busbw factor %.4g\n", to_string(c), n,
               backend.c_str(), busbw_factor(c, n));
  // The three header lines of nccl-tests without per-iteration columns or timestamps (their
  // trailing "%*s" prints nothing then, after one space).
  std::fprintf(f, "#\n");
  std::fprintf(f,
               "# %10s  %12s  %8s  %6s  %6s           out-of-place                       in-place  "
               "        \n",
               "", "", "", "", "");
  std::fprintf(f, "# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s %*s\n",
               "size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time",
               "algbw", "busbw", "#wrong", 0, "");
  std::fprintf(f, "# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s %*s\n",
               "(B)", "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)",
               "(GB/s)", "", 0, "");
  const auto body = [f](const CollResult& r) {
    const std::string t = nccl_tests_number(r.time_us_median, 7);
    const std::string a = nccl_tests_number(r.algbw_gbps, 6);
    const std::string b = nccl_tests_number(r.busbw_gbps, 6);
    if (r.wrong >= 0)
      std::fprintf(f, "  %7s  %6s  %6s  %6g", t.c_str(), a.c_str(), b.c_str(), double(r.wrong));
    else
      std::fprintf(f, "  %7s  %6s  %6s    N/A", t.c_str(), a.c_str(), b.c_str());
  };
  int failed_checks = 0, results_printed = 0;
  double busbw_sum = 0;
  for (const CollResult& o : results) {
    if (o.coll != c || o.in_place) continue;
    const CollResult* ip = nullptr;
    for (const CollResult& q : results)
      if (q.coll == c && q.in_place && q.size_bytes == o.size_bytes) ip = &q;
    std::fprintf(f, "%12lld  %12lld  %8s  %6s  %6i", static_cast<long long>(o.size_bytes),
                 static_cast<long long>(o.count), nccl_tests_name(o.dtype), redop_name(c), -1);
    for (const CollResult* r : {&o, ip}) {
      if (!r) continue;
      body(*r);
      busbw_sum += r->busbw_gbps;
      ++results_printed;
      failed_checks += r->wrong > 0;
    }
    std::fprintf(f, "\n");
  }
  std::fprintf(f, "# %-20s : %d %s\n", "Out of bounds values", failed_checks,
               failed_checks ? "FAILED" : "OK");
  std::fprintf(f, "# %-20s : %g %s\n", "Avg bus bandwidth",
               results_printed ? busbw_sum / results_printed : 0.0, "");
  std::fprintf(f, "#\n");
}

}  // namespace helix::micro
