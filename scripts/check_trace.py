#!/usr/bin/env python3
"""Checks a helix-bench decode trace: it opens with h5py, follows the schema of
results/README.md, and every run was verified; with --roofline, every run also holds its roofline
and the roofline's arithmetic holds (roofline_us = max(bytes / stream_gbps, FLOPs / gemm_tflops)
per compute phase, the fractions against the medians of phase_us, the step as their sum). Prints
one line per run; exits 1 otherwise."""
import argparse
import sys

import h5py
import numpy as np

RUN_ATTRS = ["model", "layout", "n_ranks", "kvp", "tpa", "tpf", "ep", "batch", "seq_len",
             "backend", "verified", "max_rel_err"]
ROOT_ATTRS = ["schema_version", "suite_version", "git_sha", "command_line", "utc_time", "hosts",
              "backend", "mpi_version", "hdf5_version"]


def close(a, b, rel=1e-9):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


def check_roofline(name, g, ceil):
    """Problems with one run's roofline (bench/decode/roofline.hpp), recomputed from its work,
    the job's ceilings and its phase times."""
    need = ["roofline_bytes", "roofline_flops", "roofline_us", "roofline_fraction",
            "compute_us_median", "roofline_step_us", "roofline_step_fraction"]
    missing = [d for d in need if d not in g]
    if missing:
        return [f"{name}: roofline datasets missing: {missing}"]
    stream, gemm = ceil
    ph = g["phase_us"]
    comm = np.asarray(ph.attrs["phase_is_comm"], dtype=bool)
    times = ph[()]  # [iters, ranks, phases]
    nb, nf = g["roofline_bytes"][()], g["roofline_flops"][()]
    roof, frac = g["roofline_us"][()], g["roofline_fraction"][()]
    problems = []
    if nb.shape != times.shape[1:]:
        return [f"{name}: roofline_bytes {nb.shape} does not match phase_us {times.shape}"]
    for k in range(nb.shape[0]):
        step = 0.0
        for p in range(nb.shape[1]):
            if comm[p]:
                if nb[k, p] != 0 or nf[k, p] != 0 or not np.isnan(roof[k, p]):
                    problems.append(f"{name}: rank {k} communication phase {p} has a roofline")
                continue
            if nb[k, p] < 0 or nf[k, p] < 0:
                problems.append(f"{name}: rank {k} phase {p}: negative work")
            want = max(nb[k, p] / (stream * 1e3) if stream > 0 else 0.0,
                       nf[k, p] / (gemm * 1e6) if gemm > 0 else 0.0)
            if not close(roof[k, p], want):
                problems.append(f"{name}: rank {k} phase {p}: roofline_us {roof[k, p]} != {want}")
            meas = float(np.median(times[:, k, p]))
            if meas > 0 and not close(frac[k, p], roof[k, p] / meas, 1e-6):
                problems.append(f"{name}: rank {k} phase {p}: fraction {frac[k, p]} != "
                                f"{roof[k, p] / meas}")
            step += roof[k, p]
        if not close(g["roofline_step_us"][k], step, 1e-9):
            problems.append(f"{name}: rank {k}: roofline_step_us is not the sum of its phases")
        compute = float(np.median(times[:, k, ~comm].sum(axis=1)))
        if not close(g["compute_us_median"][k], compute, 1e-6):
            problems.append(f"{name}: rank {k}: compute_us_median {g['compute_us_median'][k]} "
                            f"!= {compute}")
    if nb[0, ~comm].sum() <= 0:
        problems.append(f"{name}: rank 0 moves no bytes")
    for a in ["roofline_step_us_rank0", "compute_us_rank0_median", "roofline_fraction_rank0",
              "roofline_limiter_rank0"]:
        if a not in g.attrs:
            problems.append(f"{name}: attribute {a} missing")
    if g.attrs.get("layer_kind") == "moe":
        touched = g["moe_touched_experts"][()]
        assign = g["moe_assignments"][()]
        if touched.shape != (nb.shape[0],) or np.any(touched > assign):
            problems.append(f"{name}: moe_touched_experts / moe_assignments malformed")
    return problems


def check(path, allow_unverified=False, roofline=False):
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
            if roofline:
                ceil = (float(runs.attrs.get("stream_gbps", 0)),
                        float(runs.attrs.get("gemm_tflops", 0)))
                if ceil[0] <= 0 and ceil[1] <= 0:
                    problems.append("/decode: no ceiling measured (stream_gbps, gemm_tflops)")
                else:
                    problems += check_roofline(name, g, ceil)
            verified = bool(g.attrs["verified"])
            if not verified and not allow_unverified:
                problems.append(f"{name}: not verified (max rel err {g.attrs['max_rel_err']:.3g})")
            print(f"{name}: {g.attrs['layout']:<10} N={g.attrs['n_ranks']} B={g.attrs['batch']} "
                  f"S={g.attrs['seq_len']} step {np.median(step):.1f} us, "
                  f"verified={verified} (max rel err {g.attrs['max_rel_err']:.2g})")
        return problems, len(runs)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("trace", help="HDF5 trace written by helix-bench decode")
    ap.add_argument("--allow-unverified", action="store_true",
                    help="do not fail on runs that were not verified")
    ap.add_argument("--roofline", action="store_true",
                    help="require every run's roofline and check its arithmetic")
    args = ap.parse_args()
    try:
        problems, n = check(args.trace, args.allow_unverified, args.roofline)
    except OSError as e:
        print(f"check_trace: cannot open {args.trace}: {e}", file=sys.stderr)
        return 1
    for p in problems:
        print(f"check_trace: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"check_trace: {args.trace}: {n} runs, schema ok, all verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
