"""Hostile edits of helix-bench traces, for the bad-input matrix (each named edit is one case) and
the seeded mutation loop of the Python readers (random compositions of edits, plus byte-level
corruption). Every edit leaves a file HDF5 can open (what a user's h5py script or a truncated
sweep leaves), so the edits reach the readers rather than the HDF5 library's own checks."""
from __future__ import annotations

import random

import h5py
import numpy as np

STR = h5py.string_dtype("utf-8")
RUN = "decode/run_0000"
NAN, INF = float("nan"), float("inf")


def _first_run(f):
    g = f.get("decode")
    if not isinstance(g, h5py.Group):
        return None
    for name in sorted(g):
        if isinstance(g[name], h5py.Group) and "phase_us" in g[name]:
            return g[name]
    return None


def set_attr(path, name, value):
    def edit(f):
        obj = f[path] if path in f else None
        if obj is not None:
            if name in obj.attrs:
                del obj.attrs[name]
            obj.attrs[name] = value
    return edit


def drop_attr(path, name):
    def edit(f):
        if path in f and name in f[path].attrs:
            del f[path].attrs[name]
    return edit


def replace_dataset(path, data, dtype=None):
    def edit(f):
        if path in f:
            del f[path]
        f.create_dataset(path, data=np.asarray(data) if dtype is None else
                         np.asarray(data, dtype=dtype))
    return edit


def huge_dataset(path, shape):
    """A dataset whose extent is enormous but holds no data (chunked, never written): reading it
    whole would need terabytes."""
    def edit(f):
        if path in f:
            del f[path]
        f.create_dataset(path, shape=shape, dtype="f8", chunks=tuple(1 for _ in shape))
    return edit


def scale_value(path, index, value):
    def edit(f):
        if path in f:
            v = f[path][()]
            v.flat[index % v.size] = value
            f[path][...] = v
    return edit


def delete(path):
    def edit(f):
        if path in f:
            del f[path]
    return edit


def soft_link(path, target):
    def edit(f):
        if path in f:
            del f[path]
        f[path] = h5py.SoftLink(target)
    return edit


def external_link(path):
    def edit(f):
        if path in f:
            del f[path]
        f[path] = h5py.ExternalLink("no-such-file.h5", "/x")
    return edit


def group_instead(path):
    def edit(f):
        if path in f:
            del f[path]
        f.create_group(path)
    return edit


def phases_attr(length):
    def edit(f):
        r = _first_run(f)
        if r is not None:
            r["phase_us"].attrs["phases"] = np.array([f"p{i}" for i in range(length)],
                                                     dtype=object)
    return edit


# The timings of a run, and (with them) every other dataset indexed by iteration first.
TIMINGS = ("step_us", "exposed_comm_us", "phase_us", "rank_exposed_comm_us")
PER_ITERATION = TIMINGS + ("wait_us", "transfer_us", "rank_step_us", "critical_rank",
                           "step_breakdown_us", "chunks")


def all_timings(value):
    """Every timing of every run set to `value` (0 iterations when value is None: every dataset
    indexed by iteration then holds none)."""
    def edit(f):
        g = f.get("decode")
        if not isinstance(g, h5py.Group):
            return
        for name in g:
            r = g[name]
            if not isinstance(r, h5py.Group):
                continue
            for ds in PER_ITERATION if value is None else TIMINGS:
                if ds not in r:
                    continue
                shape = r[ds].shape
                attrs = dict(r[ds].attrs)
                del r[ds]
                if value is None:
                    shape = (0,) + shape[1:]
                r.create_dataset(ds, data=np.full(shape, value if value is not None else 0.0))
                for k, v in attrs.items():
                    r[ds].attrs[k] = v
    return edit


