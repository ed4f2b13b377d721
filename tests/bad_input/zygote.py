"""A fork server for the Python cases of the bad-input matrix: imports h5py, numpy, scipy,
matplotlib and the helixbench package once, then runs each case in a forked child, exactly as
`python3 -m helixbench.<tool> ARGS` or `python3 scripts/<tool>.py ARGS` would (own process, own
working directory and environment, stdin closed, stdout and stderr to files, the exit code or
the signal reported), without paying the imports again.

Protocol: one JSON request per line on stdin, {"argv", "cwd", "env", "out", "err", "timeout"};
one JSON reply per line on stdout, {"rc"} (negative: killed by that signal; null: timed out)."""
import json
import os
import signal
import sys
import time

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # no helper threads before fork
os.environ.setdefault("OMP_NUM_THREADS", "1")

import runpy  # noqa: E402

import h5py  # noqa: E402,F401 - preloaded for the children
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402,F401
import numpy  # noqa: E402,F401

try:
    import scipy.stats  # noqa: F401
except ImportError:
    pass


def preload(scripts):
    # The helixbench package from the repository root, the scripts' folder first (a script run
    # takes sys.path[0] as its own folder).
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    sys.path.insert(0, scripts)
    for mod in ("helixbench.compare", "helixbench.report", "helixbench.sweep",
                "helixbench.trace"):
        try:
            __import__(mod)
        except ImportError:
            pass


def child(req):
    os.setsid()  # its own process group: a timeout kills whatever it started
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    fd_in = os.open(os.devnull, os.O_RDONLY)
    fd_out = os.open(req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fd_err = os.open(req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for fd, target in ((fd_in, 0), (fd_out, 1), (fd_err, 2)):
        os.dup2(fd, target)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    argv = req["argv"]
    code = 0
    try:
        if argv[1] == "-m":
            sys.argv = [argv[2]] + argv[3:]
            sys.modules.pop(argv[2], None)  # preloaded: executed afresh as __main__
            runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        else:
            sys.argv = argv[1:]
            sys.path[0] = os.path.dirname(os.path.abspath(argv[1]))
            runpy.run_path(argv[1], run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported like the interpreter would
        import traceback
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main():
    preload(sys.argv[1])
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(req)
        deadline = time.monotonic() + req["timeout"]
        rc = None
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                rc = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.005)
        sys.stdout.write(json.dumps({"rc": rc}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
