"""helix-compare: regression gate between two helix-bench decode traces.

Runs are matched like with like: same model, layer kind, layout, N, KVP x TPA, TPF x EP, HOP-B
chunks, KV block, batch, sequence length, backend, dtype, emulation and device model (bus ids
ignored). For every matched run the medians over iterations of the step time, the exposed
communication and every phase (max over ranks per iteration) are compared; exposed
communication only when both traces define it the same way (run attribute
exposed_comm_definition; older CUDA and emulated traces defined it differently, and those pairs
say so instead). A metric regresses
when the candidate's median is slower than the baseline's by more than --threshold AND the
slowdown is significant (one-sided Mann-Whitney U-test on the iteration samples, or a bootstrap
band of the change of medians that excludes zero) AND it exceeds the absolute floor --min-us.

The gate fails closed: a candidate run without timed iterations, or with a time that is not a
finite number >= 0, is a failure (exit 1) like a regression; a baseline run like that, a
malformed trace, or a threshold, --alpha, --band-factor or --min-us that is not a finite number
in range is bad input (exit 2).

Noise band: when the baseline holds several jobs of the same run (helix-sweep --repeat), the
threshold of each metric is at least --band-factor times the spread of those jobs' medians
((max - min) / median): a collective whose latency moves 8% from job to job is not flagged at 5%,
a compute phase that moves 1% still is. The table shows each metric's band.

--error: the error of the candidate against the baseline instead of a verdict, e.g. an emulated
or modeled twin against the real run: runs match on the decode point and device model whatever
their emulation (emulated_ranks, emulated_rank ignored); for the step, the critical rank's phases
(traces with the accounting; otherwise the max over ranks) and the critical step's compute, wait
and transfer, the medians and (candidate / baseline - 1) in percent, and a summary of the largest
errors. Exit 0 when something matched.

Exit codes: 0 no regression; 1 at least one regression (or a candidate run that failed
verification, was refused where the baseline ran, or has no usable timings); 2 nothing matched,
or bad input (missing file, not a trace, a malformed trace, an unwritable --json), with a
one-line message.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field

import numpy as np

from . import stats
from .safeio import BadInput, ToolParser, atomic_output, check_output, guarded
from .trace import MATCH_KEYS, TraceError, load_decode_runs, open_trace

EXIT_OK, EXIT_REGRESSION, EXIT_BAD = 0, 1, 2


@dataclass
class Samples:
    """Pooled iteration samples of the runs of one trace sharing a key."""
    runs: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)  # metric name -> 1-D samples (us)
    job_medians: dict = field(default_factory=dict)  # metric name -> the median of each run
    exposed_definitions: set = field(default_factory=set)

    def spread(self, metric) -> float:
        """(max - min) / median of the runs' medians (0 with one run)."""
        m = self.job_medians.get(metric, [])
        if len(m) < 2 or not np.median(m) > 0:
            return 0.0
        return float((max(m) - min(m)) / np.median(m))

    def add(self, run):
        self.runs.append(run)
        if not run.ok or run.timing_problem():
            return
        new = {"step_us": run.step_us}
        if run.exposed_comm_us is not None:
            new["exposed_comm_us"] = run.exposed_comm_us
            self.exposed_definitions.add(run.exposed_definition)
        per_iter = run.phase_iter_max()
        for i, p in enumerate(run.phases):
            new[f"{p}_us"] = per_iter[:, i]
        for k, v in new.items():
            self.metrics[k] = np.concatenate([self.metrics[k], v]) if k in self.metrics else v
            self.job_medians.setdefault(k, []).append(float(np.median(v)))


def parse_threshold(text: str) -> float:
    """'5%', '5' -> 0.05. Raises ValueError."""
    s = text.strip()
    if s.endswith("%"):
        s = s[:-1]
    value = float(s) / 100.0
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"--threshold: must be a non-negative percentage, got '{text}'")
    return value


def group_runs(runs, keys):
    out = {}
    for r in runs:
        out.setdefault(r.key(keys), Samples()).add(r)
    return out