# Named edits of a decode trace: (name, edit). Every one makes the trace malformed for a reader
# that takes it at face value.
DECODE_EDITS = [
    ("run_without_status", drop_attr(RUN, "status")),
    ("run_without_layout", drop_attr(RUN, "layout")),
    ("run_without_model", drop_attr(RUN, "model")),
    ("run_without_n_ranks", drop_attr(RUN, "n_ranks")),
    ("run_without_batch", drop_attr(RUN, "batch")),
    ("run_without_seq_len", drop_attr(RUN, "seq_len")),
    ("n_ranks_string", set_attr(RUN, "n_ranks", "2")),
    ("n_ranks_zero", set_attr(RUN, "n_ranks", np.int64(0))),
    ("n_ranks_2p40", set_attr(RUN, "n_ranks", np.int64(1 << 40))),
    ("n_ranks_uint64_max", set_attr(RUN, "n_ranks", np.uint64((1 << 64) - 1))),
    ("batch_float", set_attr(RUN, "batch", 2.5)),
    ("batch_negative", set_attr(RUN, "batch", np.int64(-4))),
    ("seq_len_2p40", set_attr(RUN, "seq_len", np.int64(1 << 40))),
    ("kvp_array", set_attr(RUN, "kvp", np.array([1, 2], dtype=np.int64))),
    ("layout_int", set_attr(RUN, "layout", np.int64(3))),
    ("layout_unknown", set_attr(RUN, "layout", "ring")),
    ("model_unknown", set_attr(RUN, "model", "no-such-model")),
    ("dtype_unknown", set_attr(RUN, "dtype", "fp3")),
    ("phase_us_2d", replace_dataset(RUN + "/phase_us", np.ones((3, 10)))),
    ("phase_us_5_phases", replace_dataset(RUN + "/phase_us", np.ones((3, 2, 5)))),
    ("phase_us_strings", replace_dataset(RUN + "/phase_us", np.array([["a"]], dtype=object),
                                         dtype=STR)),
    ("phase_us_nan", scale_value(RUN + "/phase_us", 3, NAN)),
    ("phase_us_negative", scale_value(RUN + "/phase_us", 5, -1.0)),
    ("phase_us_huge_extent", huge_dataset(RUN + "/phase_us", (1 << 28, 2, 10))),
    ("step_us_missing", delete(RUN + "/step_us")),
    ("step_us_inf", scale_value(RUN + "/step_us", 0, INF)),
    ("step_us_2d", replace_dataset(RUN + "/step_us", np.ones((3, 2)))),
    ("step_us_length", replace_dataset(RUN + "/step_us", np.ones(7))),
    ("phase_us_group", group_instead(RUN + "/phase_us")),
    ("phases_attr_length", phases_attr(4)),
    ("run_dataset", replace_dataset(RUN, np.ones(3))),
    ("run_soft_link_dangling", soft_link(RUN, "/nowhere")),
    ("run_external_link", external_link(RUN)),
    ("decode_dataset", replace_dataset("decode", np.ones(2))),
    ("devices_int", set_attr("/", "devices", np.int64(7))),
    ("zero_iterations", all_timings(None)),
    ("all_nan_timings", all_timings(NAN)),
    ("all_zero_timings", all_timings(0.0)),
]


def apply_edits(path, edits):
    with h5py.File(path, "a") as f:
        for edit in edits:
            edit(f)


# ----------------------------------------------------------------------------- random edits
_ATTRS = ["status", "model", "layer_kind", "layout", "dtype", "n_ranks", "kvp", "tpa", "tpf",
          "ep", "hopb_chunks", "kv_block", "batch", "seq_len", "verified", "verify_ran",
          "emulated_ranks", "backend", "message"]
_VALUES = [0, -1, 1, 2, 3, 1 << 31, 1 << 40, np.uint64((1 << 64) - 1), 2.5, NAN, INF, -INF, "",
           "ok", "refused", "helix", "tp", "x" * 300, "tiny-gqa", "deepseek-r1", b"\xff\xfe",
           np.array([1, 2]), np.array([], dtype=float), True]


def random_edit(rng: random.Random):
    """One random edit of the vocabulary above (what a fuzzer composes)."""
    k = rng.randrange(9)
    run = f"decode/run_{rng.randrange(4):04d}"
    if k == 0:
        return drop_attr(run, rng.choice(_ATTRS))
    if k == 1:
        return set_attr(run, rng.choice(_ATTRS), rng.choice(_VALUES))
    if k == 2:
        shape = tuple(rng.randrange(0, 5) for _ in range(rng.randrange(0, 4)))
        data = np.array([rng.choice([1.0, 0.0, -1.0, NAN, INF, 1e308])
                         for _ in range(int(np.prod(shape)) if shape else 1)]).reshape(shape)
        return replace_dataset(run + "/" + rng.choice(["phase_us", "step_us", "exposed_comm_us",
                                                       "rank_exposed_comm_us", "chunks"]),
                               data)
    if k == 3:
        return scale_value(run + "/" + rng.choice(["phase_us", "step_us"]), rng.randrange(50),
                           rng.choice([NAN, INF, -5.0, 0.0, 1e300]))
    if k == 4:
        return delete(run + rng.choice(["", "/phase_us", "/step_us", "/exposed_comm_us",
                                            "/rank_exposed_comm_us", "/chunks"]))
    if k == 5:
        return rng.choice([soft_link(run, "/nowhere"), external_link(run), group_instead(
            run + "/step_us"), replace_dataset(run, np.ones(2))])
    if k == 6:
        return set_attr(rng.choice(["/", "decode"]), rng.choice(["devices", "phases", "model",
                                                                   "schema_version"]),
                        rng.choice(_VALUES))
    if k == 7:
        return phases_attr(rng.randrange(0, 12))
    return all_timings(rng.choice([None, NAN, 0.0, -1.0]))


def corrupt_bytes(data: bytes, rng: random.Random) -> bytes:
    """Byte-level damage: a truncation, flipped bits or an overwritten range."""
    b = bytearray(data)
    k = rng.randrange(3)
    if k == 0 and b:
        del b[rng.randrange(len(b)):]
    elif k == 1:
        for _ in range(rng.randrange(1, 16)):
            if b:
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif b:
        at = rng.randrange(len(b))
        for i in range(at, min(len(b), at + rng.randrange(1, 64))):
            b[i] = rng.randrange(256)
    return bytes(b)
