"""helix-sweep's grid (helixbench/sweep.py): the points of a sweep from its options or spec file,
each option checked against helix-bench's own limits, and the canonical text of a point."""
from __future__ import annotations

import itertools
import re

from .safeio import BadInput

LAYOUTS = ("tp", "kvp", "helix", "helix-hopb")
RESERVED = ("--out", "--model", "--layouts", "--seq", "--batch")

# The limits of helix-bench (bench/cli_util.hpp).
MAX_TOKENS = 1 << 26
MAX_BATCH = 65536
MAX_RANKS = 4096


class UsageError(BadInput):
    pass


def parse_tokens(value: str) -> int:
    """'4K' -> 4096, '1M' -> 1048576, '300' -> 300 (the binary's own rule and limit)."""
    m = re.fullmatch(r"\s*(\d{1,12})\s*([kKmM]?)\s*", str(value))
    if not m:
        raise UsageError(f"--seq: not a positive token count: '{value}' (use e.g. 4096, 4K or 1M)")
    n = int(m.group(1)) * {"": 1, "k": 1024, "m": 1048576}[m.group(2).lower()]
    if not 1 <= n <= MAX_TOKENS:
        raise UsageError(f"--seq: '{value}' is out of range: must be 1 to {MAX_TOKENS} tokens")
    return n


def parse_count(value, option: str, hi: int) -> int:
    text_value = str(value).strip()
    if not re.fullmatch(r"\d{1,9}", text_value):
        raise UsageError(f"{option}: '{value}' is not a positive integer")
    n = int(text_value)
    if not 1 <= n <= hi:
        raise UsageError(f"{option}: '{value}' is out of range: must be 1 to {hi}")
    return n


def split_list(value, option="") -> list:
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            raise UsageError(f"--{option}: list elements must be strings or integers")
        return [str(v) for v in value]
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise UsageError(f"--{option}: must be a comma-separated string or a list")
    return [v.strip() for v in str(value).split(",") if v.strip()]


def point_key(p: dict) -> str:
    """Canonical text of a point: stored as the run attribute `sweep_point`."""
    return (f"np={p['np']};model={p['model']};layout={p['layout']};seq={p['seq']};"
            f"batch={p['batch']};args={' '.join(p['args'])}")


def build_grid(spec: dict) -> list:
    nps = [parse_count(v, "--np", MAX_RANKS) for v in split_list(spec["np"], "np")]
    if not nps:
        raise UsageError("--np: give at least one rank count")
    models = split_list(spec["models"], "models")
    layouts = split_list(spec["layouts"], "layouts")
    bad = [x for x in layouts if x not in LAYOUTS]
    if bad:
        raise UsageError(f"--layouts: unknown layout(s) {bad} (known: {', '.join(LAYOUTS)})")
    seqs = [parse_tokens(v) for v in split_list(spec["seq"], "seq")]
    batches = [parse_count(v, "--batch", MAX_BATCH) for v in split_list(spec["batch"], "batch")]
    if not (models and layouts and seqs and batches):
        raise UsageError("the grid is empty: give --np, --models, --layouts, --seq and --batch")
    if len(nps) * len(models) * len(layouts) * len(seqs) * len(batches) > 100000:
        raise UsageError("the grid has more than 100000 points")
    raw_args = spec.get("args", [])
    if not isinstance(raw_args, list) or not all(isinstance(a, str) for a in raw_args):
        raise UsageError("--spec: 'args' must be a list of strings")
    args = list(raw_args)
    for a in args:
        if a.split("=")[0] in RESERVED:
            raise UsageError(f"decode option {a.split('=')[0]} is set by the sweep itself; "
                             "use the sweep's own option")
    points = []
    for n, model, s, b, layout in itertools.product(nps, models, seqs, batches, layouts):
        points.append({"np": n, "model": model, "layout": layout, "seq": s, "batch": b,
                       "args": args})
    return points
