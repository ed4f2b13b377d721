"""The table of the bad-input matrix: one Case per hostile input, grouped by subcommand and option
family. Placeholders in arguments: {B} the binaries' folder, {F} the fixtures, {S} the case's
sandbox (also its working directory), {PY} the Python interpreter, {SCRIPTS} the scripts folder.

Every family is generated from a table of options and ranges, so a new option needs one line."""
from __future__ import annotations

import fcntl
import os
import shutil
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "fuzz"))

BENCH, MICRO = "{B}/helix-bench", "{B}/helix-micro"
KBENCH = "{B}/helix-kernel-bench"  # built with the CUDA toolkit only; its cases skip without it
INT64_MAX = 2 ** 63 - 1


@dataclass
class Case:
    id: str
    argv: list
    regex: str
    ranks: int = 1
    code: int = 2
    timeout: float = 30.0
    one_line: bool = True
    needs_root: bool = False
    other_ranks_may_print: bool = False
    setup: object = None  # callable(sandbox) -> an object closed after the run, or None
    on_stdout: bool = False  # the message is a line of stdout (a gate's verdict), not stderr
    notes: str = ""


def err(prog, param):
    """The first stderr line: the program, 'error:', the parameter."""
    return ("^" + prog + r": error: " + param.replace("-", r"\-").replace(".", r"\.") +
            (r"\b" if param else ""))


def bench_err(param):
    return err("helix-bench", param)


def micro_err(param):
    return err("helix-micro", param)


def kbench_err(param):
    return err("helix-kernel-bench", param)


# ----------------------------------------------------------------------------- value families
def int_values(lo, hi, issue=False):
    """Bad values of an integer option with range [lo, hi] (issue: also the values of the issue
    that overflowed: 2^31 - 1 and beyond int64)."""
    vals = [("word", "abc"), ("fraction", "1.5")]
    if lo > -INT64_MAX:
        vals.append(("below", str(lo - 1)))
    if hi < INT64_MAX:
        vals.append(("above", str(hi + 1)))
    if issue:
        vals += [("empty", ""), ("exponent", "1e3"), ("overflow", "99999999999999999999")]
        if hi < 2 ** 31 - 1:
            vals.append(("int_max", "2147483647"))
    return vals


REAL_VALUES = [("nan", "nan"), ("inf", "inf"), ("word", "abc"), ("negative", "-1")]
LIST_VALUES = [("zero", "0"), ("word", "abc"), ("empty_item", "1,,2"), ("dash", "-"),
               ("above_64m", "65M")]
BYTES_VALUES = [("word", "lots"), ("unit", "1T"), ("above_1t", "2048G")]

DECODE_BASE = [BENCH, "decode", "--model", "tiny-gqa", "--seq", "64", "--batch", "1", "--iters",
               "1", "--warmup", "0", "--quiet"]
KVT_BASE = [BENCH, "kv-transfer", "--model", "tiny-gqa", "--prefill-ranks", "1", "--kvp", "1",
            "--tpa", "1", "--tokens", "64", "--iters", "1", "--quiet"]
MODEL_BASE = [BENCH, "model", "--hardware", "h200", "--model", "llama-3.1-8b", "--seq", "4K",
              "--gpus", "1-2", "--max-batch", "4", "--dtype", "fp8", "--quiet"]
DISAGG_BASE = [BENCH, "disagg", "--hardware", "b200", "--model", "llama-3.1-8b", "--gpus", "4",
               "--isl", "4K", "--osl", "256", "--quiet"]
CAL_BASE = [BENCH, "calibrate", "--quick", "--out", "{S}/profile.json"]
MICRO_BASE = [MICRO, "--quick", "--benchmark_filter=stream", "--stream-bytes", "8M"]

