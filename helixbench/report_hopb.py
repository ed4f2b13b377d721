"""The HOP-B section of helix-report: exposed communication against the HOP-B chunk count, one
line per communication path (the NCCL variables of the job, or the emulated link figures), from
one or several decode traces (those of scripts/gpu_hopb_study.sh). Chunk count 1 is helix without
HOP-B. The exposed All-to-All (solid) is the exposed communication minus the other collectives
(o_comm, ffn_comm, out_comm, which run blocking on the compute stream and slow down on slow
paths too); the other collectives are drawn dotted (helixbench.hopb)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import hopb  # noqa: E402
from .report_common import MAX_PANELS, fmt_tokens, fmt_us, md_table, save, slug  # noqa: E402
from .report_decode import panel_legend  # noqa: E402


def points(traces) -> list:
    """One point per ok helix or helix-hopb run: (path, model, N, S, B, chunks, emulated,
    exposed A2A, other collectives, step)."""
    out = []
    for root, runs in traces:
        for r in runs:
            if not r.ok or r.get("layout") not in ("helix", "helix-hopb"):
                continue
            if r.phase_us is None:
                continue
            chunks = int(r.get("hopb_chunks", 1)) if r.get("layout") == "helix-hopb" else 1
            if r.get("layout") == "helix-hopb" and chunks < 2:
                continue  # one chunk: helix's schedule, drawn at 1 by the helix run
            out.append({"path": hopb.path_label(root, r), "model": r.get("model"),
                        "n": int(r.get("n_ranks")), "seq": int(r.get("seq_len")),
                        "batch": int(r.get("batch")), "chunks": chunks,
                        "emulated": bool(r.get("emulated_ranks")),
                        "layout": r.get("layout"),
                        "a2a": float(np.median(hopb.exposed_a2a_us(r))),
                        "other": float(np.median(hopb.other_comm_us(r))),
                        "step": r.step_median()})
    return out


def wanted(pts, several_traces: bool) -> bool:
    """Whether the chunk-count plot says something: several traces (paths) with helix-hopb runs,
    or one trace with helix-hopb runs of two or more chunk counts."""
    hopb_counts = {p["chunks"] for p in pts if p["layout"] == "helix-hopb"}
    return bool(hopb_counts) and (several_traces or len(hopb_counts) >= 2)


def plot_group(pts, model, n, out_dir, figures):
    cells = sorted({(p["seq"], p["batch"]) for p in pts})[-MAX_PANELS:]
    paths = sorted({(p["emulated"], p["path"]) for p in pts})
    cols = min(4, len(cells))
    rows = (len(cells) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, (s, b) in zip(axes.flat, cells):
        for i, (emulated, path) in enumerate(paths):
            sel = sorted((p for p in pts if (p["seq"], p["batch"]) == (s, b)
                          and p["path"] == path and p["emulated"] == emulated),
                         key=lambda p: p["chunks"])
            if not sel:
                continue
            x = [p["chunks"] for p in sel]
            color = f"C{i % 10}"
            ax.plot(x, [p["a2a"] for p in sel], marker="o", ms=4, color=color,
                    linestyle="--" if emulated else "-", label=path)
            ax.plot(x, [p["other"] for p in sel], marker=".", ms=3, color=color, linestyle=":",
                    alpha=0.7)
        ax.set_xscale("log", base=2)
        xs = sorted({p["chunks"] for p in pts if (p["seq"], p["batch"]) == (s, b)})
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.minorticks_off()
        ax.set_title(f"S={fmt_tokens(s)}, B={b}", fontsize=9)
        ax.set_xlabel("HOP-B chunks (1: helix)", fontsize=8)
        ax.set_ylabel("exposed communication (us)", fontsize=8)
        ax.grid(alpha=0.3)
    panel_legend(fig, axes, len(cells))
    fig.suptitle(f"{model}, N={n}: exposed All-to-All (solid; dashed: emulated) and other "
                 "collectives (dotted)\nagainst the HOP-B chunk count, per communication path",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save(fig, out_dir, f"hopb_exposed_{slug(model)}_n{n}.png", figures)


def hopb_section(traces, out_dir, figures) -> list:
    """traces: [(root attributes, decode runs)]."""
    pts = points(traces)
    if not wanted(pts, len(traces) > 1):
        return []
    md = ["## HOP-B: exposed communication against the chunk count\n",
          "Per communication path (the job's NCCL variables; emulated runs: the link figures "
          "that priced their collectives). Exposed All-to-All: step minus compute phases minus "
          "the other collectives (o_comm, ffn_comm, out_comm), max over ranks, median over "
          "iterations; chunk count 1 is helix.\n"]
    for model, n in sorted({(p["model"], p["n"]) for p in pts}):
        grp = [p for p in pts if (p["model"], p["n"]) == (model, n)]
        name = plot_group(grp, model, n, out_dir, figures)
        md.append(f"![{name}]({name})\n")
        rows = [[p["path"] + (" (emulated)" if p["emulated"] else ""), fmt_tokens(p["seq"]),
                 p["batch"], p["chunks"] if p["layout"] == "helix-hopb" else "helix",
                 fmt_us(p["a2a"]), fmt_us(p["other"]), fmt_us(p["step"])]
                for p in sorted(grp, key=lambda p: (p["emulated"], p["path"], p["seq"],
                                                    p["batch"], p["chunks"]))]
        md.append(md_table(["path", "seq_len", "batch", "chunks", "exposed All-to-All (us)",
                            "other collectives (us)", "TTL (us)"], rows))
        md.append("")
    return md
