"""Real against emulated and modeled: device labels across real and emulated jobs, the error mode
of helix-compare, the critical rank's phases, helix-report over several traces and a profile,
the helix-study tables, and scripts/gpu_study.sh (a dry run of the GPU plan and a CPU run)."""
import json
import os
import subprocess

import h5py
import numpy as np
import pytest

from conftest import REPO, SCRIPTS, need_binary, run_tool, tool_env
from helixbench import study
from helixbench.trace import device_label, load_decode_runs, normalize_device
from synth import IS_COMM, PHASES, STR, write_decode

H200 = "NVIDIA H200"


def real_devices(n):
    return ";".join(f"rank{i}=cuda:{i} {H200} bus 0000:{0x18 + i:02x}:00.0" for i in range(n))


def add_accounting(path, critical=1):
    """The datasets of the accounting: half of each rank's communication waiting, rank
    `critical` the critical one (it waits for no one)."""
    with h5py.File(path, "a") as f:
        for g in f["decode"].values():
            if "phase_us" not in g:
                continue
            ph = g["phase_us"][()]
            it, rk, _ = ph.shape
            comm = np.array(IS_COMM, dtype=bool)
            wait = np.zeros_like(ph)
            wait[:, :, comm] = 0.5 * ph[:, :, comm]
            wait[:, min(critical, rk - 1), :] = 0
            g["wait_us"] = wait
            g["transfer_us"] = np.where(comm, ph, 0) - wait
            g["critical_rank"] = np.full(it, min(critical, rk - 1), dtype=np.int64)
            g["rank_of_row"] = np.arange(rk, dtype=np.int64)
            c = min(critical, rk - 1)
            comp = ph[:, c, ~comm].sum(axis=1)
            w = wait[:, c, :].sum(axis=1)
            t = (np.where(comm, ph, 0) - wait)[:, c, :].sum(axis=1)
            step = g["step_us"][()]
            g["step_breakdown_us"] = np.stack([comp, w, t, step - comp - w - t], axis=1)


def pair(tmp_path, emulated_factor=0.9, ranks=4, seqs=(131072,), name="p"):
    """A real trace over `ranks` GPUs and its emulated twin (phases x emulated_factor)."""
    runs = [{"layout": lay, "seq_len": s, "batch": 1} for s in seqs for lay in ("tp", "helix")]
    real = write_decode(str(tmp_path / f"{name}_real.h5"), runs, ranks=ranks, noise=0.0,
                        backend="cuda", dtype="bf16", model="deepseek-r1",
                        devices=real_devices(ranks),
                        extra_attrs={"comm_backend": "nccl", "link_representative": 1})
    emu = write_decode(str(tmp_path / f"{name}_emulated.h5"), runs, ranks=ranks, noise=0.0,
                       backend="cuda", dtype="bf16", model="deepseek-r1",
                       devices=f"rank0=cuda:0 {H200} bus 0000:18:00.0",
                       scale={(None, p): emulated_factor for p in PHASES},
                       extra_attrs={"comm_backend": "modeled", "emulated_ranks": ranks,
                                    "emulated_rank": -1})
    add_accounting(real)
    add_accounting(emu)
    return real, emu


def test_device_labels_drop_the_index_and_bus_id():
    assert normalize_device(f"cuda:3 {H200} bus 0000:1b:00.0") == H200
    assert normalize_device(f"{H200} (0000:19:00.0)") == H200
    assert device_label(real_devices(4)) == H200
    assert device_label(f"rank0=cuda:0 {H200} bus 0000:18:00.0") == H200
    assert device_label("rank0=cpu;rank1=cpu") == "cpu"


