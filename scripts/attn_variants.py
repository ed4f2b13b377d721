#!/usr/bin/env python3
"""Table of decode-attention kernel configurations: fraction of the read-only stream ceiling of
every attention shape under every configuration, from the helix-micro traces that
scripts/gpu_attn_variants.sh writes (one trace per configuration, named <variant>.h5)."""
import json
import os
import sys

import h5py

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # helixbench/
from helixbench.safeio import (MALFORMED, ToolParser, check_input,  # noqa: E402
                               check_output, guarded, write_text)


def load(path):
    check_input(path, "TRACE")
    with h5py.File(path, "r") as f:
        g = f["micro"]
        k = g["kernels"]
        names = k["name"].asstr()[()]
        rows = {}
        for i, n in enumerate(names):
            if not n.startswith("attn_"):
                continue
            rows[n] = {
                "time_us": float(k["time_us_median"][i]),
                "gbps": float(k["gbps"][i]),
                "fraction_of_ceiling": float(k["fraction_of_ceiling"][i]),
                "verified": int(k["verified"][i]),
            }
        return float(g.attrs["ceiling_gbps"]), rows


def main(argv=None):
    ap = ToolParser(description=__doc__)
    ap.add_argument("traces", nargs="+", help="<variant>.h5 files from helix-micro")
    ap.add_argument("--json", help="also write the table here")
    a = ap.parse_args(argv)
    if a.json:
        check_output(a.json, "--json", [("TRACE", t) for t in a.traces])
    table = {}
    for path in a.traces:
        variant = os.path.splitext(os.path.basename(path))[0]
        try:
            ceiling, rows = load(path)
        except (OSError, KeyError) as e:
            print(f"attn_variants: error: {path}: {' '.join(str(e).split())}", file=sys.stderr)
            return 2
        table[variant] = {"ceiling_gbps": ceiling, "shapes": rows}
    shapes = sorted({s for v in table.values() for s in v["shapes"]})
    best = {}
    for s in shapes:
        have = [(v["shapes"][s]["fraction_of_ceiling"], name) for name, v in table.items()
                if s in v["shapes"]]
        best[s] = max(have)[1]
        print(s)
        for frac, name in sorted(have, reverse=True):
            r = table[name]["shapes"][s]
            ok = {1: "ok", 0: "WRONG", -1: "unchecked"}[r["verified"]]
            print(f"  {name:24s} {r['time_us']:9.1f} us {r['gbps']:7.0f} GB/s "
                  f"{frac:6.3f} of {table[name]['ceiling_gbps']:.0f} GB/s  {ok}")
    if a.json:
        write_text(a.json, json.dumps({"variants": table, "best": best}, indent=1))
    wrong = [(n, s) for n, v in table.items() for s, r in v["shapes"].items() if r["verified"] == 0]
    for n, s in wrong:
        print(f"attn_variants: {n} gave a wrong result on {s}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(guarded("attn_variants", main, bad=MALFORMED))
