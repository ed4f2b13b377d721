#include "bench/trace/trace_input.hpp"

#include <fcntl.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "bench/commands/cli_util.hpp"
#include "comm/error.hpp"
#include "layouts/schedule.hpp"

namespace helix {

namespace {

// Largest timing array read (elements): far beyond any trace the suite writes.
constexpr hsize_t kMaxElements = hsize_t(1) << 26;

// Closes an HDF5 handle of any kind.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t id() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

class Reader {
 public:
  Reader(std::string option, std::string path)
      : option_(std::move(option)), path_(std::move(path)) {}

  [[noreturn]] void bad(const std::string& where, const std::string& what) const {
    throw UsageError(option_ + ": '" + path_ + "': " + where + ": " + what);
  }

  // A hard link (soft and external links are not followed: a trace is one self-contained file).
  bool is_hard_link(hid_t loc, const std::string& name) const {
    if (H5Lexists(loc, name.c_str(), H5P_DEFAULT) <= 0) return false;
    H5L_info_t li;
    return H5Lget_info(loc, name.c_str(), &li, H5P_DEFAULT) >= 0 && li.type == H5L_TYPE_HARD;
  }

  bool is_group(hid_t loc, const std::string& name) const {
    if (!is_hard_link(loc, name)) return false;
    Handle o(H5Oopen(loc, name.c_str(), H5P_DEFAULT), H5Oclose);
    return o.ok() && H5Iget_type(o.id()) == H5I_GROUP;
  }

  // A scalar attribute of the given class.
  Handle attribute(hid_t obj, const std::string& where, const std::string& name,
                   H5T_class_t cls) const {
    if (H5Aexists(obj, name.c_str()) <= 0) bad(where, "attribute '" + name + "' is missing");
    Handle a(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose);
    if (!a.ok()) bad(where, "attribute '" + name + "' cannot be read");
    Handle type(H5Aget_type(a.id()), H5Tclose);
    Handle space(H5Aget_space(a.id()), H5Sclose);
    if (!type.ok() || !space.ok() || H5Tget_class(type.id()) != cls ||
        H5Sget_simple_extent_npoints(space.id()) != 1)
      bad(where, "attribute '" + name + "' must be a scalar " +
                     (cls == H5T_STRING ? "string" : "integer"));
    return a;
  }

  std::string string_attr(hid_t obj, const std::string& where, const std::string& name) const {
    Handle a = attribute(obj, where, name, H5T_STRING);
    Handle ft(H5Aget_type(a.id()), H5Tclose);
    std::string out;
    if (H5Tis_variable_str(ft.id()) > 0) {
      Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(t.id(), H5T_VARIABLE);
      H5Tset_cset(t.id(), H5Tget_cset(ft.id()));
      char* p = nullptr;
      if (H5Aread(a.id(), t.id(), &p) < 0) bad(where, "attribute '" + name + "' cannot be read");
      out = p ? p : "";
      Handle space(H5Aget_space(a.id()), H5Sclose);
      H5Dvlen_reclaim(t.id(), space.id(), H5P_DEFAULT, &p);
    } else {
      const size_t n = H5Tget_size(ft.id());
      if (n == 0 || n > 65536) bad(where, "attribute '" + name + "' has a bad string size");
      std::string buf(n, '\0');
      if (H5Aread(a.id(), ft.id(), buf.data()) < 0)
        bad(where, "attribute '" + name + "' cannot be read");
      out = buf.c_str();
    }
    if (out.size() > 4096) bad(where, "attribute '" + name + "' is longer than 4096 characters");
    return out;
  }

