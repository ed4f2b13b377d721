#!/usr/bin/env python3
"""The kill test: every command that writes a file is interrupted at random points, and after
each interruption nothing but complete files may remain.

For every scenario (decode under mpirun and alone, model, validate, disagg, calibrate,
kv-transfer, helix-micro with both its outputs, helix-compare --json, helix-report, helix-sweep)
one uninterrupted run gives the time the command takes; then trials interrupt it:

  random       SIGTERM, SIGINT or SIGHUP at a random moment of the run, sent to the command, to
               mpirun, or to rank 0 (seeded: --seed);
  rename       the same signals between closing the temporary file and renaming it (the
               commands' HELIX_PAUSE_BEFORE_RENAME_MS hook holds the finished temporary file and
               names it, and so the process, on stderr);
  size limit   RLIMIT_FSIZE below the output's size: the write raises SIGXFSZ (commands run
               without mpirun only: the limit is inherited by mpirun and the MPI library, whose
               own session and shared-memory files exceed it, so the launcher can fail or wait
               for a rank before the command's own write is reached).

Half of the trials start with a complete output from an earlier run in place. After every trial
(the whole process group gone): no temporary file or folder (*.tmp.*) and no lock file is left,
and the output is either absent (when it was), the earlier file byte for byte, or a complete new
file (an HDF5 trace with its groups, a JSON document, a report with its summary).

  kill_test.py --bin build/bin [--scripts scripts] [--seed N] [--trials N] [--jobs 2]

Exit code 0 when every trial holds, 1 otherwise.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PAUSE_LINE = re.compile(r"pausing \d+ ms before renaming (\S+\.tmp\.(\d+))")


class Scenario:
    def __init__(self, name, argv, output, kind, mpi=False, group=None, size_limit=4096,
                 previous_argv=None):
        self.name, self.argv, self.output, self.kind = name, argv, output, kind
        self.mpi, self.group, self.size_limit = mpi, group, size_limit
        # The run that leaves the earlier output (default: the same command). A sweep extends
        # its trace, so its earlier trace holds part of the grid.
        self.previous_argv = previous_argv or argv


def scenarios(b, py, scripts):
    mpirun = shutil.which("mpirun") or "mpirun"
    sweep = [py, "-m", "helixbench.sweep", "--np", "1", "--models", "tiny-gqa", "--seq", "32",
             "--batch", "1", "--binary", b + "/helix-bench", "--launcher", mpirun + " -np {np}",
             "--layouts"]
    sweep_tail = ["--out", "out.h5", "--", "--iters", "2", "--warmup", "0"]
    decode = [b + "/helix-bench", "decode", "--model", "tiny-gqa", "--seq", "64,256", "--batch",
              "1,2", "--iters", "3", "--warmup", "1", "--quiet"]
    return [
        Scenario("decode_np2", [mpirun, "-np", "2"] + decode + ["--out", "out.h5"], "out.h5",
                 "h5", mpi=True, group="decode"),
        Scenario("decode_np1", decode + ["--out", "out.h5"], "out.h5", "h5", group="decode"),
        Scenario("model", [b + "/helix-bench", "model", "--hardware", "b200", "--model",
                           "llama-3.1-70b", "--seq", "32K", "--gpus", "1-16", "--max-batch",
                           "256", "--dtype", "fp8", "--quiet", "--out", "out.h5"], "out.h5",
                 "h5", group="model/points"),
        Scenario("validate", [b + "/helix-bench", "model", "--validate", "{IN}/trace.h5",
                              "--hardware", os.path.join(REPO, "tests", "data",
                                                         "cpu-test-profile.json"),
                              "--out", "out.h5"], "out.h5", "h5", group="validate"),
        Scenario("disagg", [b + "/helix-bench", "disagg", "--hardware", "b200", "--model",
                            "llama-3.1-8b", "--isl", "8K", "--osl", "512", "--gpus", "8",
                            "--quiet", "--out", "out.h5"], "out.h5", "h5", group="disagg"),
        Scenario("calibrate", [b + "/helix-bench", "calibrate", "--quick", "--stream-bytes",
                               "16M", "--out", "out.json"], "out.json", "json", size_limit=1024),
        Scenario("kv_transfer_np2", [mpirun, "-np", "2", b + "/helix-bench", "kv-transfer",
                                     "--model", "tiny-gqa", "--tokens", "4K", "--iters", "3",
                                     "--quiet", "--out", "out.h5"], "out.h5", "h5", mpi=True,
                 group="kv_transfer"),
        Scenario("micro", [b + "/helix-micro", "--quick", "--stream-bytes", "16M",
                           "--max-kv-bytes", "1M", "--benchmark_filter=stream|lse|kv_append",
                           "--out", "out.h5", "--benchmark_out=out.json",
                           "--benchmark_format=json"], ["out.h5", "out.json"], "h5+json",
                 group="micro"),
        Scenario("compare_json", [py, "-m", "helixbench.compare", "{IN}/trace.h5",
                                  "{IN}/trace.h5", "--json", "out.json"], "out.json", "json",
                 size_limit=1024),
        Scenario("report", [py, "-m", "helixbench.report", "{IN}/trace.h5", "--out", "rep"],
                 "rep", "report"),
        Scenario("sweep", sweep + ["tp,helix"] + sweep_tail, "out.h5", "h5", group="decode",
                 previous_argv=sweep + ["tp"] + sweep_tail),
    ]


def tree_state(path):
    """Hashes of a file or of every file of a folder (None when absent)."""
    if not os.path.lexists(path):
        return None
    if os.path.isdir(path):
        return {n: tree_state(os.path.join(path, n)) for n in sorted(os.listdir(path))}
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def complete(path, kind, group):
    """Why `path` is not a complete output, or None."""
    if kind == "json":
        try:
            with open(path) as f:
                json.load(f)
        except (OSError, ValueError) as e:
            return f"{path}: not a complete JSON document ({e})"
        return None
    if kind == "report":
        if not os.path.isfile(os.path.join(path, "summary.md")):
            return f"{path}: no summary.md"
        text = open(os.path.join(path, "summary.md")).read()
        if not text.startswith("# helix-bench report") or not text.endswith("\n"):
            return f"{path}/summary.md is incomplete"
        for name in os.listdir(path):
            if name.endswith(".png") and open(os.path.join(path, name), "rb").read()[-8:] != \
                    b"IEND\xaeB`\x82":
                return f"{path}/{name} is an incomplete PNG"
        return None
    import h5py
    try:
        with h5py.File(path, "r") as f:
            if "schema_version" not in f.attrs:
                return f"{path}: no schema_version"
            if group and group not in f:
                return f"{path}: no /{group}"
    except (OSError, ValueError) as e:
        return f"{path}: does not open ({e})"
    return None


def parent(pid):
    """The parent of a process (the Python tools write from a child they fork)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def leftovers(folder):
    bad = []
    for root, dirs, files in os.walk(folder):
        for n in dirs + files:
            if ".tmp." in n or n.endswith(".lock"):
                bad.append(os.path.relpath(os.path.join(root, n), folder))
    return bad


