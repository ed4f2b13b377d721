"""helix-export: helix-bench traces as one CSV or Parquet table.

The tables are those of helixbench.load and friends (README, "Reading results"):
  phases   one row per run, rank and phase: the rank's median/mean/min/max time over the timed
           iterations (default)
  runs     one row per run: attributes and the per-phase medians of the max over ranks
  samples  one row per run, iteration, rank and phase: every timing sample (time_us)
  GROUP    a column table of the traces: micro/kernels, micro/collectives, model/points,
           disagg/points, ...
Every row names its trace (`file`). Several traces go into one table.

The output follows the output-path policy of helix-bench: a regular file (never a directory,
device or FIFO), none of the traces read, checked before any work; written under a temporary
name and renamed when complete (a terminating signal removes the temporary file). An existing
file is only replaced with --force. Parquet needs pyarrow (pinned in requirements.txt).

Exit codes: 0 written; 2 bad input (a missing, non-trace or malformed file, no rows, an output
that cannot be written or exists without --force, Parquet without pyarrow), with a one-line
message; nothing is written then.
"""
from __future__ import annotations

import argparse
import os
import sys

from .safeio import BadInput, ToolParser, atomic_output, check_input, check_output, guarded
from .trace import TraceError

EXIT_OK, EXIT_BAD = 0, 2
KINDS = ("phases", "runs", "samples")


class UsageError(BadInput):
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
    with atomic_output(out) as tmp:
        try:
            if fmt == "csv":
                df.to_csv(tmp, index=False)
            else:
                df.to_parquet(tmp, index=False, engine="pyarrow")
        except OSError as e:
            raise UsageError(f"--{fmt}: cannot write '{out}' ({e.strerror or e})") from None


def build_parser() -> argparse.ArgumentParser:
    ap = ToolParser(
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

    def work():
        for t in opts.traces:
            check_input(t, "TRACE")
        check_output(out, f"--{fmt}", [("TRACE", t) for t in opts.traces])
        if os.path.exists(out) and not opts.force:
            raise UsageError(f"--{fmt}: {out} exists (use --force to replace it)")
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
        print(f"helix-export: {out}: {len(df)} rows x {len(df.columns)} columns ({opts.kind}, "
              f"{len(opts.traces)} trace{'s' if len(opts.traces) > 1 else ''})")
        return EXIT_OK

    return guarded("helix-export", work, bad=(BadInput, TraceError))


if __name__ == "__main__":
    sys.exit(main())