INT_OPTIONS = [  # (family, base argv, error, option, lo, hi)
    ("decode", DECODE_BASE, bench_err, "--iters", 1, 1000000),
    ("decode", DECODE_BASE, bench_err, "--warmup", 0, 1000000),
    ("decode", DECODE_BASE, bench_err, "--kv-block", 1, 65536),
    ("decode", DECODE_BASE, bench_err, "--decode-steps", 0, 4096),
    ("decode", DECODE_BASE, bench_err, "--kvp", 1, 4096),
    ("decode", DECODE_BASE, bench_err, "--tpa", 1, 4096),
    ("decode", DECODE_BASE, bench_err, "--tpf", 1, 4096),
    ("decode", DECODE_BASE, bench_err, "--ep", 1, 4096),
    ("decode", DECODE_BASE, bench_err, "--hopb-chunks", 1, 65536),
    ("decode", DECODE_BASE, bench_err, "--hopb-comm-sms", 0, 64),
    ("decode", DECODE_BASE, bench_err, "--emulate", 0, 4096),
    ("decode", DECODE_BASE, bench_err, "--emulate-rank", 0, 4095),  # or 'all'
    ("decode", DECODE_BASE, bench_err, "--seed", 0, INT64_MAX),
    ("kvt", KVT_BASE, bench_err, "--prefill-ranks", 1, 4096),
    ("kvt", KVT_BASE, bench_err, "--kvp", 1, 4096),
    ("kvt", KVT_BASE, bench_err, "--tpa", 1, 4096),
    ("kvt", KVT_BASE, bench_err, "--kv-block", 1, 65536),
    ("kvt", KVT_BASE, bench_err, "--layers", 1, 1024),
    ("kvt", KVT_BASE, bench_err, "--iters", 1, 1000000),
    ("kvt", KVT_BASE, bench_err, "--warmup", 0, 1000000),
    ("model", MODEL_BASE, bench_err, "--max-batch", 1, 65536),
    ("model", MODEL_BASE, bench_err, "--frontier-rows", 0, 1000000),
    ("disagg", DISAGG_BASE, bench_err, "--domain", 0, 4096),
    ("disagg", DISAGG_BASE, bench_err, "--gpus", 1, 4096),
    ("disagg", DISAGG_BASE, bench_err, "--prefill-gpus", 1, 4096),
    ("calibrate", CAL_BASE, bench_err, "--iters", 0, 1000000),
    ("calibrate", CAL_BASE, bench_err, "--coll-iters", 0, 1000000),
    ("micro", MICRO_BASE, micro_err, "--iters", 0, 1000000),
    ("micro", MICRO_BASE, micro_err, "--coll-iters", 0, 1000000),
    ("micro", MICRO_BASE, micro_err, "--warmup", 0, 1000000),
    ("micro", MICRO_BASE, micro_err, "--size-factor", 0, 1024),
    ("micro", MICRO_BASE, micro_err, "--seed", 0, INT64_MAX),
]
REAL_OPTIONS = [  # (family, base, error, option, zero allowed)
    ("decode", DECODE_BASE, bench_err, "--link-gbps", False),
    ("decode", DECODE_BASE, bench_err, "--link-latency-us", True),
    ("model", MODEL_BASE, bench_err, "--workspace-gib", True),
    ("disagg", DISAGG_BASE, bench_err, "--ftl-max", False),
    ("disagg", DISAGG_BASE, bench_err, "--nic-gbps", False),
    ("disagg", DISAGG_BASE, bench_err, "--fixed-ratio", False),
]
LIST_OPTIONS = [
    ("decode", DECODE_BASE, bench_err, "--seq"),
    ("decode", DECODE_BASE, bench_err, "--batch"),
    ("kvt", KVT_BASE, bench_err, "--tokens"),
    ("model", MODEL_BASE, bench_err, "--seq"),
    ("disagg", DISAGG_BASE, bench_err, "--isl"),
    ("disagg", DISAGG_BASE, bench_err, "--osl"),
]
BYTES_OPTIONS = [
    ("calibrate", CAL_BASE, bench_err, "--stream-bytes"),
    ("calibrate", CAL_BASE, bench_err, "--max-weight-bytes"),
    ("calibrate", CAL_BASE, bench_err, "--max-bytes"),
    ("micro", MICRO_BASE, micro_err, "--stream-bytes"),
    ("micro", MICRO_BASE, micro_err, "--max-kv-bytes"),
    ("micro", MICRO_BASE, micro_err, "--max-weight-bytes"),
    ("micro", MICRO_BASE, micro_err, "--min-bytes"),
    ("micro", MICRO_BASE, micro_err, "--max-bytes"),
]


def option_families():
    out = []
    for fam, base, e, opt, lo, hi in INT_OPTIONS:
        for tag, v in int_values(lo, hi, issue=fam == "decode"):
            if opt == "--prefill-gpus" and tag == "empty":  # empty: not given (= --gpus)
                continue
            out.append(Case(f"{fam}{opt}={tag}", base + [opt, v], e(opt)))
    for fam, base, e, opt, zero_ok in REAL_OPTIONS:
        vals = REAL_VALUES + ([] if zero_ok else [("zero", "0")]) + [("huge", "1e400")]
        for tag, v in vals:
            out.append(Case(f"{fam}{opt}={tag}", base + [opt, v], e(opt)))
    for fam, base, e, opt in LIST_OPTIONS:
        for tag, v in LIST_VALUES:
            out.append(Case(f"{fam}{opt}={tag}", base + [opt, v], e(opt)))
    out.append(Case("decode--seq=1025_items", DECODE_BASE + ["--seq", ",".join(["1"] * 1025)],
                    bench_err("--seq")))
    out.append(Case("decode--seq=huge_suffix", DECODE_BASE + ["--seq", "999999999999M"],
                    bench_err("--seq")))
    for fam, base, e, opt in BYTES_OPTIONS:
        for tag, v in BYTES_VALUES:
            out.append(Case(f"{fam}{opt}={tag}", base + [opt, v], e(opt)))
    return out


