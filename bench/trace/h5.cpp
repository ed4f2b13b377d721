#include "bench/trace/h5.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "comm/error.hpp"

#define HELIX_H5_CHECK(call)                                                             \
  ([&]() {                                                                               \
    auto helix_h5_rc_ = (call);                                                          \
    if (helix_h5_rc_ < 0) ::helix::fatal(::helix::call_site(#call, __FILE__, __LINE__)); \
    return helix_h5_rc_;                                                                 \
  }())

namespace helix::h5 {

namespace {

struct Silence {
  Silence() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }
};
const Silence silence_hdf5_error_stack;

hid_t string_type() {
  const hid_t t = HELIX_H5_CHECK(H5Tcopy(H5T_C_S1));
  HELIX_H5_CHECK(H5Tset_size(t, H5T_VARIABLE));
  HELIX_H5_CHECK(H5Tset_cset(t, H5T_CSET_UTF8));
  return t;
}

void replace_attr(hid_t obj, const std::string& name) {
  if (H5Aexists(obj, name.c_str()) > 0) HELIX_H5_CHECK(H5Adelete(obj, name.c_str()));
}

void write_attr(hid_t obj, const std::string& name, hid_t type, const std::vector<hsize_t>& dims,
                const void* data) {
  replace_attr(obj, name);
  const hid_t space =
      dims.empty() ? HELIX_H5_CHECK(H5Screate(H5S_SCALAR))
                   : HELIX_H5_CHECK(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
  const hid_t a =
      HELIX_H5_CHECK(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT));
  HELIX_H5_CHECK(H5Awrite(a, type, data));
  H5Aclose(a);
  H5Sclose(space);
}

}  // namespace

File::File(const std::string& path) : out_(path) {
  file_ = H5Fcreate(out_.tmp().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file_ < 0)
    throw UsageError("--out: cannot create '" + path + "' (is the directory writable?)");
}

File::~File() {
  if (file_ >= 0) H5Fclose(file_);  // the AtomicOutput removes the temporary file
}

void File::flush() {
  HELIX_H5_CHECK(H5Fflush(file_, H5F_SCOPE_GLOBAL));
}

void File::commit() {
  // H5Fclose only closes the file once its last open object (a group or dataset still held by
  // the caller) is closed too; the flush writes everything now, so that the file renamed below is
  // complete even if a signal ends the process before those objects are closed.
  HELIX_H5_CHECK(H5Fflush(file_, H5F_SCOPE_GLOBAL));
  HELIX_H5_CHECK(H5Fclose(file_));
  file_ = -1;
  if (!out_.commit()) fatal("cannot rename the finished trace to '" + out_.path() + "'");
}

bool exists(hid_t loc, const std::string& path) {
  // Check every prefix: H5Lexists fails on a path whose parent is missing.
  size_t pos = 0;
  while (true) {
    pos = path.find('/', pos + 1);
    const std::string prefix = path.substr(0, pos);
    if (!prefix.empty() && prefix != "/" && H5Lexists(loc, prefix.c_str(), H5P_DEFAULT) <= 0)
      return false;
    if (pos == std::string::npos) return true;
  }
}

hid_t open_or_create_group(hid_t loc, const std::string& path) {
  if (exists(loc, path)) return HELIX_H5_CHECK(H5Gopen2(loc, path.c_str(), H5P_DEFAULT));
  const hid_t lcpl = HELIX_H5_CHECK(H5Pcreate(H5P_LINK_CREATE));
  HELIX_H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1));
  const hid_t g = HELIX_H5_CHECK(H5Gcreate2(loc, path.c_str(), lcpl, H5P_DEFAULT, H5P_DEFAULT));
  H5Pclose(lcpl);
  return g;
}

