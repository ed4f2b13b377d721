"""Synthetic traces following results/README.md, for the tests of the trace kinds the binary does
not write yet (/micro, /model, /disagg, GPU attributes) and for regression detection with a
known noise level."""
from __future__ import annotations

import h5py
import numpy as np

PHASES = ["qkv", "kv_append", "attention", "attn_comm", "combine", "o_proj", "o_comm", "ffn",
          "ffn_comm", "out_comm"]
IS_COMM = [0, 0, 0, 1, 0, 0, 1, 0, 1, 1]
STR = h5py.string_dtype("utf-8")

# Typical phase medians (us) of one rank; attention grows with S * B.
BASE_PHASE_US = {"qkv": 40.0, "kv_append": 3.0, "attention": 0.0, "attn_comm": 12.0,
                 "combine": 4.0, "o_proj": 20.0, "o_comm": 30.0, "ffn": 60.0, "ffn_comm": 25.0,
                 "out_comm": 0.0}


def root(f, backend="cpu", devices="rank0=cpu;rank1=cpu;rank2=cpu;rank3=cpu", kind="decode"):
    a = f.attrs
    a["schema_version"] = "1.0"
    a["kind"] = kind
    a["suite_version"] = "0.1.0"
    a["git_sha"] = "0000000"
    a["command_line"] = "synthetic"
    a["utc_time"] = "2026-01-01T00:00:00Z"
    a["hosts"] = "node0"
    a["devices"] = devices
    a["backend"] = backend
    a["world_size"] = np.int64(devices.count("=") or 1)
    a["mpi_version"] = "synthetic"
    a["hdf5_version"] = "synthetic"
    a["cuda_version"] = "none"
    a["nccl_version"] = "none"
    a["slurm_job_id"] = ""
    a["nccl_env"] = ""


def default_runs(layouts=("tp", "kvp", "helix", "helix-hopb"), seqs=(1024, 4096),
                 batches=(1, 8)):
    return [{"layout": l, "seq_len": s, "batch": b} for s in seqs for b in batches
            for l in layouts]