# ----------------------------------------------------------------------------- enums and usage
def usage_cases():
    c = []
    add = c.append
    add(Case("bench=no_subcommand", [BENCH], r"^helix-bench: error: "))
    add(Case("bench=unknown_subcommand", [BENCH, "decod"],
             r"^helix-bench: error: .*(decod|subcommand)"))
    for sub, base in (("decode", DECODE_BASE), ("kvt", KVT_BASE), ("model", MODEL_BASE),
                      ("disagg", DISAGG_BASE), ("calibrate", CAL_BASE)):
        add(Case(f"{sub}=unknown_option", base + ["--bogus"], bench_err("") + r".*--bogus"))
        add(Case(f"{sub}=option_without_value", base + ["--out"], bench_err("") + r".*--out"))
    add(Case("decode--model=missing", [BENCH, "decode", "--seq", "64"], bench_err("") +
             r".*--model"))
    add(Case("decode--model=unknown", DECODE_BASE + ["--model", "gpt-5"], bench_err("--model")))
    add(Case("decode--layouts=unknown", DECODE_BASE + ["--layouts", "tp,ring"],
             bench_err("--layouts")))
    add(Case("decode--layouts=empty", DECODE_BASE + ["--layouts", ""], bench_err("--layouts")))
    for tag, v in (("empty_item", "1,,2"), ("dash", "-"), ("one_bad_item", "2,x")):
        add(Case(f"decode--hopb-chunks={tag}", DECODE_BASE + ["--hopb-chunks", v],
                 bench_err("--hopb-chunks")))
    add(Case("decode--profile-once=with_out", DECODE_BASE + ["--profile-once", "--out", "p.h5"],
             bench_err("--out"), ranks=2))
    add(Case("decode--layer=unknown", DECODE_BASE + ["--layer", "sparse"], bench_err("--layer")))
    add(Case("decode--backend=unknown", DECODE_BASE + ["--backend", "tpu"],
             bench_err("--backend")))
    add(Case("decode--emulate=cpu", DECODE_BASE + ["--emulate", "4"], bench_err("--emulate")))
    add(Case("decode--kvp=times_tpa", DECODE_BASE + ["--kvp", "3", "--tpa", "2"],
             bench_err("--kvp/--tpa"), ranks=2))
    add(Case("decode--tpa=above_kv_heads", DECODE_BASE + ["--layouts", "helix", "--kvp", "1",
                                                          "--tpa", "8"],
             r"^helix-bench: error: --(kvp/--)?tpa\b", ranks=1))
    add(Case("kvt--backend=unknown", KVT_BASE + ["--backend", "tpu"], bench_err("--backend"),
             ranks=2))
    add(Case("kvt=rank_count", KVT_BASE, bench_err("ranks"), ranks=3))
    add(Case("kvt--tpa=above_kv_heads", KVT_BASE + ["--tpa", "8"], bench_err("--tpa")))
    add(Case("kvt--prefill-ranks=above_q_heads", KVT_BASE + ["--prefill-ranks", "64"],
             bench_err("--prefill-ranks")))
    add(Case("model--hardware=missing", [BENCH, "model", "--model", "llama-3.1-8b"],
             bench_err("--hardware"), ranks=2))
    add(Case("model--hardware=unknown", MODEL_BASE + ["--hardware", "tpu-v9"],
             bench_err("--hardware"), ranks=2))
    add(Case("model--model=missing", [BENCH, "model", "--hardware", "h200"],
             bench_err("--model"), ranks=2))
    add(Case("model--dtype=unknown", MODEL_BASE + ["--dtype", "int3"], bench_err("--dtype")))
    add(Case("model--dtype=fp4_on_h100", MODEL_BASE + ["--hardware", "h100-sxm", "--dtype",
                                                       "fp4"], bench_err("--dtype"), ranks=2))
    for tag, v in (("reversed", "9-4"), ("zero", "0-4"), ("above_4096", "1-5000"),
                   ("words", "a-b"), ("dash", "-"), ("double_dash", "1--2"), ("empty", "")):
        add(Case(f"model--gpus={tag}", MODEL_BASE + ["--gpus", v], bench_err("--gpus")))
    add(Case("model--reproduce=unknown", [BENCH, "model", "--reproduce", "other-paper"],
             bench_err("--reproduce"), ranks=2))
    add(Case("model--reproduce=with_validate", [BENCH, "model", "--reproduce", "helix-paper",
                                                "--validate", "{F}/trace.h5"],
             bench_err("--reproduce"), ranks=2))
    add(Case("model--validate=without_hardware", [BENCH, "model", "--validate", "{F}/trace.h5"],
             bench_err("--hardware"), ranks=2))
    add(Case("disagg--model=missing", [BENCH, "disagg", "--gpus", "4"], bench_err("--model"),
             ranks=2))
    add(Case("disagg--reproduce=unknown", [BENCH, "disagg", "--reproduce", "other"],
             bench_err("--reproduce"), ranks=2))
    add(Case("disagg--dtype=fp32", DISAGG_BASE + ["--dtype", "fp32"], bench_err("--dtype")))
    add(Case("disagg--osl=one", DISAGG_BASE + ["--osl", "1"], bench_err("--osl")))
    add(Case("disagg--fixed-ratio=65_items", DISAGG_BASE + ["--fixed-ratio",
                                                            ",".join(["1"] * 65)],
             bench_err("--fixed-ratio")))
    add(Case("calibrate--backend=unknown", CAL_BASE + ["--backend", "tpu"],
             bench_err("--backend")))
    add(Case("calibrate--out=missing", [BENCH, "calibrate", "--quick"], bench_err("") +
             r".*--out"))
    # helix-micro options and Google Benchmark's flags
    add(Case("micro--backend=unknown", MICRO_BASE + ["--backend", "tpu"],
             micro_err("--backend")))
    add(Case("micro--collectives=unknown", MICRO_BASE + ["--collectives", "all_reduce,bcast"],
             micro_err("--collectives")))
    add(Case("micro--dtype=unknown", MICRO_BASE + ["--dtype", "half"], micro_err("--dtype")))
    add(Case("micro--models=unknown", MICRO_BASE + ["--models", "gpt"], micro_err("--models")))
    add(Case("micro--models=empty", MICRO_BASE + ["--models", ""], micro_err("--models")))
    for tag, v in (("not_a_shape", "B1_q6"), ("q_not_multiple", "B1_q6_kv4_T1M"),
                   ("batch_huge", "B1000000_q64_kv8_T1M"), ("tokens_huge", "B1_q8_kv1_T999999M"),
                   ("zero", "B0_q8_kv1_T1K")):
        add(Case(f"micro--gqa-shapes={tag}", MICRO_BASE + ["--gqa-shapes", v],
                 micro_err("--gqa-shapes")))
    add(Case("micro--verify=with_no_verify", MICRO_BASE + ["--verify", "--no-verify"],
             micro_err("--verify")))
    add(Case("micro--max-bytes=below_min", MICRO_BASE + ["--min-bytes", "1M", "--max-bytes",
                                                         "1K"], micro_err("--max-bytes")))
    add(Case("micro--stream-bytes=not_64_multiple", MICRO_BASE + ["--stream-bytes", "100"],
             micro_err("--stream-bytes")))
    add(Case("micro--stream-bytes=beyond_memory", MICRO_BASE + ["--stream-bytes", "1024G"],
             micro_err("--stream-bytes"), ranks=2))
    add(Case("micro=unknown_option", MICRO_BASE + ["--bogus"], micro_err("") + r".*--bogus"))
    for tag, v in (("bracket", "["), ("paren", "(attn"), ("matches_nothing", "no_such_kernel"),
                   ("negative_matches_nothing", "-."), ("empty_class", "[]")):
        add(Case(f"micro--benchmark_filter={tag}", [MICRO, "--quick",
                                                    f"--benchmark_filter={v}"],
                 micro_err("--benchmark_filter"), ranks=2))
    for flag, v in (("repetitions", "0"), ("repetitions", "1000000000"), ("format", "xml"),
                    ("out_format", "yaml"), ("color", "maybe"), ("list_tests", "perhaps"),
                    ("context", "novalue"), ("unknown", "1"), ("out", "")):
        add(Case(f"micro--benchmark_{flag}={v or 'empty'}",
                 MICRO_BASE + [f"--benchmark_{flag}={v}"], micro_err(f"--benchmark_{flag}")))
    add(Case("micro--benchmark_filter=space_form", MICRO_BASE + ["--benchmark_filter", "x"],
             micro_err("--benchmark_filter")))
    return c


