"""helix-compare: regressions caught, noise not flagged, exit codes 0/1/2."""
import json

import h5py
import numpy as np
import pytest

from conftest import call_main, run_tool
from helixbench import stats
from helixbench.compare import main as compare_main, parse_threshold
from helixbench.trace import device_label, normalize_device
import synth


def compare(*args):
    return call_main(compare_main, *args)


def test_identical_traces_pass(tmp_path):
    base = synth.write_decode(tmp_path / "base.h5", seed=1)
    p = compare(base, base)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "16 runs matched, 0 regressions" in p.stdout


@pytest.mark.parametrize("seed", range(8))
def test_iteration_noise_alone_is_not_flagged(tmp_path, seed):
    base = synth.write_decode(tmp_path / "base.h5", seed=100 + seed, noise=0.03)
    cand = synth.write_decode(tmp_path / "cand.h5", seed=200 + seed, noise=0.03)
    p = compare(base, cand, "--threshold", "5%")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "REGRESSION" not in p.stdout


def test_one_outlier_iteration_is_not_flagged(tmp_path):
    base = synth.write_decode(tmp_path / "base.h5", seed=1)
    cand = synth.write_decode(tmp_path / "cand.h5", seed=2)
    with h5py.File(cand, "a") as f:
        for name in f["decode"]:
            f[f"decode/{name}/step_us"][3] *= 5.0  # one iteration hit by a hiccup
            ph = f[f"decode/{name}/phase_us"]
            v = ph[()]
            v[3] *= 5.0
            ph[...] = v
    p = compare(base, cand)
    assert p.returncode == 0, p.stdout


def test_phase_slowed_by_20_percent_is_caught(tmp_path):
    base = synth.write_decode(tmp_path / "base.h5", seed=3, noise=0.03)
    cand = synth.write_decode(tmp_path / "cand.h5", seed=4, noise=0.03,
                              scale={(5, "ffn"): 1.2})
    out = tmp_path / "result.json"
    p = compare(base, cand, "--threshold", "5%", "--json", out)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "REGRESSION" in p.stdout and "ffn_us" in p.stdout
    res = json.loads(out.read_text())
    flagged = [(e["label"], m) for e in res["runs"] for m, r in e["metrics"].items()
               if r["verdict"] == "REGRESSION"]
    # only that run; its step time (ffn is ~30% of it) may be flagged as well
    assert {label for label, _ in flagged} == {res["runs"][5]["label"]}
    assert ("ffn_us" in {m for _, m in flagged})
    row = res["runs"][5]["metrics"]["ffn_us"]
    assert 0.15 < row["change"] < 0.25 and row["p_slower"] < 0.01
    assert res["exit_code"] == 1


def test_every_run_slowed_is_caught_with_bootstrap_too(tmp_path):
    base = synth.write_decode(tmp_path / "base.h5", seed=5)
    cand = synth.write_decode(tmp_path / "cand.h5", seed=6, scale={(None, "attention"): 1.2})
    p = compare(base, cand, "--test", "bootstrap")
    assert p.returncode == 1
    assert p.stdout.count("attention_us") == 16


def test_change_below_threshold_passes(tmp_path):
    base = synth.write_decode(tmp_path / "base.h5", seed=7)
    cand = synth.write_decode(tmp_path / "cand.h5", seed=8, scale={(0, "ffn"): 1.2})
    p = compare(base, cand, "--threshold", "25%")
    assert p.returncode == 0, p.stdout


def test_improvement_is_reported_not_failed(tmp_path):
    base = synth.write_decode(tmp_path / "base.h5", seed=9)
    cand = synth.write_decode(tmp_path / "cand.h5", seed=10, scale={(None, "o_comm"): 0.7})
    p = compare(base, cand)
    assert p.returncode == 0
    assert "improved" in p.stdout and "16 improvements" not in p.stdout


def test_unverified_or_refused_candidate_fails(tmp_path):
    base = synth.write_decode(tmp_path / "base.h5", seed=11)
    runs = synth.default_runs()
    runs[0]["attrs"] = {"verified": 0, "max_rel_err": 0.3}
    runs[1]["attrs"] = {"status": "refused", "message": "needs 9 GB per rank, 8 GB free"}
    cand = synth.write_decode(tmp_path / "cand.h5", runs=runs, seed=12)
    p = compare(base, cand, "--json", "-")
    assert p.returncode == 1
    assert "UNVERIFIED" in p.stderr and "REFUSED" in p.stderr
    assert json.loads(p.stdout)["regressions"] == 2


def test_nothing_matched_exits_2(tmp_path):
    base = synth.write_decode(tmp_path / "base.h5", seed=13)
    other = synth.write_decode(tmp_path / "other.h5", seed=14,
                               devices="rank0=NVIDIA H200 (0000:19:00.0)", backend="cuda")
    p = compare(base, other)
    assert p.returncode == 2
    assert "nothing matched" in p.stderr
    # The same pair matches when backend and device are ignored on purpose.
    p = compare(base, other, "--ignore", "device,backend")
    assert p.returncode == 0, p.stdout + p.stderr


