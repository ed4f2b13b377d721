"""The HOP-B study's table (`python3 -m helixbench.hopb summary DIR`): per NCCL path, model, N, S
and B, Helix against HOP-B at each chunk count, the emulated and modeled steps at the path's link
figures, and the bars of the study; printed last, and written as summary.md and summary.csv."""
from __future__ import annotations

import csv
import glob
import json
import math
import os

import h5py
import numpy as np

from .hopb import chunk_count, exposed_a2a_us, hidden_fraction, other_comm_us
from .safeio import atomic_output, write_text
from .trace import TraceError, load_decode_runs, open_trace, text


def _median(v) -> float:
    return float(np.median(v)) if v is not None and len(v) else float("nan")


def _key(run) -> tuple:
    return (run.get("model"), int(run.get("n_ranks")), int(run.get("seq_len")),
            int(run.get("batch")))


def _validate_steps(path: str) -> dict:
    """{run name: predicted step (us)} of a `helix-bench model --validate` output."""
    out = {}
    if not os.path.exists(path):
        return out
    with h5py.File(path, "r") as f:
        g = f.get("validate")
        if not isinstance(g, h5py.Group):
            return out
        names = [text(x) for x in g["run"][()]]
        phases = [text(x) for x in g["phase"][()]]
        pred = np.asarray(g["predicted_us"][()], dtype=float)
    for n, p, v in zip(names, phases, pred):
        if p == "step":
            out[n] = float(v)
    return out


def load_study(study: str) -> tuple:
    """(meta, rows): one row per (path, model, N, S, B, chunk count) of the real runs (of the
    emulated ones where a path has no real run: the study on one GPU)."""
    meta_path = os.path.join(study, "study.json")
    if not os.path.exists(meta_path):
        raise TraceError(f"{study}: no study.json (not a HOP-B study folder)")
    with open(meta_path) as fh:
        meta = json.load(fh)
    rows = []
    for p in meta.get("paths", []):
        pdir = os.path.join(study, p["name"])
        links = {}
        for lf in glob.glob(os.path.join(pdir, "link_n*.json")):
            with open(lf) as fh:
                link = json.load(fh)
            links[int(link["ranks"])] = link
        # The real runs; on one GPU (no real_*.h5) the emulated ones stand in their place.
        measured = sorted(glob.glob(os.path.join(pdir, "real_*.h5")))
        source = "real"
        if not measured:
            measured = sorted(glob.glob(os.path.join(pdir, "emulated_*.h5")))
            source = "emulated"
        for real in measured:
            stem = os.path.basename(real)[len(source) + 1:-len(".h5")]
            with open_trace(real) as f:
                runs = [r for r in load_decode_runs(f) if r.ok]
            emulated = {}
            emu = os.path.join(pdir, f"emulated_{stem}.h5")
            if source == "real" and os.path.exists(emu):
                with open_trace(emu) as f:
                    for r in load_decode_runs(f):
                        if r.ok:
                            emulated[(_key(r), r.get("layout"), chunk_count(r))] = r.step_median()
            model = _validate_steps(os.path.join(pdir, f"model_{stem}.h5"))
            helix = {_key(r): r for r in runs if r.get("layout") == "helix"}
            for r in runs:
                k = _key(r)
                h = helix.get(k)
                link = links.get(k[1], {})
                row = {"path": p["name"], "path_env": p.get("env", ""), "source": source,
                       "model": k[0], "n": k[1],
                       "seq": k[2], "batch": k[3], "layout": r.get("layout"),
                       "chunks": chunk_count(r), "comm_sms": int(r.get("hopb_comm_sms", 0) or 0),
                       "a2a_gbps": link.get("fit_gbps", float("nan")),
                       "a2a_latency_us": link.get("fit_latency_us", float("nan")),
                       "a2a_busbw_largest_gbps": link.get("busbw_gbps_at_largest",
                                                          float("nan")),
                       "nccl_tests_busbw_gbps": link.get("nccl_tests_busbw_gbps", float("nan")),
                       "step_us": r.step_median(),
                       "attention_us": float(np.median(
                           r.phase_iter_max()[:, r.phases.index("attention")])),
                       "exposed_a2a_us": _median(exposed_a2a_us(r)),
                       "other_comm_us": _median(other_comm_us(r)),
                       "hidden_fraction": hidden_fraction(r),
                       "emulated_step_us": emulated.get((k, r.get("layout"), chunk_count(r)),
                                                        float("nan")),
                       "model_step_us": model.get(r.name, float("nan"))}
                if h is not None:
                    row["helix_step_us"] = h.step_median()
                    row["helix_exposed_a2a_us"] = _median(exposed_a2a_us(h))
                    row["helix_attention_us"] = float(np.median(
                        h.phase_iter_max()[:, h.phases.index("attention")]))
                rows.append(row)
    return meta, rows


def judge(rows, reference_path: str) -> list:
    """The bars, per HOP-B row: (row, bar, holds, detail)."""
    verdicts = []
    for r in rows:
        if r["layout"] != "helix-hopb" or r["chunks"] < 2 or "helix_step_us" not in r:
            continue
        c, hs, s = r["chunks"], r["helix_step_us"], r["step_us"]
        if r["path"] == reference_path and r["batch"] >= 8:
            verdicts.append((r, "nvlink: HOP-B step <= 1.03 x Helix", s <= 1.03 * hs,
                             f"{s / hs - 1:+.1%}"))
        he, e, att = r["helix_exposed_a2a_us"], r["exposed_a2a_us"], r["helix_attention_us"]
        if r["path"] != reference_path and he >= att / 3 and he > 0:
            bound = 1.0 / c + 0.15
            verdicts.append((r, "slowed: exposed A2A <= (1/C + 0.15) x Helix's and step faster",
                             e <= bound * he and s < hs,
                             f"{e / he:.2f} (bound {bound:.2f}), step {s / hs - 1:+.1%}"))
        if math.isfinite(r["model_step_us"]):
            err = r["model_step_us"] / s - 1
            verdicts.append((r, "model: HOP-B step within 15%", abs(err) <= 0.15, f"{err:+.1%}"))
    return verdicts


