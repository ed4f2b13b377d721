#!/usr/bin/env python3
"""Pareto frontiers (tokens/s/GPU against tokens/s/user) per layout family, from the HDF5 file of
`helix-bench model` (table /model/points) or `helix-bench model --reproduce helix-paper` (one table
per model under /reproduce/helix-paper/<model>/points). One PNG panel per table.

    scripts/plot_frontiers.py results/helix_paper.h5 -o results/helix_paper_frontiers.png
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
import numpy as np  # noqa: E402

CURVES = [  # label, layouts, style
    ("baseline (best of tp, pp, ep, kvp)", ("tp", "ep", "kvp"), dict(color="0.4", ls="--")),
    ("helix without HOP-B", ("helix",), dict(color="tab:orange")),
    ("helix (HOP-B allowed)", ("helix", "helix-hopb"), dict(color="tab:blue", lw=2)),
]


def frontier(user, gpu):
    """Indices of the undominated points, by falling tokens/s/user."""
    order = np.lexsort((-gpu, -user))
    out, best = [], -1.0
    for i in order:
        if gpu[i] > best:
            best = gpu[i]
            out.append(i)
    return np.array(out, dtype=int)


def tables(f):
    if "model/points" in f:
        yield f["model/points"]
    if "reproduce/helix-paper" in f:
        for name, g in f["reproduce/helix-paper"].items():
            if isinstance(g, h5py.Group) and "points" in g:
                yield g["points"]


def main(argv=None):
    ap = ToolParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", help="HDF5 file of helix-bench model")
    ap.add_argument("-o", "--out", required=True, help="PNG to write")
    a = ap.parse_args(argv)
    check_input(a.file, "FILE")
    check_output(a.out, "--out", [("FILE", a.file)])
    with h5py.File(a.file, "r") as f:
        ts = list(tables(f))
        if not ts:
            raise BadInput(f"{a.file}: no /model/points or /reproduce/helix-paper/<model>/points table")
        fig, axes = plt.subplots(1, len(ts), figsize=(6 * len(ts), 4.5), squeeze=False)
        for ax, t in zip(axes[0], ts):
            lay = t["layout"][()].astype(str)
            user = t["tokens_per_s_per_user"][()]
            gpu = t["tokens_per_s_per_gpu"][()]
            ok = t["feasible"][()] > 0
            for label, layouts, style in CURVES:
                m = np.where(ok & np.isin(lay, layouts))[0]
                if len(m) == 0:
                    continue
                fr = m[frontier(user[m], gpu[m])]
                ax.step(user[fr], gpu[fr], where="post", label=label, **style)
            at = t.attrs
            ax.set_title(f"{at['model']} on {at['hardware']}, {at['dtype']}, S = {at['seq_len']}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("interactivity (tokens/s/user)")
            ax.set_ylabel("throughput (tokens/s/GPU)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        with atomic_output(a.out) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(guarded("plot_frontiers", main, bad=MALFORMED))
