#!/usr/bin/env python3
"""A seeded mutation loop over the trace readers of the Python tools: helix-compare (as baseline
and as candidate), helix-report, helix-sweep (the trace it would extend), check_trace.py and
summarize_decode.py; and over helix-sweep's --spec files.

Each input is a seed of the committed corpus (tests/fuzz/corpus/python) with 1 to 4 random
structural edits (tests/fuzz/trace_mutations.py: attributes removed, retyped, set to any value;
datasets reshaped, filled with NaN or infinities, replaced by groups or links; runs replaced) or
with byte-level damage (truncation, flipped bits, overwritten ranges). Every tool must end with
one of its exit codes; bad input must be reported as such (exit 2, one line), never as an
unexpected exception, a traceback, a hang or a crash of the interpreter.

  fuzz_python_tools.py [--seconds 60] [--seed 1] [--corpus DIR] [--scripts DIR]

Exit code 0 when nothing unexpected happened; 1 otherwise (the inputs are kept in ./fuzz-found).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
os.environ.setdefault("MPLBACKEND", "Agg")
UNEXPECTED = re.compile(r"error: unexpected |Traceback \(most recent call last\)")


class Hang(Exception):
    pass


def on_alarm(signum, frame):  # noqa: ARG001
    raise Hang("no answer within the time limit")


def call(fn, argv, script_argv=None):
    """Runs a tool's main in this process with stdout and stderr sent to files at the descriptor
    level, as on a command line (the tools then isolate their work in a child); returns (exit
    code, stdout, stderr)."""
    saved_argv = sys.argv
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            if script_argv is not None:
                sys.argv = script_argv
            try:
                code = fn(argv) if script_argv is None else fn()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 2
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sys.argv = saved_argv
        out.seek(0)
        err.seek(0)
        return code, out.read().decode(errors="replace"), err.read().decode(errors="replace")


def mutate_json(doc, rng):
    values = [None, True, -1, 0, 1, 2 ** 63, 1.5, float("inf"), "", "x", "64", [], {}, [1, "a"],
              {"a": 1}, "999999M", 10 ** 30]
    keys = ["np", "models", "layouts", "seq", "batch", "args", "colour"]
    d = dict(doc) if isinstance(doc, dict) else {}
    for _ in range(rng.randrange(1, 4)):
        k = rng.randrange(4)
        if k == 0:
            d[rng.choice(keys)] = rng.choice(values)
        elif k == 1 and d:
            d.pop(rng.choice(sorted(d)))
        elif k == 2:
            d[rng.choice(keys)] = [rng.choice(values) for _ in range(rng.randrange(4))]
        else:
            return rng.choice([[d], 5, "text", None])
    return d


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--corpus", default=os.path.join(HERE, "corpus", "python"))
    ap.add_argument("--scripts", default=os.path.join(REPO, "scripts"))
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "bin"),
                    help="also give a share of the inputs to helix-bench model --validate from "
                         "this folder ('' to skip)")
    opts = ap.parse_args(argv)
    sys.path.insert(0, opts.scripts)
    sys.path.insert(0, REPO)  # the helixbench package
    sys.path.insert(0, HERE)
    import trace_mutations as tm
    from helixbench import compare, report, sweep
    def script(name):
        """A script's command line, as `python3 scripts/<name>.py ARGS` runs it."""
        path = os.path.join(opts.scripts, name + ".py")
        return lambda: runpy.run_path(path, run_name="__main__")
    check_trace, summarize = script("check_trace"), script("summarize_decode")
    seeds = sorted(os.path.join(opts.corpus, n) for n in os.listdir(opts.corpus)
                   if n.endswith(".h5"))
    specs = sorted(os.path.join(opts.corpus, n) for n in os.listdir(opts.corpus)
                   if n.endswith(".json"))
    baseline = next(s for s in seeds if "decode" in os.path.basename(s))
    if opts.bin and not os.access(os.path.join(opts.bin, "helix-bench"), os.X_OK):
        opts.bin = ""
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_ess_singleton_isolated="1")

    profile = os.path.join(REPO, "tests", "data", "cpu-test-profile.json")  # fp32, as the seeds

    def validate(path, work):
        """helix-bench model --validate on the input (a crash is a signal: negative code)."""
        try:
            p = subprocess.run([os.path.join(opts.bin, "helix-bench"), "model", "--validate", path,
                                "--hardware", profile], cwd=work, env=env, capture_output=True,
                               text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return None, "hang: helix-bench model --validate"
        err = p.stderr if p.returncode != 0 else ""
        if p.returncode == 2 and not err.startswith("helix-bench: error: --validate"):
            return None, err
        return p.returncode, err

    rng = random.Random(opts.seed)
    signal.signal(signal.SIGALRM, on_alarm)
    found = []
    runs = {"inputs": 0, "calls": 0}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="helix-pyfuzz-") as tmp:
        while time.monotonic() - t0 < opts.seconds:
            runs["inputs"] += 1
            work = os.path.join(tmp, str(runs["inputs"]))
            os.makedirs(work)
            if specs and rng.random() < 0.15:  # a --spec file
                spec = os.path.join(work, "spec.json")
                with open(rng.choice(specs)) as f:
                    doc = mutate_json(json.load(f), rng)
                with open(spec, "w") as f:
                    json.dump(doc, f)
                calls = [("helix-sweep --spec", sweep.main, ["--spec", spec, "--out",
                                                             os.path.join(work, "s.h5"),
                                                             "--dry-run"], (0, 2))]
                path = spec
            else:
                path = os.path.join(work, "t.h5")
                shutil.copyfile(rng.choice(seeds), path)
                if rng.random() < 0.3:
                    with open(path, "rb") as f:
                        data = tm.corrupt_bytes(f.read(), rng)
                    with open(path, "wb") as f:
                        f.write(data)
                else:
                    try:
                        tm.apply_edits(path, [tm.random_edit(rng)
                                              for _ in range(rng.randrange(1, 5))])
                    except Exception:  # noqa: BLE001 - an edit h5py refuses: keep what was done
                        pass
                out = os.path.join(work, "sweep.h5")
                shutil.copyfile(path, out)
                calls = [
                    ("helix-compare candidate", compare.main, [baseline, path], (0, 1, 2)),
                    ("helix-compare baseline", compare.main, [path, baseline], (0, 1, 2)),
                    ("helix-sweep --out", sweep.main, ["--np", "1", "--models", "tiny-gqa",
                                                       "--seq", "64", "--batch", "1",
                                                       "--binary", "/bin/true", "--out", out,
                                                       "--dry-run"], (0, 2)),
                    ("check_trace", check_trace, None, (0, 1, 2)),
                    ("summarize_decode", summarize, None, (0, 2)),
                ]
                if opts.bin and rng.random() < 0.15:  # the C++ reader of the same file
                    calls.append(("helix-bench model --validate", validate, path, (0, 2)))
                if rng.random() < 0.2:  # plotting is slower: a share of the inputs
                    calls.append(("helix-report", report.main,
                                  [path, "--out", os.path.join(work, "rep")], (0, 2)))
            # The calls run in a child: a crash of the interpreter (a signal) is a finding, not
            # the end of the loop.
            rfd, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(rfd)
                problems = []
                for name, fn, args, codes in calls:
                    signal.alarm(30)
                    try:
                        if fn is validate:
                            code, err_text = validate(path, work)
                        elif args is None:
                            code, _, err_text = call(fn, None, [name, path])
                        else:
                            code, _, err_text = call(fn, args)
                    except Hang as e:
                        code, err_text = None, f"hang: {e}"
                    except Exception as e:  # noqa: BLE001 - what the tool let escape
                        code, err_text = None, f"escaped: {type(e).__name__}: {e}"
                    finally:
                        signal.alarm(0)
                    lines = [ln for ln in err_text.splitlines() if ln.strip()]
                    if (code not in codes or UNEXPECTED.search(err_text)
                            or (code == 2 and len(lines) != 1)):
                        problems.append(f"{name}: exit {code}: {err_text.strip()[:300]}")
                os.write(wfd, json.dumps(problems).encode())
                os._exit(0)
            os.close(wfd)
            with os.fdopen(rfd) as r:
                reply = r.read()
            _, status = os.waitpid(pid, 0)
            runs["calls"] += len(calls)
            problems = (json.loads(reply) if os.WIFEXITED(status) and reply else
                        [f"the interpreter died ({signal.Signals(os.WTERMSIG(status)).name})"
                         if os.WIFSIGNALED(status) else f"child exit {status}"])
            for problem in problems:
                keep = os.path.join("fuzz-found", f"{len(found):03d}-{os.path.basename(path)}")
                os.makedirs("fuzz-found", exist_ok=True)
                shutil.copyfile(path, keep)
                found.append(f"{problem} (input {keep})")
            shutil.rmtree(work, ignore_errors=True)
    for f in found[:20]:
        print(f"fuzz_python_tools: {f}")
    print(f"fuzz_python_tools: {runs['inputs']} inputs, {runs['calls']} tool runs in "
          f"{time.monotonic() - t0:.0f} s (seed {opts.seed}); {len(found)} unexpected outcomes")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
