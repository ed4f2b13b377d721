"""HOP-B in decode traces and the HOP-B study (scripts/gpu_hopb_study.sh).

  check    the per-chunk timeline of every run that exchanges partials (/decode/run_N/chunks:
           attention and exchange start and end per chunk and rank, us from the rank's step
           start) is consistent, and with --expect-overlap that every HOP-B chunk's exchange
           overlaps the next chunk's attention on every rank
  linkfit  the latency and bus bandwidth of an all-to-all measured by helix-micro (least squares
           of time = latency + S (n-1)/n / busbw over the sizes the exchanges move), written as
           JSON and as a hardware profile at those link figures for `helix-bench model`; with
           --nccl-tests, an nccl-tests alltoall_perf log's bus bandwidth recorded beside it
  linkset  the same JSON and profile from link figures given on the command line (the study on
           one GPU, where the slowed paths cannot be measured)
  summary  the study's table: per NCCL path, model, N, S and B, Helix against HOP-B at each chunk
           count (step, exposed All-to-All apart from the other collectives, the share of the
           exchanges hidden), the emulated and modeled steps at the path's link figures, and the
           bars of the study; printed last, and written as summary.md and summary.csv

Exposed All-to-All (per rank and iteration, then the max over ranks, then the median over
iterations): the rank's exposed communication (its step minus its compute phases) minus its
other communication phases (o_comm, ffn_comm, out_comm: blocking collectives on the compute
stream, fully exposed). For helix it is the pack and the blocking All-to-All; for helix-hopb the
packs and what the final wait for the chunks' All-to-Alls adds to the step.
Exit codes: 0 done (check: no problem found); 1 check found problems; 2 bad input.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import math
import os
import re
import sys

import h5py
import numpy as np

from .trace import TraceError, load_decode_runs, open_trace, root_attrs, text

OTHER_COMM = ("o_comm", "ffn_comm", "out_comm")
COLUMNS = ("attention_start_us", "attention_end_us", "comm_start_us", "comm_end_us")
TOL_US = 0.5  # CUDA events resolve about 0.5 us


# ----------------------------------------------------------------------------- per run


def path_label(root: dict, run) -> str:
    """The communication path a run took: the emulated link figures, or the NCCL variables of the
    job (NCCL_NVLS_ENABLE, set everywhere, left out; none: the default path); on the CPU backend
    MPI over host memory (NCCL variables, unused there, still named to tell jobs apart)."""
    if run.get("emulated_ranks"):
        return (f"emulated {float(run.get('link_gbps', 0)):g} GB/s, "
                f"{float(run.get('link_latency_us', 0)):g} us")
    env = [v for v in str(root.get("nccl_env", "")).replace(";", " ").split()
           if v and not v.startswith("NCCL_NVLS_ENABLE=")]
    if run.get("backend") == "cpu":
        return "cpu MPI" + (f" ({' '.join(sorted(env))}, unused)" if env else "")
    return " ".join(sorted(env)) if env else "default NCCL path"


def _phase_index(run, names) -> list:
    return [run.phases.index(p) for p in names if p in run.phases]


def other_comm_rank_us(run) -> np.ndarray:
    """[iters, ranks]: each rank's time in the communication phases other than attn_comm."""
    return run.phase_us[:, :, _phase_index(run, OTHER_COMM)].sum(axis=2)


def exposed_a2a_us(run) -> np.ndarray:
    """[iters]: the exposed All-to-All (module docstring), max over ranks."""
    other = other_comm_rank_us(run)
    if run.rank_exposed_comm_us is not None:
        return np.clip(run.rank_exposed_comm_us - other, 0, None).max(axis=1)
    return np.clip(run.exposed_comm_us - other.max(axis=1), 0, None)


def other_comm_us(run) -> np.ndarray:
    return other_comm_rank_us(run).max(axis=1)


