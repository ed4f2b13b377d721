"""Inputs of the bad-input matrix: real traces written by the binaries under test (decode, model,
disagg, micro), malformed copies of them (tests/fuzz/trace_mutations.py), malformed model and
hardware files, sweep specs, and the per-case sandbox (an existing output, a directory, a FIFO,
a device, a link)."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "fuzz"))
import trace_mutations as tm  # noqa: E402

TINY_GQA = json.load(open(os.path.join(REPO, "layouts", "models", "tiny-gqa.json")))
TINY_MLA = json.load(open(os.path.join(REPO, "layouts", "models", "tiny-mla-moe.json")))
H200 = json.load(open(os.path.join(REPO, "analytic", "hardware", "h200.json")))


def _with(base, **changes):
    d = copy.deepcopy(base)
    for k, v in changes.items():
        if v is _DROP:
            d.pop(k, None)
        else:
            d[k] = v
    return d


_DROP = object()


def _nested(base, key, **changes):
    d = copy.deepcopy(base)
    d[key] = _with(d[key], **changes)
    return d


# Model files: name -> JSON text. Each breaks one rule of layouts/model_spec.cpp.
MODELS = {
    "hidden_string": json.dumps(_with(TINY_GQA, hidden="256")),
    "hidden_float": json.dumps(_with(TINY_GQA, hidden=256.0)),
    "hidden_negative": json.dumps(_with(TINY_GQA, hidden=-256)),
    "hidden_zero": json.dumps(_with(TINY_GQA, hidden=0)),
    "layers_2p31": json.dumps(_with(TINY_GQA, layers=2 ** 31)),
    "layers_2p63": json.dumps(_with(TINY_GQA, layers=2 ** 63)),
    "layers_2p64": json.dumps(_with(TINY_GQA, layers=2 ** 64)),
    "ffn_huge": json.dumps(_with(TINY_GQA, ffn=10 ** 12)),
    "q_heads_null": json.dumps(_with(TINY_GQA, q_heads=None)),
    "kv_heads_missing": json.dumps(_with(TINY_GQA, kv_heads=_DROP)),
    "kv_heads_not_dividing": json.dumps(_with(TINY_GQA, kv_heads=3)),
    "head_dim_odd": json.dumps(_with(TINY_GQA, head_dim=127)),
    "rms_eps_string": json.dumps(_with(TINY_GQA, rms_eps="x")),
    "rms_eps_zero": json.dumps(_with(TINY_GQA, rms_eps=0)),
    "rope_theta_negative": json.dumps(_with(TINY_GQA, rope_theta=-1.0)),
    "vocab_string": json.dumps(_with(TINY_GQA, vocab="1024")),
    "name_number": json.dumps(_with(TINY_GQA, name=5)),
    "name_missing": json.dumps(_with(TINY_GQA, name=_DROP)),
    "attention_unknown": json.dumps(_with(TINY_GQA, attention="linear")),
    "attention_array": json.dumps(_with(TINY_GQA, attention=["gqa"])),
    "mla_missing": json.dumps(_with(TINY_MLA, mla=_DROP)),
    "mla_array": json.dumps(_with(TINY_MLA, mla=[1, 2])),
    "mla_kv_lora_string": json.dumps(_nested(TINY_MLA, "mla", kv_lora="512")),
    "moe_string": json.dumps(_with(TINY_MLA, moe="yes")),
    "moe_top_k_above_experts": json.dumps(_nested(TINY_MLA, "moe", top_k=9)),
    "moe_shared_negative": json.dumps(_nested(TINY_MLA, "moe", shared_experts=-1)),
    "moe_first_dense_all": json.dumps(_nested(TINY_MLA, "moe", first_dense_layers=3)),
    "moe_routed_scale_nan": json.dumps(_nested(TINY_MLA, "moe", routed_scale="NaN")),
    "top_level_array": json.dumps([TINY_GQA]),
    "top_level_number": "42",
    "not_json": "{\"name\": \"x\",",
    "empty": "",
    "deep_nesting": "[" * 100000 + "]" * 100000,
    "too_large": json.dumps(_with(TINY_GQA, source="x" * (2 << 20))),
}

# Hardware profiles: name -> JSON text.
HARDWARE = {
    "nvlink_missing": json.dumps(_with(H200, nvlink=_DROP)),
    "nvlink_string": json.dumps(_with(H200, nvlink="fast")),
    "domain_fraction": json.dumps(_nested(H200, "nvlink", domain_gpus=7.5)),
    "domain_huge": json.dumps(_nested(H200, "nvlink", domain_gpus=1e30)),
    "bw_negative": json.dumps(_nested(H200, "nvlink", bw_gbps=-900)),
    "bw_string": json.dumps(_nested(H200, "network", bw_gbps="50")),
    "memory_zero": json.dumps(_with(H200, memory_bytes=0)),
    "memory_string": json.dumps(_with(H200, memory_bytes="141e9")),
    "efficiency_above_1": json.dumps(_with(H200, mem_bw_efficiency=1.5)),
    "flops_empty": json.dumps(_with(H200, flops_tflops={})),
    "flops_array": json.dumps(_with(H200, flops_tflops=[989])),
    "flops_negative": json.dumps(_with(H200, flops_tflops={"bf16": -1})),
    "gemm_efficiency_object": json.dumps(_with(H200, gemm_efficiency={"m": 1})),
    "collectives_unknown": json.dumps(_with(H200, collectives=[
        {"collective": "broadcast", "group_size": 8, "latency_us": 1, "busbw_gbps": 1}])),
    "collectives_group_zero": json.dumps(_with(H200, collectives=[
        {"collective": "all_reduce", "group_size": 0, "latency_us": 1, "busbw_gbps": 1}])),
    "kind_unknown": json.dumps(_with(H200, kind="guess")),
    "sources_missing": json.dumps(_with(H200, sources=_DROP)),
    "top_level_array": json.dumps([H200]),
    "not_json": "{",
}

SPECS = {
    "not_json": "{",
    "array": "[1, 2]",
    "unknown_key": json.dumps({"np": [2], "models": ["tiny-gqa"], "seq": [64], "batch": [1],
                               "colour": "red"}),
    "np_object": json.dumps({"np": {"a": 1}, "models": ["tiny-gqa"], "seq": [64], "batch": [1]}),
    "batch_huge": json.dumps({"np": [2], "models": ["tiny-gqa"], "seq": [64], "batch": [10 ** 9]}),
    "seq_huge": json.dumps({"np": [2], "models": ["tiny-gqa"], "seq": ["999999M"], "batch": [1]}),
    "args_string": json.dumps({"np": [2], "models": ["tiny-gqa"], "seq": [64], "batch": [1],
                               "args": "--iters 5"}),
    "args_numbers": json.dumps({"np": [2], "models": ["tiny-gqa"], "seq": [64], "batch": [1],
                                "args": [5]}),
    "models_bool": json.dumps({"np": [2], "models": True, "seq": [64], "batch": [1]}),
}


class Fixtures:
    """Builds every fixture under root/fixtures (read-only for the cases)."""

    def __init__(self, tmp, opts):
        self.root = os.path.join(tmp, "fixtures")
        self.scratch = os.path.join(tmp, "scratch")
        os.makedirs(self.scratch)
        os.makedirs(self.root)
        self.opts = opts
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_ess_singleton_isolated="1",
                   OMPI_MCA_hwloc_base_binding_policy="none")
        b = opts.bin
        f = self.path
        jobs = [
            [opts.mpirun, "-np", "2", f"{b}/helix-bench", "decode", "--model", "tiny-gqa",
             "--seq", "64", "--batch", "1,2", "--iters", "3", "--warmup", "1", "--quiet",
             "--out", f("trace.h5")],
            [f"{b}/helix-bench", "model", "--hardware", "b200", "--model", "llama-3.1-8b",
             "--seq", "4K", "--gpus", "1-4", "--max-batch", "8", "--dtype", "fp8", "--quiet",
             "--out", f("model.h5")],
            [f"{b}/helix-bench", "disagg", "--hardware", "b200", "--model", "llama-3.1-8b",
             "--isl", "4K", "--osl", "256", "--gpus", "4", "--quiet", "--out", f("disagg.h5")],
            [f"{b}/helix-micro", "--quick", "--benchmark_filter=stream|attn_gqa/custom",
             "--gqa-shapes", "B1_q8_kv1_T4K", "--max-kv-bytes", "1M", "--stream-bytes", "8M",
             "--out", f("micro.h5")],
        ]
        procs = [subprocess.Popen(j, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE) for j in jobs]
        for j, p in zip(jobs, procs):
            _, err = p.communicate(timeout=300)
            if p.returncode != 0:
                raise RuntimeError(f"fixture command failed ({p.returncode}): {' '.join(j)}\n"
                                   f"{err.decode(errors='replace')}")
        os.makedirs(f("bad"))
        for name, edit in tm.DECODE_EDITS:
            shutil.copyfile(f("trace.h5"), f(f"bad/{name}.h5"))
            tm.apply_edits(f(f"bad/{name}.h5"), [edit])
        with open(f("bad/not_hdf5.h5"), "w") as fh:
            fh.write("this is not an HDF5 file\n")
        open(f("bad/empty.h5"), "w").close()
        data = open(f("trace.h5"), "rb").read()
        with open(f("bad/truncated.h5"), "wb") as fh:
            fh.write(data[: len(data) // 3])
        # Damaged files found by fuzzing (some crash a version of the HDF5 library).
        damaged = os.path.join(REPO, "tests", "fuzz", "corpus", "damaged")
        for name in sorted(os.listdir(damaged)):
            shutil.copyfile(os.path.join(damaged, name), f(f"bad/damaged_{name}"))
        # Tables with a broken column, for the plot and bar scripts.
        shutil.copyfile(f("disagg.h5"), f("bad/disagg_no_frontier.h5"))
        with h5py.File(f("bad/disagg_no_frontier.h5"), "a") as h:
            del h["disagg/frontier"]
        shutil.copyfile(f("model.h5"), f("bad/model_layout_numbers.h5"))
        with h5py.File(f("bad/model_layout_numbers.h5"), "a") as h:
            del h["model/points/layout"]
            h["model/points/layout"] = np.arange(3)
        shutil.copyfile(f("micro.h5"), f("bad/micro_gbps_strings.h5"))
        with h5py.File(f("bad/micro_gbps_strings.h5"), "a") as h:
            n = len(h["micro/kernels/gbps"])
            del h["micro/kernels/gbps"]
            h["micro/kernels/gbps"] = np.array(["fast"] * n, dtype=object)
        os.makedirs(f("models"))
        for name, text in MODELS.items():
            with open(f(f"models/{name}.json"), "w") as fh:
                fh.write(text)
        os.makedirs(f("hw"))
        for name, text in HARDWARE.items():
            with open(f(f"hw/{name}.json"), "w") as fh:
                fh.write(text)
        os.makedirs(f("specs"))
        for name, text in SPECS.items():
            with open(f(f"specs/{name}.json"), "w") as fh:
                fh.write(text)
        shutil.copyfile(os.path.join(REPO, "tests", "data", "cpu-test-profile.json"),
                        f("cpu-profile.json"))
        with open(f("sdpa_not_rows.json"), "w") as fh:
            fh.write('{"rows": 5}')
        os.makedirs(f("dir.json"))
        os.makedirs(f("dir.h5"))
        os.mkfifo(f("fifo.json"))
        os.mkfifo(f("fifo.h5"))
        os.chmod(self.root, 0o755)
        self.snapshot = snapshot(self.root)
        # Regular files as they were, to undo what a failing case changes (so that one failure
        # does not spill into every later case).
        self.pristine = os.path.join(tmp, "pristine")
        for rel, entry in self.snapshot.items():
            if entry[0] == "file":
                os.makedirs(os.path.dirname(os.path.join(self.pristine, rel)), exist_ok=True)
                shutil.copyfile(os.path.join(self.root, rel), os.path.join(self.pristine, rel))

    def restore(self):
        """Undoes changes to the fixtures: removes what was created, copies back what changed."""
        now = snapshot(self.root)
        for rel in sorted(set(now) - set(self.snapshot), key=len):
            path = os.path.join(self.root, rel)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                os.remove(path)
        for rel, entry in self.snapshot.items():
            if entry[0] == "file" and now.get(rel) != entry:
                shutil.copyfile(os.path.join(self.pristine, rel), os.path.join(self.root, rel))

    def path(self, rel):
        return os.path.join(self.root, rel)


def snapshot(root: str) -> dict:
    """Every entry under root: type, size and content hash (files), link target (links)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    out[rel] = ("file", st.st_size, hashlib.sha1(f.read()).hexdigest())
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("special", stat.S_IFMT(st.st_mode), st.st_rdev)
    return out