void attr(hid_t obj, const std::string& name, const std::string& value) {
  const hid_t t = string_type();
  const char* p = value.c_str();
  write_attr(obj, name, t, {}, &p);
  H5Tclose(t);
}
void attr(hid_t obj, const std::string& name, const char* value) {
  attr(obj, name, std::string(value));
}
void attr(hid_t obj, const std::string& name, int64_t value) {
  write_attr(obj, name, H5T_NATIVE_INT64, {}, &value);
}
void attr(hid_t obj, const std::string& name, int value) {
  attr(obj, name, int64_t(value));
}
void attr(hid_t obj, const std::string& name, double value) {
  write_attr(obj, name, H5T_NATIVE_DOUBLE, {}, &value);
}
void attr(hid_t obj, const std::string& name, bool value) {
  const int8_t v = value ? 1 : 0;
  write_attr(obj, name, H5T_NATIVE_INT8, {}, &v);
}
void attr(hid_t obj, const std::string& name, const std::vector<std::string>& values) {
  const hid_t t = string_type();
  std::vector<const char*> p;
  for (const auto& s : values) p.push_back(s.c_str());
  write_attr(obj, name, t, {hsize_t(p.size())}, p.data());
  H5Tclose(t);
}
void attr(hid_t obj, const std::string& name, const std::vector<double>& values) {
  write_attr(obj, name, H5T_NATIVE_DOUBLE, {hsize_t(values.size())}, values.data());
}
void attr(hid_t obj, const std::string& name, const std::vector<int64_t>& values) {
  write_attr(obj, name, H5T_NATIVE_INT64, {hsize_t(values.size())}, values.data());
}

hid_t dataset(hid_t loc, const std::string& name, const std::vector<hsize_t>& dims,
              const double* data, const std::string& units) {
  const hid_t space = HELIX_H5_CHECK(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
  hsize_t total = 1;
  for (auto d : dims) total *= d;
  const hid_t dcpl = HELIX_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE));
  if (total >= 4096 && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) {
    std::vector<hsize_t> chunk = dims;
    // Chunks of at most ~64K elements along the leading dimension.
    hsize_t inner = total / dims[0];
    chunk[0] =
        std::max<hsize_t>(1, std::min<hsize_t>(dims[0], 65536 / std::max<hsize_t>(1, inner)));
    HELIX_H5_CHECK(H5Pset_chunk(dcpl, int(chunk.size()), chunk.data()));
    HELIX_H5_CHECK(H5Pset_deflate(dcpl, 4));
  }
  const hid_t ds = HELIX_H5_CHECK(
      H5Dcreate2(loc, name.c_str(), H5T_NATIVE_DOUBLE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT));
  if (total > 0)
    HELIX_H5_CHECK(H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
  if (!units.empty()) attr(ds, "units", units);
  H5Pclose(dcpl);
  H5Sclose(space);
  return ds;
}

void write(hid_t loc, const std::string& name, const std::vector<hsize_t>& dims, const double* data,
           const std::string& units) {
  H5Dclose(dataset(loc, name, dims, data, units));
}

