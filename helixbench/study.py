"""helix-study: real, emulated and modeled decode layers side by side.

Reads decode traces of real runs (every rank on its own GPU), their emulated twins (one GPU,
`--emulate N --emulate-rank all`), `helix-bench model --validate` outputs (/validate) of the real
traces, verification traces of the same shapes at a smaller S, KV-transfer traces and a
calibrated profile, from files or folders (searched recursively), and writes one table per
model: for every decode point the step, every phase of the critical rank and the critical step's
compute / wait / transfer, real, emulated and modeled, with the errors (emulated or modeled /
real - 1). Bars checked (results/README.md): emulated step within 10% of real at N >= 2, phases
within 15%; modeled step within 10%, phases within 20% (phases under --min-us in both are not
judged). Also: Helix over TP for each model at its largest N and S (measured, modeled, and the
attention roofline of each layout's shard at the measured ceilings), and KV transfer against the
same job's send/recv and all-to-all bus bandwidth and the disaggregation model's transfer term.

Writes OUT.md and OUT.json. Exit codes: 0 done; 2 bad input (nothing readable).
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys

import numpy as np

from .report_common import LAYOUT_ORDER, fmt_tokens, md_table
from .safeio import BadInput, ToolParser, check_input, check_output, guarded, write_text
from .trace import (POINT_KEYS, TraceError, attrs_dict, load_columns,
                    load_decode_runs, open_trace, text)

EMULATED_BAR, EMULATED_PHASE_BAR, MODEL_BAR, MODEL_PHASE_BAR = 0.10, 0.15, 0.10, 0.20


def find_files(paths) -> tuple:
    """(traces .h5, profiles .json) under the given files and folders."""
    h5s, profiles = [], []
    for p in paths:
        if os.path.isdir(p):
            h5s += sorted(glob.glob(os.path.join(p, "**", "*.h5"), recursive=True))
            profiles += sorted(glob.glob(os.path.join(p, "**", "*.json"), recursive=True))
        elif p.endswith(".json"):
            profiles.append(check_input(p, "PATH"))
        else:
            h5s.append(check_input(p, "PATH"))
    # Found in folders: regular files only (a FIFO would block the reading).
    h5s = [p for p in h5s if os.path.isfile(p)]
    return h5s, [p for p in profiles if os.path.isfile(p) and is_profile(p)]


def is_profile(path) -> bool:
    try:
        with open(path) as f:
            j = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(j, dict) and j.get("kind") in ("calibrated", "datasheet") and "nvlink" in j


class Study:
    """Everything read: runs by source and point, model rows, verification, KV transfers."""

    def __init__(self):
        self.real, self.emulated, self.verify = {}, {}, []
        self.model = {}  # point -> {metric: predicted_us}, plus "_rank"
        self.kv = []
        self.profile = None
        self.stream_gbps = float("nan")

    def add_trace(self, path, verification=False):
        with open_trace(path) as f:
            runs = [r for r in load_decode_runs(f) if r.ok]
            if "decode" in f:
                self.stream_gbps = float(f["decode"].attrs.get("stream_gbps", self.stream_gbps))
            val = load_columns(f, "validate")
            if "kv_transfer" in f:
                self.kv.append(attrs_dict(f["kv_transfer"]) |
                               {"median_s": float(np.median(f["kv_transfer/transfer_s"][()]))})
        for r in runs:
            if verification:
                self.verify.append(r)
            else:
                (self.emulated if r.source == "emulated" else self.real)[r.point()] = r
        if val and "kvp" in val:
            for i in range(len(val["phase"])):
                key = tuple(_cell(val, k, i) for k in POINT_KEYS)
                row = self.model.setdefault(key, {})
                row[str(val["phase"][i])] = float(val["predicted_us"][i])
                row["_rank"] = int(val["predicted_rank"][i]) if "predicted_rank" in val else -1

    def verified(self, r) -> str:
        if r.get("verify_ran"):
            return "yes" if r.get("verified") else "NO"
        same = [v for v in self.verify
                if v.point()[:-1] == r.point()[:-1]]  # every key but the sequence length
        if not same:
            return "not checked"
        ok = all(v.get("verified") for v in same)
        return f"{'yes' if ok else 'NO'} at S={fmt_tokens(same[0].get('seq_len'))}"


def _cell(cols, key, i):
    v = cols[key][i]
    return str(v) if key in ("model", "layout") else int(v)


def metrics_of(run) -> dict:
    """step, the critical rank's phases and the critical step's parts (medians, us)."""
    out = {"step": run.step_median()}
    out.update(run.critical_phase_medians())
    out.update({p: v for p, v in run.breakdown_medians().items() if p != "other"})
    return out


def rel(a, b) -> float:
    return a / b - 1.0 if b and b > 0 and math.isfinite(a) else float("nan")


def pct(x) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x * 100:+.1f}"


def build(study: Study, min_us: float) -> dict:
    """Per model: rows of the side-by-side table and the bar counts."""
    models = {}
    # By model, N, S, B, then layout and split (POINT_KEYS order: model, layout, n_ranks, kvp,
    # tpa, tpf, ep, hopb_chunks, batch, seq_len).
    # Points with a real run, and points only emulated (one GPU standing in for N): there the
    # model is also compared with the emulation (model_vs_emulated_error).
    points = set(study.real) | set(study.emulated)
    for point in sorted(points, key=lambda k: (k[0], k[2], k[9], k[8], LAYOUT_ORDER.get(k[1], 9),
                                               k[3])):
        r = study.real.get(point)
        em = study.emulated.get(point)
        mod = study.model.get(point, {})
        real_m = metrics_of(r) if r else {}
        em_m = metrics_of(em) if em else {}
        label = dict(zip(POINT_KEYS, point))
        entry = models.setdefault(label["model"], {"points": [], "bars": {
            "emulated_steps": 0, "emulated_steps_ok": 0, "emulated_phases": 0,
            "emulated_phases_ok": 0, "model_steps": 0, "model_steps_ok": 0, "model_phases": 0,
            "model_phases_ok": 0}})
        rows = []
        for metric in (real_m or em_m):
            real_us = real_m.get(metric, float("nan"))
            e_us, m_us = em_m.get(metric, float("nan")), mod.get(metric, float("nan"))
            judged = max(x for x in (real_us, e_us, m_us, 0.0) if math.isfinite(x)) >= min_us
            rows.append({"metric": metric, "real_us": real_us, "emulated_us": e_us,
                         "emulated_error": rel(e_us, real_us), "model_us": m_us,
                         "model_error": rel(m_us, real_us),
                         "model_vs_emulated_error": rel(m_us, e_us), "judged": judged})
            b = entry["bars"]
            for src, bar, pbar, err in (("emulated", EMULATED_BAR, EMULATED_PHASE_BAR,
                                         rel(e_us, real_us)),
                                        ("model", MODEL_BAR, MODEL_PHASE_BAR, rel(m_us, real_us))):
                if not math.isfinite(err) or not judged:
                    continue
                if src == "emulated" and label["n_ranks"] < 2:
                    continue
                kind = "steps" if metric == "step" else "phases"
                b[f"{src}_{kind}"] += 1
                b[f"{src}_{kind}_ok"] += abs(err) <= (bar if metric == "step" else pbar)
        entry["points"].append({
            "point": label, "verified": study.verified(r or em), "rows": rows,
            "critical_rank": {"real": r.usual_critical_rank() if r else None,
                              "emulated": em.usual_critical_rank() if em else None,
                              "model": mod.get("_rank")}})
    return models


def helix_over_tp(study: Study) -> list:
    """For each model at its largest N and S and every batch: TP step over Helix step, measured,
    modeled, and from the attention roofline of each layout's shard (KV bytes over the stream
    ceiling, FLOPs over the bf16 peak, the longer)."""
    peak = float((study.profile or {}).get("flops_tflops", {}).get("bf16", float("nan")))
    stream = float((study.profile or {}).get("stream_gbps", study.stream_gbps))
    out = []
    by_model = {}
    for p, r in study.real.items():
        by_model.setdefault(p[0], []).append(r)
    for model, runs in sorted(by_model.items()):
        n = max(r.get("n_ranks") for r in runs)
        s = max(r.get("seq_len") for r in runs if r.get("n_ranks") == n)
        for b in sorted({r.get("batch") for r in runs}):
            cell = [r for r in runs if (r.get("n_ranks"), r.get("seq_len"), r.get("batch")) ==
                    (n, s, b)]
            tp = [r for r in cell if r.get("layout") == "tp"]
            hx = sorted((r for r in cell if r.get("layout") == "helix"), key=lambda r: r.step_median())
            if not tp or not hx:
                continue
            t, h = tp[0], hx[0]

            def roof(r):
                return max(r.get("attention_kv_bytes_rank0", 0) / (stream * 1e3),
                           r.get("attention_flops_rank0", 0) / (peak * 1e6)
                           if math.isfinite(peak) else 0)
            mt, mh = study.model.get(t.point(), {}), study.model.get(h.point(), {})
            out.append({"model": model, "n_ranks": n, "seq_len": s, "batch": b,
                        "helix": f"{h.attn_shape()}/{h.ffn_shape()}",
                        "measured": t.step_median() / h.step_median(),
                        "modeled": mt.get("step", float("nan")) / mh.get("step", float("nan")),
                        "attention_roofline": roof(t) / roof(h) if roof(h) > 0 else float("nan")})
    return out


def write(study: Study, models: dict, ratios: list, out: str, min_us: float):
    md = ["# Real, emulated and modeled decode layers\n",
          "Medians over iterations: the step (max over ranks) and the critical rank's phases; "
          "compute / wait / transfer are the critical step's parts. error = emulated or modeled "
          f"/ real - 1. Bars: emulated step within {EMULATED_BAR:.0%} at N >= 2 and phases "
          f"within {EMULATED_PHASE_BAR:.0%}; modeled step within {MODEL_BAR:.0%} and phases "
          f"within {MODEL_PHASE_BAR:.0%} (times under {min_us:g} us are not judged). "
          "model / emulated % = modeled / emulated - 1, for points that only one GPU standing in "
          "for N ran (no real run: `-`).\n"]
    if study.profile:
        md.append(f"Profile: {study.profile.get('name')} ({study.profile.get('description')})\n")
    for model, entry in models.items():
        b = entry["bars"]
        md.append(f"## {model}\n")
        md.append(f"Emulated: steps within the bar {b['emulated_steps_ok']} of "
                  f"{b['emulated_steps']}, phases {b['emulated_phases_ok']} of "
                  f"{b['emulated_phases']}. Modeled: steps {b['model_steps_ok']} of "
                  f"{b['model_steps']}, phases {b['model_phases_ok']} of {b['model_phases']}.\n")
        rows = []
        for pt in entry["points"]:
            p = pt["point"]
            head = [p["n_ranks"], p["layout"], f"{p['kvp']}x{p['tpa']}", f"{p['tpf']}x{p['ep']}",
                    p["batch"], fmt_tokens(p["seq_len"])]
            crit = pt["critical_rank"]
            for i, row in enumerate(pt["rows"]):
                cells = head + [pt["verified"]] if i == 0 else [""] * (len(head) + 1)
                rows.append(cells + [row["metric"], _us(row["real_us"]),
                                     _us(row["emulated_us"]), pct(row["emulated_error"]),
                                     _us(row["model_us"]), pct(row["model_error"]),
                                     pct(row.get("model_vs_emulated_error"))])
            rows.append([""] * (len(head) + 1) + ["critical rank", _rank(crit["real"]),
                                                  _rank(crit["emulated"]), "",
                                                  _rank(crit["model"]), "", ""])
        md.append(md_table(["N", "layout", "KVPxTPA", "TPFxEP", "B", "S", "verified", "metric",
                            "real (us)", "emulated (us)", "error %", "model (us)", "error %",
                            "model / emulated %"], rows))
        md.append("")
    if ratios:
        md.append("## Helix over TP (step of tp / step of helix)\n")
        md.append(md_table(["model", "N", "S", "B", "helix", "measured", "modeled",
                            "attention roofline"],
                           [[r["model"], r["n_ranks"], fmt_tokens(r["seq_len"]), r["batch"],
                             r["helix"], f"{r['measured']:.2f}", _x(r["modeled"]),
                             _x(r["attention_roofline"])] for r in ratios]))
        md.append("")
    if study.kv:
        md.append("## KV transfer (prefill TP -> Helix decode) against the same job's links\n")
        rows = []
        for k in sorted(study.kv, key=lambda k: (k.get("model"), k.get("kvp"), k.get("tokens"))):
            gbps = k.get("gbps_median", float("nan"))
            model_s = k.get("model_transfer_s", float("nan"))
            rows.append([k.get("model"), k.get("prefill_ranks", 0) + k.get("kvp", 0) * k.get("tpa", 0),
                         fmt_tokens(k.get("tokens")), f"{gbps:,.1f}",
                         _x(k.get("send_recv_busbw_gbps", float("nan")), "{:,.1f}"),
                         _x(k.get("all_to_all_busbw_gbps", float("nan")), "{:,.1f}"),
                         f"{k['median_s'] * 1e3:,.3f}", _x(model_s * 1e3, "{:,.3f}"),
                         pct(rel(model_s, k["median_s"]))])
        md.append(md_table(["model", "ranks", "tokens", "transfer (GB/s)", "send/recv busbw (GB/s)",
                            "all-to-all busbw (GB/s)", "measured (ms)", "model (ms)",
                            "model error %"], rows))
        md.append("")
    write_text(out + ".md", "\n".join(md).rstrip() + "\n")
    write_text(out + ".json", json.dumps(_safe({"models": models, "helix_over_tp": ratios,
                                                "kv_transfer": study.kv}), indent=1))


def brief(models: dict) -> str:
    """One line per point: the step real, emulated and modeled with the errors, the critical
    ranks, and the verification (a short table for a console)."""
    head = (f"{'model':<15} {'N':>2} {'layout':<10} {'KVPxTPA':>7} {'B':>3} {'S':>5} | "
            f"{'real_us':>9} {'emul_us':>9} {'err%':>6} {'model_us':>9} {'err%':>6} "
            f"{'m/em%':>6} | {'crit r/e/m':>10} | verified")
    lines = [head, "-" * len(head)]
    for model, entry in models.items():
        for pt in entry["points"]:
            p = pt["point"]
            row = next((r for r in pt["rows"] if r["metric"] == "step"), None)
            if row is None:
                continue
            c = pt["critical_rank"]
            crit = "/".join(_rank(c[k]) for k in ("real", "emulated", "model"))
            lines.append(
                f"{model:<15} {p['n_ranks']:>2} {p['layout']:<10} {p['kvp']}x{p['tpa']:<5} "
                f"{p['batch']:>3} {fmt_tokens(p['seq_len']):>5} | {_us(row['real_us']):>9} "
                f"{_us(row['emulated_us']):>9} {pct(row['emulated_error']):>6} "
                f"{_us(row['model_us']):>9} {pct(row['model_error']):>6} "
                f"{pct(row.get('model_vs_emulated_error')):>6} | {crit:>10} | {pt['verified']}")
    return "\n".join(lines)


def _us(x) -> str:
    return "-" if not math.isfinite(x) else f"{x:,.1f}"


def _x(x, fmt="{:.2f}") -> str:
    return "-" if x is None or not math.isfinite(x) else fmt.format(x)


def _rank(x) -> str:
    return "-" if x is None or x < 0 else str(x)


def _safe(o):
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_safe(v) for v in o]
    if isinstance(o, (np.integer, np.floating)):
        return _safe(o.item())
    if isinstance(o, bytes):
        return text(o)
    return o


def load(paths, verify_paths=()) -> Study:
    h5s, profiles = find_files(paths)
    checks, _ = find_files(verify_paths) if verify_paths else ([], [])
    h5s = [p for p in h5s if p not in checks]
    if not h5s:
        raise TraceError("no .h5 traces found in " + ", ".join(paths))
    st = Study()
    for p, verification in [(p, False) for p in h5s] + [(p, True) for p in checks]:
        try:
            st.add_trace(p, verification)
        except (TraceError, OSError, KeyError) as e:
            print(f"helix-study: skipping {p}: {e}", file=sys.stderr)
    if profiles:
        with open(profiles[0]) as f:
            st.profile = json.load(f)
    if not st.real and not st.emulated:
        raise TraceError("no decode runs among " + ", ".join(h5s))
    return st


def main(argv=None) -> int:
    ap = ToolParser(prog="helix-study", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    epilog="Example:\n  helix-study results/h200x4 --out results/h200x4/study")
    ap.add_argument("inputs", nargs="+", metavar="PATH",
                    help="traces (.h5), a calibrated profile (.json) or folders holding them")
    ap.add_argument("--verify", nargs="*", default=[], metavar="PATH",
                    help="verification traces (files or folders): the same shapes at a smaller "
                         "S, checked against the reference; a real run without its own check is "
                         "marked verified at that S")
    ap.add_argument("--out", required=True, metavar="PREFIX",
                    help="writes PREFIX.md and PREFIX.json")
    ap.add_argument("--brief", action="store_true",
                    help="print one line per point (step real / emulated / modeled, errors, "
                         "critical ranks) after the summary")
    ap.add_argument("--min-us", type=float, default=5.0,
                    help="times under this in every source are shown but not judged (default 5)")
    args = ap.parse_args(argv)
    return guarded("helix-study", lambda: run(args))


def run(args) -> int:
    if not (math.isfinite(args.min_us) and args.min_us >= 0):
        raise BadInput(f"--min-us: must be a finite number of microseconds >= 0, got "
                       f"{args.min_us}")
    inputs = [("PATH", p) for p in args.inputs] + [("--verify", p) for p in args.verify]
    for ext in (".md", ".json"):
        check_output(args.out + ext, "--out", inputs)
    st = load(args.inputs, args.verify)
    models = build(st, args.min_us)
    ratios = helix_over_tp(st)
    try:
        write(st, models, ratios, args.out, args.min_us)
    except OSError as e:
        raise BadInput(f"--out: cannot write {args.out}: {e.strerror or e}") from None
    for model, entry in models.items():
        b = entry["bars"]
        print(f"helix-study: {model}: {len(entry['points'])} points; emulated steps within "
              f"{EMULATED_BAR:.0%}: {b['emulated_steps_ok']}/{b['emulated_steps']}; modeled steps "
              f"within {MODEL_BAR:.0%}: {b['model_steps_ok']}/{b['model_steps']}")
    print(f"helix-study: {args.out}.md, {args.out}.json")
    if args.brief:
        print(brief(models))
    return 0


if __name__ == "__main__":
    sys.exit(main())
