"""Nothing overwritten, nothing hung, no gate passed on junk: the Python side (the output policy
and atomic writes of helixbench.safeio, the sweep's lock, helix-compare failing closed). The
bad-input matrix (tests/bad_input) and the kill test (tests/kill) cover every tool end to end."""
import os
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from conftest import HERE, SCRIPTS, call_main, tool_env
from helixbench import safeio
from helixbench.compare import main as compare_main
import synth

sys.path.insert(0, os.path.join(os.path.dirname(SCRIPTS), "tests", "fuzz"))
import trace_mutations as tm  # noqa: E402

FAKE = os.path.join(HERE, "fake_helix_bench.py")
GRID = ["--np", "2", "--models", "tiny-gqa", "--layouts", "tp,helix", "--seq", "64,128,1K",
        "--batch", "1", "--launcher", "env FAKE_NP={np}", "--binary", FAKE]


def points(path):
    with h5py.File(path, "r") as f:
        return [f["decode"][n].attrs["sweep_point"] for n in sorted(f["decode"])]


def test_second_sweep_on_the_same_out_is_refused_and_nothing_is_duplicated(tmp_path):
    out = tmp_path / "sweep.h5"
    env = tool_env()
    env["FAKE_SLEEP_S"] = "0.3"
    cmd = [sys.executable, "-m", "helixbench.sweep", *GRID, "--out", str(out)]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             cwd=SCRIPTS)
    deadline = time.time() + 30
    while not os.path.exists(f"{out}.lock") and time.time() < deadline:
        time.sleep(0.02)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=SCRIPTS)
    first.communicate(timeout=120)
    assert first.returncode == 0
    assert second.returncode == 2, second.stdout + second.stderr
    assert second.stderr.startswith("helix-sweep: error: --out:")
    assert "another helix-sweep" in second.stderr and second.stderr.count("\n") == 1
    pts = points(out)
    assert len(pts) == 6 and len(set(pts)) == 6
    assert sorted(os.listdir(tmp_path)) == ["sweep.h5"]  # lock file removed at the end


def test_min_us_nan_cannot_turn_off_the_gate(tmp_path):
    base = synth.write_decode(tmp_path / "base.h5", seed=1)
    slow = synth.write_decode(tmp_path / "slow.h5", seed=2, scale={(None, "ffn"): 2.0,
                                                                    (None, "qkv"): 2.0})
    assert call_main(compare_main, base, slow).returncode == 1
    for bad in ("nan", "inf", "-1"):
        p = call_main(compare_main, base, slow, "--min-us", bad)
        assert p.returncode == 2, (bad, p.stdout, p.stderr)
        assert p.stderr.startswith("helix-compare: error: --min-us")


@pytest.mark.parametrize("junk", ["no_iterations", "nan", "zero"])
def test_candidate_without_usable_timings_fails_the_gate(tmp_path, junk):
    base = synth.write_decode(tmp_path / "base.h5", seed=1)
    cand = synth.write_decode(tmp_path / "cand.h5", seed=1)
    with h5py.File(cand, "a") as f:
        for name in f["decode"]:
            for ds in tm.PER_ITERATION if junk == "no_iterations" else tm.TIMINGS:
                if ds not in f[f"decode/{name}"]:
                    continue
                shape = f[f"decode/{name}/{ds}"].shape
                del f[f"decode/{name}/{ds}"]
                if junk == "no_iterations":
                    shape = (0,) + shape[1:]
                f[f"decode/{name}/{ds}"] = np.full(shape, np.nan if junk == "nan" else 0.0)
    p = call_main(compare_main, base, cand)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "INVALID" in p.stdout
    # The same junk as the baseline is bad input, not a pass.
    p = call_main(compare_main, cand, base)
    assert p.returncode == 2 and "baseline" in p.stderr


def test_unwritable_json_is_bad_input_before_any_work(tmp_path):
    base = synth.write_decode(tmp_path / "base.h5", seed=1)
    for target in (tmp_path, tmp_path / "missing" / "r.json", base):
        p = call_main(compare_main, base, base, "--json", target)
        assert p.returncode == 2 and p.stderr.startswith("helix-compare: error: --json"), target
        assert p.stdout == ""  # refused before the comparison


def test_output_policy(tmp_path):
    src = tmp_path / "in.h5"
    src.write_text("x")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    safeio.check_output(str(tmp_path / "new.h5"), "--out")
    safeio.check_output(str(src), "--out")  # an existing regular file may be replaced
    for bad, why in ((tmp_path / "dir", "directory"), (tmp_path / "fifo", "regular"),
                     (tmp_path / "no" / "x", "does not exist"), (src, "input")):
        with pytest.raises(safeio.BadInput, match=why):
            safeio.check_output(str(bad), "--out", [("TRACE", str(src))])
    assert sorted(os.listdir(tmp_path)) == ["dir", "fifo", "in.h5"]  # probes removed


def test_atomic_output_never_leaves_a_partial_file(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with safeio.atomic_output(str(target)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]
    safeio.write_text(str(target), "new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["r.json"]


def test_lock_is_exclusive_and_removed(tmp_path):
    out = str(tmp_path / "s.h5")
    with safeio.output_lock(out, "--out", "helix-sweep"):
        assert os.path.exists(out + ".lock")
        with pytest.raises(safeio.BadInput, match="another helix-sweep"):
            with safeio.output_lock(out, "--out", "helix-sweep"):
                pass
    assert not os.path.exists(out + ".lock")
