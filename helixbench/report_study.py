"""The multi-trace sections of helix-report: real vs emulated vs model per phase, TTL against the
rank count per layout, the per-rank breakdown with the critical rank highlighted, collective
latency and bus bandwidth against size from calibrated profiles, and the /validate tables."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .report_common import (LAYOUT_ORDER, MAX_PANELS, fmt_tokens, fmt_us,  # noqa: E402
                            layout_color, md_table, panel_grid, save)
from .trace import BREAKDOWN_PARTS  # noqa: E402

SOURCE_COLORS = {"real": "tab:blue", "emulated": "tab:orange", "model": "tab:green"}
PART_COLORS = {"compute": "tab:blue", "wait": "tab:red", "transfer": "tab:purple",
               "other": "tab:gray"}


def split_label(r) -> str:
    return f"{r.get('layout')} {r.attn_shape()}/{r.ffn_shape()}"


def validate_by_point(tables) -> dict:
    """{point: {phase: predicted_us}} from /validate tables that name the points."""
    out = {}
    for cols in tables:
        if "kvp" not in cols:
            continue
        for i in range(len(cols["phase"])):
            key = (str(cols["model"][i]), str(cols["layout"][i]), int(cols["n_ranks"][i]),
                   int(cols["kvp"][i]), int(cols["tpa"][i]), int(cols["tpf"][i]),
                   int(cols["ep"][i]), int(cols["hopb_chunks"][i]), int(cols["batch"][i]),
                   int(cols["seq_len"][i]))
            out.setdefault(key, {})[str(cols["phase"][i])] = float(cols["predicted_us"][i])
    return out


def three_way(runs, tables, out_dir, figures) -> list:
    """Real vs emulated vs model, per phase of the critical rank, for points that have a twin."""
    real = {r.point(): r for r in runs if r.ok and r.source == "real"}
    emulated = {r.point(): r for r in runs if r.ok and r.source == "emulated"}
    model = validate_by_point(tables)
    points = [p for p in real if p in emulated or p in model]
    if not points:
        return []
    points.sort(key=lambda p: (p[0], -p[2], -p[9], p[8], LAYOUT_ORDER.get(p[1], 9)))
    shown = points[:MAX_PANELS]
    fig, axes = panel_grid(len(shown), 4.6, 3.4)
    rows = []
    for ax, p in zip(axes.flat, shown):
        r = real[p]
        phases = [k for k, v in r.critical_phase_medians().items() if v > 0] + ["step"]
        sources = {"real": {**r.critical_phase_medians(), "step": r.step_median()}}
        if p in emulated:
            e = emulated[p]
            sources["emulated"] = {**e.critical_phase_medians(), "step": e.step_median()}
        if p in model:
            sources["model"] = model[p]
        x = np.arange(len(phases))
        w = 0.8 / len(sources)
        for i, (src, vals) in enumerate(sources.items()):
            ax.bar(x - 0.4 + w * (i + 0.5), [vals.get(ph, np.nan) for ph in phases], width=w,
                   color=SOURCE_COLORS[src], label=src)
        ax.set_xticks(x, phases, rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{p[0]} {split_label(r)}\nN={p[2]} B={p[8]} S={fmt_tokens(p[9])}",
                     fontsize=8)
        ax.set_ylabel("us (critical rank)", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
        for ph in phases:
            base = sources["real"].get(ph, np.nan)
            rows.append([p[0], split_label(r), p[2], p[8], fmt_tokens(p[9]), ph, fmt_us(base)] +
                        [_err(sources.get(s, {}).get(ph, np.nan), base)
                         for s in ("emulated", "model")])
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Real vs emulated vs model per phase (critical rank, medians)", fontsize=10)
    fig.tight_layout()
    md = ["## Real, emulated and modeled\n",
          f"![{save(fig, out_dir, 'real_emulated_model.png', figures)}](real_emulated_model.png)\n",
          md_table(["model", "layout", "N", "B", "S", "phase", "real (us)",
                    "emulated (us, error %)", "model (us, error %)"], rows), ""]
    return md


def _err(x, base) -> str:
    if not (math.isfinite(x) and base > 0):
        return "-"
    return f"{x:,.1f} ({(x / base - 1) * 100:+.0f}%)"


def series_of(r) -> str:
    """A line of the TTL-against-N plot: the layout, and its KV split when KV is sharded."""
    kvp, n = r.get("kvp", 1), r.get("n_ranks")
    if r.get("layout") == "tp" or kvp == 1:
        return r.get("layout")
    return r.get("layout") + (" KVP=N" if kvp == n else f" KVP={kvp}")


def ttl_vs_n(runs, out_dir, figures) -> list:
    real = [r for r in runs if r.ok and r.source == "real"]
    if len({r.get("n_ranks") for r in real}) < 2:
        return []
    cells = sorted({(r.get("model"), r.get("seq_len"), r.get("batch")) for r in real})
    cells = cells[:MAX_PANELS]
    fig, axes = panel_grid(len(cells), 4.4, 3.4, 0.6)
    for ax, (model, s, b) in zip(axes.flat, cells):
        pts = [r for r in real if (r.get("model"), r.get("seq_len"), r.get("batch")) ==
               (model, s, b)]
        # One line per layout and KV split (KVP = 1, 2 or N); N = 1 starts every line.
        series = {}
        for r in sorted(pts, key=lambda r: r.get("n_ranks") == 1):
            n, layout = r.get("n_ranks"), r.get("layout")
            kinds = [k for k in series if k.split()[0] == layout] if n == 1 else [series_of(r)]
            for kind in kinds or [layout]:
                vals = series.setdefault(kind, {})
                vals[n] = min(vals.get(n, np.inf), r.step_median())
        for i, (kind, vals) in enumerate(sorted(series.items(),
                                                key=lambda kv: LAYOUT_ORDER.get(kv[0].split()[0], 9))):
            ns = sorted(vals)
            ax.plot(ns, [vals[n] for n in ns], marker="o", ms=4, label=kind,
                    color=layout_color(kind.split()[0], i),
                    linestyle="--" if "KVP" in kind else "-")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r.get("n_ranks") for r in pts}))
        ax.set_xticklabels([str(n) for n in sorted({r.get("n_ranks") for r in pts})], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("ranks N (GPUs)", fontsize=8)
        ax.set_ylabel("TTL per layer step (us)", fontsize=8)
        ax.set_title(f"{model} S={fmt_tokens(s)} B={b}", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(cells):]:
        ax.axis("off")
    fig.suptitle("TTL against the rank count per layout (real runs; the fastest split of each)",
                 fontsize=10)
    fig.tight_layout()
    return ["## TTL against N\n", f"![ttl_vs_n.png]({save(fig, out_dir, 'ttl_vs_n.png', figures)})\n"]


def rank_breakdown(runs, out_dir, figures) -> list:
    have = [r for r in runs if r.ok and r.rank_breakdown() and len(r.rows()) > 1]
    if not have:
        return []
    have.sort(key=lambda r: (-r.get("n_ranks"), -r.get("seq_len"), r.get("batch"),
                             r.source != "real", LAYOUT_ORDER.get(r.get("layout"), 9)))
    shown = have[:8]
    fig, axes = panel_grid(len(shown), 4.2, 3.4)
    rows = []
    for ax, r in zip(axes.flat, shown):
        br = r.rank_breakdown()
        crit = r.usual_critical_rank()
        ranks = sorted(br)
        bottom = np.zeros(len(ranks))
        for part in BREAKDOWN_PARTS:
            vals = np.array([max(0.0, br[k][part]) for k in ranks])
            ax.bar(range(len(ranks)), vals, bottom=bottom, color=PART_COLORS[part], label=part,
                   edgecolor=["black" if k == crit else "white" for k in ranks],
                   linewidth=[2.0 if k == crit else 0.3 for k in ranks])
            bottom += vals
        ax.set_xticks(range(len(ranks)), [f"{k}*" if k == crit else str(k) for k in ranks],
                      fontsize=7)
        ax.set_xlabel("rank (* critical)", fontsize=7)
        ax.set_ylabel("us", fontsize=7)
        ax.set_title(f"{r.source}: {r.get('model')} {split_label(r)}\nN={r.get('n_ranks')} "
                     f"B={r.get('batch')} S={fmt_tokens(r.get('seq_len'))}", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        for k in ranks:
            rows.append([r.source, r.get("model"), split_label(r), r.get("n_ranks"),
                         r.get("batch"), fmt_tokens(r.get("seq_len")),
                         f"**{k}**" if k == crit else k] +
                        [fmt_us(br[k][p]) for p in BREAKDOWN_PARTS] + [fmt_us(br[k]["step"])])
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Per-rank step: compute, wait for peers, transfer, other (medians; the critical "
                 "rank outlined)", fontsize=10)
    fig.tight_layout()
    return ["## Per-rank breakdown\n",
            f"![rank_breakdown.png]({save(fig, out_dir, 'rank_breakdown.png', figures)})\n",
            md_table(["source", "model", "layout", "N", "B", "S", "rank", "compute (us)",
                      "wait (us)", "transfer (us)", "other (us)", "step (us)"], rows), ""]


def profile_curves(profiles, out_dir, figures) -> list:
    curves = [(p.get("name", "profile"), c) for p in profiles for c in p.get("collectives", [])
              if c.get("points")]
    if not curves:
        return []
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    factor = {"all_reduce": lambda n: 2 * (n - 1) / n, "send_recv": lambda n: 1.0}
    rows = []
    for i, (name, c) in enumerate(curves):
        size = np.array([q["size_bytes"] for q in c["points"]], dtype=float)
        t = np.array([q["time_us"] for q in c["points"]], dtype=float)
        n = int(c["group_size"])
        f = factor.get(c["collective"], lambda n: (n - 1) / n)(n)
        label = f"{c['collective']}, {n} ranks" + (f" ({name})" if len(profiles) > 1 else "")
        style = dict(marker="o", ms=2.5, color=f"C{i % 10}",
                     linestyle="-" if n == max(int(x[1]["group_size"]) for x in curves) else "--")
        a1.plot(size, t, label=label, **style)
        a2.plot(size, size / t / 1e3 * f, label=label, **style)
        rows.append([name, c["collective"], n, f"{c['latency_us']:,.1f}",
                     f"{c['busbw_gbps']:,.1f}"])
    for ax, yl in ((a1, "time (us)"), (a2, "bus bandwidth (GB/s)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("size S (bytes, nccl-tests convention)")
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    a1.set_yscale("log")
    a2.legend(fontsize=6, ncol=2)
    fig.suptitle("Calibrated collectives: latency and bus bandwidth against size", fontsize=10)
    fig.tight_layout()
    return ["## Collectives of the calibrated profile\n",
            f"![profile_collectives.png]({save(fig, out_dir, 'profile_collectives.png', figures)})\n",
            md_table(["profile", "collective", "ranks", "smallest size (us)",
                      "busbw at the largest (GB/s)"], rows), ""]


def validate_tables(tables) -> list:
    md = []
    for cols in tables:
        n = len(cols.get("phase", []))
        if not n:
            continue
        md.append("## Model against the traces (/validate)\n")
        rows = []
        runs = list(dict.fromkeys(str(x) for x in cols["run"]))
        for run in runs:
            sel = [i for i in range(n) if str(cols["run"][i]) == run]
            step = [i for i in sel if str(cols["phase"][i]) == "step"]
            phases = [i for i in sel if str(cols["phase"][i]) not in
                      ("step", "compute", "wait", "transfer")]
            worst = max(phases, key=lambda i: abs(float(cols["rel_error"][i])), default=None)
            i0 = sel[0]
            rows.append([run, str(cols["layout"][i0]), int(cols["n_ranks"][i0]),
                         int(cols["batch"][i0]), fmt_tokens(cols["seq_len"][i0])] +
                        ([fmt_us(float(cols["predicted_us"][step[0]])),
                          fmt_us(float(cols["measured_us"][step[0]])),
                          f"{float(cols['rel_error'][step[0]]) * 100:+.0f}%"] if step else
                         ["-"] * 3) +
                        ([f"{cols['phase'][worst]} {float(cols['rel_error'][worst]) * 100:+.0f}%",
                          sum(abs(float(cols["rel_error"][i])) <= 0.2 for i in phases),
                          len(phases)] if worst is not None else ["-", 0, 0]))
        md.append(md_table(["run", "layout", "N", "B", "S", "predicted step (us)",
                            "measured step (us)", "step error", "worst phase",
                            "phases within 20%", "phases"], rows))
        md.append("")
    return md


def study_sections(runs, tables, profiles, out_dir, figures) -> list:
    md = []
    md += three_way(runs, tables, out_dir, figures)
    md += ttl_vs_n(runs, out_dir, figures)
    md += rank_breakdown(runs, out_dir, figures)
    md += profile_curves(profiles, out_dir, figures)
    md += validate_tables(tables)
    return md
