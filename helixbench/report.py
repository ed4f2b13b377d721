"""helix-report: PNG plots and a Markdown summary of helix-bench traces.

Reads what the traces hold and skips what they lack:
  /decode   TTL per layout broken down by phase (stacked bars), TTL against sequence length and
            against batch, exposed communication with and without HOP-B, rank 0's compute
            phases against their roofline (traces that hold it), a table of every run; with
            helix-hopb runs of several chunk counts, exposed communication against the chunk
            count
  /micro    kernel bandwidth against the measured ceiling; collective bus bandwidth against size
  /model    Pareto frontier of the cost model's points (tokens/s per user vs tokens/s per GPU)
  /disagg   Pareto frontier of disaggregated vs colocated serving
  several  (real, emulated and `model --validate` traces, calibrated profiles .json) real vs
            emulated vs model per phase, TTL against the rank count N per layout, the per-rank
            breakdown (compute, wait, transfer, other) with the critical rank highlighted,
            collective latency and bus bandwidth against size of the profiles, the /validate
            tables
TTL is the time of one decode step of one layer: the median over iterations of the max over
ranks. Phase bars are the critical rank's phases (traces with the accounting; the max over
ranks before it): they add up to the step less its gaps; in helix-hopb phases overlap, so the
bars add up to more than the measured step (the black marker).

Several traces: the /decode sections over the runs of all of them, the sections above for
several traces, and (e.g. the runs of scripts/gpu_hopb_study.sh over several NCCL paths, real and
emulated) exposed communication against the HOP-B chunk count with one line per communication
path (the traces' NCCL variables, or the emulated link figures), the exposed All-to-All apart
from the other collectives.

Writes DIR/summary.md and DIR/*.png: drawn into a temporary folder beside DIR and moved into
DIR when every file is complete, so a failed or interrupted report changes nothing. Exit codes:
0 done; 2 bad input (missing file, not a trace, a malformed trace, nothing to report, or a DIR
that cannot be written), with a one-line message.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .report_common import (LAYOUT_COLORS, LAYOUT_ORDER, fmt_us,  # noqa: E402
                            layout_color, md_table, save)
from .report_decode import decode_section  # noqa: E402
from .report_hopb import hopb_section  # noqa: E402
from .report_study import study_sections  # noqa: E402
from .safeio import (BadInput, ToolParser, check_input, check_output_dir,  # noqa: E402
                     guarded, pause_before_rename, register, unregister)
from .trace import (TraceError, load_columns, load_decode_runs, open_trace,  # noqa: E402
                    root_attrs, device_label)

def micro_section(cols, ceiling, out_dir, figures) -> list:
    md = ["## Kernels\n"]
    n = len(cols.get("gbps", []))
    if n == 0:
        return []
    labels = []
    for i in range(n):
        name = str(cols["name"][i]) if "name" in cols else str(cols.get("kernel", ["?"] * n)[i])
        shape = str(cols["shape"][i]) if "shape" in cols else ""
        labels.append(f"{name} {shape}".strip())
    gbps = np.asarray(cols["gbps"], dtype=float)
    fig, ax = plt.subplots(figsize=(8, 0.35 * n + 1.6))
    y = np.arange(n)
    ax.barh(y, gbps, color="tab:blue", label="kernel (median time)")
    if ceiling and math.isfinite(ceiling) and ceiling > 0:
        ax.axvline(ceiling, color="black", linestyle="--",
                   label=f"measured ceiling {ceiling:,.0f} GB/s")
        for yi, g in zip(y, gbps):
            ax.text(g, yi, f" {g / ceiling * 100:.0f}%", va="center", fontsize=7)
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("memory bandwidth (GB/s, decimal)")
    ax.set_title("Kernel bandwidth against the measured ceiling\nbytes moved / median time; "
                 "label = share of the ceiling", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    md.append(f"![kernel_bandwidth.png]({save(fig, out_dir, 'kernel_bandwidth.png', figures)})\n")
    rows = []
    for i in range(n):
        frac = cols.get("fraction_of_ceiling")
        rows.append([labels[i], fmt_us(float(cols["time_us_median"][i]))
                     if "time_us_median" in cols else "-", f"{gbps[i]:,.0f}",
                     f"{float(cols['tflops'][i]):.2f}" if "tflops" in cols else "-",
                     f"{float(frac[i]) * 100:.0f}%" if frac is not None else "-"])
    md.append(md_table(["kernel", "median time (us)", "bandwidth (GB/s)", "TFLOP/s",
                        "of ceiling"], rows))
    md.append("")
    return md


def collectives_section(cols, out_dir, figures) -> list:
    n = len(cols.get("busbw_gbps", []))
    if n == 0:
        return []
    md = ["## Collectives\n"]
    coll = cols["collective"]
    gs = cols.get("group_size", np.zeros(n, dtype=int))
    size = np.asarray(cols["size_bytes"], dtype=float)
    bus = np.asarray(cols["busbw_gbps"], dtype=float)
    wrong = np.asarray(cols.get("wrong", np.zeros(n)), dtype=float)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, key in enumerate(sorted({(str(c), int(g)) for c, g in zip(coll, gs)})):
        sel = np.array([(str(c), int(g)) == key for c, g in zip(coll, gs)])
        order = np.argsort(size[sel])
        ax.plot(size[sel][order], bus[sel][order], marker="o", ms=3, color=f"C{i % 10}",
                label=f"{key[0]}, {key[1]} ranks")
        bad = sel & (wrong > 0)
        if np.any(bad):
            ax.scatter(size[bad], bus[bad], marker="x", color="red", s=50, zorder=4)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("message size (bytes, nccl-tests convention per collective)")
    ax.set_ylabel("bus bandwidth (GB/s, decimal)")
    ax.set_title("Collective bus bandwidth against message size\n(red x = wrong results)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    md.append(f"![collective_busbw.png]({save(fig, out_dir, 'collective_busbw.png', figures)})\n")
    peak = []
    for key in sorted({(str(c), int(g)) for c, g in zip(coll, gs)}):
        sel = np.array([(str(c), int(g)) == key for c, g in zip(coll, gs)])
        j = int(np.argmax(np.where(sel, bus, -np.inf)))
        peak.append([key[0], key[1], f"{bus[j]:,.1f}", f"{int(size[j]):,}",
                     int(wrong[sel].sum())])
    md.append(md_table(["collective", "ranks", "peak busbw (GB/s)", "at size (bytes)",
                        "wrong"], peak))
    md.append("")
    return md


# ----------------------------------------------------------------------------- Pareto
def pareto_mask(x, y) -> np.ndarray:
    """Points not dominated in (higher x, higher y)."""
    mask = np.ones(len(x), dtype=bool)
    for i in range(len(x)):
        dominated = (x >= x[i]) & (y >= y[i]) & ((x > x[i]) | (y > y[i]))
        mask[i] = not np.any(dominated)
    return mask


def plot_pareto(cols, series_key, title, out_dir, name, figures, panel_key=None):
    x = np.asarray(cols["tokens_per_s_per_user"], dtype=float)
    y = np.asarray(cols["tokens_per_s_per_gpu"], dtype=float)
    n = len(x)
    feasible = np.asarray(cols.get("feasible", np.ones(n)), dtype=bool)
    series = np.array([str(s) for s in cols.get(series_key, ["all"] * n)], dtype=object)
    panels = (sorted({str(p) for p in cols[panel_key]})
              if panel_key and panel_key in cols else [None])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        psel = (np.array([str(p) == panel for p in cols[panel_key]]) if panel is not None
                else np.ones(n, dtype=bool))
        for i, s in enumerate(sorted(set(series[psel]), key=lambda v: LAYOUT_ORDER.get(v, 9))):
            sel = psel & (series == s)
            color = layout_color(s, i) if s in LAYOUT_COLORS else f"C{i % 10}"
            ax.scatter(x[sel & feasible], y[sel & feasible], s=10, alpha=0.35, color=color)
            if np.any(sel & ~feasible):
                ax.scatter(x[sel & ~feasible], y[sel & ~feasible], s=10, marker="x", alpha=0.25,
                           color=color)
            if "on_frontier" in cols:
                front = sel & feasible & np.asarray(cols["on_frontier"], dtype=bool)
            else:
                idx = np.flatnonzero(sel & feasible)
                front = np.zeros(n, dtype=bool)
                front[idx[pareto_mask(x[idx], y[idx])]] = True
            if np.any(front):
                order = np.argsort(x[front])
                ax.plot(x[front][order], y[front][order], marker="o", ms=4, color=color,
                        drawstyle="steps-post", label=f"{s} frontier")
        ax.set_xlabel("interactivity (tokens/s per user)")
        ax.set_ylabel("throughput (tokens/s per GPU)")
        ax.set_title(title + (f"\n{panel_key} = {panel}" if panel is not None else ""),
                     fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="dots: feasible points; x: infeasible", title_fontsize=7)
    fig.tight_layout()
    return save(fig, out_dir, name, figures)


def frontier_table(cols, series_key, extra_keys) -> str:
    """The frontier points (at most 40, by interactivity) as a Markdown table."""
    if "on_frontier" in cols:
        idx = np.flatnonzero(np.asarray(cols["on_frontier"], dtype=bool))
    else:
        x = np.asarray(cols["tokens_per_s_per_user"], dtype=float)
        y = np.asarray(cols["tokens_per_s_per_gpu"], dtype=float)
        idx = np.flatnonzero(pareto_mask(x, y))
    idx = idx[np.argsort(np.asarray(cols["tokens_per_s_per_user"], dtype=float)[idx])][:40]
    keys = [k for k in [series_key] + extra_keys if k in cols]
    rows = []
    for i in idx:
        rows.append([str(cols[k][i]) for k in keys] +
                    [fmt_us(float(cols["ttl_us"][i])) if "ttl_us" in cols else "-",
                     f"{float(cols['tokens_per_s_per_user'][i]):,.1f}",
                     f"{float(cols['tokens_per_s_per_gpu'][i]):,.1f}"])
    return md_table(keys + ["TTL (us)", "tokens/s per user", "tokens/s per GPU"], rows)


# ----------------------------------------------------------------------------- main
ROOT_SHOWN = ("kind", "schema_version", "suite_version", "git_sha", "utc_time", "hosts",
              "backend", "world_size", "mpi_version", "hdf5_version", "cuda_version",
              "nccl_version", "slurm_job_id", "nccl_env", "sweep_command", "command_line")


def read_profile(path: str) -> dict:
    try:
        with open(path) as f:
            p = json.load(f)
    except (OSError, ValueError) as e:
        raise TraceError(f"{path}: not a readable hardware profile ({e})") from None
    if not isinstance(p, dict) or "nvlink" not in p:
        raise TraceError(f"{path}: not a hardware profile (no nvlink field)")
    return p


def make_report(paths, out_dir: str) -> tuple:
    """paths: one trace, or a list of traces and calibrated profiles (.json)."""
    if isinstance(paths, str):
        paths = [paths]
    figures = []
    runs, validate, profiles = [], [], []
    traces = []  # (root attributes, decode runs) of each trace, for the HOP-B section
    root = {}
    kernels = collectives = model = disagg = ceiling = ceilings = None
    for path in paths:
        if path.endswith(".json"):
            check_input(path, "PROFILE")  # a FIFO would block
            profiles.append(read_profile(path))
            continue
        with open_trace(path) as f:
            attrs = root_attrs(f)
            root = root or attrs
            trace_runs = load_decode_runs(f)
            for r in trace_runs:
                problem = r.ok and r.timing_problem()
                if problem:
                    raise TraceError(f"{path}: {r.name}: {problem}")
            runs += trace_runs
            traces.append((attrs, trace_runs))
            if ceilings is None and "decode" in f:
                dec = f["decode"].attrs
                ceilings = (float(dec.get("stream_gbps", 0.0)), float(dec.get("gemm_tflops", 0.0)))
            kernels = kernels or load_columns(f, "micro/kernels")
            if ceiling is None:
                ceiling = micro_ceiling(f)
            collectives = collectives or load_columns(f, "micro/collectives")
            model = model or load_columns(f, "model/points")
            disagg = disagg or load_columns(f, "disagg/points")
            v = load_columns(f, "validate")
            if v:
                validate.append(v)
    if not (runs or kernels or collectives or model or disagg or validate or profiles):
        raise TraceError(f"{', '.join(paths)}: nothing to report (no /decode runs, /micro, "
                         "/model, /disagg or /validate tables, no profile)")
    final_dir, out_dir = out_dir, f"{out_dir.rstrip(os.sep)}.tmp.{os.getpid()}"
    # The outermost folder this report creates (removed again when it fails).
    created, up = None, os.path.dirname(os.path.abspath(out_dir))
    while not os.path.exists(up):
        created, up = up, os.path.dirname(up)
    register(created or out_dir, is_file=False)
    done = False
    try:
        os.makedirs(out_dir)
        summary = render(paths, root, runs, traces, validate, profiles, ceilings, kernels, ceiling,
                         collectives, model, disagg, out_dir, figures)
        pause_before_rename(out_dir)
        os.makedirs(final_dir, exist_ok=True)
        for name in [os.path.basename(summary)] + figures:
            os.replace(os.path.join(out_dir, name), os.path.join(final_dir, name))
        done = True
    finally:
        unregister(created or out_dir)
        shutil.rmtree(out_dir, ignore_errors=True)
        if created and not done:
            shutil.rmtree(created, ignore_errors=True)
    return os.path.join(final_dir, "summary.md"), figures


def micro_ceiling(f):
    if "micro" not in f:
        return None
    v = f["micro"].attrs.get("ceiling_gbps")
    return None if v is None else float(np.ravel(v)[0])


def render(paths, root, runs, traces, validate, profiles, ceilings, kernels, ceiling, collectives,
           model, disagg, out_dir, figures):
    title = os.path.basename(paths[0]) + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")
    md = [f"# helix-bench report: {title}\n"]
    rows = [[k, f"`{root[k]}`" if k in ("command_line", "sweep_command") else root[k]]
            for k in ROOT_SHOWN if k in root and str(root[k]) != ""]
    if "devices" in root:
        rows.insert(6, ["devices", device_label(str(root["devices"]))])
    md.append(md_table(["attribute", "value"], rows))
    md.append("\nTimes are microseconds per decode step of one layer (TTL); medians over "
              "iterations of the max over ranks.\n")
    if runs:
        md += decode_section(runs, out_dir, figures, ceilings or (0.0, 0.0))
    if runs:
        md += hopb_section(traces, out_dir, figures)
    if len(paths) > 1 or validate or profiles:
        md += study_sections(runs, validate, profiles, out_dir, figures)
    if kernels:
        md += micro_section(kernels, float(ceiling) if ceiling is not None else float("nan"),
                            out_dir, figures)
    if collectives:
        md += collectives_section(collectives, out_dir, figures)
    if model and {"tokens_per_s_per_user", "tokens_per_s_per_gpu"} <= set(model):
        md.append("## Cost model: Pareto frontiers\n")
        fam = "family" if "family" in model and len(set(model["family"])) > 1 else None
        name = plot_pareto(model, "layout", "Cost model: throughput against interactivity",
                           out_dir, "model_pareto.png", figures, panel_key=fam)
        md.append(f"![{name}]({name})\n")
        md.append("Frontier points:\n")
        md.append(frontier_table(model, "layout", ["family", "n_gpus", "tp", "pp", "ep", "kvp",
                                                   "tpa", "tpf", "hopb", "batch"]))
        md.append("")
    if disagg and {"tokens_per_s_per_user", "tokens_per_s_per_gpu"} <= set(disagg):
        md.append("## Disaggregated serving: Pareto frontiers\n")
        name = plot_pareto(disagg, "mode", "Disaggregated vs colocated prefill and decode",
                           out_dir, "disagg_pareto.png", figures)
        md.append(f"![{name}]({name})\n")
        md.append(frontier_table(disagg, "mode", ["ratio"]))
        md.append("")
    summary = os.path.join(out_dir, "summary.md")
    with open(summary, "w", encoding="utf-8", errors="backslashreplace") as fh:
        fh.write("\n".join(md).rstrip() + "\n")
    return summary


def default_out_dir(trace: str) -> str:
    stem = os.path.splitext(os.path.basename(trace))[0]
    return os.path.join(os.path.dirname(os.path.abspath(trace)), f"{stem}-report")


def main(argv=None) -> int:
    ap = ToolParser(
        prog="helix-report", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n  helix-report results/quickstart.h5 --out results/quickstart-report\n"
               "  helix-report results/hopb/*/real_*.h5 results/hopb/*/emulated_*.h5 "
               "--out results/hopb/report")
    ap.add_argument("traces", nargs="+", metavar="TRACE.h5",
                    help="helix-bench HDF5 traces (decode runs real or emulated, model "
                         "--validate outputs, micro, model, disagg) and calibrated profiles "
                         "(.json)")
    ap.add_argument("--out", metavar="DIR",
                    help="output folder for summary.md and the PNG plots (default: "
                         "TRACE-report beside the first trace)")
    args = ap.parse_args(argv)
    out_dir = args.out or default_out_dir(args.traces[0])

    def work():
        check_output_dir(out_dir, "--out", [("TRACE", t) for t in args.traces])
        try:
            summary, figures = make_report(args.traces, out_dir)
        except OSError as e:
            raise BadInput(f"--out: cannot write to {out_dir}: {e.strerror or e}") from None
        print(f"helix-report: {summary} and {len(figures)} plots: {', '.join(figures)}")
        return 0

    return guarded("helix-report", work)


if __name__ == "__main__":
    sys.exit(main())
