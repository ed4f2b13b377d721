"""Reading helix-bench traces: root attributes, /decode runs, and the column tables of /micro,
/model and /disagg. Every reader tolerates absent groups (a trace holds what its subcommand
wrote); bad input (a file that is not a trace, a missing, mistyped or misshapen piece) raises
TraceError with a one-line message, never another exception."""
from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass, field

import h5py
import numpy as np

from .devices import device_label, devices_by_rank, normalize_device  # noqa: F401 (re-exported)
from .safeio import BadInput

KNOWN_GROUPS = ("decode", "micro", "model", "disagg")

# Run attributes that make two decode runs comparable (like with like). `device` is derived from
# the root `devices` attribute (or the per-run `job_devices` a sweep records).
MATCH_KEYS = ("model", "layer_kind", "layout", "n_ranks", "kvp", "tpa", "tpf", "ep",
              "hopb_chunks", "kv_block", "batch", "seq_len", "backend", "dtype",
              "emulated_ranks", "emulated_rank", "device")
# The same decode point however it was obtained (real, emulated, or priced by the model).
POINT_KEYS = ("model", "layout", "n_ranks", "kvp", "tpa", "tpf", "ep", "hopb_chunks", "batch",
              "seq_len")
# The critical step in parts (run dataset step_breakdown_us).
BREAKDOWN_PARTS = ("compute", "wait", "transfer", "other")


# Definitions of exposed communication (results/README.md). Every backend records
# "step_minus_compute" now; older CUDA traces measured the step minus a rerun of it without
# collectives, older emulated ones a modeled pipeline of the priced collectives.
EXPOSED_STEP_MINUS_COMPUTE = "step_minus_compute"
LEGACY_EXPOSED_CUDA = "step_minus_collective_free_rerun"
LEGACY_EXPOSED_EMULATED = "modeled_pipeline"


class TraceError(BadInput):
    """Bad input: a missing file, a file that is not HDF5 or not a helix-bench trace, or a trace
    with a malformed piece."""


def reader(fn):
    """Turns whatever a malformed trace makes h5py or numpy raise into TraceError."""
    @functools.wraps(fn)
    def wrapped(f, *args, **kwargs):
        try:
            return fn(f, *args, **kwargs)
        except TraceError:
            raise
        except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError,
                RuntimeError, OverflowError, UnicodeError) as e:
            name = getattr(f, "filename", "trace")
            msg = " ".join(str(e).split()) or type(e).__name__
            raise TraceError(f"{name}: malformed trace ({msg})") from None
    return wrapped


