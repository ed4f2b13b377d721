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
  summary  the study's table (helixbench/hopb_study.py): per NCCL path, model, N, S and B,
           Helix against HOP-B at each chunk count (step, exposed All-to-All apart from the other
           collectives, the share of the exchanges hidden), the emulated and modeled steps at the
           path's link figures, and the bars of the study; printed last, and written as
           summary.md and summary.csv

Exposed All-to-All (per rank and iteration, then the max over ranks, then the median over
iterations): the rank's exposed communication (its step minus its compute phases) minus its
other communication phases (o_comm, ffn_comm, out_comm: blocking collectives on the compute
stream, fully exposed). For helix it is the pack and the blocking All-to-All; for helix-hopb the
packs and what the final wait for the chunks' All-to-Alls adds to the step.
Exit codes: 0 done (check: no problem found); 1 check found problems; 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys

import h5py
import numpy as np

from .safeio import BadInput, ToolParser, check_input, check_output, guarded, write_text
from .trace import TraceError, load_decode_runs, open_trace, text

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


def chunk_count(run) -> int:
    """HOP-B's chunk count of a run (1 for every other layout)."""
    return int(run.get("hopb_chunks", 1)) if run.get("layout") == "helix-hopb" else 1


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
            pipelined += run.get("layout") == "helix-hopb" and chunk_count(run) > 1
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
    sel = np.array([c == "all_to_all" for c in coll], dtype=bool) & (gs == ranks)
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
    if not (math.isfinite(link["fit_gbps"]) and link["fit_gbps"] > 0
            and math.isfinite(link["fit_latency_us"])):
        raise TraceError(f"{args.name}: the link figures are not finite ({link['fit_gbps']} GB/s, "
                         f"{link['fit_latency_us']} us)")
    for path, obj in ((args.out_json, link), (args.out_profile, prof)):
        write_text(path, json.dumps(obj, indent=1, allow_nan=False))
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
    link = {"ranks": args.ranks, "fit_gbps": float(args.gbps),
            "fit_latency_us": float(args.latency_us)}
    return write_link(link, args, args.source)


def main(argv=None) -> int:
    ap = ToolParser(prog="python3 -m helixbench.hopb", description=__doc__,
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
    return guarded(f"hopb {args.cmd}", lambda: run(args))


def _finite(option: str, value: float, lo: float, lo_open: bool = False) -> None:
    if not (math.isfinite(value) and (value > lo if lo_open else value >= lo)):
        raise BadInput(f"{option}: must be a finite number {'>' if lo_open else '>='} {lo:g}, "
                       f"got {value}")


def run(args) -> int:
    """The subcommand; bad input (options, files read, outputs) raises BadInput before any
    output is written."""
    if args.cmd == "check":
        for t in args.traces:
            check_input(t, "TRACE")
        return check_main(args)
    if args.cmd in ("linkfit", "linkset"):
        if not 2 <= args.ranks <= 4096:
            raise BadInput(f"--ranks: an all-to-all needs 2 to 4096 ranks, got {args.ranks}")
        if os.path.exists(args.base):  # a file, not a built-in name (a FIFO would block)
            check_input(args.base, "--base")
        inputs = [("--base", args.base)]
        if args.cmd == "linkfit":
            check_input(args.micro, "MICRO.h5")
            inputs.append(("MICRO.h5", args.micro))
            if args.nccl_tests:
                check_input(args.nccl_tests, "--nccl-tests")
                inputs.append(("--nccl-tests", args.nccl_tests))
            _finite("--fit-min-bytes", args.fit_min_bytes, 0)
            _finite("--fit-max-bytes", args.fit_max_bytes, args.fit_min_bytes, lo_open=True)
        else:
            _finite("--gbps", args.gbps, 0, lo_open=True)
            _finite("--latency-us", args.latency_us, 0)
        check_output(args.out_json, "--out-json", inputs)
        check_output(args.out_profile, "--out-profile", inputs + [("--out-json", args.out_json)])
        if os.path.abspath(args.out_json) == os.path.abspath(args.out_profile):
            raise BadInput("--out-profile: the same file as --out-json")
        return linkfit_main(args) if args.cmd == "linkfit" else linkset_main(args)
    if not os.path.isdir(args.study):
        raise BadInput(f"DIR: '{args.study}' is not a directory")
    for name in ("summary.csv", "summary.md"):
        check_output(os.path.join(args.study, name), "DIR")
    from .hopb_study import summary_main  # the study table (its own module)
    return summary_main(args)


if __name__ == "__main__":
    sys.exit(main())
