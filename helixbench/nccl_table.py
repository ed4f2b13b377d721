"""Collective tables in the nccl-tests text format, as printed by nccl-tests' *_perf programs and by
helix-micro: a parser, and a side-by-side comparison of two logs.

    python3 -m helixbench.nccl_table helix-micro.log all_reduce_perf.log [--collective all_reduce]

A table is the header of nccl-tests (`size count type redop root`, then `time algbw busbw
#wrong` for out-of-place and for in-place, then the units line), one line per size, and the
footer lines `# Out of bounds values : N OK|FAILED` and `# Avg bus bandwidth : X`. Lines that
belong to neither (NCCL INFO messages, Google Benchmark's table, the device list) are skipped.
The collective is named by the line before the header: nccl-tests' `# Collective test starting:
all_reduce_perf` or helix-micro's `# helix-micro collective all_reduce: ...`. nccl-tests'
per-iteration columns (-I 1) and timestamps (-T) are not read.

The comparison matches the tables of each collective found in both logs and their rows by
(size, count, type, redop, root); it prints the bus bandwidths side by side and exits 1 when the
header columns differ or when a size present in both has a different count, type, redop or root
(exit 2: a log cannot be read or holds no table).
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from typing import Optional

HEADER = ["size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time",
          "algbw", "busbw", "#wrong"]
UNITS = ["(B)", "(elements)", "(us)", "(GB/s)", "(GB/s)", "(us)", "(GB/s)", "(GB/s)"]
NAMES = {"alltoall": "all_to_all", "sendrecv": "send_recv"}

_START = re.compile(r"^#\s*Collective test starting:\s*(\S+)")
_HELIX = re.compile(r"^#\s*helix-micro collective\s+(\w+)\s*:")
_OOB = re.compile(r"^#\s*Out of bounds values\s*:\s*(\d+)\s*(OK|FAILED)?\s*$")
_AVG = re.compile(r"^#\s*Avg bus bandwidth\s*:\s*(\S+)")


class ParseError(Exception):
    pass


@dataclass
class Result:
    time_us: float
    algbw_gbps: float
    busbw_gbps: float
    wrong: Optional[int]  # None: N/A (not checked)


@dataclass
class Row:
    size_bytes: int
    count: int
    type: str
    redop: str
    root: int
    out_of_place: Result
    in_place: Optional[Result]

    def key(self) -> tuple:
        return (self.size_bytes, self.count, self.type, self.redop, self.root)


@dataclass
class Table:
    collective: Optional[str]
    columns: list
    rows: list = field(default_factory=list)
    out_of_bounds: Optional[int] = None
    avg_busbw_gbps: Optional[float] = None


def collective_name(program: str) -> str:
    """'all_reduce_perf' -> 'all_reduce', 'alltoall_perf' -> 'all_to_all'."""
    name = program.rsplit("/", 1)[-1]
    name = name[:-5] if name.endswith("_perf") else name
    return NAMES.get(name, name)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ParseError(f"not a number: '{text}'") from None


def _result(fields: list) -> Result:
    wrong = None if fields[3] == "N/A" else int(_number(fields[3]))
    return Result(_number(fields[0]), _number(fields[1]), _number(fields[2]), wrong)


def _row(line: str) -> Optional[Row]:
    f = line.split()
    if len(f) not in (9, 13) or not (f[0].isdigit() and f[1].isdigit()):
        return None
    try:
        return Row(int(f[0]), int(f[1]), f[2], f[3], int(f[4]), _result(f[5:9]),
                   _result(f[9:13]) if len(f) == 13 else None)
    except (ParseError, ValueError):
        return None


def parse(text: str) -> list:
    """Every table of `text`, in order."""
    tables, current, name, expect_units = [], None, None, False
    for line in text.splitlines():
        s = line.rstrip()
        m = _START.match(s) or _HELIX.match(s)
        if m:
            name = collective_name(m.group(1))
            continue
        if s.startswith("#"):
            tokens = s[1:].split()
            if tokens[:len(HEADER)] == HEADER or tokens[:1] == ["size"] and "redop" in tokens:
                if tokens != HEADER:
                    raise ParseError(f"unsupported nccl-tests header (per-iteration or timestamp "
                                     f"columns?): {s.strip()}")
                current = Table(collective=name, columns=list(tokens))
                tables.append(current)
                expect_units = True
                continue
            if expect_units and tokens == UNITS:
                expect_units = False
                continue
            if current is not None:
                m = _OOB.match(s)
                if m:
                    current.out_of_bounds = int(m.group(1))
                    continue
                m = _AVG.match(s)
                if m:
                    current.avg_busbw_gbps = _number(m.group(1))
                    current = None  # the table ends here
                    name = None
            continue
        if current is not None:
            row = _row(s)
            if row is not None:
                current.rows.append(row)
    return tables


def by_collective(tables: list) -> dict:
    out = {}
    for t in tables:
        out.setdefault(t.collective or "?", t)
    return out


def compare(a: Table, b: Table, out=sys.stdout) -> int:
    """Prints the rows of two tables of one collective side by side; returns the number of
    structural differences (columns, or count/type/redop/root of a shared size)."""
    diffs = 0
    if a.columns != b.columns:
        print(f"  columns differ: {a.columns} vs {b.columns}", file=out)
        diffs += 1
    rb = {r.size_bytes: r for r in b.rows}
    print(f"  {'size_bytes':>12} {'count':>10} {'type':>8} {'redop':>5} {'root':>4} "
          f"{'busbw_A_gbps':>12} {'busbw_B_gbps':>12} {'B/A':>6}", file=out)
    shared = 0
    for r in a.rows:
        o = rb.get(r.size_bytes)
        if o is None:
            continue
        shared += 1
        mark = ""
        if o.key() != r.key():
            diffs += 1
            mark = f"  DIFFERS: {o.key()}"
        ratio = o.out_of_place.busbw_gbps / r.out_of_place.busbw_gbps \
            if r.out_of_place.busbw_gbps else float("nan")
        print(f"  {r.size_bytes:>12} {r.count:>10} {r.type:>8} {r.redop:>5} {r.root:>4} "
              f"{r.out_of_place.busbw_gbps:>12.2f} {o.out_of_place.busbw_gbps:>12.2f} "
              f"{ratio:>6.2f}{mark}", file=out)
    print(f"  {shared} sizes in both; Avg bus bandwidth {a.avg_busbw_gbps} vs {b.avg_busbw_gbps} "
          "GB/s (over each log's own sizes)", file=out)
    return diffs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m helixbench.nccl_table", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log_a", help="a log holding nccl-tests-format tables (e.g. helix-micro's)")
    ap.add_argument("log_b", nargs="?", help="a second log to compare with (e.g. nccl-tests')")
    ap.add_argument("--collective", help="only this collective (all_reduce, all_gather, ...)")
    opts = ap.parse_args(argv)
    try:
        logs = []
        for path in [opts.log_a] + ([opts.log_b] if opts.log_b else []):
            try:
                with open(path, errors="replace") as f:
                    tables = parse(f.read())
            except OSError as e:
                raise ParseError(f"{path}: {e.strerror}") from None
            if not tables:
                raise ParseError(f"{path}: no nccl-tests table found")
            logs.append(by_collective(tables))
    except ParseError as e:
        print(f"nccl_table: error: {e}", file=sys.stderr)
        return 2
    names = [n for n in logs[0] if opts.collective in (None, n)]
    if len(logs) == 1:
        for n in names:
            t = logs[0][n]
            print(f"{n}: {len(t.rows)} sizes, out of bounds {t.out_of_bounds}, avg busbw "
                  f"{t.avg_busbw_gbps} GB/s")
        return 0 if names else 2
    diffs, compared = 0, 0
    for n in names:
        if n in logs[1] or (len(logs[1]) == 1 and "?" in logs[1]):
            other = logs[1].get(n) or logs[1]["?"]
            print(f"{n}: A = {opts.log_a}, B = {opts.log_b}")
            diffs += compare(logs[0][n], other)
            compared += 1
    if compared == 0:
        print("nccl_table: error: no collective in both logs", file=sys.stderr)
        return 2
    print(f"nccl_table: {compared} collective(s) compared, {diffs} structural difference(s)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
