"""scripts/check_trace.py --roofline on a CPU-backend decode trace: the roofline the binary wrote
passes the recomputation, and a roofline, a fraction or a work figure changed by 1% fails it."""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import SCRIPTS

CHECK = os.path.join(SCRIPTS, "check_trace.py")


def check(path, *args):
    return subprocess.run([sys.executable, CHECK, str(path), *args], capture_output=True,
                          text=True, timeout=120)


def test_cpu_trace_carries_a_consistent_roofline(cpu_trace):
    p = check(cpu_trace, "--roofline")
    assert p.returncode == 0, p.stdout + p.stderr
    with h5py.File(cpu_trace, "r") as f:
        d = f["decode"]
        assert d.attrs["stream_gbps"] > 0 and d.attrs["gemm_tflops"] > 0
        assert "cpu::gemm" in d.attrs["gemm_ceiling"]
        assert (d.attrs["weight_elem_bytes"], d.attrs["kv_elem_bytes"]) == (4, 4)
        for name in d:
            g = d[name]
            assert g["roofline_bytes"].attrs["units"] == "bytes"
            assert g["roofline_us"].shape == (g.attrs["n_ranks"], len(d.attrs["phases"]))
            # Work on every rank: the attention phase reads its KV shard.
            att = list(d.attrs["phases"]).index("attention")
            assert np.all(g["roofline_bytes"][:, att] > 0)
            assert g.attrs["roofline_limiter_rank0"] in list(d.attrs["phases"])


@pytest.mark.parametrize("dataset", ["roofline_us", "roofline_fraction", "roofline_bytes"])
def test_a_changed_figure_fails(cpu_trace, tmp_path, dataset):
    bad = tmp_path / "bad.h5"
    shutil.copy(cpu_trace, bad)
    with h5py.File(bad, "r+") as f:
        ds = f["decode/run_0000"][dataset]
        v = ds[()]
        v[0, 0] *= 1.01  # qkv of rank 0
        ds[...] = v
    p = check(bad, "--roofline")
    assert p.returncode == 1
    assert "run_0000: rank 0 phase 0" in p.stderr


def test_roofline_required_only_when_asked(tmp_path):
    import synth
    trace = synth.write_decode(tmp_path / "old.h5", runs=synth.default_runs(seqs=(1024,),
                                                                           batches=(1,)))
    assert check(trace).returncode == 0
    p = check(trace, "--roofline")
    assert p.returncode == 1
    assert "no ceiling measured" in p.stderr