def test_compare_error_mode_real_against_emulated(tmp_path):
    real, emu = pair(tmp_path)
    p = run_tool("compare", real, emu, "--error", "--json", tmp_path / "e.json")
    assert p.returncode == 0, p.stdout + p.stderr
    res = json.load(open(tmp_path / "e.json"))
    assert len(res["runs"]) == 2 and not res["unmatched_baseline"]
    for e in res["runs"]:
        for m, row in e["metrics"].items():
            assert row["error"] == pytest.approx(-0.10, abs=1e-9), m
        assert e["base_critical_rank"] == 1
    assert "REGRESSION" not in p.stdout and "step within 10%: 2 of 2" in p.stdout
    # The regression mode keeps emulated and real apart unless told otherwise.
    assert run_tool("compare", real, emu).returncode == 2
    p = run_tool("compare", real, emu, "--ignore", "emulated_ranks,emulated_rank")
    assert p.returncode == 0, p.stdout  # 10% faster: an improvement, not a regression
    # Nothing in common: exit 2.
    other = write_decode(str(tmp_path / "o.h5"), model="tiny-gqa")
    assert run_tool("compare", real, other, "--error").returncode == 2


def test_critical_rank_phases_and_per_rank_breakdown(tmp_path):
    real, _ = pair(tmp_path)
    with h5py.File(real) as f:
        run = load_decode_runs(f)[1]
    crit = run.critical_phase_medians()
    assert crit["ffn"] == pytest.approx(np.median(run.phase_us[:, 1, PHASES.index("ffn")]))
    assert run.usual_critical_rank() == 1
    wait = run.critical_phase_medians("wait")
    assert all(v == 0 for v in wait.values())  # the critical rank waits for no one
    br = run.rank_breakdown()
    assert set(br) == {0, 1, 2, 3}
    for k, parts in br.items():
        assert parts["compute"] + parts["wait"] + parts["transfer"] + parts["other"] == \
            pytest.approx(parts["step"])
    parts = run.breakdown_medians()
    assert sum(parts.values()) == pytest.approx(run.step_median())


def validate_file(path, real):
    """A /validate table for the runs of `real` (as `model --validate` writes), predicting 1.25x."""
    with h5py.File(real) as f:
        runs = load_decode_runs(f)
    cols = {k: [] for k in ("run", "layout", "phase", "model", "n_ranks", "kvp", "tpa", "tpf",
                            "ep", "hopb_chunks", "batch", "seq_len", "predicted_us",
                            "measured_us", "rel_error", "predicted_rank", "measured_rank")}
    for r in runs:
        meas = {**r.critical_phase_medians(), "step": r.step_median()}
        for ph, v in meas.items():
            for k in ("model", "layout", "n_ranks", "kvp", "tpa", "tpf", "ep", "hopb_chunks",
                      "batch", "seq_len"):
                cols[k].append(r.get(k))
            cols["run"].append(r.name)
            cols["phase"].append(ph)
            cols["predicted_us"].append(1.25 * v)
            cols["measured_us"].append(v)
            cols["rel_error"].append(0.25 if v > 0 else float("nan"))
            cols["predicted_rank"].append(1)
            cols["measured_rank"].append(1)
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "model"
        f.attrs["schema_version"] = "1.0"
        g = f.create_group("validate")
        for k, v in cols.items():
            if isinstance(v[0], str):
                g.create_dataset(k, data=np.array(v, dtype=object), dtype=STR)
            else:
                g.create_dataset(k, data=np.asarray(v))
    return str(path)


def profile_file(path):
    p = json.load(open(os.path.join(REPO, "tests", "data", "cpu-test-profile.json")))
    p["collectives"] = [{"collective": c, "group_size": n, "latency_us": 18.0, "busbw_gbps": 300,
                         "points": [{"size_bytes": s, "time_us": 18.0 + s / 3e5}
                                    for s in (1024, 1 << 20, 1 << 26)]}
                        for c in ("all_reduce", "all_to_all") for n in (2, 4)]
    json.dump(p, open(path, "w"))
    return str(path)


def test_report_over_real_emulated_model_and_a_profile(tmp_path):
    real4, emu4 = pair(tmp_path, name="n4")
    real2, _ = pair(tmp_path, ranks=2, name="n2")
    val = validate_file(tmp_path / "validate.h5", real4)
    prof = profile_file(tmp_path / "profile.json")
    out = tmp_path / "report"
    p = run_tool("report", real4, emu4, real2, val, prof, "--out", out)
    assert p.returncode == 0, p.stdout + p.stderr
    md = open(out / "summary.md").read()
    for section in ("## Real, emulated and modeled", "## TTL against N", "## Per-rank breakdown",
                    "## Collectives of the calibrated profile", "## Model against the traces"):
        assert section in md, section
    for png in ("real_emulated_model.png", "ttl_vs_n.png", "rank_breakdown.png",
                "profile_collectives.png"):
        assert os.path.getsize(out / png) > 1000, png
    assert "**1**" in md  # the critical rank highlighted in the per-rank table
    assert run_tool("report", str(tmp_path / "missing.h5")).returncode == 2


