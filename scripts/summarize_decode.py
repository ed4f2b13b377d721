#!/usr/bin/env python3
"""Summarize decode traces: one row per run with the step time (one layer), the TTL of the full
model estimated as layers x layer time, the exposed communication and rank 0's attention
bandwidth as a fraction of the read-only stream ceiling measured in the same job.

usage: scripts/summarize_decode.py TRACE.h5 [TRACE.h5 ...] [--seq S]
"""
import os
import sys

try:
    import h5py
except ImportError:  # pragma: no cover
    sys.exit("summarize_decode.py: needs h5py (scripts/setup.sh installs it)")

# Layers per model (the model files of layouts/models): the TTL estimate multiplies one measured
# layer by the model's layer count (DeepSeek-R1: its MoE layer stands for all 61 layers).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # helixbench/
from helixbench.safeio import MALFORMED, BadInput, ToolParser, check_input, guarded  # noqa: E402

LAYERS = {"llama-3.1-8b": 32, "llama-3.1-70b": 80, "llama-3.1-405b": 126, "deepseek-r1": 61}


def rows(path):
    check_input(path, "TRACE")
    with h5py.File(path, "r") as f:
        if "decode" not in f:
            raise BadInput(f"{path}: not a decode trace (no /decode group)")
        g = f["decode"]
        ceiling = float(g.attrs.get("stream_gbps", 0.0))
        for name in sorted(g):
            a = g[name].attrs
            get = lambda k, d=None: a[k].decode() if isinstance(a.get(k), bytes) else a.get(k, d)
            yield {
                "model": get("model"), "layout": get("layout"), "n": int(get("n_ranks")),
                "emulated": int(get("emulated_ranks", 0)), "batch": int(get("batch")),
                "seq": int(get("seq_len")), "status": get("status"),
                "step_us": float(get("step_us_median", float("nan"))),
                "exposed_us": float(get("exposed_comm_us_median", float("nan"))),
                "attn_frac": float(get("attention_fraction_of_ceiling", float("nan"))),
                "attn_gbps": float(get("attention_gbps_rank0", float("nan"))),
                "ceiling": ceiling, "message": get("message", ""),
            }


def main():
    ap = ToolParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("traces", nargs="+", help="decode traces (.h5)")
    ap.add_argument("--seq", type=int, default=0, help="only runs with this sequence length")
    args = ap.parse_args()
    print(f"{'model':15s} {'layout':10s} {'N':>3s} {'B':>3s} {'S':>8s} {'layer_us':>9s} "
          f"{'TTL_ms':>8s} {'exposed_us':>10s} {'attn_GB/s':>9s} {'frac':>5s} {'ceiling':>7s}")
    for path in args.traces:
        for r in rows(path):
            if args.seq and r["seq"] != args.seq:
                continue
            if r["status"] != "ok":
                print(f"{r['model']:15s} {r['layout']:10s} {r['n']:3d} {r['batch']:3d} "
                      f"{r['seq']:8d} refused: {r['message']}")
                continue
            ttl_ms = r["step_us"] * LAYERS.get(r["model"], 1) / 1e3
            print(f"{r['model']:15s} {r['layout']:10s} {r['n']:3d} {r['batch']:3d} {r['seq']:8d} "
                  f"{r['step_us']:9.1f} {ttl_ms:8.2f} {r['exposed_us']:10.1f} "
                  f"{r['attn_gbps']:9.0f} {r['attn_frac']:5.2f} {r['ceiling']:7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(guarded("summarize_decode", main, bad=MALFORMED))
