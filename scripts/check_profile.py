#!/usr/bin/env python3
"""Checks for scripts/gpu_profile_check.sh: what a profiler saw of helix-bench's NVTX ranges, and
the GPU telemetry of a CUDA-backend trace.

  check_profile.py nvtx NVTX_SUM.csv TRACE.h5
      `nsys stats --report nvtx_sum --format csv` of a --profile-once run against a decode trace
      of the same runs: every phase with time in the trace has an NVTX range of its name, and
      every range is a phase or `step`.
  check_profile.py ncu PHASE=NCU.csv [PHASE=NCU.csv ...]
      `ncu --csv` reports, each made with --nvtx-include "step/PHASE/": every report profiled at
      least one kernel, no two phases selected the same set of kernels, and the decode attention
      kernel (its name holds "attention") is selected under `attention` and under no other phase
      (a kernel may serve two phases: the LSE combine also merges attention's KV splits).
  check_profile.py telemetry TRACE.h5
      every run of a CUDA-backend trace has the NVML attributes (results/README.md), one value
      per rank, with clocks and power above zero.
Exit code 0 when the check holds, 1 when it does not (the reasons are printed), 2 bad input.
"""
import csv
import io
import sys

import h5py
import numpy as np

EXTRA_RANGES = {"step"}


def read_csv(path):
    with open(path, newline="", errors="replace") as f:
        text = f.read()
    # nsys and ncu may print lines before the CSV header
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.count(",") >= 2 and '"' in l), 0)
    return list(csv.DictReader(io.StringIO("\n".join(lines[start:]))))


def trace_phases(path):
    """Phases with a nonzero median time in some run of the trace."""
    seen, names = set(), []
    with h5py.File(path, "r") as f:
        for run in f["decode"].values():
            if "phase_us" not in run:
                continue
            ph = run["phase_us"]
            names = [p.decode() if isinstance(p, bytes) else str(p) for p in ph.attrs["phases"]]
            med = np.median(ph[()].max(axis=1), axis=0)
            seen |= {n for n, v in zip(names, med) if v > 0}
    return seen, set(names)


def check_nvtx(csv_path, trace):
    rows = read_csv(csv_path)
    col = next((c for c in (rows[0].keys() if rows else []) if c.strip().lower() == "range"), None)
    if col is None:
        print(f"check_profile: {csv_path}: no 'Range' column (nsys stats --report nvtx_sum)")
        return 2
    ranges = {r[col].strip().split(":")[-1] for r in rows if r[col].strip()}
    with_time, all_phases = trace_phases(trace)
    missing = sorted(with_time - ranges)
    unknown = sorted(ranges - all_phases - EXTRA_RANGES)
    print(f"NVTX ranges seen: {', '.join(sorted(ranges))}")
    print(f"phases with time in the trace: {', '.join(sorted(with_time))}")
    problems = []
    if missing:
        problems.append(f"phases without an NVTX range: {', '.join(missing)}")
    if unknown:
        problems.append(f"NVTX ranges that are no phase: {', '.join(unknown)}")
    if "step" not in ranges:
        problems.append("no 'step' range")
    for p in problems:
        print("FAIL:", p)
    return 1 if problems else 0


def kernel_names(path):
    rows = read_csv(path)
    if not rows:
        return set()
    col = next((c for c in rows[0] if c.strip() in ("Kernel Name", "Function Name", "Name")),
               None)
    if col is None:
        raise ValueError(f"{path}: no 'Kernel Name' column (ncu --csv)")
    return {r[col].split("(")[0].strip() for r in rows if r[col].strip()}


def check_ncu(pairs):
    kernels = {}
    for pair in pairs:
        phase, _, path = pair.partition("=")
        if not path:
            print(f"check_profile: expected PHASE=FILE.csv, got '{pair}'")
            return 2
        kernels[phase] = kernel_names(path)
        print(f"step/{phase}/: {len(kernels[phase])} kernel(s): "
              f"{', '.join(sorted(kernels[phase])) or '-'}")
    problems = [f"no kernel profiled under step/{p}/" for p, k in kernels.items() if not k]
    phases = list(kernels)
    for i, a in enumerate(phases):
        for b in phases[i + 1:]:
            if kernels[a] and kernels[a] == kernels[b]:
                problems.append(f"{a} and {b} selected the same kernels")
    if "attention" in kernels:
        attn = {k for k in kernels["attention"] if "attention" in k.lower()}
        if not attn:
            problems.append("no attention kernel under step/attention/")
        for p, ks in kernels.items():
            if p != "attention" and ks & attn:
                problems.append(f"attention kernel under step/{p}/: {', '.join(sorted(ks & attn))}")
    for p in problems:
        print("FAIL:", p)
    return 1 if problems else 0


def check_telemetry(trace):
    problems = []
    per_rank = ["gpu_sm_clock_mhz", "gpu_mem_clock_mhz", "gpu_power_w", "gpu_temperature_c",
                "gpu_throttle_reasons"]
    with h5py.File(trace, "r") as f:
        runs = [(n, g) for n, g in sorted(f["decode"].items()) if g.attrs.get("status") == "ok"]
        for name, g in runs:
            a = g.attrs
            ranks = g["phase_us"].shape[1]
            if a.get("gpu_telemetry") != "nvml":
                problems.append(f"{name}: gpu_telemetry = {a.get('gpu_telemetry')!r}")
                continue
            for base in per_rank:
                for when in ("before", "after"):
                    v = np.atleast_1d(a.get(f"{base}_{when}", []))
                    if len(v) != ranks:
                        problems.append(f"{name}: {base}_{when} has {len(v)} values, {ranks} ranks")
                    elif base in ("gpu_sm_clock_mhz", "gpu_power_w") and not (v > 0).all():
                        problems.append(f"{name}: {base}_{when} = {list(v)}")
            for k in ("gpu_power_violation_us", "gpu_thermal_violation_us", "gpu_throttled",
                      "gpu_throttled_ranks"):
                if k not in a:
                    problems.append(f"{name}: {k} missing")
            print(f"{name}: SM {list(a['gpu_sm_clock_mhz_before'])} -> "
                  f"{list(a['gpu_sm_clock_mhz_after'])} MHz, power {list(a['gpu_power_w_after'])} W, "
                  f"throttled={int(a.get('gpu_throttled', -1))}")
    if not runs:
        problems.append("no runs with status ok")
    for p in problems:
        print("FAIL:", p)
    return 1 if problems else 0


def main(argv):
    if len(argv) < 2 or argv[0] not in ("nvtx", "ncu", "telemetry"):
        print(__doc__)
        return 2
    try:
        if argv[0] == "nvtx" and len(argv) == 3:
            return check_nvtx(argv[1], argv[2])
        if argv[0] == "ncu":
            return check_ncu(argv[1:])
        if argv[0] == "telemetry" and len(argv) == 2:
            return check_telemetry(argv[1])
    except (OSError, ValueError, KeyError) as e:
        print(f"check_profile: {e}")
        return 2
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