def test_study_tables_and_bars(tmp_path):
    real, emu = pair(tmp_path, emulated_factor=0.95)
    val = validate_file(tmp_path / "v.h5", real)
    prof = profile_file(tmp_path / "profile.json")
    st = study.load([real, emu, val, prof])
    models = study.build(st, min_us=1.0)
    entry = models["deepseek-r1"]
    assert len(entry["points"]) == 2
    b = entry["bars"]
    assert b["emulated_steps"] == 2 and b["emulated_steps_ok"] == 2  # 5% inside 10%
    assert b["model_steps"] == 2 and b["model_steps_ok"] == 0        # 25% outside 10%
    assert b["model_phases_ok"] == 0 and b["emulated_phases_ok"] == b["emulated_phases"]
    row = next(r for r in entry["points"][0]["rows"] if r["metric"] == "step")
    assert row["emulated_error"] == pytest.approx(-0.05) and row["model_error"] == \
        pytest.approx(0.25)
    assert entry["points"][0]["verified"] == "yes"
    p = run_tool("study", real, emu, val, prof, "--out", tmp_path / "s", "--min-us", 1)
    assert p.returncode == 0, p.stderr
    md = open(tmp_path / "s.md").read()
    assert "## deepseek-r1" in md and "Helix over TP" in md
    assert json.load(open(tmp_path / "s.json"))["models"]["deepseek-r1"]["bars"] == b
    assert run_tool("study", str(tmp_path / "nothing"), "--out", tmp_path / "x").returncode == 2


def test_study_of_points_only_emulated(tmp_path):
    """One GPU standing in for N: points with an emulated run and a model row but no real run
    are tabled, the model compared with the emulation, and no bar counted; brief() has one line
    per point."""
    _, emu = pair(tmp_path, emulated_factor=1.0)
    val = validate_file(tmp_path / "v.h5", emu)  # predicts 1.25x the emulated run
    st = study.load([emu, val])
    models = study.build(st, min_us=1.0)
    entry = models["deepseek-r1"]
    assert len(entry["points"]) == 2
    assert all(v == 0 for v in entry["bars"].values())
    row = next(r for r in entry["points"][0]["rows"] if r["metric"] == "step")
    assert np.isnan(row["real_us"]) and np.isnan(row["model_error"])
    assert row["model_vs_emulated_error"] == pytest.approx(0.25)
    assert entry["points"][0]["critical_rank"]["real"] is None
    lines = study.brief(models).splitlines()
    assert len(lines) == 2 + 2 and "+25.0" in lines[2] and "real_us" in lines[0]
    p = run_tool("study", emu, val, "--out", tmp_path / "s", "--brief")
    assert p.returncode == 0, p.stderr
    assert "model / emulated %" in open(tmp_path / "s.md").read()
    assert p.stdout.splitlines()[-1].startswith("deepseek-r1")


def study_script(tmp_path, **env):
    e = tool_env()
    e.update({k: str(v) for k, v in env.items()})
    return subprocess.run(["bash", os.path.join(SCRIPTS, "gpu_study.sh"), str(tmp_path / "out")],
                          capture_output=True, text=True, env=e, timeout=600, cwd=REPO)