def _f(x, fmt="{:.0f}") -> str:
    return fmt.format(x) if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def summary_main(args) -> int:
    meta, rows = load_study(args.study)
    if not rows:
        raise TraceError(f"{args.study}: no real runs (real_*.h5) in any path folder")
    paths = [p["name"] for p in meta.get("paths", [])]
    reference = paths[0] if paths else ""
    head = ["path", "run", "model", "N", "S", "B", "C", "a2a GB/s", "step us", "vs helix",
            "exp. A2A us", "of helix's", "bound", "other coll. us", "hidden", "emulated us",
            "model us", "model err"]
    table = []
    for r in sorted(rows, key=lambda r: (paths.index(r["path"]) if r["path"] in paths else 99,
                                         r["model"], r["n"], r["seq"], r["batch"], r["chunks"])):
        hopb = r["layout"] == "helix-hopb"
        rel = r["step_us"] / r["helix_step_us"] - 1 if hopb and "helix_step_us" in r else None
        of = (r["exposed_a2a_us"] / r["helix_exposed_a2a_us"]
              if hopb and r.get("helix_exposed_a2a_us", 0) > 0 else None)
        err = (r["model_step_us"] / r["step_us"] - 1 if math.isfinite(r["model_step_us"])
               else None)
        table.append([r["path"], r["source"], r["model"], r["n"], r["seq"], r["batch"],
                      r["chunks"] if hopb else "helix", _f(r["a2a_gbps"], "{:.1f}"),
                      _f(r["step_us"]), f"{rel:+.1%}" if rel is not None else "",
                      _f(r["exposed_a2a_us"]), f"{of:.2f}" if of is not None else "",
                      f"{1 / r['chunks'] + 0.15:.2f}" if hopb else "",
                      _f(r["other_comm_us"]), f"{r['hidden_fraction']:.0%}" if hopb else "",
                      _f(r["emulated_step_us"]), _f(r["model_step_us"]),
                      f"{err:+.0%}" if err is not None else ""])
    verdicts = judge(rows, reference)
    with atomic_output(os.path.join(args.study, "summary.csv")) as tmp, \
            open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}))
        w.writeheader()
        w.writerows(rows)
    md = [f"# HOP-B study ({meta.get('mode', '?')} mode)\n",
          "Times in us per decode step of one layer (medians over iterations of the max over "
          "ranks). `exp. A2A`: the exposed All-to-All (step minus compute phases minus the other "
          "collectives); `other coll.`: o_comm + ffn_comm + out_comm; `hidden`: share of the "
          "exchanges' time that ran beside a later chunk's attention; `a2a GB/s`: the path's "
          "all-to-all bus bandwidth fitted in the same job (emulation and model at it).\n",
          "| path | NCCL variables | all-to-all busbw (fit) | latency (fit) | busbw at largest "
          "| nccl-tests busbw | source |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
    for p in meta.get("paths", []):
        for lf in sorted(glob.glob(os.path.join(args.study, p["name"], "link_n*.json"))):
            with open(lf) as fh:
                link = json.load(fh)
            largest = (f"{link['busbw_gbps_at_largest']:.1f} GB/s at "
                       f"{link['largest_bytes'] / 2**20:g} MiB"
                       if "busbw_gbps_at_largest" in link else "-")
            nccl = (f"{link['nccl_tests_busbw_gbps']:.1f} GB/s at "
                    f"{link['nccl_tests_bytes'] / 2**20:g} MiB"
                    if "nccl_tests_busbw_gbps" in link else "-")
            md.append(f"| {p['name']} ({link['ranks']} ranks) | `{p.get('env') or 'default'}` | "
                      f"{link['fit_gbps']:.1f} GB/s | {link['fit_latency_us']:.1f} us | "
                      f"{largest} | {nccl} | {link.get('source', '')} |")
    md += ["", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    md += ["| " + " | ".join(str(c) for c in row) + " |" for row in table]
    md += ["", "## Bars", "", "| path | run | model | N | S | B | C | bar | holds | figure |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r, bar, ok, detail in verdicts:
        md.append(f"| {r['path']} | {r['source']} | {r['model']} | {r['n']} | {r['seq']} | "
                  f"{r['batch']} | "
                  f"{r['chunks']} | {bar} | {'yes' if ok else 'NO'} | {detail} |")
    write_text(os.path.join(args.study, "summary.md"), "\n".join(md) + "\n")
    widths = [max(len(str(x)) for x in [h] + [row[i] for row in table])
              for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for row in table:
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths)))
    held = sum(1 for v in verdicts if v[2])
    print(f"\nbars: {held} of {len(verdicts)} hold"
          + "".join(f"\n  NO  {v[0]['path']} {v[0]['model']} N={v[0]['n']} S={v[0]['seq']} "
                    f"B={v[0]['batch']} C={v[0]['chunks']}: {v[1]} ({v[3]})"
                    for v in verdicts if not v[2]))
    print(f"written: {os.path.join(args.study, 'summary.md')}, summary.csv")
    return 0