# ----------------------------------------------------------------------------- absurd sizes
def size_cases():
    c = []
    add = c.append
    add(Case("decode--seq=reference_beyond_memory", DECODE_BASE + ["--seq", "64M", "--batch", "4"],
             bench_err("--seq"), ranks=2))
    add(Case("decode--seq=kv_beyond_4pib", DECODE_BASE + ["--model", "llama-3.1-405b", "--seq",
                                                          "64M", "--batch", "65536",
                                                          "--no-verify"],
             bench_err("--seq"), ranks=2))
    add(Case("kvt--tokens=too_many_blocks", KVT_BASE + ["--tokens", "64M", "--kv-block", "1"],
             bench_err("--tokens"), ranks=2, notes="np 2 with P=1, KVP=1"))
    add(Case("kvt--tokens=beyond_8gib_per_rank", KVT_BASE + ["--model", "llama-3.1-405b",
                                                             "--tokens", "64M", "--kv-block",
                                                             "65536", "--layers", "8"],
             bench_err("--tokens"), ranks=2))
    add(Case("disagg--isl=999999999999M", DISAGG_BASE + ["--isl", "999999999999M"],
             bench_err("--isl")))
    add(Case("disagg--isl=2p40", DISAGG_BASE + ["--isl", "1099511627776"], bench_err("--isl")))
    add(Case("model--seq=999999999999M", MODEL_BASE + ["--seq", "999999999999M"],
             bench_err("--seq")))
    for c_ in c:
        c_.timeout = 30
    return c


# ----------------------------------------------------------------------------- output paths
OUTPUT_TARGETS = [  # (id, value, needs root)
    ("directory", "adir", False),
    ("fifo", "fifo", False),
    ("device", "dev", True),
    ("missing_directory", "nodir/x.h5", False),
    ("proc", "/proc/helix-x.h5", False),
    ("name_too_long", "x" * 300 + ".h5", False),
]
MORE_OUTPUT_TARGETS = [("directory_slash", "adir/", False), ("link_to_device", "devlink", True),
                       ("under_a_file", "file/x.h5", False)]


def output_cases():
    c = []
    subs = [  # (id, argv without --out, option, error, ranks)
        ("decode", DECODE_BASE, "--out", bench_err, 2),
        ("model", MODEL_BASE, "--out", bench_err, 2),
        ("disagg", DISAGG_BASE, "--out", bench_err, 2),
        ("kvt", KVT_BASE, "--out", bench_err, 2),  # P + KVP x TPA = 1 + 1 ranks
        ("calibrate", [BENCH, "calibrate", "--quick"], "--out", bench_err, 2),
        ("micro", MICRO_BASE, "--out", micro_err, 2),
        ("micro_gb", MICRO_BASE, "--benchmark_out", micro_err, 2),
        ("validate", [BENCH, "model", "--validate", "{F}/trace.h5", "--hardware", "h200"],
         "--out", bench_err, 2),
    ]
    for sub, base, opt, e, ranks in subs:
        more = MORE_OUTPUT_TARGETS if sub == "decode" else []
        for tag, value, root in OUTPUT_TARGETS + more:
            args = [f"{opt}={value}"] if opt == "--benchmark_out" else [opt, value]
            c.append(Case(f"{sub}{opt}={tag}", base + args, e(opt), ranks=ranks, needs_root=root))
    # An output that is one of the command's inputs.
    c.append(Case("decode--out=the_model_file", DECODE_BASE + ["--model", "{S}/existing.json",
                                                               "--out", "existing.json"],
                  bench_err("--out"), ranks=2))
    c.append(Case("validate--out=the_trace", [BENCH, "model", "--validate", "{S}/existing.h5",
                                              "--hardware", "h200", "--out", "existing.h5"],
                  bench_err("--out"), ranks=2))
    c.append(Case("validate--out=the_trace_other_name",
                  [BENCH, "model", "--validate", "{S}/existing.h5", "--hardware", "h200",
                   "--out", "./adir/../existing.h5"], bench_err("--out"), ranks=2))
    c.append(Case("micro--benchmark_out=same_as_out",
                  MICRO_BASE + ["--out", "same.h5", "--benchmark_out=same.h5"],
                  micro_err("--benchmark_out"), ranks=2))
    c.append(Case("decode--out=the_executable", DECODE_BASE + ["--out", "{B}/helix-bench"],
                  bench_err("--out"), ranks=1))
    return c