def test_study_script_plans_the_gpu_study(tmp_path):
    p = study_script(tmp_path, STUDY_DRY_RUN=1, STUDY_MODE="full", GPUS=4)
    assert p.returncode == 0, p.stderr
    cmds = p.stdout.splitlines()
    assert "calibrate --backend cuda" in cmds[0] and "-np 4" in cmds[0]
    real = [c for c in cmds if "--no-verify" in c]
    for model in ("llama-3.1-70b", "llama-3.1-405b", "deepseek-r1"):
        for n in (1, 2, 4):
            assert any(f"--model {model}" in c and f"-np {n} " in c for c in real), (model, n)
    # KV-sharded alternatives of the Llama models at N = 4, none for DeepSeek-R1 (one KV head).
    for split in ("--kvp 2 --tpa 2", "--kvp 4 --tpa 1"):
        assert any("llama-3.1-405b" in c and split in c and "-np 4 " in c for c in real), split
    assert not any("deepseek-r1" in c and "--kvp" in c for c in real)
    emulated = [c for c in cmds if "--emulate-rank all" in c]
    assert emulated and all("--hardware" in c and "profile.json" in c for c in emulated)
    assert not any("--emulate 1 " in c for c in emulated)
    assert len([c for c in cmds if "model --validate" in c]) == len(real)
    verify = [c for c in cmds if "--seq 2047 --decode-steps 2" in c]
    assert len(verify) == len(real)
    kv = [c for c in cmds if "kv-transfer" in c]
    assert len(kv) == 2 * 2 * 3 and all("--link-check" in c for c in kv)
    assert "helixbench.study" in cmds[-2] and "helixbench.report" in cmds[-1]
    assert "gate_check.sh --backend cuda --np 4 --repeat 3" in p.stdout
    short = study_script(tmp_path, STUDY_DRY_RUN=1, STUDY_MODE="short", GPUS=4).stdout
    lines = short.splitlines()
    assert "--quick" in lines[0] and "-np 4" in lines[0]
    short_real = [c for c in lines if "--no-verify" in c]
    assert len(short_real) == 2 * 3 + 1  # two models at N = 1, 2, 4 and Llama's 2x2 at N = 4
    assert len([c for c in lines if "--emulate-rank all" in c]) == 2 * 2 + 1
    assert "gate_check.sh --backend cuda --np 4 --repeat 2" in short
    two = study_script(tmp_path, STUDY_DRY_RUN=1, STUDY_MODE="short", GPUS=2).stdout
    assert "-np 4" not in two and "--emulate 2 " in two and "--emulate 4 " not in two
    # One GPU: calibrate on one rank, real runs at N = 1 only, N = 2 and 4 emulated and modeled
    # against the emulation, no KV transfer and no gate.
    one = study_script(tmp_path, STUDY_DRY_RUN=1, STUDY_MODE="one", GPUS=4).stdout.splitlines()
    assert "-np 1 " in one[0] and "calibrate" in one[0]
    assert not any("-np 2" in c or "-np 4" in c for c in one)
    assert all("-np 1 " in c for c in one if "--no-verify" in c)
    emulated = [c for c in one if "--emulate-rank all" in c]
    assert len(emulated) == 5 and any("--kvp 2 --tpa 2" in c for c in emulated)
    assert len([c for c in one if "model --validate" in c and "_emulated.h5" in c]) == 5
    assert not any("kv-transfer" in c or "gate_check" in c for c in one)
    assert "--brief" in one[-2]
    bad = study_script(tmp_path, STUDY_MODE="long")
    assert bad.returncode == 2 and "one, short or full" in bad.stderr


def test_study_script_runs_on_the_cpu_backend(tmp_path):
    need_binary()
    p = study_script(tmp_path, STUDY_BACKEND="cpu", STUDY_MODE="short", GPUS=2)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = tmp_path / "out"
    md = open(out / "study.md").read()
    assert "## tiny-gqa" in md and "## tiny-mla-moe" in md and "yes at S=47" in md
    assert "KV transfer" in md
    assert os.path.exists(out / "report" / "summary.md")
    prof = json.load(open(out / "profile.json"))
    assert {c["group_size"] for c in prof["collectives"]} == {2}
    with h5py.File(out / "model" / "tiny-mla-moe_n2.h5") as f:
        assert "predicted_rank" in f["validate"]
    assert os.path.exists(out / "real" / "tiny-gqa_n1.h5")  # N = 1 and 2 on two ranks
    assert os.path.getsize(str(out) + ".tar.gz") > 1000
    assert "gpu_study: tables in" in p.stdout.splitlines()[-1]
    assert any(line.startswith("tiny-gqa") and "| yes" in line for line in p.stdout.splitlines())


