"""What every helixbench tool shares about input it cannot trust and output it must not spoil.

- The output-path policy of helix-bench: an output is written only when it is absent or an
  existing regular file (never a directory, device, FIFO or socket), when it is none of the
  command's inputs, and when its directory accepts a new file; checked before any work.
- Files written under "<path>.tmp.<pid>" and renamed when complete; SIGTERM, SIGHUP, SIGINT,
  SIGQUIT and SIGXFSZ remove an unfinished temporary file (also between close and rename).
- An exclusive lock beside an output that several processes could extend (helix-sweep).
- One line on stderr and exit code 2 for bad input of any kind: command-line errors, malformed
  traces or JSON, unwritable outputs (and for an unexpected error, so that a gate never passes on
  a crash).
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import os
import shutil
import signal
import stat
import sys
import time
import warnings

EXIT_BAD = 2


class BadInput(Exception):
    """Bad input (an option, a file to read, a path to write); the tools exit with code 2."""


# ----------------------------------------------------------------------------- inputs
def check_input(path: str, option: str) -> str:
    """Raises BadInput unless `path` is an existing regular file (a FIFO or device would block or
    never end; a directory is not a file). Returns the path."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise BadInput(f"{option}: '{path}': {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadInput(f"{option}: '{path}' is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(f"{option}: '{path}' is not a regular file")
    return path


# ----------------------------------------------------------------------------- output policy
def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_dev == b.st_dev and a.st_ino == b.st_ino


def check_output(path: str, option: str, inputs=()) -> None:
    """Raises BadInput unless `path` may be written as an output file. `inputs`: (option, path)
    pairs of the files the command reads (paths that do not exist are ignored)."""
    name = f"{option}: '{path}'"
    if not path:
        raise BadInput(f"{option}: give a file name")
    if path.endswith(os.sep):
        raise BadInput(f"{name} names a directory; give a file name")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise BadInput(f"{name} cannot be used: {e.strerror}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise BadInput(f"{name} is a directory; give a file name")
        if not stat.S_ISREG(st.st_mode):
            raise BadInput(f"{name} is not a regular file (a device, FIFO or socket is never "
                           "replaced)")
        for in_option, in_path in inputs:
            try:
                if in_path and _same_file(st, os.stat(in_path)):
                    raise BadInput(f"{name} is the {in_option} input of this command; give "
                                   "another file name (an input is never replaced)")
            except OSError:
                continue
    _check_directory_accepts(os.path.dirname(path) or ".", name, tmp_name(path))


def _check_directory_accepts(folder: str, name: str, probe: str) -> None:
    if not os.path.isdir(folder):
        what = "does not exist" if not os.path.exists(folder) else "is not a directory"
        raise BadInput(f"{name}: directory '{folder}' {what}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise BadInput(f"{name}: the temporary file '{probe}' exists (another run writing the "
                       "same file?)") from None
    except OSError as e:
        raise BadInput(f"{name}: cannot create files in '{folder}' ({e.strerror})") from None
    os.close(fd)
    os.remove(probe)


def check_output_dir(path: str, option: str, inputs=()) -> None:
    """Raises BadInput unless `path` is an existing directory or can be created (its nearest
    existing ancestor is a writable directory), and is none of `inputs`."""
    name = f"{option}: '{path}'"
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise BadInput(f"{name} exists and is not a directory")
        probe = os.path.join(path, f".probe.tmp.{os.getpid()}")
        _check_directory_accepts(path, name, probe)
        return
    for in_option, in_path in inputs:
        if in_path and os.path.abspath(in_path) == os.path.abspath(path):
            raise BadInput(f"{name} is the {in_option} input of this command")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise BadInput(f"{name}: '{parent}' is not a directory")
    _check_directory_accepts(parent, name, os.path.join(parent, f".probe.tmp.{os.getpid()}"))


def tmp_name(path: str) -> str:
    return f"{path}.tmp.{os.getpid()}"


# ----------------------------------------------------------------------------- cleanup on signals
_PENDING: dict = {}  # path -> True for a file, False for a directory tree
_SIGNALS = [s for s in ("SIGTERM", "SIGHUP", "SIGINT", "SIGQUIT", "SIGXFSZ") if hasattr(signal, s)]
_INSTALLED = False


def _remove_pending():
    for path, is_file in list(_PENDING.items()):
        try:
            if is_file:
                os.remove(path)
            else:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass
    _PENDING.clear()


def _on_signal(signum, frame):  # noqa: ARG001 - the signal module's signature
    _remove_pending()
    if signum == getattr(signal, "SIGXFSZ", None):
        os.write(2, b"helixbench: file size limit reached (SIGXFSZ); unfinished output removed\n")
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_signal_cleanup():
    """Terminating signals remove the registered temporary files first, then end the process as
    the signal would have (a disposition already set to 'ignore', e.g. by nohup, is kept)."""
    global _INSTALLED
    if _INSTALLED:
        return
    _INSTALLED = True
    for name in _SIGNALS:
        sig = getattr(signal, name)
        try:
            if signal.getsignal(sig) == signal.SIG_IGN:
                continue
            signal.signal(sig, _on_signal)
        except (ValueError, OSError):  # not the main thread
            pass


def register(path: str, is_file: bool = True):
    install_signal_cleanup()
    _PENDING[path] = is_file


def unregister(path: str):
    _PENDING.pop(path, None)


def pause_before_rename(tmp: str):
    """Test hook (as helix-bench's): HELIX_PAUSE_BEFORE_RENAME_MS=N holds a finished temporary
    file N ms before its rename, announced on stderr."""
    try:
        ms = int(os.environ.get("HELIX_PAUSE_BEFORE_RENAME_MS", "0") or 0)
    except ValueError:
        ms = 0
    if ms > 0:
        print(f"helixbench: pausing {ms} ms before renaming {tmp}", file=sys.stderr, flush=True)
        time.sleep(ms / 1000.0)


@contextlib.contextmanager
def atomic_output(path: str):
    """Yields the temporary name to write; renames it to `path` when the block completes, removes
    it when the block raises or a terminating signal arrives."""
    tmp = tmp_name(path)
    register(tmp)
    try:
        yield tmp
        pause_before_rename(tmp)
        os.replace(tmp, path)
    finally:
        unregister(tmp)
        if os.path.lexists(tmp):
            os.remove(tmp)


def write_text(path: str, text: str):
    with atomic_output(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


@contextlib.contextmanager
def output_lock(path: str, option: str, holder: str):
    """An exclusive lock on "<path>.lock" for the duration of the block; BadInput when another
    process holds it. The lock file is removed when the block ends (a process killed with SIGKILL
    leaves it, unlocked: the next run takes it over)."""
    lock = f"{path}.lock"
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise BadInput(f"{option}: cannot create the lock file '{lock}' ({e.strerror})") \
                from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            other = ""
            try:
                other = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            except OSError:
                pass
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise BadInput(f"{option}: '{path}' is being written by another {holder}"
                               f"{f' ({other})' if other else ''}; lock file '{lock}'") from None
            raise BadInput(f"{option}: cannot lock '{lock}' ({e.strerror})") from None
        # The previous holder may have removed the file between our open and our lock: retry
        # on a file that is still the one the path names.
        try:
            same = _same_file(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} pid {os.getpid()}\n".encode(), 0)
        register(lock)
        yield
    finally:
        unregister(lock)
        with contextlib.suppress(OSError):
            os.remove(lock)
        os.close(fd)


# ----------------------------------------------------------------------------- command line
class ToolParser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2)."""

    def error(self, message):
        if message.startswith("argument "):  # "argument --alpha: ..." -> "--alpha: ..."
            message = message[len("argument "):]
        self.exit(EXIT_BAD, f"{self.prog}: error: {one_line(message)} (see --help)\n")


def one_line(text) -> str:
    return " ".join(str(text).split())


# What reading a damaged file raises in h5py, numpy and the standard library: for a script that
# does nothing but read its input, one of these is bad input (exit 2).
MALFORMED = (BadInput, OSError, KeyError, ValueError, TypeError, IndexError, AttributeError,
             UnicodeError, OverflowError, RuntimeError)


def guarded(prog: str, work, bad=(BadInput,)) -> int:
    """Runs work() and returns its exit code; bad input of the kinds in `bad` (and any unexpected
    error, so that nothing passes on a crash) prints one line and returns 2.

    When stdout and stderr are real files (a command line, not a test capturing them), the work
    runs in a forked child: the HDF5 library crashes on some damaged files (a segmentation
    fault no Python code can catch), and such a crash must also end as one line and exit code 2.
    Terminating signals reach the child (which removes its unfinished files) and end the tool
    as they would have."""
    install_signal_cleanup()
    if os.environ.get("HELIXBENCH_NO_ISOLATION") or not _real_files():
        return _guarded(prog, work, bad)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = EXIT_BAD
        try:
            code = _guarded(prog, work, bad)
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code if isinstance(code, int) else EXIT_BAD)

    def forward(signum, frame):  # noqa: ARG001
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    forwarded = [s for s in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT") if hasattr(signal, s)]
    previous = {}
    for name in forwarded:
        sig = getattr(signal, name)
        previous[sig] = signal.getsignal(sig)
        if previous[sig] != signal.SIG_IGN:
            signal.signal(sig, forward)
    _, status = os.waitpid(pid, 0)
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    sig = os.WTERMSIG(status)
    if sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT):
        print(f"{prog}: error: a library crashed ({signal.Signals(sig).name}) reading the input: "
              "the file is damaged", file=sys.stderr)
        return EXIT_BAD
    signal.signal(sig, signal.SIG_DFL)  # ended by a signal: end the same way
    os.kill(os.getpid(), sig)
    return 128 + sig


def _real_files() -> bool:
    try:
        sys.stdout.fileno()
        sys.stderr.fileno()
        return True
    except (AttributeError, OSError, ValueError):
        return False


def _guarded(prog: str, work, bad) -> int:
    # numpy's RuntimeWarnings on junk values (the median of nothing, a NaN) are not messages
    # for the user: what matters is reported by the tool itself.
    warnings.simplefilter("ignore", RuntimeWarning)
    try:
        return work()
    except bad as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return EXIT_BAD
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - reported in one line, never a traceback
        print(f"{prog}: error: unexpected {type(e).__name__}: {one_line(e)}", file=sys.stderr)
        return EXIT_BAD
