"""helix-bench traces as pandas DataFrames.

    import helixbench
    df = helixbench.load(["a.h5", "b.h5"])          # one row per run, rank and phase
    runs = helixbench.load_runs("a.h5")              # one row per run
    samples = helixbench.load_samples("a.h5")        # one row per run, iteration, rank, phase
    kernels = helixbench.load_table("micro.h5", "micro/kernels")   # a column table

Every row carries the file it came from (`file`), the run's group name (`run`) and the run's
scalar attributes (results/README.md: model, layout, n_ranks, kvp, tpa, tpf, ep, batch, seq_len,
backend, dtype, status, verified, step_us_median, ...) plus `device` (the GPU model without bus
ids, or `cpu`). Run attributes holding one value per rank (the GPU clock, power and throttle
attributes of the CUDA backend) become per-rank columns in the tables that have a `rank` column.
Refused runs (status `refused`) have a row in load_runs() and none in the others.
"""
from __future__ import annotations

import os
from typing import Iterable, Union

import numpy as np
import pandas as pd

from .trace import TraceError, load_columns, load_decode_runs, open_trace

PathLike = Union[str, "os.PathLike[str]"]
Paths = Union[PathLike, Iterable[PathLike]]

# Order of the leading columns; the other run attributes follow in alphabetical order.
LEAD = ["file", "run", "model", "layer_kind", "layout", "n_ranks", "kvp", "tpa", "tpf", "ep",
        "hopb_chunks", "kv_block", "batch", "seq_len", "backend", "dtype", "device",
        "comm_backend", "status", "verified"]


def _paths(paths: Paths) -> list:
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    out = [os.fspath(p) for p in paths]
    if not out:
        raise TraceError("no trace given")
    return out


def _run_columns(path: str, run) -> tuple:
    """(scalar attributes, per-rank attributes as {name: array}) of one run."""
    n = int(run.attrs.get("n_ranks", 0) or 0)
    ranks = run.phase_us.shape[1] if run.phase_us is not None else n
    scalars = {"file": path, "run": run.name, "device": run.device}
    per_rank = {}
    for k, v in run.attrs.items():
        if isinstance(v, list):
            if ranks and len(v) == ranks:
                per_rank[k] = np.asarray(v)
            continue  # other lists (none in schema 1.0) do not fit a table
        scalars[k] = v
    return scalars, per_rank


def _order(df: pd.DataFrame, tail: list) -> pd.DataFrame:
    lead = [c for c in LEAD if c in df.columns]
    rest = sorted(c for c in df.columns if c not in lead and c not in tail)
    return df[lead + rest + [c for c in tail if c in df.columns]]


def _decode_runs(paths: Paths):
    for path in _paths(paths):
        with open_trace(path) as f:
            runs = load_decode_runs(f)
        for run in runs:
            yield path, run


def load(paths: Paths) -> pd.DataFrame:
    """One row per (file, run, rank, phase) of the /decode runs: the run's attributes, `rank`,
    `phase` (trace order), `phase_is_comm`, `modeled`, and the rank's times in that phase over
    the timed iterations: `median_us`, `mean_us`, `min_us`, `max_us`, `iters`. The step time of a
    run is the max over ranks per iteration (`step_us_median`, a run attribute); the max over
    ranks of `median_us` is the phase column of helix-bench's table."""
    frames = []
    for path, run in _decode_runs(paths):
        if not run.ok or run.phase_us is None:
            continue
        scalars, per_rank = _run_columns(path, run)
        t = run.phase_us  # [iters, ranks, phases]
        iters, ranks, phases = t.shape
        rank = np.repeat(np.arange(ranks), phases)
        cols = {
            "rank": rank,
            "phase": np.tile(np.asarray(run.phases, dtype=object), ranks),
            "phase_is_comm": np.tile(run.phase_is_comm.astype(int), ranks),
            "modeled": np.tile(run.modeled.astype(int), ranks),
            "median_us": np.median(t, axis=0).reshape(-1),
            "mean_us": t.mean(axis=0).reshape(-1),
            "min_us": t.min(axis=0).reshape(-1),
            "max_us": t.max(axis=0).reshape(-1),
            "iters": np.full(ranks * phases, iters),
        }
        for k, v in per_rank.items():
            cols[k] = v[rank]
        df = pd.DataFrame(cols)
        for k, v in scalars.items():
            df[k] = v
        frames.append(df)
    tail = ["rank", "phase", "phase_is_comm", "modeled", "median_us", "mean_us", "min_us",
            "max_us", "iters"]
    if not frames:
        return pd.DataFrame(columns=LEAD + tail)
    return _order(pd.concat(frames, ignore_index=True), tail).reset_index(drop=True)


def load_runs(paths: Paths) -> pd.DataFrame:
    """One row per (file, run): the run's attributes and, per phase, the median over iterations
    of the max over ranks (`<phase>_us`, as in helix-bench's table). Refused runs are included
    (their timing columns are NaN)."""
    rows, phase_order = [], []
    for path, run in _decode_runs(paths):
        row, _ = _run_columns(path, run)
        if run.ok and run.phase_us is not None:
            for p, v in run.phase_medians().items():
                row[f"{p}_us"] = v
                if p not in phase_order:
                    phase_order.append(p)
        rows.append(row)
    tail = [f"{p}_us" for p in phase_order]
    if not rows:
        return pd.DataFrame(columns=LEAD)
    return _order(pd.DataFrame(rows), tail)


def load_samples(paths: Paths) -> pd.DataFrame:
    """The tidy form of every timing sample: one row per (file, run, iteration, rank, phase)
    with `time_us`, plus the rank's `step_us` and `exposed_comm_us` of that iteration and the
    run's identifying attributes (those of LEAD)."""
    frames = []
    for path, run in _decode_runs(paths):
        if not run.ok or run.phase_us is None:
            continue
        scalars, _ = _run_columns(path, run)
        t = run.phase_us
        iters, ranks, phases = t.shape
        df = pd.DataFrame({
            "iteration": np.repeat(np.arange(iters), ranks * phases),
            "rank": np.tile(np.repeat(np.arange(ranks), phases), iters),
            "phase": np.tile(np.asarray(run.phases, dtype=object), iters * ranks),
            "time_us": t.reshape(-1),
        })
        for k in LEAD:
            if k in scalars:
                df[k] = scalars[k]
        frames.append(df)
    tail = ["iteration", "rank", "phase", "time_us"]
    if not frames:
        return pd.DataFrame(columns=LEAD + tail)
    return _order(pd.concat(frames, ignore_index=True), tail).reset_index(drop=True)


def load_table(paths: Paths, group: str) -> pd.DataFrame:
    """A column table of the traces (`micro/kernels`, `micro/collectives`, `model/points`,
    `disagg/points`, ...: any group
    of 1-D datasets of equal length, results/README.md) with a leading `file` column. Raises
    TraceError when none of the files holds the group."""
    frames = []
    for path in _paths(paths):
        with open_trace(path) as f:
            cols = load_columns(f, group.strip("/"))
        if cols is None:
            continue
        df = pd.DataFrame(cols)
        df.insert(0, "file", path)
        frames.append(df)
    if not frames:
        raise TraceError(f"none of the traces holds a /{group.strip('/')} table")
    return pd.concat(frames, ignore_index=True)