def kernel_bench_cases():
    """helix-kernel-bench: every case is refused before the GPU is touched (so it runs here)."""
    c = []
    for tag, v in int_values(1, 1000, issue=True):
        c.append(Case(f"kbench--iters={tag}", [KBENCH, "--iters", v], kbench_err("--iters")))
    for tag, v in [("two_fields", "8:128"), ("word", "8:abc:1M"), ("heads_above", "8:129:1M"),
                   ("batch_overflow", "99999999999999999999:128:1M"), ("tokens_above", "8:128:65M"),
                   ("zero_batch", "0:128:1M"), ("unit", "8:128:1T"), ("four_fields", "8:1:1:1")]:
        c.append(Case(f"kbench--mla-cases={tag}", [KBENCH, "--mla-cases", v],
                      kbench_err("--mla-cases")))
    for tag, v in [("ep_not_dividing", "3:8"), ("batch_above", "4:513"), ("word", "x:8"),
                   ("overflow", "4:99999999999999999999"), ("one_field", "4")]:
        c.append(Case(f"kbench--moe-cases={tag}", [KBENCH, "--moe-cases", v],
                      kbench_err("--moe-cases")))
    c.append(Case("kbench--kernels=unknown", [KBENCH, "--kernels", "attn,gemm"],
                  kbench_err("--kernels")))
    for tag, value, root in OUTPUT_TARGETS:
        c.append(Case(f"kbench--json={tag}", [KBENCH, "--json", value], kbench_err("--json"),
                      needs_root=root))
    c.append(Case("kbench--json=the_ceilings_input",
                  [KBENCH, "--ceilings-from", "{S}/existing.json", "--json", "existing.json"],
                  kbench_err("--json")))
    c.append(Case("kbench--json=a_table_input",
                  [KBENCH, "--table", "{S}/existing.json", "--json", "./adir/../existing.json"],
                  kbench_err("--json")))
    c.append(Case("kbench--table=not_json", [KBENCH, "--table", "{S}/existing.h5"],
                  kbench_err("--table")))
    c.append(Case("kbench--ceilings-from=missing", [KBENCH, "--ceilings-from", "{S}/none.json"],
                  kbench_err("--ceilings-from")))
    return c


# ----------------------------------------------------------------------------- input files
def _edits():
    from trace_mutations import DECODE_EDITS
    return [n for n, _ in DECODE_EDITS]


# The edits of tests/fuzz/trace_mutations.py that make a trace malformed for each reader: the
# C++ reader of --validate reads the layout, sizes and timings (it ignores the phase names and
# the devices; timings of 0 are valid measurements to it); the Python readers check every run's
# attributes, shapes and timings, but a layout, model or dtype they do not know is only a label.
JUNK_TIMINGS = ("zero_iterations", "all_nan_timings", "all_zero_timings", "phase_us_nan",
                "phase_us_negative", "step_us_inf")
VALIDATE_MALFORMED = [n for n in _edits()
                      if n not in ("phases_attr_length", "devices_int", "all_zero_timings")]
PYTHON_MALFORMED = [n for n in _edits()
                    if n not in ("layout_unknown", "model_unknown", "dtype_unknown",
                                 "devices_int")]


def input_file_cases():
    import fixtures
    c = []
    for name in fixtures.MODELS:
        c.append(Case(f"decode--model=file_{name}", DECODE_BASE + ["--model",
                                                                   f"{{F}}/models/{name}.json"],
                      bench_err("--model"), ranks=2))
    for name in ("layers_2p31", "rms_eps_string"):
        c.append(Case(f"model--model=file_{name}", MODEL_BASE + ["--model",
                                                                 f"{{F}}/models/{name}.json"],
                      bench_err("--model"), ranks=2))
        c.append(Case(f"kvt--model=file_{name}", KVT_BASE + ["--model",
                                                             f"{{F}}/models/{name}.json"],
                      bench_err("--model"), ranks=2))
        c.append(Case(f"disagg--model=file_{name}", DISAGG_BASE + ["--model",
                                                                   f"{{F}}/models/{name}.json"],
                      bench_err("--model")))
    for tag, path in (("missing_file", "{F}/no-such.json"), ("directory", "{F}/dir.json"),
                      ("fifo", "{F}/fifo.json")):
        c.append(Case(f"decode--model={tag}", DECODE_BASE + ["--model", path],
                      bench_err("--model"), ranks=2))
        c.append(Case(f"model--hardware={tag}", MODEL_BASE + ["--hardware", path],
                      bench_err("--hardware"), ranks=2))
    for name in fixtures.HARDWARE:
        c.append(Case(f"model--hardware=file_{name}", MODEL_BASE + ["--hardware",
                                                                    f"{{F}}/hw/{name}.json"],
                      bench_err("--hardware"), ranks=2 if name in ("nvlink_missing",
                                                                     "not_json") else 1))
    for name in ("bw_negative", "flops_array", "domain_fraction"):
        c.append(Case(f"disagg--hardware=file_{name}", DISAGG_BASE + ["--hardware",
                                                                      f"{{F}}/hw/{name}.json"],
                      bench_err("--hardware")))
    # Traces given to model --validate.
    for name in VALIDATE_MALFORMED + ["not_hdf5", "empty", "truncated"]:
        c.append(Case(f"validate=trace_{name}", [BENCH, "model", "--validate",
                                                 f"{{F}}/bad/{name}.h5", "--hardware", "h200",
                                                 "--out", "v.h5"],
                      bench_err("--validate"),
                      ranks=2 if name in ("n_ranks_2p40", "empty", "phase_us_huge_extent") else 1))
    for name in fixtures.damaged_files():
        c.append(Case(f"validate=damaged_{name}", [BENCH, "model", "--validate",
                                                   f"{{F}}/bad/damaged_{name}.h5", "--hardware",
                                                   "{F}/cpu-profile.json"],
                      bench_err("--validate"), ranks=2))
    for tag, path in (("missing", "{F}/no-such.h5"), ("directory", "{F}/dir.h5"),
                      ("fifo", "{F}/fifo.h5"), ("model_trace", "{F}/model.h5")):
        c.append(Case(f"validate=trace_{tag}", [BENCH, "model", "--validate", path,
                                                "--hardware", "h200"],
                      bench_err("--validate"), ranks=2))
    return c


