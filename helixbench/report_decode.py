"""The /decode section of helix-report: TTL per layout broken down by phase, TTL against sequence
length and batch, exposed communication with and without HOP-B, rank 0's compute phases against
their roofline, and a table of every run."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .report_common import (LAYOUT_ORDER, MAX_PANELS, fmt_tokens, fmt_us,  # noqa: E402
                            layout_color, md_table, save, slug)

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


def panel_legend(fig, axes, used, rename=lambda lab: lab):
    """Blanks the panels past the first `used` and draws one legend below them all, each label
    once (renamed by `rename`)."""
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    handles, lbls = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in lbls:
                handles.append(h)
                lbls.append(lab)
    fig.legend(handles, [rename(lab) for lab in lbls], loc="lower center",
               ncol=min(6, len(lbls)), fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.02))


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
            vals = np.array([r.critical_phase_medians().get(p, 0.0) for r in cell])
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
    panel_legend(fig, axes, len(cells), lambda lab: f"{lab} (comm)" if lab in comm else lab)
    fig.suptitle(f"TTL by phase per layout: {title}\nthe critical rank's phases (median over "
                 "iterations); hatched = communication", fontsize=10)
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
    med = run.critical_phase_medians()
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


def plot_roofline(runs, title, ceilings, out_dir, name, figures):
    """Per configuration, for each layout, rank 0's compute phases as measured (solid) beside the
    roofline of the same phases (hatched), with the step's fraction above."""
    ok = [r for r in runs if r.ok and r.has_roofline]
    if not ok:
        return None
    cells = sorted({(r.get("seq_len"), r.get("batch")) for r in ok})[-MAX_PANELS:]
    comm = set(ok[0].comm_phase_names())
    phases = [p for p in ok[0].phases if p not in comm]
    colors = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(ok[0].phases)}
    ncols = min(4, len(cells))
    nrows = math.ceil(len(cells) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.8 * nrows + 0.8),
                             squeeze=False)
    for ax, (s, b) in zip(axes.flat, cells):
        cell = sorted([r for r in ok if r.get("seq_len") == s and r.get("batch") == b],
                      key=lambda r: variant_order(variant(r)))
        x = np.arange(len(cell))
        for offset, measured in ((-0.2, True), (0.2, False)):
            bottom = np.zeros(len(cell))
            for p in phases:
                i = ok[0].phases.index(p)
                vals = np.array([r.rank_phase_medians(0)[p] if measured
                                 else np.nan_to_num(r.roofline_us[0, i]) for r in cell])
                if not np.any(vals > 0):
                    continue
                ax.bar(x + offset, vals, bottom=bottom, width=0.38, color=colors[p],
                       alpha=1.0 if measured else 0.45, hatch=None if measured else "//",
                       edgecolor="white", linewidth=0.3, label=p if measured else None)
                bottom += vals
        for xi, r in zip(x, cell):
            frac = r.roofline_step_us[0] / r.compute_us_median[0] \
                if r.compute_us_median[0] > 0 else float("nan")
            ax.annotate(f"{frac:.2f}", (xi, r.compute_us_median[0]), ha="center",
                        va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(x, [variant(r).replace(" ", "\n", 1) for r in cell], fontsize=7)
        ax.set_title(f"S={fmt_tokens(s)} tokens, B={b}", fontsize=9)
        ax.set_ylabel("rank 0 compute per layer step (us)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    panel_legend(fig, axes, len(cells))
    stream, gemm = ceilings
    fig.suptitle(f"Compute phases against their roofline: {title}\nleft: measured (rank 0, "
                 f"median); right, hatched: max(bytes / {stream:,.0f} GB/s, FLOPs / "
                 f"{gemm:.3g} TFLOP/s); number: roofline / measured of the step", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save(fig, out_dir, name, figures)


def roofline_rows(runs) -> list:
    """Rank 0 of every run with a roofline: its compute step and each compute phase's fraction."""
    rows = []
    for r in sorted([r for r in runs if r.ok and r.has_roofline],
                    key=lambda r: (r.get("seq_len"), r.get("batch"), variant_order(variant(r)))):
        comm = set(r.comm_phase_names())
        fr = [f"{r.roofline_fraction[0, i]:.2f}" if np.isfinite(r.roofline_fraction[0, i])
              else "-" for i, p in enumerate(r.phases) if p not in comm]
        step = r.compute_us_median[0]
        frac = r.roofline_step_us[0] / step if step > 0 else float("nan")
        rows.append([variant(r), r.get("batch"), fmt_tokens(r.get("seq_len")), fmt_us(step),
                     fmt_us(r.roofline_step_us[0]), f"{frac:.2f}",
                     r.get("roofline_limiter_rank0") or "-"] + fr)
    return rows


def decode_section(runs, out_dir, figures, ceilings=(0.0, 0.0)) -> list:
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
                     plot_exposed(grp, title, out_dir, f"exposed_comm{suffix}.png", figures),
                     plot_roofline(grp, title, ceilings, out_dir, f"roofline{suffix}.png",
                                   figures)):
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
        roof = roofline_rows(grp)
        if roof:
            comm = set(ok[0].comm_phase_names())
            md.append("Rank 0 against its roofline (max(bytes / stream, FLOPs / GEMM rate) per "
                      "compute phase, the ceilings measured in the same job; fraction = roofline "
                      "/ measured; limiter = the phase with the most time above its roofline):\n")
            md.append(md_table(["layout", "batch", "seq_len (tokens)", "compute (us)",
                                "roofline (us)", "fraction", "limiter"] +
                               [f"{p} fraction" for p in ok[0].phases if p not in comm], roof))
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