def timeline(run):
    """(a0, a1, c0, c1), each [iters, ranks, chunks]; None without a chunks dataset."""
    if run.chunk_us is None or run.chunk_us.ndim != 4:
        return None
    idx = [run.chunk_columns.index(c) if c in run.chunk_columns else i
           for i, c in enumerate(COLUMNS)]
    return tuple(run.chunk_us[..., i] for i in idx)


def overlaps(run) -> np.ndarray | None:
    """[iters, ranks, chunks - 1]: how long chunk c's exchange ran beside chunk c+1's attention."""
    t = timeline(run)
    if t is None or t[0].shape[2] < 2:
        return None
    a0, a1, c0, c1 = t
    return np.clip(np.minimum(c1[..., :-1], a1[..., 1:]) - np.maximum(c0[..., :-1], a0[..., 1:]),
                   0, None)


def hidden_fraction(run) -> float:
    """Median over iterations and ranks of the share of the exchanges' time that ran beside a
    later chunk's attention (0 for one chunk)."""
    t, ov = timeline(run), overlaps(run)
    if t is None or ov is None:
        return 0.0
    busy = np.clip(t[3] - t[2], 0, None).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(busy > 0, ov.sum(axis=2) / busy, 0.0)
    return float(np.median(share))


def check_run(run) -> list:
    """Problems of one run's chunk timeline (empty: consistent)."""
    problems = []
    name = run.describe()
    layout = run.get("layout")
    if layout == "tp" or not run.ok:
        return problems
    if run.chunk_us is None:
        return [f"{name}: no chunks dataset"]
    if tuple(run.chunk_columns) != COLUMNS:
        problems.append(f"{name}: chunk columns {run.chunk_columns}, expected {list(COLUMNS)}")
    iters, ranks = run.phase_us.shape[:2]
    want = int(run.get("hopb_chunks", 1)) if layout == "helix-hopb" else 1
    if run.chunk_us.shape != (iters, ranks, want, len(COLUMNS)):
        return problems + [f"{name}: chunks shape {run.chunk_us.shape}, expected "
                           f"{(iters, ranks, want, len(COLUMNS))}"]
    a0, a1, c0, c1 = timeline(run)
    step = run.step_us[:, None, None] + TOL_US
    checks = [
        ("a timestamp is not finite", ~np.isfinite(run.chunk_us).all(axis=3)),
        ("a timestamp lies outside the step", (run.chunk_us.min(axis=3) < -TOL_US) |
         (run.chunk_us.max(axis=3) > step)),
        ("an attention ends before it starts", a1 < a0 - TOL_US),
        ("an exchange ends before it starts", c1 < c0 - TOL_US),
        ("an exchange starts before its chunk's attention ends", c0 < a1 - TOL_US),
    ]
    if want > 1:
        order = np.zeros_like(a0, dtype=bool)
        order[..., 1:] = a0[..., 1:] < a1[..., :-1] - TOL_US
        checks.append(("a chunk's attention starts before the previous one ends", order))
        if run.get("backend") == "cuda":  # one communication stream: the exchanges in order
            seq = np.zeros_like(c0, dtype=bool)
            seq[..., 1:] = c0[..., 1:] < c1[..., :-1] - TOL_US
            checks.append(("an exchange starts before the previous one ends", seq))
    for what, bad in checks:
        if np.any(bad):
            i, r, c = (int(v[0]) for v in np.nonzero(bad))
            problems.append(f"{name}: {what} (iteration {i}, rank {r}, chunk {c}: "
                            f"{np.round(run.chunk_us[i, r, c], 1).tolist()})")
    return problems


def check_overlap(run) -> list:
    """For a HOP-B run of several chunks: on every rank, in the median iteration, each chunk's
    exchange (but the last) runs beside the next chunk's attention."""
    ov = overlaps(run)
    if run.get("layout") != "helix-hopb" or ov is None:
        return []
    med = np.median(ov, axis=0)  # [ranks, chunks - 1]
    bad = np.argwhere(med <= 0)
    return [f"{run.describe()}: rank {r}: chunk {c}'s exchange never ran beside chunk {c + 1}'s "
            f"attention (median overlap 0 us)" for r, c in bad]