def diff(before: dict, after: dict) -> list:
    changes = []
    for k in sorted(set(before) | set(after)):
        if k not in before:
            changes.append(f"created {k}")
        elif k not in after:
            changes.append(f"removed {k}")
        elif before[k] != after[k]:
            changes.append(f"changed {k}")
    return changes


def damaged_files():
    folder = os.path.join(REPO, "tests", "fuzz", "corpus", "damaged")
    return sorted(n[:-3] for n in os.listdir(folder) if n.endswith(".h5"))


def make_sandbox(sandbox, fix):
    """The working folder of one case: files an output path could collide with."""
    os.makedirs(sandbox)
    shutil.copyfile(fix.path("trace.h5"), os.path.join(sandbox, "existing.h5"))
    shutil.copyfile(os.path.join(REPO, "layouts", "models", "tiny-gqa.json"),
                    os.path.join(sandbox, "existing.json"))
    with open(os.path.join(sandbox, "file"), "w") as fh:
        fh.write("a regular file\n")
    os.makedirs(os.path.join(sandbox, "adir"))
    os.mkfifo(os.path.join(sandbox, "fifo"))
    if os.geteuid() == 0:
        os.mknod(os.path.join(sandbox, "dev"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.symlink("dev", os.path.join(sandbox, "devlink"))
