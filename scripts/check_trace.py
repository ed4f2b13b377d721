#!/usr/bin/env python3
"""Checks a helix-bench decode trace: it opens with h5py, follows the schema of
results/README.md, and every run was verified. Prints one line per run; exits 1 otherwise."""
import sys

import h5py
import numpy as np

from helixbench.safeio import MALFORMED, BadInput, ToolParser, check_input, guarded

RUN_ATTRS = ["model", "layout", "n_ranks", "kvp", "tpa", "tpf", "ep", "batch", "seq_len",
             "backend", "verified", "max_rel_err"]
ROOT_ATTRS = ["schema_version", "suite_version", "git_sha", "command_line", "utc_time", "hosts",
              "backend", "mpi_version", "hdf5_version"]


def check(path, allow_unverified=False):
    problems = []
    with h5py.File(path, "r") as f:
        for a in ROOT_ATTRS:
            if a not in f.attrs:
                problems.append(f"root attribute {a} missing")
        runs = f.get("decode")
        if runs is None or len(runs) == 0:
            return [f"{path}: no /decode runs"], 0
        for name in sorted(runs):
            g = runs[name]
            if not isinstance(g, h5py.Group):
                continue
            missing = [a for a in RUN_ATTRS if a not in g.attrs]
            if missing:
                problems.append(f"{name}: attributes missing: {missing}")
                continue
            if g.attrs.get("status", "ok") != "ok":
                print(f"{name}: {g.attrs['layout']} refused: {g.attrs.get('message', '')}")
                continue
            ph = g["phase_us"]
            iters, ranks, nph = ph.shape
            if ranks != g.attrs["n_ranks"] and g.attrs.get("emulated_ranks", 0) == 0:
                problems.append(f"{name}: phase_us has {ranks} ranks, n_ranks is {g.attrs['n_ranks']}")
            if len(ph.attrs["phases"]) != nph:
                problems.append(f"{name}: phases attribute does not match phase_us")
            step = g["step_us"][()]
            if step.shape != (iters,) or not np.all(np.isfinite(step)) or np.any(step <= 0):
                problems.append(f"{name}: step_us malformed")
            verified = bool(g.attrs["verified"])
            if not verified and not allow_unverified:
                problems.append(f"{name}: not verified (max rel err {g.attrs['max_rel_err']:.3g})")
            print(f"{name}: {g.attrs['layout']:<10} N={g.attrs['n_ranks']} B={g.attrs['batch']} "
                  f"S={g.attrs['seq_len']} step {np.median(step):.1f} us, "
                  f"verified={verified} (max rel err {g.attrs['max_rel_err']:.2g})")
        return problems, len(runs)


def main():
    ap = ToolParser(description=__doc__)
    ap.add_argument("trace", help="HDF5 trace written by helix-bench decode")
    ap.add_argument("--allow-unverified", action="store_true",
                    help="do not fail on runs that were not verified")
    args = ap.parse_args()
    check_input(args.trace, "TRACE")
    try:
        problems, n = check(args.trace, args.allow_unverified)
    except OSError as e:
        raise BadInput(f"cannot open {args.trace}: {e}") from None
    for p in problems:
        print(f"check_trace: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"check_trace: {args.trace}: {n} runs, schema ok, all verified")
    return 0


if __name__ == "__main__":
    sys.exit(guarded("check_trace", main, bad=MALFORMED))