def check_main(args) -> int:
    problems, checked, pipelined = [], 0, 0
    for path in args.traces:
        with open_trace(path) as f:
            runs = load_decode_runs(f)
        for run in runs:
            if not run.ok or run.get("layout") == "tp":
                continue
            checked += 1
            mine = check_run(run)
            if args.expect_overlap:
                mine += check_overlap(run)
            pipelined += run.get("layout") == "helix-hopb" and _chunks(run) > 1
            problems += mine
            if not mine:
                print(f"{run.describe()}: exposed All-to-All "
                      f"{np.median(exposed_a2a_us(run)):.1f} us, other collectives "
                      f"{np.median(other_comm_us(run)):.1f} us, exchanges hidden "
                      f"{100 * hidden_fraction(run):.0f}%")
    if checked == 0:
        problems.append("no run that exchanges partials")
    if args.expect_overlap and pipelined == 0:
        problems.append("--expect-overlap: no helix-hopb run with more than one chunk")
    for p in problems:
        print(f"hopb check: {p}", file=sys.stderr)
    return 1 if problems else 0


# ----------------------------------------------------------------------------- link figures


def builtin_profile(repo: str, name_or_path: str) -> dict:
    path = name_or_path
    if not os.path.exists(path):
        path = os.path.join(repo, "analytic", "hardware", f"{name_or_path}.json")
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError) as e:
        raise TraceError(f"--base: cannot read profile {name_or_path} ({e})") from None


def fit_link(micro_path: str, ranks: int, lo: float, hi: float) -> dict:
    """Least-squares latency and bus bandwidth of the all-to-all of `ranks` ranks over sizes
    [lo, hi] bytes; busbw at the largest size measured, as nccl-tests would report it."""
    with open_trace(micro_path) as f:
        g = f.get("micro/collectives")
        if not isinstance(g, h5py.Group):
            raise TraceError(f"{micro_path}: no /micro/collectives table")
        coll = [text(c) for c in g["collective"][()]]
        gs = np.asarray(g["group_size"][()], dtype=int)
        size = np.asarray(g["size_bytes"][()], dtype=float)
        t = np.asarray(g["time_us"][()], dtype=float)
        bus = np.asarray(g["busbw_gbps"][()], dtype=float)
    sel = np.array([c == "all_to_all" for c in coll]) & (gs == ranks)
    if not np.any(sel):
        raise TraceError(f"{micro_path}: no all_to_all of {ranks} ranks")
    size, t, bus = size[sel], t[sel], bus[sel]
    factor = (ranks - 1) / ranks
    fit = (size >= lo) & (size <= hi)
    if np.count_nonzero(fit) < 2:
        fit = np.ones_like(size, dtype=bool)
    x = size[fit] * factor  # bytes over the bus
    slope, latency = np.polyfit(x, t[fit], 1) if np.count_nonzero(fit) >= 2 else (0.0, t[0])
    largest = int(np.argmax(size))
    if not slope > 0:  # timing noise: the endpoints instead
        latency = float(t[int(np.argmin(size))])
        gbps = float(bus[largest])
    else:
        gbps = 1.0 / (slope * 1e3)  # GB/s = 1e3 bytes/us
    return {"ranks": ranks, "fit_gbps": float(gbps), "fit_latency_us": float(max(latency, 0.0)),
            "fit_bytes": [float(lo), float(hi)], "busbw_gbps_at_largest": float(bus[largest]),
            "largest_bytes": float(size[largest]),
            "points": [{"size_bytes": float(s), "time_us": float(v), "busbw_gbps": float(b)}
                       for s, v, b in zip(size, t, bus)]}


