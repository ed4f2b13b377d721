"""helix-micro's collective tables against the nccl-tests text format, and the parser of both.

nccl-tests cannot run here (no GPU), so its format is rebuilt below from its printf formats
(util.cu of nccl-tests 2.19.6: writeResultHeader, writeBenchmarkLinePreamble,
writeBenchmarkLineBody with getFloatStr, writeResultFooter), written independently of the C++
code that prints helix-micro's tables. Every line helix-micro prints must be what those formats
print for its values, and a log in nccl-tests' layout (preamble, device lines, the table, the
footer) must parse into the same tables."""
import os
import subprocess

import pytest

from conftest import REPO, need_binary, tool_env
from helixbench import nccl_table

MICRO = os.path.join(REPO, "build", "bin", "helix-micro")


def fnum(value, width):
    """getFloatStr: %*.2f, %*.1f, %*.0f, whichever fits the width, else %*.1e / %*.0e."""
    for d in (2, 1, 0):
        s = "%*.*f" % (width, d, value)
        if len(s) <= width:
            return s
    return ("%*.1e" if width >= 7 else "%*.0e") % (width, value)[:width]


def header_lines():
    return [
        "#",
        "# %10s  %12s  %8s  %6s  %6s           out-of-place                       in-place          "
        % ("", "", "", "", ""),
        "# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s %s"
        % ("size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time",
           "algbw", "busbw", "#wrong", ""),
        "# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s %s"
        % ("(B)", "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)",
           "(GB/s)", "", ""),
    ]


def body(r):
    s = "  %7s  %6s  %6s" % (fnum(r.time_us, 7), fnum(r.algbw_gbps, 6), fnum(r.busbw_gbps, 6))
    return s + ("  %6g" % r.wrong if r.wrong is not None else "    N/A")


def row_line(row):
    s = "%12d  %12d  %8s  %6s  %6s" % (row.size_bytes, row.count, row.type, row.redop,
                                       "%6i" % row.root)
    return s + body(row.out_of_place) + (body(row.in_place) if row.in_place else "")


def footer_lines(errors, avg):
    return ["# %-20s : %d %s" % ("Out of bounds values", errors, "FAILED" if errors else "OK"),
            "# %-20s : %g %s" % ("Avg bus bandwidth", avg, ""), "#"]


def as_nccl_tests_log(table):
    """The table as nccl-tests would print it for this collective, with its preamble."""
    program = {"all_to_all": "alltoall", "send_recv": "sendrecv"}.get(table.collective,
                                                                       table.collective)
    lines = ["# nccl-tests version 2.19.6 nccl-headers=22807 nccl-library=22807",
             f"# Collective test starting: {program}_perf",
             "# nThread 1 nGpus 1 minBytes 8 maxBytes 268435456 step: 2(factor) warmup iters: 1 "
             "iters: 20 agg iters: 1 validation: 1 graph: 0 unalign: 0",
             "#",
             "# Using devices",
             "#  Rank  0 Group  0 Pid  12345 on      node0 device  0 [0000:19:00] NVIDIA H200",
             "node0:12345:12345 [0] NCCL INFO Bootstrap: Using eth0:10.0.0.1<0>"]
    lines += header_lines()
    lines += [row_line(r) for r in table.rows]
    lines += footer_lines(table.out_of_bounds, table.avg_busbw_gbps)
    lines += [f"# Collective test concluded: {program}_perf", ""]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def micro_log():
    need_binary()
    if not os.access(MICRO, os.X_OK):
        pytest.skip("build/bin/helix-micro missing")
    p = subprocess.run(["mpirun", "-np", "3", MICRO, "--backend", "cpu", "--quick",
                        "--benchmark_filter=coll", "--coll-iters", "2"],
                       capture_output=True, text=True, env=tool_env(), timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_helix_micro_prints_the_nccl_tests_format(micro_log):
    assert "\x1b[" not in micro_log  # no colour codes when not on a terminal
    lines = micro_log.splitlines()
    tables = nccl_table.parse(micro_log)
    assert [t.collective for t in tables] == ["all_reduce", "all_gather", "reduce_scatter",
                                              "all_to_all", "send_recv"]
    for t in tables:
        start = next(i for i, l in enumerate(lines)
                     if l.startswith(f"# helix-micro collective {t.collective}: 3 ranks, "))
        block = lines[start + 1:start + 5 + len(t.rows) + 3]
        want = header_lines() + [row_line(r) for r in t.rows] + footer_lines(
            t.out_of_bounds, t.avg_busbw_gbps)
        assert block == want
        assert t.columns == nccl_table.HEADER and len(t.rows) >= 3
        # counts as nccl-tests: S / 4 for all_reduce and send_recv, one rank's block otherwise
        per_rank = t.collective not in ("all_reduce", "send_recv")
        for r in t.rows:
            assert r.count == (r.size_bytes // 4 // 3 if per_rank else r.size_bytes // 4)
            assert r.count % (4 if per_rank else 1) == 0  # whole 16-byte blocks per rank
            assert r.type == "float" and r.root == -1
            assert r.redop == ("none" if t.collective in ("all_gather", "all_to_all") else "sum")
            assert r.out_of_place.wrong == 0 and r.in_place is not None
            checked = t.collective in ("all_reduce", "all_gather", "reduce_scatter")
            assert (r.in_place.wrong == 0) if checked else (r.in_place.wrong is None)
        busbw = [x.busbw_gbps for r in t.rows for x in (r.out_of_place, r.in_place)]
        # the printed bandwidths are rounded to 2 decimals, the average is of the exact ones
        assert t.avg_busbw_gbps == pytest.approx(sum(busbw) / len(busbw), abs=0.006)
        assert t.out_of_bounds == 0


def test_both_formats_parse_the_same(micro_log, tmp_path):
    tables = nccl_table.parse(micro_log)
    for t in tables:
        log = as_nccl_tests_log(t)
        (back,) = nccl_table.parse(log)
        assert back == t  # collective, columns, rows, footer: all the same
    ar = tables[0]
    a = tmp_path / "helix-micro.log"
    b = tmp_path / "all_reduce_perf.log"
    a.write_text(micro_log)
    b.write_text(as_nccl_tests_log(ar))
    assert nccl_table.main([str(a), str(b)]) == 0
    bad = as_nccl_tests_log(ar).replace("%12d  %12d" % (ar.rows[1].size_bytes, ar.rows[1].count),
                                        "%12d  %12d" % (ar.rows[1].size_bytes,
                                                        ar.rows[1].count * 2))
    b.write_text(bad)
    assert nccl_table.main([str(a), str(b)]) == 1
    b.write_text("no table here\n")
    assert nccl_table.main([str(a), str(b)]) == 2


def test_parser_rejects_per_iteration_headers():
    text = ("# " + " ".join(nccl_table.HEADER[:9] + ["i_min", "i_max", "i_p99", "i_cv%"]
                            + nccl_table.HEADER[9:]) + "\n")
    with pytest.raises(nccl_table.ParseError, match="unsupported"):
        nccl_table.parse(text)