# ----------------------------------------------------------------------------- Python tools
def python_cases():
    c = []
    compare = ["{PY}", "-m", "helixbench.compare"]
    report = ["{PY}", "-m", "helixbench.report"]
    sweep = ["{PY}", "-m", "helixbench.sweep"]
    cmp_err = lambda p: err("helix-compare", p)  # noqa: E731
    good = "{F}/trace.h5"
    for tag, v in (("nan", "nan"), ("inf", "inf"), ("negative", "-5"), ("word", "abc"),
                   ("percent_nan", "nan%")):
        c.append(Case(f"compare--threshold={tag}", compare + [good, good, "--threshold", v],
                      cmp_err("--threshold")))
    for tag, v in (("nan", "nan"), ("zero", "0"), ("one", "1"), ("word", "x")):
        c.append(Case(f"compare--alpha={tag}", compare + [good, good, "--alpha", v],
                      cmp_err("--alpha")))
    for tag, v in (("nan", "nan"), ("inf", "inf"), ("negative", "-1"), ("word", "x")):
        c.append(Case(f"compare--min-us={tag}", compare + [good, good, "--min-us", v],
                      cmp_err("--min-us")))
    for tag, v in (("nan", "nan"), ("inf", "inf"), ("negative", "-1"), ("word", "x")):
        c.append(Case(f"compare--band-factor={tag}", compare + [good, good, "--band-factor", v],
                      cmp_err("--band-factor")))
    c.append(Case("compare--error=trace_phase_us_2d",
                  compare + [good, "{F}/bad/phase_us_2d.h5", "--error"],
                  r"^helix-compare: error: .*phase_us_2d\.h5"))
    c.append(Case("compare--ignore=unknown", compare + [good, good, "--ignore", "colour"],
                  cmp_err("--ignore")))
    c.append(Case("compare=unknown_option", compare + [good, good, "--bogus"],
                  cmp_err("") + r".*--bogus"))
    for tag, value, root in OUTPUT_TARGETS:
        c.append(Case(f"compare--json={tag}", compare + [good, good, "--json", value],
                      cmp_err("--json"), needs_root=root))
    c.append(Case("compare--json=the_baseline", compare + ["{S}/existing.h5", good, "--json",
                                                           "existing.h5"], cmp_err("--json")))
    for name in PYTHON_MALFORMED:
        if name in JUNK_TIMINGS:
            # Junk timings in the candidate fail the gate (exit 1); in the baseline, bad input.
            c.append(Case(f"compare=candidate_{name}", compare + [good, f"{{F}}/bad/{name}.h5"],
                          r"INVALID", code=1, on_stdout=True, one_line=False))
            c.append(Case(f"compare=baseline_{name}", compare + [f"{{F}}/bad/{name}.h5", good],
                          r"^helix-compare: error: .*baseline"))
        else:
            c.append(Case(f"compare=trace_{name}", compare + [good, f"{{F}}/bad/{name}.h5"],
                          r"^helix-compare: error: .*" + f"{name}\\.h5"))
    for tag, path in (("not_hdf5", "{F}/bad/not_hdf5.h5"), ("empty", "{F}/bad/empty.h5"),
                      ("truncated", "{F}/bad/truncated.h5"), ("missing", "{F}/no-such.h5"),
                      ("directory", "{F}/dir.h5"), ("fifo", "{F}/fifo.h5")):
        c.append(Case(f"compare=baseline_{tag}", compare + [path, good],
                      r"^helix-compare: error: .*" + path.split("/")[-1].replace(".", r"\.")))
        c.append(Case(f"report=trace_{tag}", report + [path, "--out", "rep"],
                      r"^helix-report: error: .*" + path.split("/")[-1].replace(".", r"\.")))
    for name in ("run_without_layout", "n_ranks_string", "phase_us_2d", "phase_us_nan",
                 "step_us_length", "phase_us_huge_extent", "all_nan_timings", "zero_iterations",
                 "decode_dataset", "phases_attr_length", "run_external_link", "kvp_array"):
        c.append(Case(f"report=trace_{name}", report + [f"{{F}}/bad/{name}.h5", "--out", "rep"],
                      r"^helix-report: error: .*" + f"{name}\\.h5"))
    import fixtures
    for name in fixtures.damaged_files():
        damaged = f"{{F}}/bad/damaged_{name}.h5"
        c.append(Case(f"compare=damaged_{name}", compare + [good, damaged],
                      r"^helix-compare: error: "))
        c.append(Case(f"report=damaged_{name}", report + [damaged, "--out", "rep"],
                      r"^helix-report: error: "))
        c.append(Case(f"script_check_trace=damaged_{name}",
                      ["{PY}", "{SCRIPTS}/check_trace.py", damaged], r"^check_trace: error: "))
        c.append(Case(f"script_summarize_decode=damaged_{name}",
                      ["{PY}", "{SCRIPTS}/summarize_decode.py", damaged],
                      r"^summarize_decode: error: "))
    c.append(Case("report=trace_default_out", report + ["{F}/bad/phase_us_nan.h5"],
                  r"^helix-report: error: "))
    for tag, value in (("a_file", "file"), ("under_a_file", "file/rep"), ("fifo", "fifo"),
                       ("proc", "/proc/rep"), ("the_trace", "existing.h5")):
        c.append(Case(f"report--out={tag}", report + ["{S}/existing.h5", "--out", value],
                      err("helix-report", "--out")))
    sw = sweep + ["--np", "2", "--models", "tiny-gqa", "--seq", "64", "--batch", "1",
                  "--binary", "{B}/helix-bench"]
    sw_err = lambda p: err("helix-sweep", p)  # noqa: E731
    for opt, vals in (("--np", [("zero", "0"), ("negative", "-1"), ("word", "x"),
                                ("above", "5000")]),
                      ("--batch", [("zero", "0"), ("above", "70000"), ("word", "x")]),
                      ("--seq", [("zero", "0"), ("above", "65M"), ("word", "x"),
                                 ("huge", "999999999999999M")]),
                      ("--layouts", [("unknown", "ring")]),
                      ("--point-timeout", [("nan", "nan"), ("negative", "-1")]),
                      ("--ranks-per-node", [("negative", "-1")]),
                      ("--repeat", [("zero", "0"), ("above", "1001"), ("word", "x")]),
                      ("--launcher", [("no_np", "mpirun")])):
        for tag, v in vals:
            c.append(Case(f"sweep{opt}={tag}", sw + ["--out", "s.h5", opt, v], sw_err(opt)))
    for tag, value, root in OUTPUT_TARGETS:
        c.append(Case(f"sweep--out={tag}", sw + ["--out", value], sw_err("--out"),
                      needs_root=root))
    c.append(Case("sweep--out=malformed_trace", sw + ["--out", "old.h5"],
                  r"^helix-sweep: error: .*old\.h5", setup=copy_fixture("bad/phase_us_2d.h5",
                                                                        "old.h5")))
    c.append(Case("sweep--out=not_hdf5", sw + ["--out", "{S}/file"], r"^helix-sweep: error: "))
    c.append(Case("sweep--out=locked", sw + ["--out", "existing.h5"], sw_err("--out"),
                  setup=hold_lock("existing.h5")))
    for name in ("not_json", "array", "unknown_key", "np_object", "batch_huge", "seq_huge",
                 "args_string", "args_numbers", "models_bool"):
        c.append(Case(f"sweep--spec={name}", sweep + ["--spec", f"{{F}}/specs/{name}.json",
                                                      "--out", "s.h5"],
                      r"^helix-sweep: error: --"))
    c.append(Case("sweep--spec=fifo", sweep + ["--spec", "{F}/fifo.json", "--out", "s.h5"],
                  sw_err("--spec")))
    c.append(Case("sweep--spec=missing", sweep + ["--spec", "{F}/no-such.json", "--out", "s.h5"],
                  sw_err("--spec")))
    c += package_tool_cases(good)
    # The scripts that read traces.
    scripts = [
        ("check_trace", ["{SCRIPTS}/check_trace.py"], ["{F}/bad/phase_us_group.h5"]),
        ("check_trace", ["{SCRIPTS}/check_trace.py"], ["{F}/fifo.h5"]),
        ("summarize_decode", ["{SCRIPTS}/summarize_decode.py"], ["{F}/bad/decode_dataset.h5"]),
        ("summarize_decode", ["{SCRIPTS}/summarize_decode.py"], ["{F}/model.h5"]),
        ("plot_disagg", ["{SCRIPTS}/plot_disagg.py"], ["{F}/bad/disagg_no_frontier.h5", "-o",
                                                      "p.png"]),
        ("plot_disagg", ["{SCRIPTS}/plot_disagg.py"], ["{F}/disagg.h5", "-o", "adir"]),
        ("plot_frontiers", ["{SCRIPTS}/plot_frontiers.py"], ["{F}/bad/model_layout_numbers.h5",
                                                            "-o", "p.png"]),
        ("plot_frontiers", ["{SCRIPTS}/plot_frontiers.py"], ["{F}/model.h5", "-o",
                                                            "nodir/p.png"]),
        ("micro_bars", ["{SCRIPTS}/micro_bars.py"], ["{F}/bad/micro_gbps_strings.h5"]),
        ("micro_bars", ["{SCRIPTS}/micro_bars.py"], ["{F}/fifo.h5"]),
        ("attn_variants", ["{SCRIPTS}/attn_variants.py"], ["{F}/bad/not_hdf5.h5"]),
        ("attn_variants", ["{SCRIPTS}/attn_variants.py"], ["{F}/micro.h5", "--json", "adir"]),
        ("compare_sdpa", ["{SCRIPTS}/compare_sdpa.py"], ["{F}/micro.h5",
                                                        "{F}/sdpa_not_rows.json"]),
        ("compare_sdpa", ["{SCRIPTS}/compare_sdpa.py"], ["{F}/micro.h5", "{F}/fifo.json"]),
    ]
    seen = {}
    for name, prog, args in scripts:
        seen[name] = seen.get(name, 0) + 1
        c.append(Case(f"script_{name}={seen[name]}", ["{PY}"] + prog + args,
                      r"^[a-z_]+(\.py)?: error: "))
    return c