def parse_nccl_tests(path: str) -> dict:
    """The all-to-all of an nccl-tests alltoall_perf log: out-of-place bus bandwidth at the
    largest size of its table, and its "Avg bus bandwidth" line."""
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError as e:
        raise TraceError(f"--nccl-tests: cannot read {path} ({e})") from None
    rows, avg = [], None
    for line in lines:
        if line.startswith("#"):
            m = re.search(r"Avg bus bandwidth\s*:\s*([0-9.eE+-]+)", line)
            if m:
                avg = float(m.group(1))
            continue
        tok = line.split()
        # size count type [redop] [root] | time algbw busbw #wrong (out of place) | time algbw
        # busbw #wrong (in place): counted from the end, as redop is blank for an all-to-all in
        # some versions and root is missing in older ones.
        if len(tok) >= 11 and tok[0].isdigit():
            try:
                rows.append((int(tok[0]), float(tok[-8]), float(tok[-6])))
            except ValueError:
                continue
    if not rows:
        raise TraceError(f"--nccl-tests: {path} holds no nccl-tests result table")
    size, time_us, busbw = max(rows)
    return {"nccl_tests_busbw_gbps": busbw, "nccl_tests_bytes": float(size),
            "nccl_tests_time_us": time_us,
            "nccl_tests_avg_busbw_gbps": avg if avg is not None else busbw}


def write_link(link: dict, args, source: str) -> int:
    """Writes the link JSON and the profile of args.base at the link's figures."""
    link["path"] = args.name
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout
    prof = builtin_profile(repo, args.base)
    prof["name"] = f"{prof.get('name', 'profile')}-{args.name}-n{args.ranks}"
    prof["description"] = (f"{prof.get('description', '')}; links at the all-to-all of "
                           f"{args.ranks} ranks over {args.name}")
    nv = dict(prof.get("nvlink", {}))
    nv["bw_gbps"] = round(link["fit_gbps"], 3)
    nv["latency_us"] = round(link["fit_latency_us"], 3)
    nv["domain_gpus"] = max(int(nv.get("domain_gpus", 1)), args.ranks)
    prof["nvlink"] = nv
    prof.pop("collectives", None)  # the link figures price every collective
    src = dict(prof.get("sources", {}))
    for k in ("nvlink.bw_gbps", "nvlink.latency_us"):
        src[k] = source
    prof["sources"] = src
    link["source"] = source
    for path, obj in ((args.out_json, link), (args.out_profile, prof)):
        tmp = f"{path}.tmp.{os.getpid()}"
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=1)
        os.replace(tmp, path)
    line = (f"{args.name}, {args.ranks} ranks: all-to-all {link['fit_gbps']:.1f} GB/s busbw, "
            f"{link['fit_latency_us']:.1f} us latency ({source})")
    if "busbw_gbps_at_largest" in link:
        line += (f"; helix-micro busbw {link['busbw_gbps_at_largest']:.1f} GB/s at "
                 f"{link['largest_bytes'] / 2**20:g} MiB")
    if "nccl_tests_busbw_gbps" in link:
        line += (f"; nccl-tests busbw {link['nccl_tests_busbw_gbps']:.1f} GB/s at "
                 f"{link['nccl_tests_bytes'] / 2**20:g} MiB")
    print(line)
    return 0


def linkfit_main(args) -> int:
    link = fit_link(args.micro, args.ranks, args.fit_min_bytes, args.fit_max_bytes)
    if args.nccl_tests:
        link.update(parse_nccl_tests(args.nccl_tests))
    return write_link(link, args, f"fitted to helix-micro's all-to-all of {args.ranks} ranks over "
                      f"{args.name}, {int(args.fit_min_bytes)}-{int(args.fit_max_bytes)} bytes")


def linkset_main(args) -> int:
    if not (args.gbps > 0 and args.latency_us >= 0):
        raise TraceError("--gbps must be > 0 and --latency-us >= 0")
    link = {"ranks": args.ranks, "fit_gbps": float(args.gbps),
            "fit_latency_us": float(args.latency_us)}
    return write_link(link, args, args.source)