def short_label(key: dict) -> str:
    s = (f"{key.get('model')} {key.get('layout')} N={key.get('n_ranks')} "
         f"{key.get('kvp')}x{key.get('tpa')}/{key.get('tpf')}x{key.get('ep')}")
    if key.get("layout") == "helix-hopb":
        s += f" c={key.get('hopb_chunks')}"
    s += f" B={key.get('batch')} S={key.get('seq_len')}"
    if key.get("emulated_ranks"):
        s += f" em={key.get('emulated_rank')}/{key.get('emulated_ranks')}"
    return s


def compare_metric(base, cand, args, band=0.0) -> dict:
    """One metric; `band` is the baseline's job-to-job spread (the threshold is at least
    band_factor times it)."""
    mb, mc = float(np.median(base)), float(np.median(cand))
    threshold = max(args.threshold, args.band_factor * band)
    row = {"base_median_us": mb, "cand_median_us": mc, "base_n": int(len(base)),
           "cand_n": int(len(cand)), "threshold": threshold}
    if not (mb > 0 and math.isfinite(mb) and math.isfinite(mc)):
        row.update(change=float("nan"), band=[float("nan")] * 2, p_slower=float("nan"),
                   p_faster=float("nan"), verdict="n/a")
        return row
    change = mc / mb - 1.0
    lo, hi = stats.bootstrap_rel_change(base, cand)
    p_slower = stats.mann_whitney_greater(base, cand)
    p_faster = stats.mann_whitney_less(base, cand)
    if args.test == "utest":
        sig_slower, sig_faster = p_slower < args.alpha, p_faster < args.alpha
    else:
        sig_slower, sig_faster = lo > 0, hi < 0
    big = abs(mc - mb) >= args.min_us
    if change > threshold and sig_slower and big:
        verdict = "REGRESSION"
    elif change < -threshold and sig_faster and big:
        verdict = "improved"
    elif abs(change) > threshold and big:
        verdict = "n.s."  # beyond the threshold, within the noise
    else:
        verdict = "ok"
    row.update(change=change, band=[lo, hi], p_slower=p_slower, p_faster=p_faster,
               verdict=verdict)
    return row


def run_compare(args) -> tuple:
    """Returns (exit code, result dict)."""
    keys = tuple(k for k in MATCH_KEYS if k not in args.ignore)
    traces = []
    for path in (args.baseline, args.candidate):
        with open_trace(path) as f:
            traces.append(load_decode_runs(f))
    base_runs, cand_runs = traces
    for r in base_runs:
        problem = r.ok and r.timing_problem()
        if problem:
            raise TraceError(f"{args.baseline}: baseline {r.name}: {problem}")
    base, cand = group_runs(base_runs, keys), group_runs(cand_runs, keys)
    matched = [k for k in base if k in cand]
    result = {
        "baseline": args.baseline, "candidate": args.candidate,
        "threshold": args.threshold, "alpha": args.alpha, "test": args.test,
        "min_us": args.min_us, "match_keys": list(keys),
        "baseline_runs": len(base_runs), "candidate_runs": len(cand_runs),
        "runs": [], "unmatched_baseline": [], "unmatched_candidate": [],
        "regressions": 0, "improvements": 0,
    }
    for k in base:
        if k not in cand:
            result["unmatched_baseline"].append(short_label(dict(zip(keys, k))))
    for k in cand:
        if k not in base:
            result["unmatched_candidate"].append(short_label(dict(zip(keys, k))))
    if not matched:
        return EXIT_BAD, result
    for k in matched:
        kd = dict(zip(keys, k))
        b, c = base[k], cand[k]
        entry = {"key": kd, "label": short_label(kd), "metrics": {}, "problems": []}
        c_ok = [r for r in c.runs if r.ok]
        if not b.metrics:
            entry["problems"].append("baseline run refused or empty: nothing to compare")
        elif not c_ok:
            entry["problems"].append("REFUSED: the candidate refused a run the baseline ran ("
                                     + "; ".join(str(r.get("message", "")) for r in c.runs) + ")")
            result["regressions"] += 1
        for r in c_ok:
            problem = r.timing_problem()
            if problem:
                entry["problems"].append(f"INVALID: candidate {r.name}: {problem}")
                result["regressions"] += 1
            if r.get("verify_ran") and not r.get("verified"):
                entry["problems"].append(f"UNVERIFIED: candidate {r.name} missed the tolerance "
                                         f"(max rel err {r.get('max_rel_err')})")
                result["regressions"] += 1
        if b.metrics and c.metrics:
            for m in b.metrics:
                if m not in c.metrics:
                    continue
                if not args.phases and m not in ("step_us", "exposed_comm_us"):
                    continue
                if m == "exposed_comm_us" and b.exposed_definitions != c.exposed_definitions:
                    entry["problems"].append(
                        "exposed_comm_us not compared: defined as "
                        + "/".join(sorted(b.exposed_definitions)) + " in the baseline, "
                        + "/".join(sorted(c.exposed_definitions)) + " in the candidate")
                    continue
                bs, cs = b.metrics[m], c.metrics[m]
                if max(np.median(bs), np.median(cs)) < args.min_us and m != "step_us":
                    continue  # a phase too small to judge (e.g. a collective a layout lacks)
                row = compare_metric(bs, cs, args, b.spread(m))
                entry["metrics"][m] = row
                if row["verdict"] == "REGRESSION":
                    result["regressions"] += 1
                elif row["verdict"] == "improved":
                    result["improvements"] += 1
        result["runs"].append(entry)
    code = EXIT_REGRESSION if result["regressions"] else EXIT_OK
    if args.require_all and result["unmatched_baseline"]:
        code = EXIT_REGRESSION
    return code, result