def text(value) -> str:
    """A string attribute or dataset element as str (h5py gives bytes for dataset strings)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return text(value[()])
    return str(value)


def scalar(value):
    """An HDF5 attribute as a plain Python value (str, int, float, or list)."""
    if isinstance(value, (bytes, str, np.str_)):
        return text(value)
    if isinstance(value, np.ndarray):
        if value.shape == ():
            return scalar(value[()])
        return [scalar(v) for v in value.tolist()]
    if isinstance(value, (np.bool_, bool)):
        return int(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def attrs_dict(obj) -> dict:
    out = {}
    for k in obj.attrs:
        try:
            out[k] = scalar(obj.attrs[k])
        except (OSError, TypeError):  # an attribute h5py cannot read: skip it
            continue
    return out


def open_trace(path: str) -> h5py.File:
    """Opens a trace read-only. Raises TraceError when the file is missing, is not HDF5, or holds
    none of the trace groups and no schema_version."""
    if not os.path.exists(path):
        raise TraceError(f"{path}: no such file")
    if os.path.isdir(path):
        raise TraceError(f"{path}: is a directory, not a trace")
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise TraceError(f"{path}: not a regular file")
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError, RuntimeError):
        raise TraceError(f"{path}: not an HDF5 file") from None
    if "schema_version" not in f.attrs and not any(g in f for g in KNOWN_GROUPS):
        f.close()
        raise TraceError(f"{path}: not a helix-bench trace (no schema_version attribute and none "
                         f"of /{', /'.join(KNOWN_GROUPS)})")
    return f


@dataclass
class DecodeRun:
    """One /decode/run_NNNN group read into memory."""
    name: str
    attrs: dict
    device: str
    phases: list = field(default_factory=list)
    phase_is_comm: np.ndarray | None = None
    modeled: np.ndarray | None = None
    phase_us: np.ndarray | None = None  # [iters, ranks, phases]
    step_us: np.ndarray | None = None  # [iters]
    exposed_comm_us: np.ndarray | None = None  # [iters]
    # The accounting across ranks (results/README.md), absent in older traces.
    wait_us: np.ndarray | None = None  # [iters, ranks, phases]
    transfer_us: np.ndarray | None = None  # [iters, ranks, phases]
    rank_step_us: np.ndarray | None = None  # [iters, ranks]
    critical_rank: np.ndarray | None = None  # [iters] layout rank
    breakdown_us: np.ndarray | None = None  # [iters, 4]: compute, wait, transfer, other
    rank_of_row: np.ndarray | None = None  # [ranks] layout rank of each row
    routed_rows: np.ndarray | None = None  # [ranks] MoE: (token, expert) assignments
    rank_exposed_comm_us: np.ndarray | None = None  # [iters, ranks]
    # Per-chunk timestamps of the partials exchange, us from each rank's step start:
    # [iters, ranks, chunks, columns] (absent for tp and in traces written before it existed).
    chunk_us: np.ndarray | None = None
    chunk_columns: list = field(default_factory=list)
    # The roofline (traces since it was added): per rank and phase, and per rank for the step.
    roofline_us: np.ndarray | None = None  # [ranks, phases]
    roofline_fraction: np.ndarray | None = None  # [ranks, phases]
    roofline_step_us: np.ndarray | None = None  # [ranks]
    compute_us_median: np.ndarray | None = None  # [ranks]

    @property
    def ok(self) -> bool:
        return self.attrs.get("status", "ok") == "ok" and self.step_us is not None

    def get(self, key, default=None):
        if key == "device":
            return self.device
        return self.attrs.get(key, default)

    def key(self, keys=MATCH_KEYS) -> tuple:
        return tuple(_hashable(self.get(k)) for k in keys)

    def timing_problem(self) -> str | None:
        """Why the timings of an 'ok' run cannot be judged (no iterations, a time that is not a
        finite number >= 0), or None."""
        if self.step_us is None or len(self.step_us) == 0:
            return "no timed iterations"
        for what, v in (("step_us", self.step_us), ("phase_us", self.phase_us),
                        ("exposed_comm_us", self.exposed_comm_us)):
            if v is not None and (not np.all(np.isfinite(v)) or np.any(v < 0)):
                return f"{what} holds a time that is not a finite number >= 0"
        if float(np.median(self.step_us)) <= 0:
            return "step_us is 0 (no timed work)"
        return None

    @property
    def exposed_definition(self) -> str:
        """How exposed_comm_us was measured: the run's exposed_comm_definition, or for traces
        written before that attribute, the definition their backend used then."""
        d = self.attrs.get("exposed_comm_definition")
        if d:
            return text(d)
        if self.attrs.get("emulated_ranks", 0):
            return LEGACY_EXPOSED_EMULATED
        if self.attrs.get("backend") == "cuda":
            return LEGACY_EXPOSED_CUDA
        return EXPOSED_STEP_MINUS_COMPUTE

    def phase_iter_max(self) -> np.ndarray:
        """[iters, phases]: per iteration, the max over ranks of each phase."""
        if self.phase_us is None:
            return np.zeros((0, len(self.phases)))
        return self.phase_us.max(axis=1)

    def phase_medians(self) -> dict:
        m = self.phase_iter_max()
        if m.shape[0] == 0:
            return {p: float("nan") for p in self.phases}
        med = np.median(m, axis=0)
        return {p: float(v) for p, v in zip(self.phases, med)}

    def rows(self) -> list:
        """The layout rank of each row of the per-rank arrays."""
        n = 0 if self.phase_us is None else self.phase_us.shape[1]
        if self.rank_of_row is not None and len(self.rank_of_row) == n:
            return [int(r) for r in self.rank_of_row]
        if n == 1 and self.attrs.get("emulated_ranks", 0) and self.attrs.get("emulated_rank", 0) >= 0:
            return [int(self.attrs.get("emulated_rank", 0))]
        return list(range(n))

    def critical_rows(self) -> np.ndarray:
        """[iters]: the row of each iteration's critical rank (the trace's accounting; in older
        traces the rank with the longest step)."""
        rows = self.rows()
        if self.critical_rank is not None and len(self.critical_rank) == len(self.step_us):
            return np.array([rows.index(int(c)) if int(c) in rows else 0
                             for c in self.critical_rank], dtype=int)
        if self.rank_step_us is not None:
            return np.argmax(self.rank_step_us, axis=1)
        return np.zeros(0 if self.phase_us is None else self.phase_us.shape[0], dtype=int)

    def usual_critical_rank(self) -> int:
        """The critical rank of most iterations (a layout rank)."""
        crit = self.critical_rows()
        if len(crit) == 0:
            return 0
        return self.rows()[int(np.bincount(crit).argmax())]

    def critical_phase_medians(self, what: str = "phase") -> dict:
        """Median over iterations of the critical rank's time in each phase (what: 'phase',
        'wait' or 'transfer'); phase_medians() (the max over ranks) without an accounting."""
        arr = {"phase": self.phase_us, "wait": self.wait_us, "transfer": self.transfer_us}[what]
        if arr is None:
            return self.phase_medians() if what == "phase" else {}
        crit = self.critical_rows()
        per_iter = arr[np.arange(arr.shape[0]), crit, :]
        return {p: float(v) for p, v in zip(self.phases, np.median(per_iter, axis=0))}

    def breakdown_medians(self) -> dict:
        """The critical step in parts (medians): compute, wait, transfer, other (us)."""
        if self.breakdown_us is None:
            return {}
        med = np.median(self.breakdown_us, axis=0)
        return dict(zip(("compute", "wait", "transfer", "other"), (float(v) for v in med)))

    def rank_breakdown(self) -> dict:
        """Per layout rank, the medians of its compute, wait, transfer and other (us): its step
        minus the three; {} without an accounting."""
        if self.wait_us is None or self.rank_step_us is None:
            return {}
        comm = np.asarray(self.phase_is_comm, dtype=bool)
        out = {}
        for k, rank in enumerate(self.rows()):
            compute = np.median(self.phase_us[:, k, ~comm].sum(axis=1))
            wait = np.median(self.wait_us[:, k, :].sum(axis=1))
            xfer = np.median(self.transfer_us[:, k, :].sum(axis=1))
            step = np.median(self.rank_step_us[:, k])
            out[rank] = {"compute": float(compute), "wait": float(wait),
                         "transfer": float(xfer), "other": float(step - compute - wait - xfer),
                         "step": float(step)}
        return out

    def step_median(self) -> float:
        return float(np.median(self.step_us)) if self.step_us is not None else float("nan")

    def exposed_median(self) -> float:
        if self.exposed_comm_us is None:
            return float("nan")
        return float(np.median(self.exposed_comm_us))

    @property
    def has_roofline(self) -> bool:
        return self.roofline_us is not None and self.compute_us_median is not None

    def rank_phase_medians(self, rank: int = 0) -> dict:
        """One rank's median over iterations of each phase."""
        if self.phase_us is None:
            return {p: float("nan") for p in self.phases}
        med = np.median(self.phase_us[:, rank, :], axis=0)
        return {p: float(v) for p, v in zip(self.phases, med)}

    def comm_phase_names(self) -> list:
        if self.phase_is_comm is None:
            return []
        return [p for p, c in zip(self.phases, self.phase_is_comm) if c]

    def modeled_phase_names(self) -> list:
        if self.modeled is None:
            return []
        return [p for p, c in zip(self.phases, self.modeled) if c]

    @property
    def source(self) -> str:
        """'emulated' (one GPU ran the layout's ranks with priced collectives) or 'real'."""
        return "emulated" if self.attrs.get("emulated_ranks", 0) else "real"

    def point(self) -> tuple:
        return tuple(self.get(k) for k in POINT_KEYS)

    def attn_shape(self) -> str:
        return f"{self.get('kvp', '?')}x{self.get('tpa', '?')}"

    def ffn_shape(self) -> str:
        return f"{self.get('tpf', '?')}x{self.get('ep', '?')}"

    def describe(self) -> str:
        """A short label: 'tiny-gqa helix N=4 KVPxTPA=2x2 TPFxEP=4x1 B=4 S=1024'."""
        s = (f"{self.get('model')} {self.get('layout')} N={self.get('n_ranks')} "
             f"KVPxTPA={self.attn_shape()} TPFxEP={self.ffn_shape()}")
        if self.get("layout") == "helix-hopb":
            s += f" chunks={self.get('hopb_chunks')}"
        s += f" B={self.get('batch')} S={self.get('seq_len')}"
        if self.get("emulated_ranks"):
            s += f" emulated={self.get('emulated_rank')}/{self.get('emulated_ranks')}"
        return s


