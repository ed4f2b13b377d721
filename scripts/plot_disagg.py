#!/usr/bin/env python3
"""Disaggregated against co-located serving, from the HDF5 file of `helix-bench disagg`: both
Pareto frontiers and the fixed-ratio curves (left), the optimal prefill:decode GPU ratio against
tokens/s/user (right).

    scripts/plot_disagg.py results/disagg_deepseek_16k_2k.h5 -o results/disagg_deepseek_16k_2k.png
"""
import os
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # helixbench/
from helixbench.safeio import (MALFORMED, BadInput, ToolParser, atomic_output,  # noqa: E402
                               check_input, check_output, guarded)


def main(argv=None):
    ap = ToolParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", help="HDF5 file of helix-bench disagg")
    ap.add_argument("-o", "--out", required=True, help="PNG to write")
    a = ap.parse_args(argv)
    check_input(a.file, "FILE")
    check_output(a.out, "--out", [("FILE", a.file)])
    with h5py.File(a.file, "r") as f:
        if "disagg/frontier" not in f:
            raise BadInput(f"{a.file}: no /disagg/frontier (not written by helix-bench disagg)")
        at = f["disagg"].attrs
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
        for name, style in (("disagg", dict(color="tab:blue", lw=2)),
                            ("colocated", dict(color="0.3", ls="--"))):
            g = f["disagg/frontier/" + name]
            left.step(g["tokens_per_s_per_user"][()], g["tokens_per_s_per_gpu"][()], where="post",
                      label=f"{name} (dynamic ratio)" if name == "disagg" else name, **style)
        for name, g in f.get("disagg/fixed_ratio", {}).items():
            left.step(g["tokens_per_s_per_user"][()], g["tokens_per_s_per_gpu"][()], where="post",
                      label=f"disagg, fixed ratio {name}", lw=1)
        left.set_xscale("log")
        left.set_yscale("log")
        left.set_xlabel("interactivity (tokens/s/user)")
        left.set_ylabel("throughput (output tokens/s/GPU, both pools)")
        left.set_title(f"{at['model']} on {at['hardware']}, ISL {at['isl']} / OSL {at['osl']}, "
                       f"NVLink domain {at['nvlink_domain_gpus']}", fontsize=9)
        left.grid(True, which="both", alpha=0.3)
        left.legend(fontsize=8)
        g = f["disagg/best_ratio"]
        right.plot(g["tokens_per_s_per_user"][()], g["ratio"][()], "o-", ms=3)
        right.set_xscale("log")
        right.set_yscale("log")
        right.set_xlabel("interactivity (tokens/s/user)")
        right.set_ylabel("optimal prefill GPUs / decode GPUs")
        right.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        with atomic_output(a.out) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(guarded("plot_disagg", main, bad=MALFORMED))