  int64_t int_attr(hid_t obj, const std::string& where, const std::string& name, int64_t lo,
                   int64_t hi) const {
    Handle a = attribute(obj, where, name, H5T_INTEGER);
    Handle ft(H5Aget_type(a.id()), H5Tclose);
    // Unsigned 64-bit values above INT64_MAX do not convert: read the sign first.
    if (H5Tget_sign(ft.id()) == H5T_SGN_NONE && H5Tget_size(ft.id()) >= 8) {
      uint64_t u = 0;
      if (H5Aread(a.id(), H5T_NATIVE_UINT64, &u) < 0 || u > uint64_t(hi))
        bad(where,
            "attribute '" + name + "' must be " + std::to_string(lo) + " to " + std::to_string(hi));
      if (int64_t(u) < lo)
        bad(where,
            "attribute '" + name + "' must be " + std::to_string(lo) + " to " + std::to_string(hi));
      return int64_t(u);
    }
    int64_t v = 0;
    if (H5Aread(a.id(), H5T_NATIVE_INT64, &v) < 0)
      bad(where, "attribute '" + name + "' cannot be read as an integer");
    if (v < lo || v > hi)
      bad(where, "attribute '" + name + "' is " + std::to_string(v) + ", must be " +
                     std::to_string(lo) + " to " + std::to_string(hi));
    return v;
  }

  // A numeric dataset of the given rank, its values finite and >= 0.
  std::vector<double> timings(hid_t loc, const std::string& where, const std::string& name,
                              int rank, std::vector<hsize_t>* dims) const {
    if (!is_hard_link(loc, name)) bad(where, "dataset '" + name + "' is missing");
    Handle ds(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose);
    if (!ds.ok()) bad(where, "'" + name + "' is not a dataset");
    Handle type(H5Dget_type(ds.id()), H5Tclose);
    const H5T_class_t cls = H5Tget_class(type.id());
    if (cls != H5T_FLOAT && cls != H5T_INTEGER) bad(where, "dataset '" + name + "' is not numeric");
    Handle space(H5Dget_space(ds.id()), H5Sclose);
    if (!space.ok() || H5Sget_simple_extent_ndims(space.id()) != rank)
      bad(where, "dataset '" + name + "' must have " + std::to_string(rank) + " dimensions");
    dims->assign(size_t(rank), 0);
    H5Sget_simple_extent_dims(space.id(), dims->data(), nullptr);
    hsize_t total = 1;
    for (hsize_t d : *dims) {
      if (d == 0) bad(where, "dataset '" + name + "' is empty");
      if (d > kMaxElements || total * d > kMaxElements)
        bad(where,
            "dataset '" + name + "' has more than " + std::to_string(kMaxElements) + " elements");
      total *= d;
    }
    std::vector<double> v(total);
    if (H5Dread(ds.id(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0)
      bad(where, "dataset '" + name + "' cannot be read");
    for (double x : v)
      if (!std::isfinite(x) || x < 0)
        bad(where, "dataset '" + name + "' holds a time that is not a finite number >= 0");
    return v;
  }

 private:
  std::string option_, path_;
};

}  // namespace

namespace {

std::vector<TraceRun> open_and_read(const std::string& path, const std::string& option) {
  if (H5Fis_hdf5(path.c_str()) <= 0)
    throw UsageError(option + ": cannot open HDF5 trace '" + path + "'");
  Handle f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!f.ok()) throw UsageError(option + ": cannot open HDF5 trace '" + path + "'");
  return read_decode_trace(f.id(), path, option);
}

}  // namespace

std::optional<LayoutParams> layout_of(const TraceRun& run) {
  const auto kind = parse_layout(run.layout);
  if (!kind) return std::nullopt;
  LayoutParams p;
  p.kind = *kind;
  p.n = int(run.n_ranks);
  p.kvp = int(run.kvp);
  p.tpa = int(run.tpa);
  p.tpf = int(run.tpf);
  p.ep = int(run.ep);
  p.hopb_chunks = int(run.hopb_chunks);
  p.hopb_comm_sms = int(run.hopb_comm_sms);
  p.kv_block = int(run.kv_block);
  return p;
}

std::vector<TraceRun> read_decode_trace(const std::string& path, const std::string& option) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // failures are reported as UsageError
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    throw UsageError(option + ": cannot open HDF5 trace '" + path + "' (" + std::strerror(errno) +
                     ")");
  if (!S_ISREG(st.st_mode))  // a FIFO would block the open
    throw UsageError(option + ": '" + path + "' is not a regular file");
  // The HDF5 library crashes on some damaged files (a segmentation fault inside it, which no
  // check of ours can prevent): the same reading runs first in a forked child, and a child that
  // dies makes the file bad input instead of taking the job down. The reading is deterministic,
  // so once the child came through, this process reads the file the same way.
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    // A crash ends the child quietly (no handler prints a backtrace, and its output, a
    // sanitizer's report of the library's fault included, goes nowhere: the parent reports the
    // file); a read that never ends ends it too.
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) std::signal(sig, SIG_DFL);
    const int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, STDOUT_FILENO);
      dup2(null, STDERR_FILENO);
    }
    alarm(60);
    try {
      open_and_read(path, option);
    } catch (...) {
    }
    _exit(0);
  }
  if (pid > 0) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status))
      throw UsageError(option + ": '" + path + "' is damaged: reading it " +
                       (WTERMSIG(status) == SIGALRM ? std::string("does not end")
                                                    : "crashes the HDF5 library (signal " +
                                                          std::to_string(WTERMSIG(status)) + ")"));
  }
  return open_and_read(path, option);
}