def _hashable(v):
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


# Largest dataset read (elements): far beyond any trace the suite writes.
MAX_ELEMENTS = 1 << 26


def _read(ds):
    if ds.size is not None and ds.size > MAX_ELEMENTS:
        raise TraceError(f"{ds.file.filename}: {ds.name}: {ds.size} elements (at most "
                         f"{MAX_ELEMENTS})")
    return ds[()]


def _dataset(g, name, ndim=1):
    if name in g and isinstance(g[name], h5py.Dataset):
        v = np.asarray(_read(g[name]), dtype=float)
        if v.ndim != ndim:
            raise TraceError(f"{g.file.filename}: {g.name}/{name}: {v.ndim} dimensions, "
                             f"expected {ndim}")
        return v
    return None


# Attributes every decode run has (helix-bench writes them before it knows whether the run is
# refused), and integer attributes that must be in range when present.
RUN_TEXT = ("status", "model", "layout")
RUN_INTS = {"n_ranks": (1, 4096), "batch": (1, 65536), "seq_len": (1, 1 << 26),
            "kvp": (1, 4096), "tpa": (1, 4096), "tpf": (1, 4096), "ep": (1, 4096),
            "hopb_chunks": (0, 65536), "kv_block": (1, 65536)}
RUN_REQUIRED_INTS = ("n_ranks", "batch", "seq_len")


