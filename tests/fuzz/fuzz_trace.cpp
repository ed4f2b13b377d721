// Fuzz target: decode traces given to `helix-bench model --validate`. The input is a program of
// edits applied to a valid trace held in memory (HDF5 core driver): attributes removed, retyped
// or set to any value, datasets reshaped, retyped, filled with any bits or replaced by groups,
// runs replaced by datasets or links. The edited file is always a file HDF5 can open (a user's
// h5py script, a truncated sweep), so the edits reach the reader: it must refuse the trace with
// UsageError or return runs that the validation arithmetic (layouts, schedules, cost model)
// takes.
#include <hdf5.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "analytic/cost_model.hpp"
#include "analytic/hardware.hpp"
#include "bench/trace/trace_input.hpp"
#include "comm/error.hpp"
#include "layouts/layout.hpp"
#include "layouts/model_spec.hpp"
#include "layouts/rank_shard.hpp"
#include "layouts/schedule.hpp"

namespace {

using namespace helix;

// Reads the edit program.
class Bytes {
 public:
  Bytes(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  bool empty() const { return i_ >= n_; }
  uint8_t u8() { return i_ < n_ ? d_[i_++] : 0; }
  uint64_t u64() {
    uint64_t v = 0;
    for (int k = 0; k < 8; ++k) v = (v << 8) | u8();
    return v;
  }
  double f64() {
    const uint64_t b = u64();
    double v;
    std::memcpy(&v, &b, sizeof v);
    return v;
  }
  std::string str(size_t max) {
    const size_t n = std::min<size_t>(u8(), max);
    std::string s;
    for (size_t k = 0; k < n && !empty(); ++k) s.push_back(char(u8()));
    return s;
  }

 private:
  const uint8_t* d_;
  size_t n_, i_ = 0;
};

const char* const kAttrs[] = {"status",      "model",    "layer_kind", "layout",  "dtype",
                              "n_ranks",     "kvp",      "tpa",        "tpf",     "ep",
                              "hopb_chunks", "kv_block", "batch",      "seq_len", "message"};
const char* const kModels[] = {"tiny-gqa", "tiny-mla-moe", "llama-3.1-8b", "deepseek-r1"};
constexpr int kRuns = 3;

void attr_int(hid_t obj, const char* name, int64_t v) {
  H5Adelete(obj, name);
  const hid_t sp = H5Screate(H5S_SCALAR);
  const hid_t a = H5Acreate2(obj, name, H5T_NATIVE_INT64, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT64, &v);
  H5Aclose(a);
  H5Sclose(sp);
}

void attr_u64(hid_t obj, const char* name, uint64_t v) {
  H5Adelete(obj, name);
  const hid_t sp = H5Screate(H5S_SCALAR);
  const hid_t a = H5Acreate2(obj, name, H5T_NATIVE_UINT64, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_UINT64, &v);
  H5Aclose(a);
  H5Sclose(sp);
}

void attr_double(hid_t obj, const char* name, double v) {
  H5Adelete(obj, name);
  const hid_t sp = H5Screate(H5S_SCALAR);
  const hid_t a = H5Acreate2(obj, name, H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_DOUBLE, &v);
  H5Aclose(a);
  H5Sclose(sp);
}

void attr_string(hid_t obj, const char* name, const std::string& v, bool fixed) {
  H5Adelete(obj, name);
  const hid_t t = H5Tcopy(H5T_C_S1);
  if (fixed)
    H5Tset_size(t, std::max<size_t>(1, v.size()));
  else
    H5Tset_size(t, H5T_VARIABLE);
  const hid_t sp = H5Screate(H5S_SCALAR);
  const hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  const char* p = v.c_str();
  if (fixed) {
    std::string buf = v;
    buf.resize(std::max<size_t>(1, v.size()), '\0');
    H5Awrite(a, t, buf.data());
  } else {
    H5Awrite(a, t, &p);
  }
  H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
}

void attr_array(hid_t obj, const char* name, const std::vector<int64_t>& v) {
  H5Adelete(obj, name);
  const hsize_t n = std::max<size_t>(1, v.size());
  std::vector<int64_t> data = v;
  data.resize(size_t(n), 0);
  const hid_t sp = H5Screate_simple(1, &n, nullptr);
  const hid_t a = H5Acreate2(obj, name, H5T_NATIVE_INT64, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT64, data.data());
  H5Aclose(a);
  H5Sclose(sp);
}

void dataset(hid_t loc, const char* name, hid_t type, const std::vector<hsize_t>& dims,
             const void* data) {
  H5Ldelete(loc, name, H5P_DEFAULT);
  const hid_t sp = dims.empty() ? H5Screate(H5S_SCALAR)
                                : H5Screate_simple(int(dims.size()), dims.data(), nullptr);
  const hid_t ds = H5Dcreate2(loc, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t total = 1;
  for (hsize_t d : dims) total *= d;
  if (ds >= 0 && total > 0 && data) H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  if (ds >= 0) H5Dclose(ds);
  H5Sclose(sp);
}

// A valid run: `layout` on n ranks of tiny-gqa (or refused).
void write_run(hid_t decode, int index, const char* layout, int n, bool ok) {
  const std::string name = "run_000" + std::to_string(index);
  const hid_t g = H5Gcreate2(decode, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  attr_string(g, "status", ok ? "ok" : "refused", false);
  attr_string(g, "model", "tiny-gqa", false);
  attr_string(g, "layer_kind", "dense", false);
  attr_string(g, "layout", layout, false);
  attr_string(g, "dtype", "fp32", false);
  const bool tp = std::string(layout) == "tp";
  attr_int(g, "n_ranks", n);
  attr_int(g, "kvp", tp ? 1 : n);
  attr_int(g, "tpa", tp ? n : 1);
  attr_int(g, "tpf", n);
  attr_int(g, "ep", 1);
  attr_int(g, "hopb_chunks", 1);
  attr_int(g, "kv_block", 16);
  attr_int(g, "batch", 2);
  attr_int(g, "seq_len", 100);
  const hsize_t iters = 3;
  std::vector<double> ph(size_t(iters) * size_t(n) * kNumPhases);
  for (size_t i = 0; i < ph.size(); ++i) ph[i] = 1.0 + double(i % 7);
  dataset(g, "phase_us", H5T_NATIVE_DOUBLE, {iters, hsize_t(n), hsize_t(kNumPhases)}, ph.data());
  const double step[3] = {30, 31, 32};
  dataset(g, "step_us", H5T_NATIVE_DOUBLE, {iters}, step);
  H5Gclose(g);
}

hid_t seed_trace() {
  const hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_core(fapl, 1 << 16, 0);  // in memory, never written to disk
  H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
  const hid_t f = H5Fcreate("fuzz-trace.h5", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  const hid_t d = H5Gcreate2(f, "decode", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  write_run(d, 0, "helix", 2, true);
  write_run(d, 1, "tp", 2, true);
  write_run(d, 2, "kvp", 2, false);
  H5Gclose(d);
  return f;
}

void edit(hid_t f, Bytes& in) {
  const uint8_t op = in.u8() % 16;
  const std::string run = "decode/run_000" + std::to_string(in.u8() % (kRuns + 1));
  const char* attr = kAttrs[in.u8() % (sizeof kAttrs / sizeof kAttrs[0])];
  const char* ds_name = (in.u8() & 1) ? "phase_us" : "step_us";
  const hid_t g =
      H5Lexists(f, "decode", H5P_DEFAULT) > 0 && H5Lexists(f, run.c_str(), H5P_DEFAULT) > 0
          ? H5Oopen(f, run.c_str(), H5P_DEFAULT)
          : -1;
  switch (op) {
    case 0:
      if (g >= 0) H5Adelete(g, attr);
      break;
    case 1:
      if (g >= 0) attr_int(g, attr, int64_t(in.u64()));
      break;
    case 2:
      if (g >= 0) attr_int(g, attr, int64_t(in.u8()) - 8);  // small values, 0 and negatives
      break;
    case 3:
      if (g >= 0) attr_string(g, attr, in.str(40), false);
      break;
    case 4:
      if (g >= 0) attr_string(g, attr, kModels[in.u8() % 4], in.u8() & 1);
      break;
    case 5:
      if (g >= 0) attr_double(g, attr, in.f64());
      break;
    case 6:
      if (g >= 0) {
        std::vector<int64_t> v(in.u8() % 4);
        for (auto& x : v) x = int64_t(in.u8());
        attr_array(g, attr, v);
      }
      break;
    case 7:
      if (g >= 0) attr_u64(g, attr, in.u64());
      break;
    case 8:
      if (g >= 0) {  // a dataset of any shape (rank 0-4, each extent 0-7) and any bits
        std::vector<hsize_t> dims(in.u8() % 5);
        hsize_t total = 1;
        for (auto& d : dims) total *= (d = in.u8() % 8);
        std::vector<double> v(static_cast<size_t>(total));
        for (auto& x : v) x = (in.u8() & 1) ? in.f64() : double(in.u8());
        dataset(g, ds_name, H5T_NATIVE_DOUBLE, dims, v.data());
      }
      break;
    case 9:
      if (g >= 0) {  // the right shape, one value replaced
        const hsize_t iters = 1 + in.u8() % 4, ranks = 1 + in.u8() % 4;
        std::vector<double> v(size_t(iters * ranks * kNumPhases), 5.0);
        v[in.u8() % v.size()] = in.f64();
        if (std::string(ds_name) == "phase_us")
          dataset(g, ds_name, H5T_NATIVE_DOUBLE, {iters, ranks, hsize_t(kNumPhases)}, v.data());
        else
          dataset(g, ds_name, H5T_NATIVE_DOUBLE, {iters}, v.data());
      }
      break;
    case 10:
      if (g >= 0) {  // integer or string datasets
        const hsize_t n = in.u8() % 8;
        if (in.u8() & 1) {
          std::vector<int64_t> v(size_t(n), int64_t(in.u64()));
          dataset(g, ds_name, H5T_NATIVE_INT64, {n}, v.data());
        } else {
          const hid_t t = H5Tcopy(H5T_C_S1);
          H5Tset_size(t, 4);
          std::vector<char> v(size_t(n) * 4, 'x');
          dataset(g, ds_name, t, {n}, v.data());
          H5Tclose(t);
        }
      }
      break;
    case 11:
      if (g >= 0) H5Ldelete(g, ds_name, H5P_DEFAULT);
      break;
    case 12:
      if (g >= 0 && H5Iget_type(g) == H5I_GROUP) {  // a group where a dataset belongs
        H5Ldelete(g, ds_name, H5P_DEFAULT);
        H5Gclose(H5Gcreate2(g, ds_name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
      }
      break;
    case 13: {  // a run replaced by a dataset, a soft link or an external link
      if (H5Lexists(f, "decode", H5P_DEFAULT) <= 0) break;
      H5Ldelete(f, run.c_str(), H5P_DEFAULT);
      const uint8_t k = in.u8() % 3;
      if (k == 0) {
        const double v = 1;
        dataset(f, run.c_str(), H5T_NATIVE_DOUBLE, {1}, &v);
      } else if (k == 1) {
        H5Lcreate_soft("/decode/run_0000", f, run.c_str(), H5P_DEFAULT, H5P_DEFAULT);
      } else {
        H5Lcreate_external("other.h5", "/x", f, run.c_str(), H5P_DEFAULT, H5P_DEFAULT);
      }
      break;
    }
    case 14:  // /decode removed or made a dataset
      H5Ldelete(f, "decode", H5P_DEFAULT);
      if (in.u8() & 1) {
        const double v = 1;
        dataset(f, "decode", H5T_NATIVE_DOUBLE, {1}, &v);
      }
      break;
    case 15:  // a copy of run 0 under a new name
      if (H5Lexists(f, "decode", H5P_DEFAULT) > 0 &&
          H5Lexists(f, "decode/run_0000", H5P_DEFAULT) > 0)
        H5Ocopy(f, "decode/run_0000", f, ("decode/run_1" + std::to_string(in.u8())).c_str(),
                H5P_DEFAULT, H5P_DEFAULT);
      break;
  }
  if (g >= 0) H5Oclose(g);
}

// What `model --validate` computes from the runs.
void validate(const std::vector<TraceRun>& runs, const HardwareProfile& hw) {
  for (const TraceRun& run : runs) {
    if (run.status != "ok") continue;
    ModelSpec m;
    try {
      m = load_model(run.model);
    } catch (const std::invalid_argument&) {
      continue;
    }
    const LayerKind layer = run.layer_kind == "moe" ? LayerKind::moe : LayerKind::dense;
    const std::optional<LayoutParams> layout = layout_of(run);
    const auto dtype = parse_dtype(run.dtype);
    if (!layout || !dtype) continue;
    const LayoutParams& p = *layout;
    if (!validate_layout(p, m, layer, int(run.batch)).empty()) continue;
    CostOptions co;
    co.dtype = *dtype;
    const CostModel cm(hw, co);
    for (int r = 0; r < p.n; ++r) {
      const RankShard shard = rank_shard(m, layer, p, r);
      (void)price_schedule(cm, build_schedule(m, shard, int(run.batch), run.seq_len).steps,
                           groups_leaving_domain(p, r, hw.nvlink.domain_gpus));
    }
    // The measured side: the max over ranks per iteration.
    for (int64_t i = 0; i < run.iters; ++i)
      for (int64_t r = 0; r < run.ranks; ++r)
        for (int k = 0; k < kNumPhases; ++k)
          (void)run.phase_us.at(size_t((i * run.ranks + r) * kNumPhases + k));
    (void)run.step_us.at(size_t(run.iters - 1));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const HardwareProfile hw = load_hardware("h200");
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t f = seed_trace();
  Bytes in(data, size);
  for (int k = 0; k < 32 && !in.empty(); ++k) edit(f, in);
  H5Fflush(f, H5F_SCOPE_GLOBAL);
  try {
    validate(read_decode_trace(f, "fuzz-trace.h5", "--validate"), hw);
  } catch (const UsageError&) {
  }
  H5Fclose(f);
  return 0;
}
