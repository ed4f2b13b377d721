#!/usr/bin/env python3
"""The bad-input matrix: every subcommand of helix-bench and helix-micro and every Python tool
given hostile input, one case per row of the table in cases.py. Each case runs in a fresh sandbox
folder (an existing output file, a directory, a FIFO, a device, a symbolic link) next to shared
fixtures (malformed traces, model and hardware files, specs), and is checked for:

  - the exit code (2 for bad input; on every rank when the case runs under mpirun, each rank's
    code recorded by a wrapper),
  - one line on stderr that names the parameter (rank 0; the other ranks print nothing),
  - no crash (a signal, a sanitizer report, a Python traceback) and no hang (a time limit),
  - no file created, removed or changed in the sandbox or the fixtures (contents hashed).

  run_matrix.py --bin build/bin [--scripts scripts] [--jobs 2] [-k REGEX] [--list] [--json F]

Exit code 0 when every case passes, 1 otherwise (the failing cases are listed), 2 bad usage.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "fuzz"))

import cases as case_table  # noqa: E402
import fixtures  # noqa: E402
from fixtures import diff, snapshot  # noqa: E402

# Lines the MPI runtime may print on a rank's stderr (not the tool's own output).
RUNTIME_NOISE = re.compile(r"^\[[^\]]*\] |^-{10,}$")
CRASH_MARKS = ("Sanitizer", "runtime error:", "Traceback (most recent call last)",
               "terminate called", "Segmentation fault", "core dumped", "std::bad_alloc")

RANK_WRAPPER = ('d=$1; shift; "$@" 2>"$d/err.${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-0}}"; '
                'echo $? >"$d/rc.${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-0}}"')


def meaningful(text: str) -> list:
    return [ln for ln in text.splitlines() if ln.strip() and not RUNTIME_NOISE.match(ln)]


class Zygote:
    """A fork server (zygote.py) that runs the Python cases without re-importing h5py, numpy,
    scipy and matplotlib for each."""

    def __init__(self, scripts, env):
        self.p = subprocess.Popen([sys.executable, os.path.join(HERE, "zygote.py"), scripts],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                  text=True)

    def run(self, argv, cwd, env, out, err, timeout):
        self.p.stdin.write(json.dumps({"argv": argv, "cwd": cwd, "env": env, "out": out,
                                       "err": err, "timeout": timeout}) + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())["rc"]

    def close(self):
        self.p.stdin.close()
        self.p.wait()


class Runner:
    def __init__(self, opts, fix):
        self.opts = opts
        self.fix = fix
        self.env = dict(os.environ)
        self.env.update({
            "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
            "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_mpi_yield_when_idle": "1",
            "OMPI_MCA_hwloc_base_binding_policy": "none", "OMPI_MCA_ess_singleton_isolated": "1",
            "OMPI_MCA_btl_vader_single_copy_mechanism": "none", "MPLBACKEND": "Agg",
            "OMPI_MCA_btl": "self,vader", "OMPI_MCA_pml": "ob1",
            "PYTHONPATH": os.pathsep.join([REPO, opts.scripts, self.env.get("PYTHONPATH", "")]),
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        self.fixtures_lock = threading.Lock()
        self.local = threading.local()
        self.zygotes = []

    def zygote(self):
        if not hasattr(self.local, "zygote"):
            self.local.zygote = Zygote(self.opts.scripts, self.env)
            self.zygotes.append(self.local.zygote)
        return self.local.zygote

    def close(self):
        for z in self.zygotes:
            z.close()

    def expand(self, arg: str, sandbox: str) -> str:
        return (arg.replace("{B}", self.opts.bin).replace("{F}", self.fix.root)
                .replace("{S}", sandbox).replace("{PY}", sys.executable)
                .replace("{SCRIPTS}", self.opts.scripts))

    def run(self, case) -> dict:
        res = {"id": case.id, "problems": [], "seconds": 0.0}
        if case.needs_root and os.geteuid() != 0:
            res["skipped"] = "needs root (a device file)"
            return res
        exe = self.expand(case.argv[0], "")
        if case.argv[0].startswith("{B}/") and not os.access(exe, os.X_OK):
            res["skipped"] = f"{os.path.basename(exe)} not built (no CUDA toolkit)"
            return res
        work = tempfile.mkdtemp(prefix="case-", dir=self.fix.scratch)
        sandbox = os.path.join(work, "sandbox")
        ranks_dir = os.path.join(work, "ranks")
        os.makedirs(ranks_dir)
        fixtures.make_sandbox(sandbox, self.fix)
        holder = case.setup(sandbox, self.fix.root) if case.setup else None
        argv = [self.expand(a, sandbox) for a in case.argv]
        if case.ranks > 1:
            argv = [self.opts.mpirun, "-np", str(case.ranks), "sh", "-c", RANK_WRAPPER, "sh",
                    ranks_dir] + argv
        env = dict(self.env, TMPDIR=os.path.join(work, "tmp"))  # MPI session folders
        os.makedirs(env["TMPDIR"])
        before = snapshot(sandbox)
        with self.fixtures_lock:
            fixtures_before = snapshot(self.fix.root)
        start = time.monotonic()
        try:
            if argv[0] == sys.executable and not self.opts.no_zygote:
                files = (os.path.join(work, "stdout"), os.path.join(work, "stderr"))
                rc = self.zygote().run(argv, sandbox, env, *files, case.timeout)
                out, err = (open(f, "rb").read() for f in files)
            else:
                p = subprocess.Popen(argv, cwd=sandbox, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
                try:
                    out, err = p.communicate(timeout=case.timeout)
                    rc = p.returncode
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    out, err = p.communicate()
                    rc = None
        finally:
            res["seconds"] = time.monotonic() - start
            if hasattr(holder, "close"):
                holder.close()
        err = err.decode("utf-8", "replace")
        if rc is None:
            res["problems"].append(f"hang: no exit within {case.timeout} s")
            res["kind"] = "hang"
        # Per-rank exit codes and stderr.
        if case.ranks > 1:
            codes, errs = {}, {}
            for r in range(case.ranks):
                try:
                    codes[r] = int(open(os.path.join(ranks_dir, f"rc.{r}")).read().strip())
                except (OSError, ValueError):
                    codes[r] = None
                try:
                    errs[r] = open(os.path.join(ranks_dir, f"err.{r}"), errors="replace").read()
                except OSError:
                    errs[r] = ""
        else:
            codes, errs = {0: rc}, {0: err}
        res["codes"] = codes
        res["stderr"] = errs.get(0, "")[-2000:]
        everything = err + "".join(errs.values())
        if rc is not None and (any(c is not None and (c < 0 or c >= 128) for c in codes.values())
                               or any(m in everything for m in CRASH_MARKS)):
            res["problems"].append("crash: " + next((m for m in CRASH_MARKS if m in everything),
                                                    f"exit codes {codes}"))
            res["kind"] = "crash"
        if rc is not None and any(c != case.code for c in codes.values()):
            res["problems"].append(f"exit code {codes}, expected {case.code} on every rank")
            res.setdefault("kind", "exit code")
        lines = meaningful(errs.get(0, ""))
        if case.on_stdout:
            out_lines = meaningful(out.decode("utf-8", "replace"))
            if rc is not None and not any(re.search(case.regex, ln) for ln in out_lines):
                res["problems"].append(f"no line of stdout matches /{case.regex}/")
                res.setdefault("kind", "message")
        elif rc is not None and not (lines and re.search(case.regex, lines[0])):
            res["problems"].append(f"stderr does not start with /{case.regex}/: "
                                   f"{lines[0] if lines else '(nothing)'}")
            res.setdefault("kind", "message")
        elif rc is not None and case.one_line and len(lines) != 1:
            res["problems"].append(f"{len(lines)} lines on stderr, expected one")
            res.setdefault("kind", "message")
        for r in range(1, case.ranks):
            if meaningful(errs.get(r, "")) and not case.other_ranks_may_print:
                res["problems"].append(f"rank {r} printed: {meaningful(errs[r])[0]}")
                res.setdefault("kind", "message")
        changes = diff(before, snapshot(sandbox))
        with self.fixtures_lock:
            fixture_changes = diff(fixtures_before, snapshot(self.fix.root))
            if fixture_changes:
                self.fix.restore()
        changes += [f"fixtures: {c}" for c in fixture_changes]
        if changes:
            res["problems"].append("files: " + "; ".join(changes[:5]))
            res.setdefault("kind", "files")
            res["files_changed"] = len(changes)
        shutil.rmtree(work, ignore_errors=True)
        return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "bin"),
                    help="folder of helix-bench and helix-micro (default build/bin)")
    ap.add_argument("--scripts", default=os.path.join(REPO, "scripts"),
                    help="folder holding the scripts (the helixbench package is imported from "
                         "the repository root)")
    ap.add_argument("--mpirun", default=os.environ.get("MPIEXEC", shutil.which("mpirun") or
                                                       "mpirun"))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("-k", dest="select", help="run only the cases whose id matches this regex")
    ap.add_argument("--sample", type=int, default=1,
                    help="run every N-th case only (a cross-section, e.g. for slow sanitized "
                         "binaries)")
    ap.add_argument("--cpp-only", action="store_true",
                    help="only the cases of helix-bench and helix-micro")
    ap.add_argument("--list", action="store_true", help="list the case ids and exit")
    ap.add_argument("--json", help="write every case's result to this file")
    ap.add_argument("--issue-cases", action="store_true",
                    help="only the cases of cases.ISSUE_CASES, with one verdict per failure of "
                    "the original report (exit 0 when every failure is fixed)")
    ap.add_argument("--verbose", action="store_true", help="print every case")
    ap.add_argument("--no-zygote", action="store_true",
                    help="start a fresh interpreter for every Python case (slower)")
    opts = ap.parse_args(argv)
    opts.bin = os.path.abspath(opts.bin)
    opts.scripts = os.path.abspath(opts.scripts)
    table = case_table.all_cases()
    ids = [c.id for c in table]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        print(f"run_matrix: duplicate case ids {sorted(dup)}", file=sys.stderr)
        return 2
    if opts.issue_cases:
        wanted = {i for ids in case_table.ISSUE_CASES.values() for i in ids}
        missing = wanted - set(ids)
        if missing:
            print(f"run_matrix: ISSUE_CASES names unknown cases {sorted(missing)}", file=sys.stderr)
            return 2
        table = [c for c in table if c.id in wanted]
    if opts.select:
        table = [c for c in table if re.search(opts.select, c.id)]
    if opts.cpp_only:
        table = [c for c in table
                 if c.argv[0] in (case_table.BENCH, case_table.MICRO, case_table.KBENCH)]
    table = table[::max(1, opts.sample)]
    if opts.list:
        for c in table:
            print(c.id)
        print(f"{len(table)} cases")
        return 0
    for exe in ("helix-bench", "helix-micro"):
        if not os.access(os.path.join(opts.bin, exe), os.X_OK):
            print(f"run_matrix: {opts.bin}/{exe} is missing (build first)", file=sys.stderr)
            return 2
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="helix-matrix-") as tmp:
        fix = fixtures.Fixtures(tmp, opts)
        print(f"bad-input matrix: {len(table)} cases, fixtures in {time.monotonic() - t0:.1f} s, "
              f"{opts.jobs} at a time", flush=True)
        runner = Runner(opts, fix)
        results = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=opts.jobs) as pool:
            for res in pool.map(runner.run, table):
                results.append(res)
                if opts.verbose or res["problems"]:
                    state = "FAIL" if res["problems"] else "ok"
                    print(f"  {state:4s} {res['id']} ({res['seconds']:.2f} s)"
                          + "".join(f"\n         {p}" for p in res["problems"]), flush=True)
        runner.close()
    ran = [r for r in results if "skipped" not in r]
    failed = [r for r in ran if r["problems"]]
    kinds = {k: sum(1 for r in failed if r.get("kind") == k)
             for k in ("crash", "hang", "exit code", "message", "files")}
    files = sum(r.get("files_changed", 0) for r in ran)
    slow = max(ran, key=lambda r: r["seconds"]) if ran else None
    print(f"bad-input matrix: {len(ran)} cases run ({len(results) - len(ran)} skipped), "
          f"{len(ran) - len(failed)} passed, {len(failed)} failed: crashes {kinds['crash']}, "
          f"hangs {kinds['hang']}, wrong exit code {kinds['exit code']}, message not naming the "
          f"parameter {kinds['message']}, files left or changed {files}; slowest case "
          f"{slow['seconds']:.2f} s ({slow['id']}); {time.monotonic() - t0:.0f} s in all"
          if slow else "bad-input matrix: nothing ran")
    if opts.issue_cases:
        by_id = {r["id"]: r for r in results}
        for n, case_ids in sorted(case_table.ISSUE_CASES.items()):
            bad = [i for i in case_ids if i in by_id and by_id[i]["problems"]]
            skipped = [i for i in case_ids if i in by_id and "skipped" in by_id[i]]
            verdict = ("FAILS" if bad else "skipped" if len(skipped) == len(case_ids)
                       else "fixed")
            print(f"issue failure {n:2d}: {verdict:7s} ({len(case_ids) - len(bad)} of "
                  f"{len(case_ids)} cases pass" + (f"; failing: {', '.join(bad)}" if bad else "")
                  + (f"; skipped: {', '.join(skipped)}" if skipped else "") + ")")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