def _check_run_attrs(where, a):
    for k in RUN_TEXT:
        if not isinstance(a.get(k), str):
            raise TraceError(f"{where}: attribute '{k}' is missing or not a string")
    for k, (lo, hi) in RUN_INTS.items():
        if k not in a:
            if k in RUN_REQUIRED_INTS:
                raise TraceError(f"{where}: attribute '{k}' is missing")
            continue
        v = a[k]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise TraceError(f"{where}: attribute '{k}' must be an integer from {lo} to {hi}, "
                             f"got {v!r}"[:200])


@reader
def load_decode_runs(f: h5py.File) -> list:
    """Every /decode/run_* group, in file order. Refused runs are returned with status
    'refused' and no arrays. A member of /decode that is not a run, a run with a missing or
    mistyped attribute, or an 'ok' run without timings raises TraceError."""
    runs = []
    if "decode" not in f:
        return runs
    grp = f["decode"]
    if not isinstance(grp, h5py.Group):
        raise TraceError(f"{f.filename}: /decode is not a group")
    root_devices = text(f.attrs.get("devices", ""))
    group_phases = [text(p) for p in grp.attrs.get("phases", [])]
    for name in sorted(grp):
        g = grp[name]
        if not isinstance(g, h5py.Group):
            raise TraceError(f"{f.filename}: /decode/{name} is not a group (a run)")
        a = attrs_dict(g)
        _check_run_attrs(f"{f.filename}: /decode/{name}", a)
        dev = a.get("job_devices") or root_devices
        run = DecodeRun(name=name, attrs=a, device=device_label(dev))
        where = f"{f.filename}: {g.name}"
        if "phase_us" in g:
            ds = g["phase_us"]
            if not isinstance(ds, h5py.Dataset):
                raise TraceError(f"{where}/phase_us is not a dataset")
            run.phases = [text(p) for p in np.ravel(ds.attrs.get("phases", group_phases))]
            run.phase_us = _dataset(g, "phase_us", ndim=3)
            n = run.phase_us.shape[-1]
            if len(run.phases) != n:
                raise TraceError(f"{where}/phase_us has {n} phases, its 'phases' attribute "
                                 f"{len(run.phases)}")
            run.phase_is_comm = np.ravel(np.asarray(ds.attrs.get("phase_is_comm", np.zeros(n)),
                                                    dtype=int))
            run.modeled = np.ravel(np.asarray(ds.attrs.get("modeled", np.zeros(n)), dtype=int))
            if len(run.phase_is_comm) != n or len(run.modeled) != n:
                raise TraceError(f"{where}/phase_us: 'phase_is_comm' or 'modeled' does not have "
                                 f"one entry per phase")
        else:
            run.phases = group_phases
        run.step_us = _dataset(g, "step_us")
        run.exposed_comm_us = _dataset(g, "exposed_comm_us")
        run.wait_us = _dataset(g, "wait_us", ndim=3)  # [iters, ranks, phases]
        run.transfer_us = _dataset(g, "transfer_us", ndim=3)
        run.rank_step_us = _dataset(g, "rank_step_us", ndim=2)  # [iters, ranks]
        run.critical_rank = _dataset(g, "critical_rank")
        run.breakdown_us = _dataset(g, "step_breakdown_us", ndim=2)  # [iters, 4]
        run.rank_of_row = _dataset(g, "rank_of_row")
        run.routed_rows = _dataset(g, "routed_rows")
        run.rank_exposed_comm_us = _dataset(g, "rank_exposed_comm_us", ndim=2)
        run.chunk_us = _dataset(g, "chunks", ndim=4)  # [iters, ranks, chunks, columns]
        if run.chunk_us is not None:
            run.chunk_columns = [text(c) for c in g["chunks"].attrs.get("columns", [])]
        run.roofline_us = _dataset(g, "roofline_us", ndim=2)  # [ranks, phases]
        run.roofline_fraction = _dataset(g, "roofline_fraction", ndim=2)
        run.roofline_step_us = _dataset(g, "roofline_step_us")
        run.compute_us_median = _dataset(g, "compute_us_median")
        if a["status"] == "ok" and (run.phase_us is None or run.step_us is None):
            raise TraceError(f"{where}: an 'ok' run without phase_us and step_us")
        iters = {len(v) for v in (run.step_us, run.exposed_comm_us, run.phase_us)
                 if v is not None}
        if len(iters) > 1:
            raise TraceError(f"{where}: step_us, exposed_comm_us and phase_us disagree on the "
                             f"number of iterations {sorted(iters)}")
        if run.phase_us is not None:
            it, rk = run.phase_us.shape[:2]
            want = {"rank_exposed_comm_us": (it, rk), "wait_us": run.phase_us.shape,
                    "transfer_us": run.phase_us.shape, "rank_step_us": (it, rk),
                    "critical_rank": (it,), "breakdown_us": (it, 4), "rank_of_row": (rk,),
                    "routed_rows": (rk,)}
            for attr, shape in want.items():
                v = getattr(run, attr)
                if v is not None and v.shape != shape:
                    raise TraceError(f"{where}: {attr} is {list(v.shape)}, not {list(shape)} as "
                                     "phase_us")
        if run.roofline_us is not None:
            ranks, nph = run.roofline_us.shape
            per_rank = (run.roofline_step_us, run.compute_us_median)
            if (ranks < 1 or nph != len(run.phases)
                    or (run.roofline_fraction is not None
                        and run.roofline_fraction.shape != run.roofline_us.shape)
                    or any(v is not None and v.shape != (ranks,) for v in per_rank)):
                raise TraceError(f"{where}: the roofline datasets are not [ranks, phases] and "
                                 f"[ranks] with one column per phase")
        runs.append(run)
    return runs


@reader
def load_columns(f: h5py.File, path: str) -> dict | None:
    """A column table (one 1-D dataset per column) as {column: numpy array}; string columns are
    decoded to str. None when the group is absent or empty."""
    g = f.get(path)
    if not isinstance(g, h5py.Group) or len(g) == 0:
        return None
    cols = {}
    for name in g:
        ds = g[name]
        if not isinstance(ds, h5py.Dataset):
            continue
        v = np.asarray(_read(ds))
        if v.dtype.kind in ("O", "S", "U"):
            v = np.array([text(x) for x in np.ravel(v)], dtype=object)
        cols[name] = np.ravel(v)
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise TraceError(f"/{path}: columns of different lengths {sorted(lengths)}")
    return cols or None


@reader
def root_attrs(f: h5py.File) -> dict:
    return attrs_dict(f)
