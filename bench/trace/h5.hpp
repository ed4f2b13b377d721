// Thin HDF5 (C API) helpers: a file written under a temporary name and renamed when complete,
// groups, typed attributes, n-d datasets and column tables that h5py reads directly.
//
// Why the C API and not a C++ wrapper (HighFive, h5cpp): the C library is packaged with its headers
// everywhere the project builds (libhdf5-dev on Debian and Ubuntu, hdf5-devel in EPEL), while
// neither wrapper is in Debian 12's or 13's archive (`apt-cache search highfive` and `apt-cache
// search h5cpp` find nothing in either), so using one would mean vendoring or downloading it at
// configure time, which clusters without internet access cannot do. HighFive also changed its API
// between its 2.x series (Fedora, EasyBuild: 2.6 to 2.10) and 3.x (conda-forge: 3.2), so the
// project would have to pin a copy. What the traces need of HDF5 is small and fixed: groups,
// scalar, string and vector attributes, n-d datasets of doubles and integers, column tables of
// compound type, and a file that appears only when complete. These helpers are that subset.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace helix::h5 {

// A result file: created as "<path>.tmp.<pid>", renamed to <path> by commit(). Destroying it
// uncommitted removes the temporary file, so a failed or killed run never leaves a file that looks
// complete.
class File {
 public:
  // Throws UsageError naming the path when the temporary file cannot be created.
  explicit File(const std::string& path);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  hid_t id() const { return file_; }
  const std::string& path() const { return path_; }
  void flush();
  // Closes the file and renames it to its final name.
  void commit();

 private:
  std::string path_, tmp_;
  hid_t file_ = -1;
};

// Opens (or creates, with intermediate groups) the group at `path` inside `loc`. Close with
// H5Gclose, or use Group.
hid_t open_or_create_group(hid_t loc, const std::string& path);

class Group {
 public:
  Group(hid_t loc, const std::string& path) : id_(open_or_create_group(loc, path)) {}
  ~Group() {
    if (id_ >= 0) H5Gclose(id_);
  }
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;
  hid_t id() const { return id_; }

 private:
  hid_t id_;
};

bool exists(hid_t loc, const std::string& path);

void attr(hid_t obj, const std::string& name, const std::string& value);
void attr(hid_t obj, const std::string& name, const char* value);
void attr(hid_t obj, const std::string& name, int64_t value);
void attr(hid_t obj, const std::string& name, int value);
void attr(hid_t obj, const std::string& name, double value);
void attr(hid_t obj, const std::string& name, bool value);
void attr(hid_t obj, const std::string& name, const std::vector<std::string>& values);
void attr(hid_t obj, const std::string& name, const std::vector<double>& values);
void attr(hid_t obj, const std::string& name, const std::vector<int64_t>& values);

// An n-d dataset of doubles (chunked and compressed when large); `units` goes into an attribute.
hid_t dataset(hid_t loc, const std::string& name, const std::vector<hsize_t>& dims,
              const double* data, const std::string& units);
void write(hid_t loc, const std::string& name, const std::vector<hsize_t>& dims, const double* data,
           const std::string& units);
void write(hid_t loc, const std::string& name, const std::vector<int64_t>& data,
           const std::string& units);
void write(hid_t loc, const std::string& name, const std::vector<std::string>& data);

// Reading (for validate/compare commands and tests).
std::string read_attr_string(hid_t obj, const std::string& name);
double read_attr_double(hid_t obj, const std::string& name);
int64_t read_attr_int(hid_t obj, const std::string& name);
bool has_attr(hid_t obj, const std::string& name);
std::vector<double> read_doubles(hid_t loc, const std::string& name,
                                 std::vector<hsize_t>* dims = nullptr);
std::vector<std::string> read_strings(hid_t loc, const std::string& name);
std::vector<std::string> list_children(hid_t loc, const std::string& path);

// The linked HDF5 library version, "major.minor.release".
std::string library_version();

}  // namespace helix::h5