def write_decode(path, runs=None, iters=15, ranks=4, noise=0.02, seed=0, scale=None,
                 model="tiny-gqa", backend="cpu", devices=None, dtype="fp32", extra_attrs=None,
                 mode="w"):
    """Writes /decode runs whose phase times are the typical values times (1 + noise * N(0,1)),
    independently per iteration and rank. `scale` = {(run index or None, phase): factor}
    slows phases (None = every run)."""
    rng = np.random.default_rng(seed)
    runs = default_runs() if runs is None else runs
    scale = scale or {}
    devices = devices or ";".join(f"rank{i}=cpu" for i in range(ranks))
    with h5py.File(path, mode) as f:
        root(f, backend=backend, devices=devices)
        g = f.require_group("decode")
        g.attrs["model"] = model
        g.attrs["model_source"] = "synthetic"
        g.attrs["layer_kind"] = "dense"
        g.attrs["phases"] = np.array(PHASES, dtype=object)
        for i, spec in enumerate(runs):
            r = g.create_group(f"run_{i:04d}")
            layout = spec["layout"]
            a = {"model": model, "layer_kind": "dense", "layout": layout, "n_ranks": ranks,
                 "kvp": min(2, ranks), "tpa": max(1, ranks // 2), "tpf": ranks, "ep": 1,
                 "hopb_chunks": 4 if layout == "helix-hopb" else 1, "kv_block": 16,
                 "batch": spec["batch"], "seq_len": spec["seq_len"], "backend": backend,
                 "dtype": dtype, "comm_backend": "mpi-host", "link_representative": 0,
                 "emulated_ranks": 0, "emulated_rank": 0, "status": "ok", "message": "",
                 "verified": 1, "verify_ran": 1, "max_rel_err": 1e-7, "tolerance": 1e-5,
                 "decode_steps": 17, "iters": iters, "warmup": 3, "seed": 1234}
            a.update(spec.get("attrs", {}))
            a.update(extra_attrs or {})
            for k, v in a.items():
                r.attrs[k] = v
            if a["status"] != "ok":
                continue
            base = dict(BASE_PHASE_US)
            base["attention"] = 0.01 * spec["seq_len"] * spec["batch"] / ranks + 5.0
            if layout == "tp":
                base["attn_comm"] = 0.0
                base["combine"] = 0.0
            ph = np.empty((iters, ranks, len(PHASES)))
            for p, name in enumerate(PHASES):
                factor = scale.get((i, name), scale.get((None, name), 1.0))
                ph[:, :, p] = base[name] * factor * (1 + noise * rng.standard_normal((iters, ranks)))
            ph = np.clip(ph, 0, None)
            comm = np.array(IS_COMM, dtype=bool)
            rank_step = ph.sum(axis=2)
            if layout == "helix-hopb":  # attention overlaps the All-to-All
                rank_step -= 0.8 * ph[:, :, PHASES.index("attn_comm")]
            rank_exposed = np.clip(rank_step - ph[:, :, ~comm].sum(axis=2), 0, None)
            ds = r.create_dataset("phase_us", data=ph)
            ds.attrs["phases"] = np.array(PHASES, dtype=object)
            ds.attrs["phase_is_comm"] = np.array(IS_COMM, dtype=np.int64)
            ds.attrs["modeled"] = np.array(spec.get("modeled", [0] * len(PHASES)), dtype=np.int64)
            ds.attrs["units"] = "us"
            r.create_dataset("step_us", data=rank_step.max(axis=1)).attrs["units"] = "us"
            r.create_dataset("exposed_comm_us", data=rank_exposed.max(axis=1)).attrs["units"] = "us"
            r.create_dataset("rank_step_us", data=rank_step).attrs["units"] = "us"
            r.create_dataset("rank_exposed_comm_us", data=rank_exposed).attrs["units"] = "us"
            r.attrs["step_us_median"] = float(np.median(rank_step.max(axis=1)))
            r.attrs["exposed_comm_us_median"] = float(np.median(rank_exposed.max(axis=1)))
    return path


def _columns(group, cols):
    for name, values in cols.items():
        values = list(values)
        if values and isinstance(values[0], str):
            group.create_dataset(name, data=np.array(values, dtype=object), dtype=STR)
        else:
            group.create_dataset(name, data=np.asarray(values))


def write_micro(f, ceiling_gbps=4000.0):
    m = f.require_group("micro")
    m.attrs["ceiling_gbps"] = ceiling_gbps
    names = ["attention", "attention", "gemm", "combine"]
    shapes = ["B=1 S=64K", "B=8 S=64K", "M=8 N=4096 K=4096", "B=8 H=32"]
    gbps = [3100.0, 3500.0, 2100.0, 900.0]
    nbytes = [6.4e8, 5.1e9, 3.4e7, 1.0e6]
    t = [b / (g * 1e3) for b, g in zip(nbytes, gbps)]
    _columns(m.require_group("kernels"), {
        "name": names, "kernel": ["attn_lse", "attn_lse", "gemm_bf16", "lse_combine"],
        "shape": shapes, "bytes": np.array(nbytes, dtype=np.int64),
        "flops": np.array([1e9, 8e9, 2.7e8, 1e6]), "time_us_median": t,
        "time_us_min": [x * 0.98 for x in t], "time_us_max": [x * 1.05 for x in t],
        "gbps": gbps, "tflops": [0.5, 1.0, 8.0, 0.01],
        "fraction_of_ceiling": [g / ceiling_gbps for g in gbps]})
    sizes = [2 ** k for k in range(10, 28, 3)]
    rows = {"collective": [], "group_size": [], "size_bytes": [], "count": [], "dtype": [],
            "time_us": [], "algbw_gbps": [], "busbw_gbps": [], "wrong": []}
    for coll, n in (("all_reduce", 8), ("all_to_all", 8), ("all_to_all", 4)):
        for s in sizes:
            t_us = 8.0 + s / 300e3
            alg = s / (t_us * 1e3)
            rows["collective"].append(coll)
            rows["group_size"].append(n)
            rows["size_bytes"].append(s)
            rows["count"].append(s // 2)
            rows["dtype"].append("bf16")
            rows["time_us"].append(t_us)
            rows["algbw_gbps"].append(alg)
            rows["busbw_gbps"].append(alg * (2 * (n - 1) / n if coll == "all_reduce"
                                             else (n - 1) / n))
            rows["wrong"].append(0)
    rows["group_size"] = np.array(rows["group_size"], dtype=np.int64)
    rows["size_bytes"] = np.array(rows["size_bytes"], dtype=np.int64)
    rows["count"] = np.array(rows["count"], dtype=np.int64)
    rows["wrong"] = np.array(rows["wrong"], dtype=np.int64)
    _columns(m.require_group("collectives"), rows)


def write_model(f, seed=1):
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in ("layout", "family", "n_gpus", "tp", "pp", "ep", "kvp", "tpa", "tpf",
                            "hopb", "batch", "ttl_us", "tokens_per_s_per_user",
                            "tokens_per_s_per_gpu", "feasible", "mem_bytes_per_gpu",
                            "attention_us", "ffn_us")}
    for layout, speed in (("tp", 1.0), ("kvp", 1.2), ("helix", 1.5), ("helix-hopb", 1.6)):
        for fam in ("llama-3.1-405b", "deepseek-r1"):
            for n in (8, 16, 32, 64):
                for b in (1, 4, 16, 64, 256):
                    ttl = (2000.0 + 30.0 * b) / speed * (1 + 0.1 * rng.random()) * 64 / n
                    rows["layout"].append(layout)
                    rows["family"].append(fam)
                    rows["n_gpus"].append(n)
                    rows["tp"].append(min(n, 8))
                    rows["pp"].append(1)
                    rows["ep"].append(1)
                    rows["kvp"].append(max(1, n // 8))
                    rows["tpa"].append(8)
                    rows["tpf"].append(n)
                    rows["hopb"].append(int(layout == "helix-hopb"))
                    rows["batch"].append(b)
                    rows["ttl_us"].append(ttl)
                    rows["tokens_per_s_per_user"].append(1e6 / ttl)
                    rows["tokens_per_s_per_gpu"].append(1e6 / ttl * b / n)
                    rows["feasible"].append(int(b * 1e9 / n < 60e9))
                    rows["mem_bytes_per_gpu"].append(int(b * 1e9 / n))
                    rows["attention_us"].append(ttl * 0.6)
                    rows["ffn_us"].append(ttl * 0.3)
    x = np.array(rows["tokens_per_s_per_user"])
    y = np.array(rows["tokens_per_s_per_gpu"])
    feas = np.array(rows["feasible"], dtype=bool)
    lay = np.array(rows["layout"], dtype=object)
    fam = np.array(rows["family"], dtype=object)
    front = np.zeros(len(x), dtype=np.int8)
    for key in set(zip(lay, fam)):
        idx = np.flatnonzero((lay == key[0]) & (fam == key[1]) & feas)
        for i in idx:
            dom = (x[idx] >= x[i]) & (y[idx] >= y[i]) & ((x[idx] > x[i]) | (y[idx] > y[i]))
            front[i] = not dom.any()
    rows["on_frontier"] = front
    for k in ("n_gpus", "tp", "pp", "ep", "kvp", "tpa", "tpf", "hopb", "batch", "feasible",
              "mem_bytes_per_gpu"):
        rows[k] = np.array(rows[k], dtype=np.int64)
    _columns(f.require_group("model/points"), rows)


def write_disagg(f):
    rows = {k: [] for k in ("mode", "ratio", "ttl_us", "tokens_per_s_per_user",
                            "tokens_per_s_per_gpu", "on_frontier")}
    for mode, gain in (("disagg", 1.3), ("colocated", 1.0)):
        for ratio in (0.25, 0.5, 1.0, 2.0):
            for b in (1, 8, 64):
                ttl = (3000.0 + 40 * b) / gain * (1 + 0.05 * ratio)
                rows["mode"].append(mode)
                rows["ratio"].append(ratio)
                rows["ttl_us"].append(ttl)
                rows["tokens_per_s_per_user"].append(1e6 / ttl)
                rows["tokens_per_s_per_gpu"].append(1e6 / ttl * b / 8 / (1 + ratio))
    x = np.array(rows["tokens_per_s_per_user"])
    y = np.array(rows["tokens_per_s_per_gpu"])
    mode = np.array(rows["mode"], dtype=object)
    front = np.zeros(len(x), dtype=np.int8)
    for m in set(mode):
        idx = np.flatnonzero(mode == m)
        for i in idx:
            dom = (x[idx] >= x[i]) & (y[idx] >= y[i]) & ((x[idx] > x[i]) | (y[idx] > y[i]))
            front[i] = not dom.any()
    rows["on_frontier"] = front
    _columns(f.require_group("disagg/points"), rows)


def write_everything(path):
    """A decode trace with GPU-style attributes (one refused run, one modeled phase) plus
    /micro, /model and /disagg."""
    runs = default_runs()
    runs[0]["modeled"] = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    runs.append({"layout": "tp", "seq_len": 1048576, "batch": 64,
                 "attrs": {"status": "refused", "message": "needs 200 GB per rank, 140 GB free"}})
    write_decode(path, runs, backend="cuda", dtype="bf16", model="llama-3.1-8b",
                 devices=";".join(f"rank{i}=NVIDIA H200 (0000:{0x19 + i:02x}:00.0)"
                                  for i in range(4)),
                 extra_attrs={"comm_backend": "nccl", "link_representative": 1})
    with h5py.File(path, "a") as f:
        write_micro(f)
        write_model(f)
        write_disagg(f)
    return path