namespace {

// A numeric dataset of the given shape, when present (absent: empty).
std::vector<double> optional_values(const Reader& r, hid_t g, const std::string& where,
                                    const std::string& name, std::vector<hsize_t> shape) {
  if (!r.is_hard_link(g, name)) return {};
  std::vector<hsize_t> dims;
  std::vector<double> v = r.timings(g, where, name, int(shape.size()), &dims);
  if (dims != shape) {
    std::string want;
    for (hsize_t d : shape) want += (want.empty() ? "" : " x ") + std::to_string(d);
    r.bad(where, "dataset '" + name + "' must be " + want + " (as phase_us)");
  }
  return v;
}

void check_ranks(const Reader& r, const std::string& where, const std::string& name,
                 const std::vector<double>& v, int64_t n) {
  for (double x : v)
    if (x != std::floor(x) || x >= double(n))
      r.bad(where, "dataset '" + name + "' holds a rank outside 0 to " + std::to_string(n - 1));
}

void read_optional_parts(const Reader& r, hid_t g, const std::string& where, TraceRun* t) {
  const hsize_t it = hsize_t(t->iters), rk = hsize_t(t->ranks);
  if (H5Aexists(g, "comm_dtype") > 0) t->comm_dtype = r.string_attr(g, where, "comm_dtype");
  if (H5Aexists(g, "seed") > 0) t->seed = r.int_attr(g, where, "seed", 0, INT64_MAX);
  if (H5Aexists(g, "emulated_ranks") > 0)
    t->emulated_ranks = r.int_attr(g, where, "emulated_ranks", 0, kMaxRanks);
  if (H5Aexists(g, "emulated_rank") > 0)
    // -1: every rank of the layout in turn (--emulate-rank all; rank_of_row names them).
    t->emulated_rank = r.int_attr(g, where, "emulated_rank", -1, t->n_ranks - 1);
  t->rank_of_row = optional_values(r, g, where, "rank_of_row", {rk});
  check_ranks(r, where, "rank_of_row", t->rank_of_row, t->n_ranks);
  t->critical_rank = optional_values(r, g, where, "critical_rank", {it});
  check_ranks(r, where, "critical_rank", t->critical_rank, t->n_ranks);
  t->rank_step_us = optional_values(r, g, where, "rank_step_us", {it, rk});
  t->routed_rows = optional_values(r, g, where, "routed_rows", {rk});
  t->routed_experts = optional_values(r, g, where, "routed_experts", {rk});
  if (t->routed_rows.empty() != t->routed_experts.empty())
    r.bad(where, "datasets 'routed_rows' and 'routed_experts' come together");
  t->step_breakdown_us = optional_values(r, g, where, "step_breakdown_us", {it, 4});
}

}  // namespace

