#include "bench/trace/output_path.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "comm/error.hpp"

namespace helix {

namespace {

// ---- temporary files removed on interruption ---------------------------------------------------
// Fixed storage: the signal handler only reads it and calls unlink (async-signal-safe).
constexpr int kSlots = 16;
constexpr size_t kMaxPath = 4096;
char g_tmp[kSlots][kMaxPath];
volatile sig_atomic_t g_used[kSlots];

constexpr int kSignals[] = {SIGTERM, SIGINT,  SIGHUP, SIGQUIT, SIGPIPE, SIGXFSZ,
                            SIGABRT, SIGSEGV, SIGBUS, SIGFPE,  SIGILL};
constexpr int kNumSignals = int(sizeof kSignals / sizeof kSignals[0]);
struct sigaction g_previous[kNumSignals];
bool g_installed = false;

void remove_registered() {
  for (int i = 0; i < kSlots; ++i)
    if (g_used[i]) {
      unlink(g_tmp[i]);
      g_used[i] = 0;
    }
}

extern "C" void on_terminating_signal(int sig) {
  const int saved = errno;
  bool any = false;
  for (int i = 0; i < kSlots; ++i) any = any || g_used[i];
  remove_registered();
  if (sig == SIGXFSZ && any) {
    const char msg[] =
        "helix-bench: file size limit reached (SIGXFSZ); the unfinished output was removed\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
  }
  for (int k = 0; k < kNumSignals; ++k)
    if (kSignals[k] == sig) sigaction(sig, &g_previous[k], nullptr);
  errno = saved;
  raise(sig);  // delivered under the previous disposition once this handler returns
}

void remove_at_exit() {
  remove_registered();
}

// Blocks the handled signals while the registry changes.
class SignalBlock {
 public:
  SignalBlock() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : kSignals) sigaddset(&set, s);
    pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~SignalBlock() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }

 private:
  sigset_t old_;
};

void install_handlers() {
  if (g_installed) return;
  g_installed = true;
  for (int k = 0; k < kNumSignals; ++k) {
    struct sigaction cur;
    sigaction(kSignals[k], nullptr, &cur);
    g_previous[k] = cur;
    if (!(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == SIG_IGN) continue;  // e.g. nohup
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_terminating_signal;
    sigemptyset(&sa.sa_mask);
    for (int s : kSignals) sigaddset(&sa.sa_mask, s);
    sigaction(kSignals[k], &sa, nullptr);
  }
  std::atexit(remove_at_exit);
  set_abort_cleanup(remove_registered);
}

int register_tmp(const std::string& tmp) {
  if (tmp.size() >= kMaxPath) return -1;
  SignalBlock block;
  install_handlers();
  for (int i = 0; i < kSlots; ++i)
    if (!g_used[i]) {
      std::memcpy(g_tmp[i], tmp.c_str(), tmp.size() + 1);
      g_used[i] = 1;
      return i;
    }
  return -1;
}

void unregister_tmp(int slot) {
  if (slot < 0) return;
  SignalBlock block;
  g_used[slot] = 0;
}

// Test hook: HELIX_PAUSE_BEFORE_RENAME_MS=N holds a finished temporary file N ms before its
// rename (announced on stderr), so the tests can deliver a signal between close and rename.
void pause_before_rename(const std::string& tmp) {
  const char* v = std::getenv("HELIX_PAUSE_BEFORE_RENAME_MS");
  if (!v || !*v) return;
  const long ms = std::strtol(v, nullptr, 10);
  if (ms <= 0) return;
  std::fprintf(stderr, "helix-bench: pausing %ld ms before renaming %s\n", ms, tmp.c_str());
  std::fflush(stderr);
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) != 0 && errno == EINTR) {
  }
}

// ---- the policy --------------------------------------------------------------------------------

std::string quoted(const std::string& s) {
  return "'" + s + "'";
}