def test_partial_match_lists_unmatched(tmp_path):
    base = synth.write_decode(tmp_path / "base.h5", seed=15)
    cand = synth.write_decode(tmp_path / "cand.h5", seed=16,
                              runs=synth.default_runs(layouts=("tp", "helix")))
    p = compare(base, cand)
    assert p.returncode == 0
    assert "baseline run without a candidate" in p.stdout
    assert compare(base, cand, "--require-all").returncode == 1


def test_bad_input_exits_2_with_one_line(tmp_path):
    good = synth.write_decode(tmp_path / "good.h5")
    text = tmp_path / "notes.txt"
    text.write_text("not hdf5\n")
    empty = tmp_path / "empty.h5"
    h5py.File(empty, "w").close()
    for bad, msg in ((tmp_path / "missing.h5", "no such file"), (text, "not an HDF5 file"),
                     (empty, "not a helix-bench trace")):
        p = run_tool("compare", bad, good)
        assert p.returncode == 2
        assert msg in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = compare(good, good, "--threshold", "five")
    assert p.returncode == 2 and "--threshold" in p.stderr


def test_help_names_units():
    p = run_tool("compare", "--help")
    assert p.returncode == 0
    assert "percent" in p.stdout and "microseconds" in p.stdout and "Exit codes" in p.stdout


def test_real_cpu_trace_against_itself_and_slowed_copy(cpu_trace, tmp_path):
    p = compare(cpu_trace, cpu_trace)
    assert p.returncode == 0, p.stdout + p.stderr
    slowed = tmp_path / "slowed.h5"
    slowed.write_bytes(open(cpu_trace, "rb").read())
    with h5py.File(slowed, "a") as f:
        ph = f["decode/run_0002/phase_us"]
        names = list(ph.attrs["phases"])
        v = ph[()]
        a = v[:, :, names.index("attention")]
        # +20% of the median plus the spread: every slowed iteration is slower than every
        # original one, however noisy this machine was
        a += 0.2 * np.median(a.max(axis=1)) + np.ptp(a.max(axis=1))
        ph[...] = v
    p = compare(cpu_trace, slowed, "--threshold", "5%")
    assert p.returncode == 1, p.stdout
    assert "attention_us" in p.stdout


def test_threshold_parsing():
    assert parse_threshold("5%") == pytest.approx(0.05)
    assert parse_threshold("12.5") == pytest.approx(0.125)
    with pytest.raises(ValueError):
        parse_threshold("-3%")


def test_device_names_ignore_bus_ids():
    assert normalize_device("NVIDIA H200 (0000:19:00.0)") == "NVIDIA H200"
    assert normalize_device("NVIDIA H100 80GB HBM3 00000000:1B:00.0") == "NVIDIA H100 80GB HBM3"
    assert device_label("rank0=cpu;rank1=cpu") == "cpu"
    assert device_label("rank0=NVIDIA H200 (0000:19:00.0);rank1=NVIDIA H200 (0000:2a:00.0)") \
        == "NVIDIA H200"


def test_u_test_direction_and_exact_values():
    base, slower = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]
    # every arrangement of 3 + 3 distinct samples is equally likely: P(all of y above x) = 1/20
    assert stats.mann_whitney_greater(base, slower) == pytest.approx(1 / 20)
    assert stats.mann_whitney_less(base, slower) == pytest.approx(1.0)
    assert stats.mann_whitney_less(slower, base) == pytest.approx(1 / 20)
    assert np.isnan(stats.mann_whitney_greater([], slower))


def test_exposed_communication_compared_only_under_one_definition(tmp_path):
    # A CUDA trace from before the definition was recorded (step minus a collective-free rerun)
    # against one that records step_minus_compute: the step and the phases are compared, the
    # exposed communication is not, and the output says why.
    gpu = "rank0=cuda:0 NVIDIA H200 bus 0000:18:00.0"
    base = synth.write_decode(tmp_path / "base.h5", seed=7, ranks=1, backend="cuda",
                              devices=gpu, dtype="bf16")
    cand = synth.write_decode(tmp_path / "cand.h5", seed=8, ranks=1, backend="cuda",
                              devices=gpu, dtype="bf16",
                              extra_attrs={"exposed_comm_definition": "step_minus_compute"})
    out = tmp_path / "result.json"
    p = compare(base, cand, "--json", out)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "exposed_comm_us not compared" in p.stdout
    assert "step_minus_collective_free_rerun" in p.stdout
    res = json.loads(out.read_text())
    assert all("exposed_comm_us" not in e["metrics"] for e in res["runs"])
    assert all("step_us" in e["metrics"] for e in res["runs"])
    # A CPU trace without the attribute used the same definition as now: compared.
    base = synth.write_decode(tmp_path / "cpu_base.h5", seed=9)
    cand = synth.write_decode(tmp_path / "cpu_cand.h5", seed=10,
                              extra_attrs={"exposed_comm_definition": "step_minus_compute"})
    p = compare(base, cand, "--json", out)
    assert p.returncode == 0, p.stdout + p.stderr
    res = json.loads(out.read_text())
    assert all("exposed_comm_us" in e["metrics"] for e in res["runs"])