# Keys set aside by --error: how the runs were obtained (real or emulated).
ERROR_IGNORED = ("emulated_ranks", "emulated_rank")


def error_metrics(run) -> dict:
    """Medians (us) of the step, the critical rank's phases and the critical step's parts."""
    out = {"step_us": run.step_median()}
    for p, v in run.critical_phase_medians().items():
        out[f"{p}_us"] = v
    for p, v in run.breakdown_medians().items():
        if p != "other":
            out[f"critical_{p}_us"] = v
    return out


def run_errors(args) -> tuple:
    """--error: (exit code, result) with the candidate's error against the baseline per metric."""
    keys = tuple(k for k in MATCH_KEYS if k not in args.ignore and k not in ERROR_IGNORED)
    traces = []
    for path in (args.baseline, args.candidate):
        with open_trace(path) as f:
            traces.append([r for r in load_decode_runs(f) if r.ok])
    base, cand = ({r.key(keys): r for r in t} for t in traces)
    result = {"baseline": args.baseline, "candidate": args.candidate, "mode": "error",
              "match_keys": list(keys), "runs": [],
              "unmatched_baseline": [short_label(dict(zip(keys, k))) for k in base
                                     if k not in cand],
              "unmatched_candidate": [short_label(dict(zip(keys, k))) for k in cand
                                      if k not in base]}
    for k, b in base.items():
        if k not in cand:
            continue
        mb, mc = error_metrics(b), error_metrics(cand[k])
        rows = {}
        for m, vb in mb.items():
            vc = mc.get(m, float("nan"))
            if max(abs(vb), abs(vc)) < args.min_us and m != "step_us":
                continue
            rows[m] = {"base_median_us": vb, "cand_median_us": vc,
                       "error": vc / vb - 1.0 if vb > 0 else float("nan")}
        result["runs"].append({"key": dict(zip(keys, k)), "label": short_label(dict(zip(keys, k))),
                               "base_critical_rank": b.usual_critical_rank(),
                               "cand_critical_rank": cand[k].usual_critical_rank(),
                               "metrics": rows})
    steps = [abs(e["metrics"]["step_us"]["error"]) for e in result["runs"]
             if math.isfinite(e["metrics"]["step_us"]["error"])]
    result["max_abs_step_error"] = max(steps) if steps else float("nan")
    result["steps_within_10pct"] = sum(x <= 0.10 for x in steps)
    return (EXIT_OK if result["runs"] else EXIT_BAD), result


def print_unmatched(result, out):
    for k in result["unmatched_baseline"]:
        print(f"helix-compare: baseline run without a candidate: {k}", file=out)
    for k in result["unmatched_candidate"]:
        print(f"helix-compare: candidate run without a baseline: {k}", file=out)