def package_tool_cases(good):
    """helix-export, helixbench.hopb and helixbench.nccl_table."""
    c = []
    export = ["{PY}", "-m", "helixbench.export"]
    hopb = ["{PY}", "-m", "helixbench.hopb"]
    nccl = ["{PY}", "-m", "helixbench.nccl_table"]
    study = ["{PY}", "-m", "helixbench.study"]
    st_err = lambda p: err("helix-study", p)  # noqa: E731
    # --out is a prefix (PREFIX.md, PREFIX.json)
    for tag, value in (("missing_directory", "nodir/s"), ("proc", "/proc/helix-s"),
                       ("under_a_file", "file/s"), ("name_too_long", "x" * 300)):
        c.append(Case(f"study--out={tag}", study + [good, "--out", value], st_err("--out")))
    c.append(Case("study--out=an_input", study + [good, "{S}/existing.json", "--out",
                                                  "existing"], st_err("--out")))
    for tag, v in (("nan", "nan"), ("negative", "-1"), ("word", "x")):
        c.append(Case(f"study--min-us={tag}", study + [good, "--out", "s", "--min-us", v],
                      st_err("--min-us")))
    for tag, path in (("fifo", "{F}/fifo.h5"), ("missing", "{F}/no-such.h5"),
                      ("no_decode_runs", "{F}/model.h5")):
        c.append(Case(f"study=input_{tag}", study + [path, "--out", "s"],
                      r"^helix-study: error: "))
    ex_err = lambda p: err("helix-export", p)  # noqa: E731
    for tag, value, root in OUTPUT_TARGETS:
        c.append(Case(f"export--csv={tag}", export + [good, "--csv", value], ex_err("--csv"),
                      needs_root=root))
    c.append(Case("export--csv=the_trace", export + ["{S}/existing.h5", "--csv", "existing.h5",
                                                     "--force"], ex_err("--csv")))
    c.append(Case("export--csv=existing_without_force", export + [good, "--csv", "file"],
                  ex_err("--csv")))
    c.append(Case("export--parquet=directory", export + [good, "--parquet", "adir"],
                  ex_err("--parquet")))
    c.append(Case("export--kind=unknown_group", export + [good, "--kind", "micro/none", "--csv",
                                                          "t.csv"], r"^helix-export: error: "))
    c.append(Case("export=no_output", export + [good], ex_err("") + r".*(--csv|--parquet)"))
    for tag, path in (("not_hdf5", "{F}/bad/not_hdf5.h5"), ("missing", "{F}/no-such.h5"),
                      ("directory", "{F}/dir.h5"), ("fifo", "{F}/fifo.h5"),
                      ("phase_us_2d", "{F}/bad/phase_us_2d.h5"),
                      ("n_ranks_string", "{F}/bad/n_ranks_string.h5")):
        c.append(Case(f"export=trace_{tag}", export + [path, "--csv", "t.csv"],
                      r"^helix-export: error: .*" + path.split("/")[-1].replace(".", r"\.")))
    # argparse names the program as run (python3 -m helixbench.hopb), the tool itself "hopb"
    hb_err = lambda sub, p: err(r"(python3 \-m helixbench\.)?hopb " + sub, p)  # noqa: E731
    for tag, path in (("not_hdf5", "{F}/bad/not_hdf5.h5"), ("fifo", "{F}/fifo.h5"),
                      ("phase_us_2d", "{F}/bad/phase_us_2d.h5")):
        c.append(Case(f"hopb_check=trace_{tag}", hopb + ["check", path],
                      r"^hopb check: error: .*" + path.split("/")[-1].replace(".", r"\.")))
    link = hopb + ["linkset", "--ranks", "2", "--name", "x", "--gbps", "2.4", "--latency-us",
                   "10", "--source", "s", "--out-json", "l.json", "--out-profile", "p.json"]
    for opt, vals in (("--gbps", [("nan", "nan"), ("inf", "inf"), ("zero", "0"),
                                  ("word", "x")]),
                      ("--latency-us", [("nan", "nan"), ("negative", "-1")]),
                      ("--ranks", [("one", "1"), ("above", "5000"), ("word", "x")]),
                      ("--base", [("missing", "no-such-profile"), ("fifo", "fifo")])):
        for tag, v in vals:
            c.append(Case(f"hopb_linkset{opt}={tag}", link + [opt, v],
                          hb_err("linkset", opt)))
    for tag, value, root in OUTPUT_TARGETS:
        c.append(Case(f"hopb_linkset--out-json={tag}", link + ["--out-json", value],
                      hb_err("linkset", "--out-json"), needs_root=root))
    c.append(Case("hopb_linkset--out-profile=same_as_out_json",
                  link + ["--out-profile", "l.json"], hb_err("linkset", "--out-profile")))
    c.append(Case("hopb_linkfit=micro_without_all_to_all",
                  hopb + ["linkfit", "{F}/micro.h5", "--ranks", "2", "--name", "x",
                          "--out-json", "l.json", "--out-profile", "p.json"],
                  r"^hopb linkfit: error: .*micro\.h5"))
    c.append(Case("hopb_linkfit--fit-max-bytes=below_min",
                  hopb + ["linkfit", "{F}/micro.h5", "--ranks", "2", "--name", "x",
                          "--out-json", "l.json", "--out-profile", "p.json",
                          "--fit-min-bytes", "1000", "--fit-max-bytes", "10"],
                  hb_err("linkfit", "--fit-max-bytes")))
    c.append(Case("hopb_summary=not_a_study", hopb + ["summary", "adir"],
                  r"^hopb summary: error: "))
    c.append(Case("hopb_summary=a_file", hopb + ["summary", "file"], hb_err("summary", "DIR")))
    for tag, path in (("missing", "{F}/no-such.log"), ("fifo", "{F}/fifo.h5"),
                      ("no_table", "{F}/bad/not_hdf5.h5"), ("directory", "{F}/dir.h5")):
        c.append(Case(f"nccl_table=log_{tag}", nccl + [path], r"^nccl_table: error: "))
    return c


