"""helix-report: PNG plots and a Markdown summary of one helix-bench trace.

Reads what the trace holds and skips what it lacks:
  /decode   TTL per layout broken down by phase (stacked bars), TTL against sequence length and
            against batch, exposed communication with and without HOP-B, a table of every run
  /micro    kernel bandwidth against the measured ceiling; collective bus bandwidth against size
  /model    Pareto frontier of the cost model's points (tokens/s per user vs tokens/s per GPU)
  /disagg   Pareto frontier of disaggregated vs colocated serving
TTL is the time of one decode step of one layer: the median over iterations of the max over
ranks. Phase bars are medians of the per-iteration max over ranks; in helix-hopb phases overlap,
so the bars add up to more than the measured step (the black marker).

Writes DIR/summary.md and DIR/*.png. Exit codes: 0 done; 2 bad input (missing file, not a
trace, or nothing to report).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .trace import (TraceError, load_columns, load_decode_runs, open_trace,  # noqa: E402
                    root_attrs, device_label)

LAYOUT_ORDER = {"tp": 0, "kvp": 1, "helix": 2, "helix-hopb": 3}
LAYOUT_COLORS = {"tp": "tab:blue", "kvp": "tab:orange", "helix": "tab:green",
                 "helix-hopb": "tab:red"}
MAX_PANELS = 16


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def fmt_tokens(n) -> str:
    n = int(n)
    if n >= 1048576 and n % 1048576 == 0:
        return f"{n // 1048576}M"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}K"
    return str(n)


def layout_color(layout: str, i: int = 0) -> str:
    return LAYOUT_COLORS.get(layout, f"C{4 + i % 6}")


def fmt_us(x) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:,.1f}"


def md_table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def save(fig, out_dir, name, figures):
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    figures.append(name)
    return name


# ----------------------------------------------------------------------------- decode
def variant(run) -> str:
    """The layout and its shape, the label of one bar or line."""
    s = f"{run.get('layout')} {run.attn_shape()}/{run.ffn_shape()}"
    if run.get("layout") == "helix-hopb":
        s += f" c{run.get('hopb_chunks')}"
    return s


def variant_order(v: str):
    layout = v.split(" ")[0]
    return (LAYOUT_ORDER.get(layout, 9), v)


def decode_groups(runs) -> dict:
    groups = {}
    for r in runs:
        k = (r.get("model"), r.get("layer_kind"), r.get("n_ranks"), r.get("backend"), r.device,
             r.get("emulated_ranks") or 0)
        groups.setdefault(k, []).append(r)
    return groups


def group_title(k) -> str:
    model, layer, n, backend, device, emulated = k
    where = f"backend {backend}" if device == backend else f"{backend} on {device}"
    s = f"{model} ({layer} layer), N={n}, {where}"
    if emulated:
        s += f", emulated {emulated}-rank layout"
    return s


def plot_phases(runs, title, out_dir, name, figures):
    ok = [r for r in runs if r.ok]
    if not ok:
        return None
    seqs = sorted({r.get("seq_len") for r in ok})
    batches = sorted({r.get("batch") for r in ok})
    cells = [(s, b) for s in seqs for b in batches
             if any(r.get("seq_len") == s and r.get("batch") == b for r in ok)]
    if len(cells) > MAX_PANELS:  # keep the figure readable: the largest configurations
        cells = cells[-MAX_PANELS:]
    phases = ok[0].phases
    comm = set(ok[0].comm_phase_names())
    colors = {p: plt.get_cmap("tab10" if len(phases) <= 10 else "tab20")(i % 20)
              for i, p in enumerate(phases)}
    ncols = min(4, len(cells))
    nrows = math.ceil(len(cells) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.6 * nrows + 0.8),
                             squeeze=False)
    for ax, (s, b) in zip(axes.flat, cells):
        cell = sorted([r for r in ok if r.get("seq_len") == s and r.get("batch") == b],
                      key=lambda r: variant_order(variant(r)))
        labels = [variant(r).replace(" ", "\n", 1) for r in cell]
        x = np.arange(len(cell))
        bottom = np.zeros(len(cell))
        for p in phases:
            vals = np.array([r.phase_medians().get(p, 0.0) for r in cell])
            if not np.any(vals > 0):
                continue
            ax.bar(x, vals, bottom=bottom, color=colors[p], width=0.7,
                   hatch="//" if p in comm else None, edgecolor="white", linewidth=0.3,
                   label=p)
            bottom += vals
        ax.scatter(x, [r.step_median() for r in cell], marker="_", s=600, color="black",
                   zorder=3, label="measured step (TTL)")
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_title(f"S={fmt_tokens(s)} tokens, B={b}", fontsize=9)
        ax.set_ylabel("time per layer step (us)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(cells):]:
        ax.axis("off")
    handles, lbls = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in lbls:
                handles.append(h)
                lbls.append(lab)
    fig.legend(handles, [f"{lab} (comm)" if lab in comm else lab for lab in lbls],
               loc="lower center", ncol=min(6, len(lbls)), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"TTL by phase per layout: {title}\nmedian over iterations of the max over "
                 "ranks; hatched = communication", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save(fig, out_dir, name, figures)


def plot_ttl_vs(runs, x_key, panel_key, x_label, title, out_dir, name, figures):
    ok = [r for r in runs if r.ok]
    xs = sorted({r.get(x_key) for r in ok})
    if len(xs) < 2:
        return None
    panels = sorted({r.get(panel_key) for r in ok})[-MAX_PANELS:]
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.4 * nrows + 0.6),
                             squeeze=False)
    variants = sorted({variant(r) for r in ok}, key=variant_order)
    for ax, pv in zip(axes.flat, panels):
        for i, v in enumerate(variants):
            pts = sorted([r for r in ok if r.get(panel_key) == pv and variant(r) == v],
                         key=lambda r: r.get(x_key))
            if not pts:
                continue
            x = [r.get(x_key) for r in pts]
            med = np.array([r.step_median() for r in pts])
            q1 = np.array([np.percentile(r.step_us, 25) for r in pts])
            q3 = np.array([np.percentile(r.step_us, 75) for r in pts])
            ax.errorbar(x, med, yerr=[med - q1, q3 - med], marker="o", ms=4, capsize=2,
                        color=layout_color(v.split(" ")[0], i), label=v,
                        linestyle="--" if v.startswith("helix-hopb") else "-")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [fmt_tokens(x) if x_key == "seq_len" else str(x) for x in xs],
                      fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel(x_label, fontsize=8)
        ax.set_ylabel("TTL per layer step (us)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        pname = "S" if panel_key == "seq_len" else "B"
        pval = fmt_tokens(pv) + " tokens" if panel_key == "seq_len" else str(pv)
        ax.set_title(f"{pname}={pval}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"TTL against {x_label.split(' (')[0]}: {title}\nmedian and interquartile "
                 "range over iterations", fontsize=10)
    fig.tight_layout()
    return save(fig, out_dir, name, figures)


def comm_total(run) -> float:
    med = run.phase_medians()
    return float(sum(med.get(p, 0.0) for p in run.comm_phase_names()))


def plot_exposed(runs, title, out_dir, name, figures):
    ok = [r for r in runs if r.ok and r.exposed_comm_us is not None]
    if not ok:
        return None
    layouts = {r.get("layout") for r in ok}
    chosen = ["helix", "helix-hopb"] if {"helix", "helix-hopb"} <= layouts else \
        sorted(layouts, key=lambda x: LAYOUT_ORDER.get(x, 9))
    cells = sorted({(r.get("seq_len"), r.get("batch")) for r in ok})[-24:]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(cells) * len(chosen) / 2 + 3), 4.2))
    width = 0.8 / len(chosen)
    x = np.arange(len(cells))
    for i, layout in enumerate(chosen):
        exp, tot = [], []
        for s, b in cells:
            rs = [r for r in ok if r.get("layout") == layout and r.get("seq_len") == s
                  and r.get("batch") == b]
            exp.append(np.median([r.exposed_median() for r in rs]) if rs else np.nan)
            tot.append(np.median([comm_total(r) for r in rs]) if rs else np.nan)
        pos = x - 0.4 + width * (i + 0.5)
        color = layout_color(layout, i)
        ax.bar(pos, tot, width=width * 0.95, fill=False, edgecolor=color, linestyle=":",
               label=f"{layout}: all communication phases")
        ax.bar(pos, exp, width=width * 0.7, color=color, label=f"{layout}: exposed")
    ax.set_xticks(x, [f"S={fmt_tokens(s)}\nB={b}" for s, b in cells], fontsize=7)
    ax.set_ylabel("communication per layer step (us)")
    ax.set_xlabel("configuration (sequence length in tokens, batch)")
    what = "with and without HOP-B" if chosen == ["helix", "helix-hopb"] else "per layout"
    ax.set_title(f"Exposed communication {what}: {title}\nexposed = step time minus compute "
                 "phases (max over ranks, median over iterations)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return save(fig, out_dir, name, figures)


def decode_section(runs, out_dir, figures) -> list:
    md = []
    groups = decode_groups(runs)
    many = len(groups) > 1
    for k, grp in groups.items():
        title = group_title(k)
        suffix = ("_" + slug(f"{k[0]}-n{k[2]}-{k[3]}-{k[4]}" + (f"-em{k[5]}" if k[5] else ""))
                  if many else "")
        md.append(f"## Decode: {title}\n")
        ok = [r for r in grp if r.ok]
        refused = [r for r in grp if r.get("status", "ok") != "ok"]
        for name in (plot_phases(grp, title, out_dir, f"decode_phases{suffix}.png", figures),
                     plot_ttl_vs(grp, "seq_len", "batch", "sequence length (tokens)", title,
                                 out_dir, f"ttl_vs_seq{suffix}.png", figures),
                     plot_ttl_vs(grp, "batch", "seq_len", "batch (requests)", title, out_dir,
                                 f"ttl_vs_batch{suffix}.png", figures),
                     plot_exposed(grp, title, out_dir, f"exposed_comm{suffix}.png", figures)):
            if name:
                md.append(f"![{name}]({name})\n")
        rows = []
        for r in sorted(grp, key=lambda r: (r.get("seq_len"), r.get("batch"),
                                            variant_order(variant(r)))):
            if not r.ok:
                rows.append([r.get("layout"), r.attn_shape(), r.ffn_shape(),
                             r.get("hopb_chunks"), r.get("batch"), fmt_tokens(r.get("seq_len")),
                             "-", "-", "-", "-", f"refused: {r.get('message', '')}"])
                continue
            q1, q3 = np.percentile(r.step_us, [25, 75])
            ver = ("yes" if r.get("verified") else "**NO**") if r.get("verify_ran") else "skipped"
            rows.append([r.get("layout"), r.attn_shape(), r.ffn_shape(), r.get("hopb_chunks"),
                         r.get("batch"), fmt_tokens(r.get("seq_len")), fmt_us(r.step_median()),
                         f"{fmt_us(q1)} - {fmt_us(q3)}", fmt_us(r.exposed_median()),
                         fmt_us(comm_total(r)), ver])
        md.append(md_table(["layout", "KVPxTPA", "TPFxEP", "HOP-B chunks", "batch",
                            "seq_len (tokens)", "TTL median (us)", "TTL IQR (us)",
                            "exposed comm (us)", "comm phases (us)", "verified"], rows))
        md.append("")
        # Best layout per configuration, and the HOP-B effect.
        best_rows, hopb_rows = [], []
        for s, b in sorted({(r.get("seq_len"), r.get("batch")) for r in ok}):
            cell = [r for r in ok if r.get("seq_len") == s and r.get("batch") == b]
            best = min(cell, key=lambda r: r.step_median())
            tp = [r for r in cell if r.get("layout") == "tp"]
            vs_tp = (f"{min(r.step_median() for r in tp) / best.step_median():.2f}x"
                     if tp else "-")
            best_rows.append([fmt_tokens(s), b, variant(best), fmt_us(best.step_median()), vs_tp])
            h = [r for r in cell if r.get("layout") == "helix"]
            hb = [r for r in cell if r.get("layout") == "helix-hopb"]
            if h and hb:
                e0 = min(r.exposed_median() for r in h)
                e1 = min(r.exposed_median() for r in hb)
                red = f"{(1 - e1 / e0) * 100:+.0f}%" if e0 > 0 else "-"
                hopb_rows.append([fmt_tokens(s), b, fmt_us(e0), fmt_us(e1), red,
                                  fmt_us(min(r.step_median() for r in h)),
                                  fmt_us(min(r.step_median() for r in hb))])
        if best_rows:
            md.append("Fastest layout per configuration (speed-up over the fastest tp run):\n")
            md.append(md_table(["seq_len (tokens)", "batch", "fastest", "TTL (us)",
                                "speed-up vs tp"], best_rows))
            md.append("")
        if hopb_rows:
            md.append("HOP-B: exposed communication of helix without and with batch-chunk "
                      "overlap:\n")
            md.append(md_table(["seq_len (tokens)", "batch", "helix exposed (us)",
                                "helix-hopb exposed (us)", "reduction", "helix TTL (us)",
                                "helix-hopb TTL (us)"], hopb_rows))
            md.append("")
        notes = []
        if any(r.get("link_representative", 1) == 0 for r in ok):
            notes.append("communication ran over a transport that does not represent the real "
                         "interconnect (`link_representative` = 0, e.g. MPI over host memory): "
                         "compare compute phases, not communication")
        modeled = sorted({p for r in ok for p in r.modeled_phase_names()})
        if modeled:
            notes.append(f"phases priced by the cost model rather than run: {', '.join(modeled)}")
        bad = [r.name for r in ok if r.get("verify_ran") and not r.get("verified")]
        if bad:
            notes.append(f"runs that missed the verification tolerance: {', '.join(bad)}")
        if refused:
            notes.append(f"{len(refused)} runs refused by the memory planner")
        for n in notes:
            md.append(f"- Note: {n}")
        md.append("")
    return md


# ----------------------------------------------------------------------------- micro
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


def make_report(path: str, out_dir: str) -> tuple:
    figures = []
    with open_trace(path) as f:
        root = root_attrs(f)
        runs = load_decode_runs(f)
        kernels = load_columns(f, "micro/kernels")
        ceiling = f["micro"].attrs.get("ceiling_gbps") if "micro" in f else None
        collectives = load_columns(f, "micro/collectives")
        model = load_columns(f, "model/points")
        disagg = load_columns(f, "disagg/points")
    if not (runs or kernels or collectives or model or disagg):
        raise TraceError(f"{path}: nothing to report (no /decode runs, /micro, /model or "
                         "/disagg tables)")
    os.makedirs(out_dir, exist_ok=True)
    md = [f"# helix-bench report: {os.path.basename(path)}\n"]
    rows = [[k, f"`{root[k]}`" if k in ("command_line", "sweep_command") else root[k]]
            for k in ROOT_SHOWN if k in root and str(root[k]) != ""]
    if "devices" in root:
        rows.insert(6, ["devices", device_label(str(root["devices"]))])
    md.append(md_table(["attribute", "value"], rows))
    md.append("\nTimes are microseconds per decode step of one layer (TTL); medians over "
              "iterations of the max over ranks.\n")
    if runs:
        md += decode_section(runs, out_dir, figures)
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
    with open(summary, "w") as fh:
        fh.write("\n".join(md).rstrip() + "\n")
    return summary, figures


def default_out_dir(trace: str) -> str:
    stem = os.path.splitext(os.path.basename(trace))[0]
    return os.path.join(os.path.dirname(os.path.abspath(trace)), f"{stem}-report")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="helix-report", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example:\n  helix-report results/quickstart.h5 --out results/quickstart-report")
    ap.add_argument("trace", metavar="TRACE.h5", help="helix-bench HDF5 trace")
    ap.add_argument("--out", metavar="DIR",
                    help="output folder for summary.md and the PNG plots (default: "
                         "TRACE-report beside the trace)")
    args = ap.parse_args(argv)
    out_dir = args.out or default_out_dir(args.trace)
    try:
        summary, figures = make_report(args.trace, out_dir)
    except TraceError as e:
        print(f"helix-report: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"helix-report: error: cannot write to {out_dir}: {e.strerror}", file=sys.stderr)
        return 2
    print(f"helix-report: {summary} and {len(figures)} plots: {', '.join(figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
