"""helix-export: helix-bench traces as one CSV or Parquet table.

The tables are those of helixbench.load and friends (README, "Reading results"):
  phases   one row per run, rank and phase: the rank's median/mean/min/max time over the timed
           iterations (default)
  runs     one row per run: attributes and the per-phase medians of the max over ranks
  samples  one row per run, iteration, rank and phase: every timing sample (time_us)
  GROUP    a column table of the traces: micro/kernels, micro/collectives, model/points,
           disagg/points, ...
Every row names its trace (`file`). Several traces go into one table.

The file is written under a temporary name and renamed when complete; an existing file is only
replaced with --force. Parquet needs pyarrow (pinned in requirements.txt).

Exit codes: 0 written; 2 bad input (a missing or non-trace file, no rows, an existing output
without --force, Parquet without pyarrow); nothing is written then.
"""
from __future__ import annotations

import argparse
import os
import sys

from .trace import TraceError

EXIT_OK, EXIT_BAD = 0, 2
KINDS = ("phases", "runs", "samples")


class UsageError(Exception):
    pass


def table(paths: list, kind: str):
    from . import frame
    if kind == "phases":
        return frame.load(paths)
    if kind == "runs":
        return frame.load_runs(paths)
    if kind == "samples":
        return frame.load_samples(paths)
    return frame.load_table(paths, kind)


def write(df, out: str, fmt: str):
    tmp = f"{out}.tmp.{os.getpid()}"
    try:
        if fmt == "csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False, engine="pyarrow")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="helix-export", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=("Examples:\n"
                "  helix-export results/quickstart.h5 --csv phases.csv\n"
                "  helix-export sweep-*.h5 --kind runs --parquet runs.parquet\n"
                "  helix-export micro.h5 --kind micro/collectives --csv collectives.csv"))
    ap.add_argument("traces", nargs="+", metavar="TRACE.h5", help="helix-bench HDF5 traces")
    out = ap.add_mutually_exclusive_group(required=True)
    out.add_argument("--csv", metavar="FILE.csv", help="write CSV (comma-separated, a header row)")
    out.add_argument("--parquet", metavar="FILE.parquet", help="write Parquet (through pyarrow)")
    ap.add_argument("--kind", default="phases",
                    help="table: phases (default), runs, samples, or a column-table group such "
                         "as micro/kernels, micro/collectives, model/points, disagg/points")
    ap.add_argument("--force", action="store_true", help="replace an existing output file")
    return ap


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = build_parser().parse_args(argv)
    fmt, out = ("csv", opts.csv) if opts.csv else ("parquet", opts.parquet)
    try:
        if os.path.exists(out) and not opts.force:
            raise UsageError(f"--{fmt}: {out} exists (use --force to replace it)")
        folder = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(folder):
            raise UsageError(f"--{fmt}: directory {folder} does not exist")
        if fmt == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise UsageError("--parquet: needs pyarrow (pip install -r requirements.txt, or "
                                 "use --csv)") from None
        df = table(opts.traces, opts.kind)
        if len(df) == 0:
            raise UsageError(f"--kind {opts.kind}: no rows in {', '.join(opts.traces)}")
        write(df, out, fmt)
    except (UsageError, TraceError) as e:
        print(f"helix-export: error: {e}", file=sys.stderr)
        return EXIT_BAD
    print(f"helix-export: {out}: {len(df)} rows x {len(df.columns)} columns ({opts.kind}, "
          f"{len(opts.traces)} trace{'s' if len(opts.traces) > 1 else ''})")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