class _Lock:
    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def close(self):
        os.close(self.fd)


def hold_lock(name):
    """Setup: another sweep holds the lock of `name` in the sandbox while the case runs."""
    return lambda sandbox, fixtures: _Lock(os.path.join(sandbox, name + ".lock"))


def copy_fixture(src, dst):
    """Setup: a fixture copied into the sandbox (for a tool that would extend it)."""
    def setup(sandbox, fixtures):
        shutil.copyfile(os.path.join(fixtures, src), os.path.join(sandbox, dst))
    return setup


# The ten failures of the report the matrix was built from, each as the cases that reproduce it
# (run_matrix.py --issue-cases runs them and prints one verdict per failure; the interruptions
# of failure 10 are the kill test's close_rename and xfsz scenarios).
ISSUE_CASES = {
    1: ["decode--out=device", "decode--out=link_to_device", "model--out=device"],
    2: ["kvt--out=proc", "kvt--out=missing_directory"],
    3: ["disagg--isl=999999999999M", "disagg--isl=2p40"],
    4: ["compare--min-us=nan", "compare=candidate_zero_iterations",
        "compare=candidate_all_nan_timings", "compare=trace_n_ranks_string",
        "compare--json=missing_directory", "report=trace_n_ranks_string",
        "sweep--out=malformed_trace"],
    5: ["decode--warmup=int_max", "decode--iters=int_max", "decode--kv-block=int_max",
        "decode--decode-steps=int_max", "decode--seq=dash"],
    6: ["decode--seq=reference_beyond_memory"],
    7: ["decode--model=file_hidden_string", "decode--model=file_layers_2p31"],
    8: ["decode--out=directory", "model--out=directory", "kvt--out=directory",
        "micro--out=directory", "validate--out=the_trace"],
    9: ["sweep--out=locked"],
    10: ["micro--benchmark_filter=bracket", "model--hardware=missing", "disagg--model=missing",
         "validate=trace_missing", "validate=trace_n_ranks_2p40"],
}


def all_cases():
    return (option_families() + usage_cases() + size_cases() + output_cases() +
            kernel_bench_cases() + input_file_cases() + python_cases())