void write(hid_t loc, const std::string& name, const std::vector<int64_t>& data,
           const std::string& units) {
  const hsize_t n = data.size();
  const hid_t space = HELIX_H5_CHECK(H5Screate_simple(1, &n, nullptr));
  const hid_t ds = HELIX_H5_CHECK(H5Dcreate2(loc, name.c_str(), H5T_NATIVE_INT64, space,
                                             H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  if (n > 0)
    HELIX_H5_CHECK(H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()));
  if (!units.empty()) attr(ds, "units", units);
  H5Dclose(ds);
  H5Sclose(space);
}

void write(hid_t loc, const std::string& name, const std::vector<std::string>& data) {
  const hsize_t n = data.size();
  const hid_t t = string_type();
  const hid_t space = HELIX_H5_CHECK(H5Screate_simple(1, &n, nullptr));
  const hid_t ds = HELIX_H5_CHECK(
      H5Dcreate2(loc, name.c_str(), t, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  std::vector<const char*> p;
  for (const auto& s : data) p.push_back(s.c_str());
  if (n > 0) HELIX_H5_CHECK(H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.data()));
  H5Dclose(ds);
  H5Sclose(space);
  H5Tclose(t);
}

bool has_attr(hid_t obj, const std::string& name) {
  return H5Aexists(obj, name.c_str()) > 0;
}

std::string read_attr_string(hid_t obj, const std::string& name) {
  const hid_t a = HELIX_H5_CHECK(H5Aopen(obj, name.c_str(), H5P_DEFAULT));
  const hid_t ft = HELIX_H5_CHECK(H5Aget_type(a));
  std::string out;
  if (H5Tis_variable_str(ft) > 0) {
    const hid_t t = string_type();
    char* p = nullptr;
    HELIX_H5_CHECK(H5Aread(a, t, &p));
    out = p ? p : "";
    const hid_t space = H5Aget_space(a);
    H5Dvlen_reclaim(t, space, H5P_DEFAULT, &p);
    H5Sclose(space);
    H5Tclose(t);
  } else {
    const size_t n = H5Tget_size(ft);
    std::string buf(n, '\0');
    HELIX_H5_CHECK(H5Aread(a, ft, buf.data()));
    out = buf.c_str();
  }
  H5Tclose(ft);
  H5Aclose(a);
  return out;
}

double read_attr_double(hid_t obj, const std::string& name) {
  const hid_t a = HELIX_H5_CHECK(H5Aopen(obj, name.c_str(), H5P_DEFAULT));
  double v = 0;
  HELIX_H5_CHECK(H5Aread(a, H5T_NATIVE_DOUBLE, &v));
  H5Aclose(a);
  return v;
}

int64_t read_attr_int(hid_t obj, const std::string& name) {
  const hid_t a = HELIX_H5_CHECK(H5Aopen(obj, name.c_str(), H5P_DEFAULT));
  int64_t v = 0;
  HELIX_H5_CHECK(H5Aread(a, H5T_NATIVE_INT64, &v));
  H5Aclose(a);
  return v;
}

std::vector<double> read_doubles(hid_t loc, const std::string& name, std::vector<hsize_t>* dims) {
  const hid_t ds = HELIX_H5_CHECK(H5Dopen2(loc, name.c_str(), H5P_DEFAULT));
  const hid_t space = H5Dget_space(ds);
  const int nd = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> d(size_t(nd > 0 ? nd : 0));
  H5Sget_simple_extent_dims(space, d.data(), nullptr);
  hsize_t total = 1;
  for (auto x : d) total *= x;
  std::vector<double> v(total);
  if (total > 0)
    HELIX_H5_CHECK(H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()));
  if (dims) *dims = d;
  H5Sclose(space);
  H5Dclose(ds);
  return v;
}

std::vector<std::string> read_strings(hid_t loc, const std::string& name) {
  const hid_t ds = HELIX_H5_CHECK(H5Dopen2(loc, name.c_str(), H5P_DEFAULT));
  const hid_t space = H5Dget_space(ds);
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  const hid_t t = string_type();
  std::vector<char*> p(static_cast<size_t>(n), nullptr);
  if (n > 0) HELIX_H5_CHECK(H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.data()));
  std::vector<std::string> out;
  for (char* s : p) out.emplace_back(s ? s : "");
  if (n > 0) H5Dvlen_reclaim(t, space, H5P_DEFAULT, p.data());
  H5Tclose(t);
  H5Sclose(space);
  H5Dclose(ds);
  return out;
}

std::vector<std::string> list_children(hid_t loc, const std::string& path) {
  std::vector<std::string> names;
  if (!exists(loc, path)) return names;
  const hid_t g = HELIX_H5_CHECK(H5Gopen2(loc, path.c_str(), H5P_DEFAULT));
  H5G_info_t info;
  HELIX_H5_CHECK(H5Gget_info(g, &info));
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t len =
        H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    std::string s(static_cast<size_t>(len), '\0');
    H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, s.data(), size_t(len) + 1,
                       H5P_DEFAULT);
    names.push_back(s);
  }
  H5Gclose(g);
  return names;
}

std::string library_version() {
  unsigned maj = 0, min = 0, rel = 0;
  H5get_libversion(&maj, &min, &rel);
  return std::to_string(maj) + "." + std::to_string(min) + "." + std::to_string(rel);
}

}  // namespace helix::h5