def print_errors(result, out):
    print(f"helix-compare --error: baseline {result['baseline']}, candidate "
          f"{result['candidate']}; error = candidate / baseline - 1 (medians; phases of the "
          f"critical rank)", file=out)
    if result["runs"]:
        width = max(len("run"), *(len(e["label"]) for e in result["runs"]))
        head = f"{'run':<{width}}  {'metric':<22} {'base_us':>10} {'cand_us':>10} {'error_%':>8}"
        print(head, file=out)
        print("-" * len(head), file=out)
    for e in result["runs"]:
        label = e["label"]
        for m, row in e["metrics"].items():
            print(f"{label:<{width}}  {m:<22} {row['base_median_us']:>10.1f} "
                  f"{row['cand_median_us']:>10.1f} {fmt_pct(row['error']):>8}", file=out)
            label = ""
        print(f"{'':<{width}}  critical rank: baseline {e['base_critical_rank']}, candidate "
              f"{e['cand_critical_rank']}", file=out)
    print_unmatched(result, out)
    n = len(result["runs"])
    print(f"summary: {n} runs matched; step within 10%: {result['steps_within_10pct']} of {n}; "
          f"largest step error {fmt_pct(result['max_abs_step_error'])}%", file=out)


def fmt_pct(x) -> str:
    return "n/a" if not math.isfinite(x) else f"{x * 100:+.1f}"


def print_table(result, args, out):
    test = (f"one-sided U-test at alpha {args.alpha}" if args.test == "utest"
            else "bootstrap 95% band excluding 0")
    print(f"helix-compare: baseline {result['baseline']} ({result['baseline_runs']} runs), "
          f"candidate {result['candidate']} ({result['candidate_runs']} runs)", file=out)
    print(f"regression = median slower by > the limit (--threshold {args.threshold * 100:g}%, "
          f"or {args.band_factor:g} x the baseline jobs' spread) and {test} and "
          f"> {args.min_us:g} us", file=out)
    if result["runs"]:
        width = max(len("run"), *(len(e["label"]) for e in result["runs"]))
        head = (f"{'run':<{width}}  {'metric':<16} {'base_us':>10} {'cand_us':>10} "
                f"{'change_%':>8} {'limit_%':>7} {'band95_%':>16} {'p_slower':>8}  verdict")
        print(head, file=out)
        print("-" * len(head), file=out)
    for e in result["runs"]:
        label = e["label"]
        shown = 0
        for m, row in e["metrics"].items():
            if not args.all and m != "step_us" and row["verdict"] in ("ok", "n/a"):
                continue
            band = f"[{fmt_pct(row['band'][0])},{fmt_pct(row['band'][1])}]"
            p = row["p_slower"]
            print(f"{label:<{width}}  {m:<16} {row['base_median_us']:>10.1f} "
                  f"{row['cand_median_us']:>10.1f} {fmt_pct(row['change']):>8} "
                  f"{row.get('threshold', args.threshold) * 100:>7.1f} {band:>16} "
                  f"{'n/a' if not math.isfinite(p) else format(p, '.3f'):>8}  {row['verdict']}",
                  file=out)
            label = ""
            shown += 1
        for p in e["problems"]:
            print(f"{label:<{width}}  {p}", file=out)
            label = ""
    print_unmatched(result, out)
    n = len(result["runs"])
    print(f"summary: {n} runs matched, {result['regressions']} regressions, "
          f"{result['improvements']} improvements; {len(result['unmatched_baseline'])} baseline "
          f"and {len(result['unmatched_candidate'])} candidate runs unmatched", file=out)


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj


def build_parser() -> argparse.ArgumentParser:
    ap = ToolParser(
        prog="helix-compare", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example:\n  helix-compare results/baseline/cpu-tiny-gqa.h5 new.h5 --threshold 10%")
    ap.add_argument("baseline", metavar="BASELINE.h5", help="reference decode trace")
    ap.add_argument("candidate", metavar="CANDIDATE.h5", help="decode trace to judge")
    ap.add_argument("--threshold", default="5%", type=str,
                    help="relative slowdown of a median that counts as a regression, in percent "
                         "('5%%' or '5'; default 5%%)")
    ap.add_argument("--alpha", type=float, default=0.05,
                    help="significance level of the U-test (default 0.05)")
    ap.add_argument("--test", choices=("utest", "bootstrap"), default="utest",
                    help="significance test: 'utest' = one-sided Mann-Whitney U on the iteration "
                         "samples (default); 'bootstrap' = the 95%% band of the relative change "
                         "of medians must exclude 0")
    ap.add_argument("--min-us", type=float, default=1.0,
                    help="absolute floor in microseconds: a change of the median smaller than "
                         "this is never flagged, and phases under it in both traces are skipped "
                         "(default 1.0 us)")
    ap.add_argument("--band-factor", type=float, default=2.0,
                    help="with several baseline jobs of a run (helix-sweep --repeat): a metric's "
                         "threshold is at least this times their spread (default 2; 0: off)")
    ap.add_argument("--no-phases", dest="phases", action="store_false",
                    help="compare only step_us and exposed_comm_us, not every phase")
    ap.add_argument("--ignore", default="",
                    help="comma-separated match keys to ignore, e.g. 'device' to compare across "
                         f"machines (keys: {', '.join(MATCH_KEYS)})")
    ap.add_argument("--require-all", action="store_true",
                    help="exit 1 also when a baseline run has no candidate")
    ap.add_argument("--all", action="store_true",
                    help="print every compared metric (default: step_us of every run and the "
                         "metrics that changed beyond the threshold)")
    ap.add_argument("--error", action="store_true",
                    help="report the candidate's error against the baseline per metric (real vs "
                         "emulated or modeled twins: runs match whatever their emulation), no "
                         "regression verdict")
    ap.add_argument("--json", metavar="PATH",
                    help="also write the result as JSON to PATH ('-' = stdout; the table then "
                         "goes to stderr)")
    return ap


def check_options(args):
    """Validates the options in place; raises BadInput naming the option."""
    try:
        args.threshold = parse_threshold(args.threshold)
    except ValueError:
        raise BadInput(f"--threshold: expected a finite percentage >= 0 like '5%', got "
                       f"'{args.threshold}'") from None
    if not (math.isfinite(args.band_factor) and args.band_factor >= 0):
        raise BadInput(f"--band-factor: must be a finite number >= 0, got {args.band_factor}")
    if not 0 < args.alpha < 1:
        raise BadInput(f"--alpha: must be between 0 and 1, got {args.alpha}")
    if not (math.isfinite(args.min_us) and args.min_us >= 0):
        raise BadInput(f"--min-us: must be a finite number of microseconds >= 0, got "
                       f"{args.min_us}")
    ignore = {k.strip() for k in args.ignore.split(",") if k.strip()}
    unknown = ignore - set(MATCH_KEYS)
    if unknown:
        raise BadInput(f"--ignore: unknown keys {sorted(unknown)} (keys: "
                       f"{', '.join(MATCH_KEYS)})")
    args.ignore = ignore
    if args.json and args.json != "-":
        check_output(args.json, "--json", [("BASELINE", args.baseline),
                                           ("CANDIDATE", args.candidate)])


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)

    def work():
        check_options(args)
        code, result = run_errors(args) if args.error else run_compare(args)
        text = None
        if args.json:
            result["exit_code"] = code
            text = json.dumps(_json_safe(result), indent=1)
        table_out = sys.stderr if args.json == "-" else sys.stdout
        if args.error:
            print_errors(result, table_out)
        else:
            print_table(result, args, table_out)
        if code == EXIT_BAD:
            print(f"helix-compare: nothing matched: no run of {args.candidate} has the same "
                  f"parameters and device as a run of {args.baseline}", file=sys.stderr)
        if text is not None:
            if args.json == "-":
                print(text)
            else:
                try:
                    with atomic_output(args.json) as tmp, open(tmp, "w") as f:
                        f.write(text + "\n")
                except OSError as e:
                    raise BadInput(f"--json: cannot write '{args.json}' ({e.strerror})") from None
        return code

    return guarded("helix-compare", work)


if __name__ == "__main__":
    sys.exit(main())
