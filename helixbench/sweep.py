"""helix-sweep: a grid of `helix-bench decode` runs merged into one trace, resumable.

Every point of the grid (ranks x model x sequence length x batch x layout) becomes one run.
The layouts of one (ranks, model, S, B) run as one decode job step (`--layouts tp,kvp,...`),
launched through the launcher (mpirun by default) into a temporary trace. After each job the
output trace is rebuilt under a temporary name and renamed over the old one, so a sweep killed
at any moment (a scheduler's time limit, preemption, Ctrl-C) leaves a whole trace holding every
finished point. Run the same command again (or let Slurm requeue the job): points already in the
trace are skipped (each run records its point in the attribute `sweep_point`), so nothing is
measured twice and nothing is lost.

--repeat R runs every point R times, as separate jobs, all points once before any is repeated (so
the repeats also see drift over the sweep); each run records its repeat in `sweep_repeat`. The
job-to-job spread of such a trace is what helix-compare's noise band reads.

The merged trace follows results/README.md. Its root attributes are those of the first point's
job plus `sweep_command`; each run also records the job it came from (`job_command_line`,
`job_utc_time`, `job_hosts`, `job_devices`, `job_slurm_job_id`, `job_git_sha`, `job_nccl_env`),
because a resumed sweep may run on other nodes.

Only one sweep extends a given trace at a time: the sweep holds an exclusive lock on
TRACE.h5.lock while it runs (a second one exits with code 2 at once), so two sweeps never run or
merge the same point twice.

Exit codes: 0 every point done and verified; 1 some point failed (its job's exit code and the
tail of its output are printed; the other points still run unless --stop-on-error); 2 bad
input (options, --spec, a malformed trace, an --out that cannot be written, a locked --out),
with a one-line message.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time

import h5py

from . import safeio
from .safeio import ToolParser, check_output, guarded, output_lock
from .sweep_grid import (LAYOUTS, MAX_BATCH, MAX_RANKS, MAX_TOKENS, RESERVED,  # noqa: F401
                         UsageError, build_grid, parse_count, parse_tokens, point_key, split_list)
from .trace import TraceError, attrs_dict, load_decode_runs, open_trace, reader, text

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DEFAULT_LAUNCHER = "mpirun -np {np}"
JOB_ATTRS = ("command_line", "utc_time", "hosts", "devices", "slurm_job_id", "git_sha",
             "nccl_env")
# decode options that would break the sweep's bookkeeping if passed through

EXIT_OK, EXIT_FAILED, EXIT_BAD = 0, 1, 2


def done_points(path: str) -> set:
    """(sweep_point, sweep_repeat) of the runs already in the output trace (repeat 0 for runs
    written without repeats)."""
    if not os.path.exists(path):
        return set()
    with open_trace(path) as f:
        return _sweep_points(f)


@reader
def _sweep_points(f) -> set:
    load_decode_runs(f)  # a malformed trace is never extended
    g = f.get("decode")
    if not isinstance(g, h5py.Group):
        return set()
    return {(text(g[r].attrs["sweep_point"]), int(g[r].attrs.get("sweep_repeat", 0)))
            for r in g if isinstance(g[r], h5py.Group) and "sweep_point" in g[r].attrs}


def merge_job(out: str, job_trace: str, points: list, sweep_command: str,
              repeat: int = 0) -> list:
    """Adds the runs of one decode job's trace to `out` atomically (copy, append, rename). The
    job ran the layouts of `points` (same ranks, model, S, B); each run is recorded as the point
    of its layout. Returns [(point, attributes of its added runs)] in the order of `points`."""
    tmp = f"{out}.tmp.{os.getpid()}"
    by_layout = {p["layout"]: (p, []) for p in points}
    safeio.register(tmp)
    try:
        if os.path.exists(out):
            shutil.copyfile(out, tmp)
        with h5py.File(job_trace, "r") as src, h5py.File(tmp, "a") as dst:
            if "schema_version" not in dst.attrs:
                for k, v in src.attrs.items():
                    dst.attrs[k] = v
                dst.attrs["sweep_command"] = sweep_command
            sg = src.get("decode")
            if not isinstance(sg, h5py.Group):
                raise TraceError(f"{job_trace}: the decode job wrote no /decode group")
            dg = dst.require_group("decode")
            for k, v in sg.attrs.items():
                if k == "model" and "model" in dg.attrs:
                    models = text(dg.attrs["model"]).split(",")
                    if text(v) not in models:
                        dg.attrs["model"] = ",".join(models + [text(v)])
                elif k not in dg.attrs:
                    dg.attrs[k] = v
            index = len([n for n in dg if n.startswith("run_")])
            job = {k: src.attrs[k] for k in JOB_ATTRS if k in src.attrs}
            for name in sorted(sg):
                layout = text(sg[name].attrs.get("layout", ""))
                if layout not in by_layout:
                    raise TraceError(f"{job_trace}: run {name} has layout '{layout}', not one of "
                                     f"the job's {', '.join(by_layout)}")
                point, added = by_layout[layout]
                new = f"run_{index:04d}"
                sg.copy(sg[name], dg, name=new)
                for k, v in job.items():
                    dg[new].attrs[f"job_{k}"] = v
                dg[new].attrs["sweep_point"] = point_key(point)
                dg[new].attrs["sweep_repeat"] = repeat
                added.append(attrs_dict(dg[new]))
                index += 1
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        safeio.pause_before_rename(tmp)
        os.replace(tmp, out)
    finally:
        safeio.unregister(tmp)
        if os.path.exists(tmp):
            os.remove(tmp)
    return [by_layout[p["layout"]] for p in points]


def remove_stale_work(out: str):
    """Removes the work folders and half-merged files that killed sweeps of this host left
    beside `out` (their process is gone)."""
    prefixes = (f"{os.path.basename(out)}.tmp.sweep-{socket.gethostname()}-",
                f"{os.path.basename(out)}.tmp.")
    folder = os.path.dirname(os.path.abspath(out))
    for name in os.listdir(folder):
        prefix = next((p for p in prefixes if name.startswith(p) and name[len(p):].isdigit()),
                      None)
        if prefix is None:
            continue
        pid = int(name[len(prefix):])
        try:
            os.kill(pid, 0)
            continue  # still running
        except ProcessLookupError:
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
        except PermissionError:
            continue


def binary_candidates() -> list:
    """Where helix-bench is looked for when --binary is not given, in order: the build folder of
    the checkout this package runs from (an editable install or PYTHONPATH), build/bin under the
    current directory, the bin folder of this Python environment (`cmake --install build
    --prefix .venv`), then PATH."""
    cands = [os.path.join(REPO, "build", "bin", "helix-bench"),
             os.path.join(os.getcwd(), "build", "bin", "helix-bench"),
             os.path.join(sys.prefix, "bin", "helix-bench")]
    on_path = shutil.which("helix-bench")
    if on_path:
        cands.append(on_path)
    return cands


def find_binary() -> str:
    """The first executable of binary_candidates(); a build folder below the current directory
    as a relative path (shorter command lines in the trace)."""
    for n, c in enumerate(binary_candidates()):
        if os.path.isfile(c) and os.access(c, os.X_OK):
            rel = os.path.relpath(c)
            return rel if n < 2 and not rel.startswith("..") else os.path.abspath(c)
    raise UsageError("--binary: helix-bench not found in " +
                     ", ".join(dict.fromkeys(binary_candidates())) +
                     " or PATH (build it with scripts/build.sh, install it with cmake --install, "
                     "or give --binary)")


def decode_command(points: list, launcher: str, binary: str, trace: str,
                   ranks_per_node: int = 0) -> list:
    """One job step running the layouts of `points` (same ranks, model, S, B and options)."""
    point = points[0]
    nodes = -(-point["np"] // ranks_per_node) if ranks_per_node else 1
    cmd = shlex.split(launcher.replace("{np}", str(point["np"])).replace("{nodes}", str(nodes)))
    cmd += [binary, "decode", "--model", point["model"],
            "--layouts", ",".join(p["layout"] for p in points),
            "--seq", str(point["seq"]), "--batch", str(point["batch"]), "--quiet",
            "--out", trace]
    return cmd + list(point["args"])


def job_groups(points: list) -> list:
    """The grid as jobs: consecutive points that differ only in their layout, as [(index, point)]
    (1-based grid index). Layouts vary fastest in the grid, so each job holds every layout of
    one (ranks, model, S, B) and runs as one job step."""
    groups = []
    for i, p in enumerate(points, 1):
        key = (p["np"], p["model"], p["seq"], p["batch"], tuple(p["args"]))
        if groups and groups[-1][0] == key:
            groups[-1][1].append((i, p))
        else:
            groups.append((key, [(i, p)]))
    return [g for _, g in groups]


def describe(p: dict) -> str:
    extra = f" {' '.join(p['args'])}" if p["args"] else ""
    return f"np={p['np']} {p['model']} {p['layout']} S={p['seq']} B={p['batch']}{extra}"


def run_job(job: list, opts, out: str, work: str, sweep_command: str, total: int,
            repeat: int = 0) -> tuple:
    """Runs one job step for the points `job` ([(index, point)]) and merges its runs. A job of
    several layouts that exits without a trace (bad input for one of them, a crash) is retried
    layout by layout, so one layout cannot cost the others. Returns (failed points, stop)."""
    points = [p for _, p in job]
    trace = os.path.join(work, f"job_{job[0][0]:05d}.h5")
    cmd = decode_command(points, opts.launcher, opts.binary, trace, opts.ranks_per_node)
    tags = [f"[{i}/{total}] {describe(p)}" + (f" #{repeat + 1}" if opts.repeat > 1 else "")
            for i, p in job]
    start = time.monotonic()
    timeout = opts.point_timeout * len(job) if opts.point_timeout else None
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        for tag in tags:
            print(f"{tag}: FAILED (killed after --point-timeout {opts.point_timeout:g} s per "
                  f"point): {shlex.join(cmd)}", flush=True)
        return len(job), opts.stop_on_error
    secs = time.monotonic() - start
    if opts.verbose:
        sys.stdout.write(proc.stdout)
    if not os.path.exists(trace):
        if len(job) > 1:
            print(f"[{job[0][0]}-{job[-1][0]}/{total}]: the job of {len(job)} layouts exited with "
                  f"code {proc.returncode} and no trace; running them one by one", flush=True)
            failed = 0
            for one in job:
                f, stop = run_job([one], opts, out, work, sweep_command, total)
                failed += f
                if stop:
                    return failed, True
            return failed, False
        tail = "\n    ".join(proc.stdout.strip().splitlines()[-5:])
        print(f"{tags[0]}: FAILED (exit code {proc.returncode}, {secs:.1f} s, no trace): "
              f"{shlex.join(cmd)}\n    {tail}", flush=True)
        return 1, opts.stop_on_error
    merged = merge_job(out, trace, points, sweep_command, repeat)
    os.remove(trace)
    failed = 0
    for tag, (_, added) in zip(tags, merged):
        parts = []
        bad = not added
        for a in added:
            if a.get("status", "ok") != "ok":
                parts.append(f"refused ({a.get('message', '')})")
            else:
                v = ("verified" if a.get("verified") else
                     "NOT VERIFIED" if a.get("verify_ran") else "not checked")
                bad = bad or (a.get("verify_ran") and not a.get("verified"))
                parts.append(f"step {a.get('step_us_median', float('nan')):.1f} us, {v}")
        status = "ok" if proc.returncode == 0 else f"exit code {proc.returncode}"
        failed += int(bool(bad))
        print(f"{tag}: {'; '.join(parts) or 'no runs'} [{status}, {secs:.1f} s for the job]",
              flush=True)
    if proc.returncode != 0 and failed == 0:
        failed = 1  # the job failed although its runs look fine: count it once
    return failed, bool(failed) and opts.stop_on_error


def run_sweep(opts) -> int:
    points = build_grid(opts.spec)
    out = opts.out
    check_output(out, "--out", [("--spec", opts.spec_path or ""), ("--binary", opts.binary)])
    with output_lock(out, "--out", "helix-sweep"):
        return _run_locked(opts, points, out)


def _run_locked(opts, points, out) -> int:
    done = done_points(out)  # raises TraceError for a file that is not a trace
    # Every point once before any is repeated.
    runs = [(p, r) for r in range(opts.repeat) for p in points]
    todo = [(p, r) for p, r in runs if (point_key(p), r) not in done]
    jobs = [[(i, p) for i, p in g if (point_key(p), r) not in done]
            for r in range(opts.repeat) for g in job_groups(points)]
    jobs = [j for j in jobs if j]
    rep_txt = f" x {opts.repeat} repeats" if opts.repeat > 1 else ""
    print(f"helix-sweep: {len(points)} points{rep_txt}, {len(runs) - len(todo)} already in {out}, "
          f"{len(todo)} to run in {len(jobs)} job steps", flush=True)
    if opts.binary is None:
        opts.binary = find_binary() if todo else "helix-bench"
    if opts.dry_run:
        for j in jobs:
            print(shlex.join(decode_command([p for _, p in j], opts.launcher, opts.binary,
                                            "POINT.h5", opts.ranks_per_node)))
        return EXIT_OK
    if todo and not (os.path.isfile(opts.binary) and os.access(opts.binary, os.X_OK)):
        raise UsageError(f"--binary: {opts.binary} is not an executable (build it with "
                         "scripts/build.sh)")
    failures = 0
    sweep_command = shlex.join(["helix-sweep"] + opts.argv)
    remove_stale_work(out)
    work = f"{out}.tmp.sweep-{socket.gethostname()}-{os.getpid()}"
    os.makedirs(work, exist_ok=True)
    safeio.register(work, is_file=False)
    try:
        stop = False
        for repeat in range(opts.repeat):
            for group in job_groups(points):
                for i, p in group:
                    if (point_key(p), repeat) in done:
                        print(f"[{i}/{len(points)}] {describe(p)}: skipped (already in the "
                              "trace)", flush=True)
                job = [(i, p) for i, p in group if (point_key(p), repeat) not in done]
                if not job:
                    continue
                failed, stop = run_job(job, opts, out, work, sweep_command, len(points), repeat)
                failures += failed
                if stop:
                    break
            if stop:
                break
    finally:
        safeio.unregister(work)
        shutil.rmtree(work, ignore_errors=True)
    total = len(done_points(out)) if os.path.exists(out) else 0
    runs_txt = "points" if opts.repeat == 1 else "point runs"
    print(f"helix-sweep: {out}: {total} of {len(runs)} {runs_txt} done, {failures} failed",
          flush=True)
    return EXIT_FAILED if failures else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    ap = ToolParser(
        prog="helix-sweep", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Decode options after '--' are passed to every point (e.g. -- --iters 20 --backend "
            "cuda --kvp 4 --tpa 2).\n\n"
            "Examples:\n"
            "  helix-sweep --np 4 --models tiny-gqa --seq 1K,4K --batch 1,8 --out sweep.h5 \\\n"
            "      -- --backend cpu --iters 5\n"
            "  helix-sweep --spec sweep.json --out sweep.h5      # same keys as the options\n"
            "  helix-sweep --launcher 'srun --mpi=pmix -n {np}' --np 8,16 --models llama-3.1-70b "
            "\\\n      --seq 64K,256K --batch 1,8 --out sweep.h5 -- --backend cuda\n"
            "\nSpec file (JSON): {\"np\": [4], \"models\": [\"tiny-gqa\"], \"layouts\": [\"tp\", "
            "\"helix\"],\n  \"seq\": [\"1K\"], \"batch\": [1, 8], \"args\": [\"--iters\", \"5\"]}"))
    ap.add_argument("--np", help="comma-separated MPI rank counts (default 4)")
    ap.add_argument("--models", help="comma-separated models (names or model .json paths)")
    ap.add_argument("--layouts", help=f"comma-separated layouts (default: {','.join(LAYOUTS)})")
    ap.add_argument("--seq", help="comma-separated KV lengths in tokens (K = 1024, M = 1048576)")
    ap.add_argument("--batch", help="comma-separated batch sizes in requests")
    ap.add_argument("--spec", metavar="FILE.json",
                    help="grid as JSON with keys np, models, layouts, seq, batch, args; options "
                         "given on the command line override it")
    ap.add_argument("--out", required=True, metavar="TRACE.h5",
                    help="merged trace, created or extended (points already in it are skipped)")
    ap.add_argument("--launcher", default=DEFAULT_LAUNCHER,
                    help="launch command; {np} is replaced by the rank count and {nodes} by "
                         "the node count (see --ranks-per-node) (default: "
                         f"'{DEFAULT_LAUNCHER}'; e.g. 'srun --mpi=pmix -n {{np}}' or "
                         "'scripts/launch/mpirun.sh -np {np}')")
    ap.add_argument("--ranks-per-node", type=int, default=0,
                    help="ranks (GPUs) per node; the launcher's {nodes} becomes ceil(np / this), "
                         "e.g. 'srun --mpi=pmix -N {nodes} -n {np}' (default 0: {nodes} = 1)")
    ap.add_argument("--binary", default=None,
                    help="helix-bench executable (default: build/bin/helix-bench of the "
                         "checkout holding this package, else build/bin/helix-bench under the "
                         "current directory, else the bin folder of this Python environment, "
                         "else helix-bench on PATH)")
    ap.add_argument("--point-timeout", type=float, default=0,
                    help="seconds one point may run before it is killed and counted as failed; "
                         "a job step of several layouts gets this times their number (default 0: "
                         "no limit)")
    ap.add_argument("--stop-on-error", action="store_true",
                    help="stop at the first failed point (default: go on with the others)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run every point this many times as separate jobs (for the job-to-job "
                         "noise band of helix-compare; default 1)")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the commands of the points still to run, run nothing")
    ap.add_argument("--verbose", action="store_true", help="print each job's output")
    ap.add_argument("decode_args", nargs=argparse.REMAINDER,
                    help="'--' then decode options passed to every point")
    return ap


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    opts = ap.parse_args(argv)
    opts.argv = argv
    opts.spec_path = opts.spec

    def work():
        spec = {"np": "4", "models": "", "layouts": ",".join(LAYOUTS), "seq": "", "batch": "",
                "args": []}
        if opts.spec:
            safeio.check_input(opts.spec, "--spec")
            try:
                with open(opts.spec) as f:
                    loaded = json.load(f)
            except (OSError, ValueError) as e:
                raise UsageError(f"--spec: cannot read {opts.spec}: {' '.join(str(e).split())}")
            if not isinstance(loaded, dict):
                raise UsageError(f"--spec: {opts.spec} must hold a JSON object")
            unknown = set(loaded) - set(spec)
            if unknown:
                raise UsageError(f"--spec: unknown keys {sorted(unknown)} (known: "
                                 f"{', '.join(spec)})")
            spec.update(loaded)
        for k in ("np", "models", "layouts", "seq", "batch"):
            if getattr(opts, k) is not None:
                spec[k] = getattr(opts, k)
        extra = opts.decode_args
        if extra and extra[0] == "--":
            extra = extra[1:]
        if extra:
            if not isinstance(spec.get("args", []), list):
                raise UsageError("--spec: 'args' must be a list of strings")
            spec["args"] = list(spec.get("args", [])) + extra
        for k in ("models", "seq", "batch"):
            if not split_list(spec[k], k):
                raise UsageError(f"--{k}: required (on the command line or in --spec)")
        if not 1 <= opts.repeat <= 1000:
            raise UsageError("--repeat: must be 1 to 1000")
        if not 0 <= opts.ranks_per_node <= MAX_RANKS:
            raise UsageError(f"--ranks-per-node: must be 0 to {MAX_RANKS}")
        if not (math.isfinite(opts.point_timeout) and opts.point_timeout >= 0):
            raise UsageError("--point-timeout: must be a finite number of seconds >= 0")
        if "{np}" not in opts.launcher:
            raise UsageError("--launcher: must contain {np}, replaced by the rank count")
        opts.spec = spec
        return run_sweep(opts)

    return guarded("helix-sweep", work)


if __name__ == "__main__":
    sys.exit(main())