# ----------------------------------------------------------------------------- study summary


def _median(v) -> float:
    return float(np.median(v)) if v is not None and len(v) else float("nan")


def _key(run) -> tuple:
    return (run.get("model"), int(run.get("n_ranks")), int(run.get("seq_len")),
            int(run.get("batch")))


def _chunks(run) -> int:
    return int(run.get("hopb_chunks", 1)) if run.get("layout") == "helix-hopb" else 1


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
                            emulated[(_key(r), r.get("layout"), _chunks(r))] = r.step_median()
            model = _validate_steps(os.path.join(pdir, f"model_{stem}.h5"))
            helix = {_key(r): r for r in runs if r.get("layout") == "helix"}
            for r in runs:
                k = _key(r)
                h = helix.get(k)
                link = links.get(k[1], {})
                row = {"path": p["name"], "path_env": p.get("env", ""), "source": source,
                       "model": k[0], "n": k[1],
                       "seq": k[2], "batch": k[3], "layout": r.get("layout"),
                       "chunks": _chunks(r), "comm_sms": int(r.get("hopb_comm_sms", 0) or 0),
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
                       "emulated_step_us": emulated.get((k, r.get("layout"), _chunks(r)),
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
            verdicts.append((r, f"slowed: exposed A2A <= (1/C + 0.15) x Helix's and step faster",
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
    os.makedirs(args.study, exist_ok=True)
    with open(os.path.join(args.study, "summary.csv"), "w", newline="") as fh:
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
    with open(os.path.join(args.study, "summary.md"), "w") as fh:
        fh.write("\n".join(md) + "\n")
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m helixbench.hopb", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="check the chunk timelines of decode traces")
    c.add_argument("traces", nargs="+", metavar="TRACE.h5")
    c.add_argument("--expect-overlap", action="store_true",
                   help="every HOP-B chunk's exchange must overlap the next chunk's attention")
    def link_args(sp):
        sp.add_argument("--ranks", type=int, required=True, help="group size of the all-to-all")
        sp.add_argument("--name", required=True, help="name of the communication path")
        sp.add_argument("--base", default="h200",
                        help="profile the link figures go into: a built-in name or a .json file")
        sp.add_argument("--out-json", required=True, metavar="FILE.json")
        sp.add_argument("--out-profile", required=True, metavar="PROFILE.json")

    lf = sub.add_parser("linkfit", help="all-to-all link figures from a helix-micro trace")
    lf.add_argument("micro", metavar="MICRO.h5")
    link_args(lf)
    lf.add_argument("--fit-min-bytes", type=float, default=64 * 1024)
    lf.add_argument("--fit-max-bytes", type=float, default=16 * 2**20)
    lf.add_argument("--nccl-tests", metavar="LOG",
                    help="an nccl-tests alltoall_perf log of the same path and ranks: its bus "
                         "bandwidth is recorded beside the fit")
    ls = sub.add_parser("linkset", help="link figures given on the command line (no measurement "
                                        "here), written as linkfit writes them")
    link_args(ls)
    ls.add_argument("--gbps", type=float, required=True, help="all-to-all bus bandwidth, GB/s")
    ls.add_argument("--latency-us", type=float, required=True, help="latency per collective, us")
    ls.add_argument("--source", required=True, help="where the figures come from")
    s = sub.add_parser("summary", help="the study's table and bars")
    s.add_argument("study", metavar="DIR")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "check":
            return check_main(args)
        if args.cmd in ("linkfit", "linkset"):
            if args.ranks < 2:
                raise TraceError("--ranks: an all-to-all needs at least 2 ranks")
            return linkfit_main(args) if args.cmd == "linkfit" else linkset_main(args)
        return summary_main(args)
    except (TraceError, OSError) as e:
        print(f"hopb {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