class Runner:
    def __init__(self, opts, inputs):
        self.opts, self.inputs = opts, inputs
        self.env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                        OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_mpi_yield_when_idle="1",
                        OMPI_MCA_hwloc_base_binding_policy="none",
                        OMPI_MCA_ess_singleton_isolated="1", MPLBACKEND="Agg",
                        PYTHONPATH=REPO + os.pathsep + opts.scripts)
        self.lock = threading.Lock()

    def start(self, sc, work, extra_env=None, limit=None, previous=False):
        argv = [a.replace("{IN}", self.inputs) for a in (sc.previous_argv if previous else
                                                         sc.argv)]
        # MPI's session files live outside the folder checked for leftovers.
        env = dict(self.env, TMPDIR=tempfile.mkdtemp(dir=self.opts.mpi_tmp), **(extra_env or {}))

        def preexec():
            if limit:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            for s in SIGNALS + (signal.SIGXFSZ,):
                signal.signal(s, signal.SIG_DFL)
        return subprocess.Popen(argv, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True, preexec_fn=preexec)

    def finish(self, p, timeout=120):
        """Waits for the command and its whole process group; True when it ended in time."""
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(p.pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
        os.killpg(p.pid, signal.SIGKILL)
        return False

    def target(self, p, sc, rng):
        """The process to signal: the command, or for mpirun jobs mpirun or a rank."""
        if not sc.mpi or rng.random() < 0.5:
            return p.pid, "the command"
        try:
            kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                                  text=True).stdout.split()
        except OSError:
            kids = []
        ranks = [int(k) for k in kids]
        return (ranks[0], "a rank") if ranks else (p.pid, "mpirun")

    def trial(self, sc, kind, seed, duration):
        rng = random.Random(seed)
        work = tempfile.mkdtemp(prefix=f"{sc.name}-", dir=self.opts.scratch)
        outputs = sc.output if isinstance(sc.output, list) else [sc.output]
        res = {"scenario": sc.name, "trial": kind, "seed": seed, "problems": []}
        if rng.random() < 0.5 and sc.name in self.opts.previous:
            for o, src in zip(outputs, self.opts.previous[sc.name]):
                (shutil.copytree if os.path.isdir(src) else shutil.copyfile)(
                    src, os.path.join(work, o))
        before = {o: tree_state(os.path.join(work, o)) for o in outputs}
        sig = rng.choice(SIGNALS)
        if kind == "random":
            p = self.start(sc, work)
            delay = rng.uniform(0, duration)
            time.sleep(delay)
            pid, who = self.target(p, sc, rng)
            res["action"] = f"{signal.Signals(sig).name} to {who} after {delay:.2f} s"
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                res["action"] += " (already ended)"
            p.stderr.close()
        elif kind == "rename":
            p = self.start(sc, work, {"HELIX_PAUSE_BEFORE_RENAME_MS": "3000"})
            res["action"] = "no pause seen"
            for line in p.stderr:
                m = PAUSE_LINE.search(line.decode(errors="replace"))
                if m and (sc.mpi or int(m.group(2)) == p.pid or parent(int(m.group(2))) == p.pid):
                    pid = int(m.group(2))
                    res["action"] = (f"{signal.Signals(sig).name} between close and rename of "
                                     f"{os.path.basename(m.group(1))}")
                    os.kill(pid, sig)
                    break
            p.stderr.close()
            if res["action"] == "no pause seen":
                res["problems"].append("the command never reached its rename")
        else:  # size limit
            p = self.start(sc, work, limit=sc.size_limit)
            res["action"] = f"RLIMIT_FSIZE {sc.size_limit} bytes"
            p.stderr.close()
        if not self.finish(p):
            res["problems"].append("hang: the command did not end")
        res["returncode"] = p.returncode
        left = leftovers(work)
        if left:
            res["problems"].append(f"left behind: {', '.join(left[:5])}")
            res["files_left"] = len(left)
        for o in outputs:
            path = os.path.join(work, o)
            now = tree_state(path)
            if now is None or now == before[o]:
                continue
            why = complete(path, "json" if o.endswith(".json") else sc.kind.split("+")[0],
                           sc.group)
            if why:
                res["problems"].append(f"partial output: {why}")
                res["files_partial"] = res.get("files_partial", 0) + 1
        shutil.rmtree(work, ignore_errors=True)
        return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "bin"))
    ap.add_argument("--scripts", default=os.path.join(REPO, "scripts"))
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--trials", type=int, default=3, help="random-moment trials per scenario")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("-k", dest="select", help="only the scenarios matching this regex")
    opts = ap.parse_args(argv)
    opts.bin, opts.scripts = os.path.abspath(opts.bin), os.path.abspath(opts.scripts)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="helix-kill-") as tmp:
        opts.scratch = os.path.join(tmp, "work")
        os.makedirs(opts.scratch)
        opts.mpi_tmp = os.path.join(tmp, "mpi")
        os.makedirs(opts.mpi_tmp)
        inputs = os.path.join(tmp, "inputs")
        os.makedirs(inputs)
        chosen = [s for s in scenarios(opts.bin, sys.executable, opts.scripts)
                  if not opts.select or re.search(opts.select, s.name)]
        runner = Runner(opts, inputs)
        # The input trace, then one uninterrupted run of every scenario: its duration and a
        # complete output for the trials that start from one.
        maker = next(s for s in scenarios(opts.bin, sys.executable, opts.scripts)
                     if s.name == "decode_np1")
        first = runner.start(maker, inputs)
        first.stderr.close()
        runner.finish(first)
        os.rename(os.path.join(inputs, "out.h5"), os.path.join(inputs, "trace.h5"))
        opts.previous, durations, problems = {}, {}, []
        for sc in chosen:
            keep = os.path.join(tmp, "previous", sc.name)
            os.makedirs(keep)
            start = time.monotonic()
            p = runner.start(sc, keep, previous=True)
            err = p.stderr.read().decode(errors="replace")
            runner.finish(p)
            durations[sc.name] = time.monotonic() - start
            outs = sc.output if isinstance(sc.output, list) else [sc.output]
            if p.returncode != 0:
                problems.append(f"{sc.name}: the uninterrupted run failed ({p.returncode}): "
                                f"{err.strip()[-300:]}")
                continue
            opts.previous[sc.name] = [os.path.join(keep, o) for o in outs]
        trials = []
        rng = random.Random(opts.seed)
        for sc in chosen:
            if sc.name not in opts.previous:
                continue
            for _ in range(opts.trials):
                trials.append((sc, "random", rng.randrange(1 << 30), durations[sc.name]))
            trials.append((sc, "rename", rng.randrange(1 << 30), 0))
            if not sc.mpi:  # see "size limit" above
                trials.append((sc, "size limit", rng.randrange(1 << 30), 0))
        with concurrent.futures.ThreadPoolExecutor(max_workers=opts.jobs) as pool:
            results = list(pool.map(lambda t: runner.trial(*t), trials))
    for p in problems:
        print(f"kill test: {p}")
    for r in results:
        if r["problems"]:
            print(f"  FAIL {r['scenario']} {r['trial']} (seed {r['seed']}): {r['action']}: "
                  + "; ".join(r["problems"]))
    failed = [r for r in results if r["problems"]]
    hangs = sum(1 for r in results if any(p.startswith("hang") for p in r["problems"]))
    print(f"kill test: {len(chosen)} scenarios, {len(results)} interrupted runs "
          f"({sum(1 for r in results if r['trial'] == 'rename')} between close and rename, "
          f"{sum(1 for r in results if r['trial'] == 'size limit')} at the file size limit); "
          f"{len(failed)} failed: files left {sum(r.get('files_left', 0) for r in results)}, "
          f"partial outputs {sum(r.get('files_partial', 0) for r in results)}, hangs {hangs}; "
          f"{time.monotonic() - t0:.0f} s")
    return 1 if failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
