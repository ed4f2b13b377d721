"""The GPU exactness sweep's case choice (seeded, reproducible, >= 300 cases over 1, 2 and 4
ranks, the boundary values it promises) and one real job of it on the CPU backend."""
import os
import subprocess
import sys

import h5py

from conftest import BINARY, REPO, need_binary, tool_env

SCRIPT = os.path.join(REPO, "scripts", "gpu_exact_sweep.py")
sys.path.insert(0, os.path.dirname(SCRIPT))
import gpu_exact_sweep as sweep  # noqa: E402


def listing(*args):
    p = subprocess.run([sys.executable, SCRIPT, "--list", "--out-dir", "unused", *args],
                       capture_output=True, text=True, env=tool_env(), timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_listing_is_reproducible_and_covers_300_cases():
    total = 0
    for ranks in (1, 2, 4):
        out = listing("--ranks", str(ranks))
        assert out == listing("--ranks", str(ranks))
        total += int(out.split(" cases")[0].rsplit(" ", 1)[1])
    assert total >= 300
    assert listing("--ranks", "4", "--seed", "1") != listing("--ranks", "4", "--seed", "2")


def test_cases_cross_block_boundaries_and_stay_in_range():
    seqs, batches = set(), set()
    for seed in range(20):
        for ranks in (1, 2, 4):
            for g in sweep.make_groups(seed, ranks, 2, 3, 3):
                assert g["steps"] >= g["kv_block"] + 1  # appends cross a block boundary
                assert all(1 <= s <= sweep.MAX_SEQ for s in g["seqs"])
                assert all(1 <= b <= 16 for b in g["batches"])
                seqs.update(g["seqs"])
                batches.update(g["batches"])
                args = dict(zip(g["args"][::2], g["args"][1::2]))
                assert int(args["--kvp"]) * int(args["--tpa"]) == ranks
                assert int(args["--tpf"]) * int(args["--ep"]) == ranks
    assert any(s in sweep.PRIMES for s in seqs)
    assert 1 in batches and 16 in batches
    assert max(seqs) >= sweep.MAX_SEQ - 1


def test_one_job_on_the_cpu_backend(tmp_path):
    need_binary()
    p = subprocess.run([sys.executable, SCRIPT, "--ranks", "2", "--backend", "cpu", "--bin", BINARY,
                        "--models", "tiny-gqa", "--groups", "1", "--seqs", "1", "--batches", "1",
                        "--out-dir", str(tmp_path)], capture_output=True, text=True,
                       env=tool_env(), timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "total" in p.stdout and "ok" in p.stdout.splitlines()[-1]
    (trace,) = tmp_path.glob("*.h5")
    with h5py.File(trace) as f:
        runs = list(f["decode"])
        assert len(runs) == 4
        assert all(f["decode"][r].attrs["verified"] for r in runs)


def test_skips_without_enough_gpus(tmp_path):
    env = tool_env()
    env["CUDA_VISIBLE_DEVICES"] = ""
    p = subprocess.run([sys.executable, SCRIPT, "--ranks", "2", "--out-dir", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 77, p.stdout + p.stderr
    assert "skipped" in p.stdout