std::vector<TraceRun> read_decode_trace(hid_t file, const std::string& path,
                                        const std::string& option) {
  const Reader r(option, path);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const struct {
    hid_t file;
    hid_t id() const { return file; }
  } f{file};
  if (!r.is_group(f.id(), "decode"))
    throw UsageError(option + ": '" + path + "' has no /decode group (not a decode trace)");
  Handle decode(H5Gopen2(f.id(), "decode", H5P_DEFAULT), H5Gclose);
  H5G_info_t info;
  if (!decode.ok() || H5Gget_info(decode.id(), &info) < 0) r.bad("/decode", "cannot be read");
  if (info.nlinks > 100000) r.bad("/decode", "more than 100000 runs");
  std::vector<TraceRun> runs;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t len = H5Lget_name_by_idx(decode.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr,
                                           0, H5P_DEFAULT);
    if (len <= 0 || len > 1024) r.bad("/decode", "a member has a bad name");
    std::string name(size_t(len), '\0');
    H5Lget_name_by_idx(decode.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(),
                       size_t(len) + 1, H5P_DEFAULT);
    const std::string where = "/decode/" + name;
    if (!r.is_group(decode.id(), name)) r.bad(where, "is not a group (a run)");
    Handle g(H5Gopen2(decode.id(), name.c_str(), H5P_DEFAULT), H5Gclose);
    if (!g.ok()) r.bad(where, "cannot be opened");
    TraceRun t;
    t.name = name;
    t.status = r.string_attr(g.id(), where, "status");
    if (t.status != "ok") {
      runs.push_back(t);
      continue;
    }
    t.model = r.string_attr(g.id(), where, "model");
    t.layer_kind = r.string_attr(g.id(), where, "layer_kind");
    if (t.layer_kind != "dense" && t.layer_kind != "moe")
      r.bad(where, "attribute 'layer_kind' must be 'dense' or 'moe'");
    t.layout = r.string_attr(g.id(), where, "layout");
    t.dtype = r.string_attr(g.id(), where, "dtype");
    t.n_ranks = r.int_attr(g.id(), where, "n_ranks", 1, kMaxRanks);
    t.kvp = r.int_attr(g.id(), where, "kvp", 1, kMaxRanks);
    t.tpa = r.int_attr(g.id(), where, "tpa", 1, kMaxRanks);
    t.tpf = r.int_attr(g.id(), where, "tpf", 1, kMaxRanks);
    t.ep = r.int_attr(g.id(), where, "ep", 1, kMaxRanks);
    t.hopb_chunks = r.int_attr(g.id(), where, "hopb_chunks", 0, kMaxBatch);
    // Traces written before the attribute existed reserved no SMs for HOP-B's exchanges.
    if (H5Aexists(g.id(), "hopb_comm_sms") > 0)
      t.hopb_comm_sms = r.int_attr(g.id(), where, "hopb_comm_sms", 0, kMaxHopbCommSms);
    t.kv_block = r.int_attr(g.id(), where, "kv_block", 1, kMaxKvBlock);
    t.batch = r.int_attr(g.id(), where, "batch", 1, kMaxBatch);
    t.seq_len = r.int_attr(g.id(), where, "seq_len", 1, kMaxTokens);
    std::vector<hsize_t> dims;
    t.phase_us = r.timings(g.id(), where, "phase_us", 3, &dims);
    if (dims[2] != hsize_t(kNumPhases))
      r.bad(where,
            "dataset 'phase_us' must be [iters, ranks, " + std::to_string(kNumPhases) + " phases]");
    t.iters = int64_t(dims[0]);
    t.ranks = int64_t(dims[1]);
    t.step_us = r.timings(g.id(), where, "step_us", 1, &dims);
    if (int64_t(dims[0]) != t.iters)
      r.bad(where, "datasets 'step_us' and 'phase_us' disagree on the number of iterations");
    read_optional_parts(r, g.id(), where, &t);
    runs.push_back(std::move(t));
  }
  return runs;
}

}  // namespace helix