def test_compare_noise_band_from_repeated_baseline_jobs(tmp_path):
    """A baseline of three jobs whose o_comm moves 12% from job to job and ffn 1%: a candidate
    with o_comm 10% slower passes (inside twice the spread), one with ffn 10% slower fails."""
    runs = [{"layout": "helix", "seq_len": 32768, "batch": 8}] * 3
    scale = {(0, "o_comm"): 1.0, (1, "o_comm"): 1.12, (2, "o_comm"): 1.04,
             (0, "ffn"): 1.0, (1, "ffn"): 1.01, (2, "ffn"): 0.995}
    base = write_decode(str(tmp_path / "base.h5"), runs, noise=0.005, scale=scale, seed=1,
                        iters=30, backend="cuda", devices=real_devices(4))
    one = [runs[0]]
    comm = write_decode(str(tmp_path / "comm.h5"), one, noise=0.005, seed=2, iters=30,
                        scale={(None, "o_comm"): 1.10}, backend="cuda", devices=real_devices(4))
    ffn = write_decode(str(tmp_path / "ffn.h5"), one, noise=0.005, seed=3, iters=30,
                       scale={(None, "ffn"): 1.10}, backend="cuda", devices=real_devices(4))
    p = run_tool("compare", base, comm, "--threshold", "5%", "--json", tmp_path / "c.json")
    assert p.returncode == 0, p.stdout
    row = json.load(open(tmp_path / "c.json"))["runs"][0]["metrics"]["o_comm_us"]
    assert row["threshold"] > 0.2 and row["verdict"] != "REGRESSION"
    p = run_tool("compare", base, ffn, "--threshold", "5%", "--json", tmp_path / "f.json")
    assert p.returncode == 1, p.stdout
    row = json.load(open(tmp_path / "f.json"))["runs"][0]["metrics"]["ffn_us"]
    assert row["verdict"] == "REGRESSION" and row["threshold"] == pytest.approx(0.05)
    # Without the band the o_comm change is a regression at 5%.
    assert run_tool("compare", base, comm, "--threshold", "5%", "--band-factor", "0").returncode \
        == 1