std::string directory_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool same_file(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

void check_one(const PathArg& out, const std::vector<PathArg>& inputs) {
  const std::string& p = out.path;
  const std::string name = out.option + ": " + quoted(p);
  if (p.back() == '/') throw UsageError(name + " names a directory; give a file name");
  struct stat st;
  if (stat(p.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) throw UsageError(name + " is a directory; give a file name");
    if (!S_ISREG(st.st_mode))
      throw UsageError(name +
                       " is not a regular file (a device, FIFO or socket is never replaced)");
    for (const PathArg& in : inputs) {
      struct stat si;
      if (in.path.empty() || stat(in.path.c_str(), &si) != 0) continue;
      if (same_file(st, si))
        throw UsageError(name + " is the " + in.option + " input of this command; give another " +
                         "file name (an input is never replaced)");
    }
    struct stat self;
    if (stat("/proc/self/exe", &self) == 0 && same_file(st, self))
      throw UsageError(name + " is the running executable");
  } else if (errno != ENOENT) {
    throw UsageError(name + " cannot be used: " + std::strerror(errno));
  }
  const std::string dir = directory_of(p);
  struct stat sd;
  if (stat(dir.c_str(), &sd) != 0)
    throw UsageError(name + ": directory " + quoted(dir) + " " +
                     (errno == ENOENT ? std::string("does not exist") : std::strerror(errno)));
  if (!S_ISDIR(sd.st_mode)) throw UsageError(name + ": " + quoted(dir) + " is not a directory");
  // The directory must accept the temporary file (and later the rename).
  const std::string tmp = temporary_name(p);
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    if (err == EEXIST)
      throw UsageError(name + ": the temporary file " + quoted(tmp) +
                       " exists (another run writing the same file?)");
    throw UsageError(name + ": cannot create files in " + quoted(dir) + " (" + std::strerror(err) +
                     ")");
  }
  close(fd);
  unlink(tmp.c_str());
}

}  // namespace

std::string temporary_name(const std::string& path) {
  return path + ".tmp." + std::to_string(getpid());
}

void check_output_paths(const std::vector<PathArg>& outputs, const std::vector<PathArg>& inputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    const PathArg& out = outputs[i];
    if (out.path.empty()) continue;
    check_one(out, inputs);
    // Two outputs of one command never name the same file.
    for (size_t j = 0; j < i; ++j) {
      if (outputs[j].path.empty()) continue;
      char a[PATH_MAX], b[PATH_MAX];
      const std::string da = directory_of(out.path), db = directory_of(outputs[j].path);
      const auto base = [](const std::string& s) {
        const auto k = s.find_last_of('/');
        return k == std::string::npos ? s : s.substr(k + 1);
      };
      if (realpath(da.c_str(), a) && realpath(db.c_str(), b) && std::strcmp(a, b) == 0 &&
          base(out.path) == base(outputs[j].path))
        throw UsageError(out.option + ": " + quoted(out.path) + " is also the " +
                         outputs[j].option + " output; give two different files");
    }
  }
}

void check_on_root(const MpiComm& world, const std::function<void()>& check) {
  int ok = 1;
  std::string why;
  if (world.rank() == 0) {
    try {
      check();
    } catch (const UsageError& e) {
      ok = 0;
      why = e.what();
    }
  }
  HELIX_MPI_CHECK(MPI_Bcast(&ok, 1, MPI_INT, 0, world.raw()));
  if (ok) return;
  int n = int(why.size());
  HELIX_MPI_CHECK(MPI_Bcast(&n, 1, MPI_INT, 0, world.raw()));
  why.resize(size_t(n));
  HELIX_MPI_CHECK(MPI_Bcast(why.data(), n, MPI_CHAR, 0, world.raw()));
  throw UsageError(why);
}

void check_output_paths(const MpiComm& world, const std::vector<PathArg>& outputs,
                        const std::vector<PathArg>& inputs) {
  check_on_root(world, [&] { check_output_paths(outputs, inputs); });
}

int run_on_root(const MpiComm& world, const std::function<int()>& work) {
  int verdict[2] = {0, 0};  // exit code, 1 when the work threw UsageError
  std::string why;
  if (world.rank() == 0) {
    try {
      verdict[0] = work();
    } catch (const UsageError& e) {
      verdict[1] = 1;
      why = e.what();
    }
  }
  // The other ranks wait without spinning (the work may take minutes).
  MPI_Request req;
  HELIX_MPI_CHECK(MPI_Ibcast(verdict, 2, MPI_INT, 0, world.raw(), &req));
  for (int done = 0;;) {
    HELIX_MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    if (done) break;
    struct timespec t = {0, 2000000L};
    nanosleep(&t, nullptr);
  }
  if (verdict[1]) check_on_root(world, [&] { throw UsageError(why); });
  return verdict[0];
}

AtomicOutput::AtomicOutput(std::string path) : path_(std::move(path)) {
  tmp_ = temporary_name(path_);
  slot_ = register_tmp(tmp_);
}

AtomicOutput::~AtomicOutput() {
  if (!committed_) unlink(tmp_.c_str());
  unregister_tmp(slot_);
}

bool AtomicOutput::commit() {
  pause_before_rename(tmp_);
  // Still registered: a signal arriving before the rename removes the temporary file; one
  // arriving after it finds no file to remove.
  const bool ok = std::rename(tmp_.c_str(), path_.c_str()) == 0;
  const int err = errno;
  if (!ok) unlink(tmp_.c_str());
  committed_ = true;
  unregister_tmp(slot_);
  slot_ = -1;
  errno = err;
  return ok;
}

}  // namespace helix
