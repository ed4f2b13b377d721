#!/usr/bin/env python3
"""The performance bars of the decode kernels, checked on a helix-micro trace (GPU runs).

  micro_bars.py MICRO.h5 [--sdpa-compare CMP.json] [--profile PROFILE.json]

Bars (fractions of the read-only stream ceiling measured in the same run):
  attn_gqa             KV >= 256 MiB per launch             >= 0.90
  attn_mla             KV >= 256 MiB per launch             >= 0.80
  lse_combine          batch >= 32 (B in the shape column)   >= 0.80
  gemm                 weights >= 64 MiB                     >= 0.80
Smaller launches are not held to a bandwidth bar (launch latency dominates) and are not listed.
With --sdpa-compare (compare_sdpa.py --json output) the speedups over stock SDPA are listed with
their bars (2.5x on one-KV-head shapes at batch 1, never slower elsewhere). With --profile the
calibrated stream and GEMM figures are printed first.

Prints one table: kernel, shape, GB/s, fraction of ceiling, bar, pass/miss; exit 1 when any bar
is missed (or a row failed verification), 2 on bad input.
"""
import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # helixbench/
from helixbench.safeio import MALFORMED, BadInput, ToolParser, check_input, guarded  # noqa: E402

MIB = 1 << 20


def kernel_bar(kernel, name, shape, nbytes):
    """The fraction-of-ceiling bar of a kernel row, or None when it is not held to one."""
    if kernel in ("attn_gqa", "attn_mla"):
        # Compulsory bytes are KV plus small q/out/lse terms: KV >= 256 MiB as bytes >= 256 MiB.
        if nbytes < 256 * MIB:
            return None
        return 0.90 if kernel == "attn_gqa" else 0.80
    if kernel == "lse_combine":
        m = re.search(r"\(B=(\d+) x", shape)
        return 0.80 if m and int(m.group(1)) >= 32 else None
    if kernel == "gemm":
        m = re.search(r"/M(\d+)_K(\d+)_N(\d+)$", name)
        if m and int(m.group(2)) * int(m.group(3)) * 2 >= 64 * MIB:
            return 0.80
    return None


def short(name):
    parts = name.split("/")
    return "/".join(parts[1:]) if len(parts) > 1 else name


def evaluate(rows, sdpa_rows=()):
    """rows: dicts kernel, name, shape, bytes, gbps, fraction_of_ceiling, verified.
    Returns (table lines, number of misses)."""
    out = [f"{'kernel':<12} {'shape':<46} {'GB/s':>9} {'of ceiling':>10} {'bar':>8}  result"]
    misses = 0
    for r in rows:
        bar = kernel_bar(r["kernel"], r["name"], r["shape"], r["bytes"])
        if bar is None:
            continue
        ok = r["fraction_of_ceiling"] >= bar and r.get("verified", -1) != 0
        misses += not ok
        res = "pass" if ok else "MISS"
        if r.get("verified", -1) == 0:
            res += " (failed verification)"
        elif not ok:
            res += f" (short by {100 * (1 - r['fraction_of_ceiling'] / bar):.1f}%)"
        out.append(f"{r['kernel']:<12} {short(r['name']):<46} {r['gbps']:9.1f} "
                   f"{r['fraction_of_ceiling']:10.3f} {'>=' + format(bar, '.2f'):>8}  {res}")
    for s in sdpa_rows:
        if s.get("ours_us") is None:
            out.append(f"{'vs sdpa':<12} {s['shape']:<46} {'-':>9} {'-':>10} "
                       f"{'>=' + format(s['bar'], '.2g') + 'x':>8}  MISS (not measured)")
            misses += 1
            continue
        ok = bool(s["ok"])
        misses += not ok
        res = "pass" if ok else f"MISS (short by {100 * (1 - s['speedup'] / s['bar']):.1f}%)"
        out.append(f"{'vs sdpa':<12} {s['shape']:<46} {'':>9} {s['speedup']:9.2f}x "
                   f"{'>=' + format(s['bar'], '.2g') + 'x':>8}  {res}")
    return out, misses


def load_rows(path):
    import h5py
    with h5py.File(path, "r") as f:
        k = f["micro/kernels"]
        n = len(k["name"])
        get = {c: (k[c].asstr()[()] if c in ("name", "kernel", "shape") else k[c][()])
               for c in ("name", "kernel", "shape", "bytes", "gbps", "fraction_of_ceiling")}
        ver = k["verified"][()] if "verified" in k else [-1] * n
        ceiling = float(f["micro"].attrs["ceiling_gbps"])
    rows = [{"name": get["name"][i], "kernel": get["kernel"][i], "shape": get["shape"][i],
             "bytes": float(get["bytes"][i]), "gbps": float(get["gbps"][i]),
             "fraction_of_ceiling": float(get["fraction_of_ceiling"][i]),
             "verified": int(ver[i])} for i in range(n)]
    return rows, ceiling


def main(argv=None):
    ap = ToolParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("micro")
    ap.add_argument("--sdpa-compare")
    ap.add_argument("--profile")
    a = ap.parse_args(argv)
    try:
        for path, option in ((a.micro, "MICRO"), (a.sdpa_compare, "--sdpa-compare"),
                             (a.profile, "--profile")):
            if path:
                check_input(path, option)
        rows, ceiling = load_rows(a.micro)
    except (OSError, KeyError, ImportError, BadInput) as e:
        print(f"micro_bars: error: cannot read {a.micro}: {' '.join(str(e).split())}",
              file=sys.stderr)
        return 2
    sdpa = []
    if a.sdpa_compare:
        try:
            with open(a.sdpa_compare) as f:
                sdpa = json.load(f)["rows"]
        except (OSError, ValueError, KeyError) as e:
            print(f"micro_bars: --sdpa-compare: cannot read {a.sdpa_compare}: {e}")
            sdpa = [{"shape": "(SDPA comparison)", "ours_us": None, "bar": 2.5}]
    if a.profile:
        try:
            with open(a.profile) as f:
                p = json.load(f)
            print(f"calibrated profile: stream {p['stream_gbps']:.1f} GB/s, GEMM peak (bf16) "
                  f"{p['flops_tflops']['bf16']:.1f} TFLOP/s, all-reduce busbw "
                  f"{p['network']['bw_gbps']:.1f} GB/s")
        except (OSError, ValueError, KeyError) as e:
            print(f"micro_bars: --profile: cannot read {a.profile}: {e}")
    print(f"ceiling (read-only stream, same run): {ceiling:.1f} GB/s")
    lines, misses = evaluate(rows, sdpa)
    print("\n".join(lines))
    print(f"micro_bars: {misses} bar(s) missed" if misses else "micro_bars: every bar met")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(guarded("micro_bars", main, bad=MALFORMED))