def test_gate_catches_a_slowed_phase_on_the_cpu_backend(tmp_path):
    """The test-only slowdown: the ffn phase of every rank three times as long is caught and
    named, and the candidate trace says it was slowed on purpose."""
    need_binary()
    env = tool_env()
    env["HELIX_TEST_SLOW_PHASE"] = "ffn:2.0"
    p = subprocess.run(["bash", os.path.join(SCRIPTS, "gate.sh"), "--work", str(tmp_path / "g")],
                       capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "REGRESSION ffn_us of" in p.stdout
    with h5py.File(tmp_path / "g" / "candidate.h5") as f:
        assert all(g.attrs["test_slow_phase"] == "ffn:2.0" for g in f["decode"].values())
    bad = subprocess.run(["bash", os.path.join(SCRIPTS, "gate.sh"), "--work", str(tmp_path / "b"),
                          "--update-baseline"], capture_output=True, text=True, env=env,
                         timeout=600, cwd=REPO)
    assert bad.returncode == 2 and "refusing" in bad.stderr
    env["HELIX_TEST_SLOW_PHASE"] = "ffn:zero"
    q = subprocess.run(["mpirun", "-np", "1", os.path.join(REPO, "build", "bin", "helix-bench"),
                        "decode", "--model", "tiny-gqa", "--seq", "32", "--batch", "1"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert q.returncode == 2 and "HELIX_TEST_SLOW_PHASE" in q.stderr


STAND_IN_GATE = """#!/usr/bin/env bash
# A stand-in for gate.sh: records its arguments; with --update-baseline writes the baseline; with
# HELIX_TEST_SLOW_PHASE=P:F reports P as regressed unless BLIND is set.
echo "$* | ${HELIX_TEST_SLOW_PHASE:-}" >> "$CALLS"
while (($#)); do
  case $1 in --baseline) base=$2; shift 2 ;; --update-baseline) up=1; shift ;; *) shift ;; esac
done
if [[ -n ${up:-} ]]; then echo base > "$base"; exit 0; fi
if [[ -n ${HELIX_TEST_SLOW_PHASE:-} && -z ${BLIND:-} ]]; then
  echo "gate.sh: REGRESSION ${HELIX_TEST_SLOW_PHASE%%:*}_us of tiny-gqa tp N=2: 10.0 -> 12.0 us"
  exit 1
fi
exit ${PLAIN_EXIT:-0}
"""


def gate_check(tmp_path, *args, **env):
    gate = tmp_path / "gate.sh"
    gate.write_text(STAND_IN_GATE)
    gate.chmod(0o755)
    e = tool_env()
    e.update({"GATE_SCRIPT": str(gate), "CALLS": str(tmp_path / "calls.txt"),
              "HELIX_TEST_SLOW_PHASE": "qkv:9"})  # the check must not inherit it
    e.update(env)
    (tmp_path / "calls.txt").write_text("")
    return subprocess.run(["bash", os.path.join(SCRIPTS, "gate_check.sh"), *args,
                           "--work", str(tmp_path / "gc")],
                          capture_output=True, text=True, env=e, timeout=60, cwd=tmp_path)


def test_gate_check_runs_the_gate_twice(tmp_path):
    """scripts/gate_check.sh: a fresh baseline, a plain rerun that must pass and a rerun with the
    phase slowed that must be caught naming it; a rerun that fails or a gate that misses the
    slowed phase fails the check; bad input exits 2. (The slowdown itself, through the real
    gate on the CPU backend: test_gate_catches_a_slowed_phase_on_the_cpu_backend.)"""
    p = gate_check(tmp_path, "--backend", "cuda", "--np", "4", "--phase", "attention")
    assert p.returncode == 0, p.stdout + p.stderr
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert len(calls) == 3
    assert "--update-baseline" in calls[0] and "--repeat 3" in calls[0] and "--np 4" in calls[0]
    assert calls[0].endswith("| ") and calls[1].endswith("| ")  # baseline and plain: not slowed
    assert calls[2].endswith("| attention:0.10")
    summary = (tmp_path / "gc" / "summary.txt").read_text()
    assert "plain rerun: exit 0" in summary and "1 run(s) name attention_us" in summary
    assert "OK: plain rerun passed" in summary
    # An existing baseline: no fresh one; the CPU default fraction.
    base = tmp_path / "b.h5"
    base.write_text("x")
    p = gate_check(tmp_path, "--baseline", str(base))
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert p.returncode == 0 and len(calls) == 2 and calls[1].endswith("| ffn:2.0"), p.stdout
    p = gate_check(tmp_path, "--baseline", str(base), PLAIN_EXIT="1")
    assert p.returncode == 1 and "FAILED: the plain rerun did not pass" in p.stdout
    p = gate_check(tmp_path, "--baseline", str(base), BLIND="1")
    assert p.returncode == 1 and "FAILED: the slowed rerun was not caught" in p.stdout
    for bad in (["--phase", "attn"], ["--baseline", str(tmp_path / "none.h5")], ["--repeat", "0"],
                ["--backend", "tpu"], ["--bogus"]):
        q = gate_check(tmp_path, *bad)
        assert q.returncode == 2 and "error" in q.stderr, bad


def test_validate_reads_a_trace_of_every_emulated_rank(cpu_trace, tmp_path):
    """`decode --emulate N --emulate-rank all` writes emulated_rank = -1 (every rank in turn);
    `model --validate` must read it like any other trace, not refuse it as out of range."""
    from conftest import BINARY
    import shutil
    path = tmp_path / "every_rank.h5"
    shutil.copy(cpu_trace, path)
    with h5py.File(path, "r+") as f:
        for name in f["decode"]:
            f["decode"][name].attrs["emulated_ranks"] = 2
            f["decode"][name].attrs["emulated_rank"] = -1
    p = subprocess.run([BINARY, "model", "--validate", str(path), "--hardware",
                        os.path.join(REPO, "tests", "data", "cpu-test-profile.json"), "--out",
                        str(tmp_path / "validate.h5")], capture_output=True, text=True,
                       env=tool_env(), timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "emulated_rank" not in p.stderr
