"""HOP-B in traces (helixbench.hopb): the chunk-timeline check, the exposed All-to-All, the link
fit, the study summary and its bars; helix-report's plot of exposed communication against the
chunk count; scripts/gpu_hopb_study.sh in dry-run and CPU modes."""
import json
import os
import subprocess

import h5py
import numpy as np
import pytest

from conftest import REPO, SCRIPTS, call_main, need_binary, run_tool, tool_env
from helixbench import hopb
from helixbench.report import main as report_main
from helixbench.trace import load_decode_runs, open_trace
import synth

STUDY = os.path.join(SCRIPTS, "gpu_hopb_study.sh")
COLS = list(hopb.COLUMNS)


def add_chunks(path, attention_us=100.0, comm_us=60.0, overlap=True, nccl_env=None):
    """Gives every helix / helix-hopb run of a synthetic trace a chunk timeline: chunks of
    attention_us / C back to back, each chunk's exchange (comm_us / C) starting at its
    attention's end (overlap) or after the last attention (no overlap)."""
    with h5py.File(path, "a") as f:
        if nccl_env is not None:
            f.attrs["nccl_env"] = nccl_env
        for g in f["decode"].values():
            if g.attrs["layout"] not in ("helix", "helix-hopb"):
                continue
            it, rk = g["phase_us"].shape[:2]
            c = int(g.attrs["hopb_chunks"]) if g.attrs["layout"] == "helix-hopb" else 1
            t = np.zeros((it, rk, c, 4))
            a, m = attention_us / c, comm_us / c
            for k in range(c):
                t[:, :, k, 0] = 10 + k * a
                t[:, :, k, 1] = 10 + (k + 1) * a
                start = t[:, :, k, 1] if overlap else 10 + c * a + k * m
                t[:, :, k, 2] = start
                t[:, :, k, 3] = start + m
            g["step_us"][...] = np.maximum(g["step_us"][()], t[..., 3].max(axis=(1, 2)) + 1)
            ds = g.create_dataset("chunks", data=t)
            ds.attrs["columns"] = np.array(COLS, dtype=object)
    return path


def hopb_runs(**kw):
    return [{"layout": "helix", "seq_len": 4096, "batch": 8},
            {"layout": "helix-hopb", "seq_len": 4096, "batch": 8, "attrs": {"hopb_chunks": 2}},
            {"layout": "helix-hopb", "seq_len": 4096, "batch": 8, "attrs": {"hopb_chunks": 4}}]


def test_check_accepts_a_pipelined_timeline_and_finds_its_overlap(tmp_path):
    trace = add_chunks(synth.write_decode(tmp_path / "t.h5", runs=hopb_runs()))
    p = call_main(hopb.main, "check", trace, "--expect-overlap")
    assert p.returncode == 0, p.stderr
    with open_trace(str(trace)) as f:
        runs = load_decode_runs(f)
    four = [r for r in runs if r.get("hopb_chunks") == 4][0]
    # 4 chunks of 25 us attention, 15 us exchanges starting at each attention's end: the first
    # three run entirely beside the next attention, the last cannot: 45 of 60 us hidden.
    assert hopb.hidden_fraction(four) == pytest.approx(0.75)
    assert hopb.overlaps(four).shape[2] == 3


def test_check_reports_serialized_exchanges_and_broken_timelines(tmp_path):
    trace = add_chunks(synth.write_decode(tmp_path / "t.h5", runs=hopb_runs()), overlap=False)
    p = call_main(hopb.main, "check", trace, "--expect-overlap")
    assert p.returncode == 1
    assert "never ran beside chunk 1's attention" in p.stderr
    assert call_main(hopb.main, "check", trace).returncode == 0  # consistent, just not overlapped
    with h5py.File(trace, "a") as f:
        run = [g for g in f["decode"].values() if g.attrs["hopb_chunks"] == 4][0]
        t = run["chunks"][()]
        t[2, 1, 3, 2] = t[2, 1, 3, 1] - 5.0  # chunk 3's exchange starts before its attention ends
        run["chunks"][...] = t
    p = call_main(hopb.main, "check", trace)
    assert p.returncode == 1
    assert "exchange starts before its chunk's attention ends (iteration 2, rank 1, chunk 3" \
        in p.stderr
    with h5py.File(trace, "a") as f:
        del [g for g in f["decode"].values() if g.attrs["layout"] == "helix"][0]["chunks"]
    assert "no chunks dataset" in call_main(hopb.main, "check", trace).stderr


def test_exposed_all_to_all_leaves_out_the_other_collectives(tmp_path):
    trace = synth.write_decode(tmp_path / "t.h5", runs=[{"layout": "helix", "seq_len": 1024,
                                                         "batch": 8}], noise=0.0)
    with open_trace(str(trace)) as f:
        run = load_decode_runs(f)[0]
    # synth: exposed = attn_comm + o_comm + ffn_comm (blocking); the other two are 30 and 25 us.
    assert np.allclose(hopb.other_comm_us(run), 55.0)
    assert np.allclose(hopb.exposed_a2a_us(run), synth.BASE_PHASE_US["attn_comm"])


def write_micro_a2a(path, ranks, latency_us, busbw_gbps):
    sizes = np.array([2.0 ** k for k in range(12, 27)])
    t = latency_us + sizes * (ranks - 1) / ranks / (busbw_gbps * 1e3)
    with h5py.File(path, "w") as f:
        synth.root(f)
        g = f.create_group("micro/collectives")
        n = len(sizes)
        g.create_dataset("collective", data=np.array(["all_to_all"] * n, dtype=object),
                         dtype=synth.STR)
        g.create_dataset("group_size", data=np.full(n, ranks))
        g.create_dataset("size_bytes", data=sizes)
        g.create_dataset("time_us", data=t)
        g.create_dataset("busbw_gbps", data=sizes * (ranks - 1) / ranks / (t * 1e3))
    return path


def test_linkfit_recovers_latency_and_bandwidth_and_writes_a_profile(tmp_path):
    micro = write_micro_a2a(tmp_path / "m.h5", 4, 35.0, 19.0)
    p = call_main(hopb.main, "linkfit", micro, "--ranks", "4", "--name", "nchannels1",
                  "--out-json", tmp_path / "l.json", "--out-profile", tmp_path / "p.json")
    assert p.returncode == 0, p.stderr
    link = json.loads((tmp_path / "l.json").read_text())
    assert link["fit_gbps"] == pytest.approx(19.0, rel=1e-6)
    assert link["fit_latency_us"] == pytest.approx(35.0, rel=1e-6)
    prof = json.loads((tmp_path / "p.json").read_text())
    assert prof["nvlink"]["bw_gbps"] == pytest.approx(19.0) and "collectives" not in prof
    assert prof["sm_count"] == 132 and "nvlink.bw_gbps" in prof["sources"]
    p = call_main(hopb.main, "linkfit", micro, "--ranks", "2", "--name", "x", "--out-json",
                  tmp_path / "l2.json", "--out-profile", tmp_path / "p2.json")
    assert p.returncode == 2 and "no all_to_all of 2 ranks" in p.stderr
    assert not (tmp_path / "l2.json").exists()


# An alltoall_perf log as nccl-tests writes it: the all-to-all's redop column is blank.
NCCL_TESTS_LOG = """# nThread 1 nGpus 1 minBytes 33554432 maxBytes 67108864 step: 2(factor) warmup iters: 5
#
#                                                              out-of-place                       in-place
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
    33554432       2097152     float                   -1   1371.2   24.47   18.35      0   1369.9   24.49   18.37    N/A
    67108864       4194304     float                   -1   2641.0   25.41   19.06      0   2650.3   25.32   18.99    N/A
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 18.6925
#
"""


def test_linkfit_records_nccl_tests_beside_the_fit(tmp_path):
    micro = write_micro_a2a(tmp_path / "m.h5", 4, 35.0, 19.0)
    log = tmp_path / "nccltests.txt"
    log.write_text(NCCL_TESTS_LOG)
    p = call_main(hopb.main, "linkfit", micro, "--ranks", "4", "--name", "nchannels1",
                  "--nccl-tests", log, "--out-json", tmp_path / "l.json",
                  "--out-profile", tmp_path / "p.json")
    assert p.returncode == 0, p.stderr
    link = json.loads((tmp_path / "l.json").read_text())
    assert link["nccl_tests_busbw_gbps"] == pytest.approx(19.06)
    assert link["nccl_tests_bytes"] == 64 * 2**20 and link["nccl_tests_time_us"] == 2641.0
    assert link["nccl_tests_avg_busbw_gbps"] == pytest.approx(18.6925)
    assert "nccl-tests busbw 19.1 GB/s at 64 MiB" in p.stdout
    log.write_text("# nThread 1\n# Avg bus bandwidth    : 0\n")
    p = call_main(hopb.main, "linkfit", micro, "--ranks", "4", "--name", "x", "--nccl-tests", log,
                  "--out-json", tmp_path / "l3.json", "--out-profile", tmp_path / "p3.json")
    assert p.returncode == 2 and "no nccl-tests result table" in p.stderr
    assert not (tmp_path / "l3.json").exists()


def test_linkset_writes_given_figures(tmp_path):
    p = call_main(hopb.main, "linkset", "--ranks", "2", "--name", "sockets", "--gbps", "2.4",
                  "--latency-us", "3", "--source", "nccl-tests at 64 MiB", "--out-json",
                  tmp_path / "l.json", "--out-profile", tmp_path / "p.json")
    assert p.returncode == 0, p.stderr
    link = json.loads((tmp_path / "l.json").read_text())
    assert (link["fit_gbps"], link["fit_latency_us"], link["ranks"]) == (2.4, 3.0, 2)
    prof = json.loads((tmp_path / "p.json").read_text())
    assert prof["nvlink"]["bw_gbps"] == 2.4 and prof["nvlink"]["latency_us"] == 3.0
    assert prof["sources"]["nvlink.bw_gbps"] == "nccl-tests at 64 MiB"
    p = call_main(hopb.main, "linkset", "--ranks", "2", "--name", "x", "--gbps", "0",
                  "--latency-us", "3", "--source", "s", "--out-json", tmp_path / "z.json",
                  "--out-profile", tmp_path / "zp.json")
    assert p.returncode == 2 and not (tmp_path / "z.json").exists()


def test_summary_of_a_one_gpu_study_reads_the_emulated_runs(tmp_path):
    study = tmp_path / "study"
    (study / "sockets").mkdir(parents=True)
    (study / "study.json").write_text(json.dumps(
        {"mode": "short one-gpu", "paths": [{"name": "sockets", "env": "NCCL_P2P_DISABLE=1"}]}))
    t = synth.write_decode(study / "sockets" / "emulated_tiny-gqa_n4.h5", runs=hopb_runs(),
                           backend="cuda")
    add_chunks(t)
    p = call_main(hopb.main, "summary", study)
    assert p.returncode == 0, p.stderr
    table = (study / "summary.md").read_text().split("## Bars")[0]
    assert table.count("| sockets | emulated | tiny-gqa | 4 | 4096 | 8 |") == 3


def test_summary_judges_the_bars(tmp_path):
    """Two paths: on the default one HOP-B is 1% slower (holds); on the slowed one its exposed
    All-to-All falls to 0.3 of Helix's at 4 chunks (bound 0.4) and its step is faster."""
    study = tmp_path / "study"
    for name in ("default", "sockets"):
        (study / name).mkdir(parents=True)
    (study / "study.json").write_text(json.dumps(
        {"mode": "test", "paths": [{"name": "default", "env": ""},
                                   {"name": "sockets", "env": "NCCL_P2P_DISABLE=1"}]}))
    runs = [{"layout": "helix", "seq_len": 4096, "batch": 8},
            {"layout": "helix-hopb", "seq_len": 4096, "batch": 8, "attrs": {"hopb_chunks": 4}}]
    for name, a2a_scale, hopb_step in (("default", 1.0, 1.01), ("sockets", 20.0, 0.8)):
        t = synth.write_decode(study / name / "real_tiny-gqa_n4.h5", runs=runs, noise=0.0,
                               scale={(None, "attn_comm"): a2a_scale})
        add_chunks(t)
        with h5py.File(t, "a") as f:
            h, hb = f["decode/run_0000"], f["decode/run_0001"]
            hb["step_us"][...] = h["step_us"][()] * hopb_step
            ex = h["rank_exposed_comm_us"][()]
            other = 55.0
            hb["rank_exposed_comm_us"][...] = other + 0.3 * (ex - other)
    p = call_main(hopb.main, "summary", study)
    assert p.returncode == 0, p.stderr
    md = (study / "summary.md").read_text()
    assert ("| default | real | tiny-gqa | 4 | 4096 | 8 | 4 | nvlink: HOP-B step <= 1.03 x Helix "
            "| yes |") in md
    assert "| sockets | real | tiny-gqa | 4 | 4096 | 8 | 4 | slowed: exposed A2A" in md
    assert "0.30 (bound 0.40), step -20.0% |" in md
    assert "bars: 2 of 2 hold" in p.stdout
    assert (study / "summary.csv").read_text().count("\n") == 5  # header + 4 runs


def test_report_plots_exposed_communication_against_chunks_per_path(tmp_path):
    a = add_chunks(synth.write_decode(tmp_path / "a.h5", runs=hopb_runs(), backend="cuda"),
                   nccl_env="")
    b = add_chunks(synth.write_decode(tmp_path / "b.h5", runs=hopb_runs(), backend="cuda",
                                      scale={(None, "attn_comm"): 5.0}),
                   nccl_env="NCCL_NVLS_ENABLE=0;NCCL_P2P_DISABLE=1")
    out = tmp_path / "rep"
    p = call_main(report_main, a, b, "--out", out)
    assert p.returncode == 0, p.stderr
    assert (out / "hopb_exposed_tiny-gqa_n4.png").stat().st_size > 10_000
    md = (out / "summary.md").read_text()
    assert "## HOP-B: exposed communication against the chunk count" in md
    assert "| default NCCL path | 4K | 8 | helix |" in md
    assert "| NCCL_P2P_DISABLE=1 | 4K | 8 | 4 |" in md


def study(*args, env=None, timeout=600):
    e = tool_env()
    e.update(env or {})
    return subprocess.run(["bash", STUDY, *map(str, args)], capture_output=True, text=True,
                          env=e, timeout=timeout, cwd=REPO)


def test_study_dry_run_lists_the_grid(tmp_path):
    p = study("--dry-run", tmp_path / "full")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    real = [x for x in lines if " decode " in x and "--emulate" not in x]
    emulated = [x for x in lines if "--emulate" in x]
    model = [x for x in lines if " model --validate " in x]
    micro = [x for x in lines if "helix-micro" in x]
    assert len(real) == len(emulated) == len(model) == 4 * 2 * 2  # paths x N x models
    assert len(micro) == 4 * 2
    for env in ("NCCL_MAX_NCHANNELS=1", "NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1"):
        assert sum(env in x for x in real) == 4
    for x in real:
        assert "--hopb-chunks 2,4,8" in x and "--seq 128K,1M" in x and "--batch 8,16,32,64" in x
        assert "--tpa 1" in x and "NCCL_NVLS_ENABLE=0" in x
    assert {x.split("--kvp ")[1].split()[0] for x in real} == {"2", "4"}
    assert all("--link-gbps" in x and "--link-latency-us" in x for x in emulated)
    assert not (tmp_path / "full").exists()  # a dry run writes nothing
    p = study("--dry-run", tmp_path / "short", env={"HOPB_STUDY_SHORT": "1"})
    real = [x for x in p.stdout.splitlines() if " decode " in x and "--emulate" not in x]
    assert len(real) == 3 and all("deepseek-r1" in x and "--kvp 4" in x and "--seq 128K " in x
                                  and "--batch 8,32" in x for x in real)
    assert "short mode" in p.stderr
    assert not any("alltoall_perf" in x for x in p.stdout.splitlines())


def test_study_dry_run_with_nccl_tests_and_on_one_gpu(tmp_path):
    bindir = tmp_path / "nccl-tests"
    bindir.mkdir()
    perf = bindir / "alltoall_perf"
    perf.write_text("#!/bin/sh\nexit 0\n")
    perf.chmod(0o755)
    p = study("--short", "--dry-run", tmp_path / "s", env={"NCCL_TESTS": str(bindir)})
    assert p.returncode == 0, p.stderr
    nt = [x for x in p.stdout.splitlines() if "alltoall_perf" in x]
    assert len(nt) == 3 and all("-b 64M -e 64M" in x and "-g 4" in x for x in nt)
    assert sum("--nccl-tests" in x for x in p.stdout.splitlines()) == 3
    p = study("--short", "--dry-run", tmp_path / "s", env={"NCCL_TESTS": str(tmp_path)})
    assert p.returncode == 2 and "no alltoall_perf" in p.stderr
    # One GPU: no real run, no helix-micro; per path the given link figures, the emulation and
    # the model validated against it.
    p = study("--one-gpu", "--short", "--models", "deepseek-r1,llama-3.1-405b", "--dry-run",
              tmp_path / "g")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert not any("mpirun" in x or "helix-micro" in x for x in lines)
    linkset = [x for x in lines if " linkset " in x]
    assert len(linkset) == 4 and any("--gbps 2.4 " in x for x in linkset)
    emulated = [x for x in lines if "--emulate 4" in x]
    assert len(emulated) == 4 * 2 and all("--link-gbps" in x for x in emulated)
    model = [x for x in lines if " model --validate " in x]
    assert len(model) == 8 and all("emulated_" in x for x in model)
    p = study("--one-gpu", "--dry-run", tmp_path / "g")
    assert {x.split("--emulate ")[1].split()[0] for x in p.stdout.splitlines()
            if "--emulate" in x} == {"2", "4"}


def test_study_bad_input(tmp_path):
    for args, want in ((["--dry-run"], "OUTDIR missing"), (["--bogus", tmp_path], "unknown option"),
                       (["--backend", "tpu", tmp_path / "x"], "--backend: cuda or cpu"),
                       (["--one-gpu", "--backend", "cpu", tmp_path / "x"], "not with --backend"),
                       (["--links", tmp_path, tmp_path / "x"], "--links goes with --one-gpu"),
                       (["--one-gpu", "--links", tmp_path / "no", tmp_path / "x"],
                        "is not a folder"),
                       (["--models", "a b", tmp_path / "x"], "--models: a comma list"),
                       (["--models"], "--models needs a value")):
        p = study(*args)
        assert p.returncode == 2 and want in p.stderr, p.stderr
    p = study("--backend", "cpu", tmp_path / "x", env={"HELIX_BENCH": "/nonexistent"})
    assert p.returncode == 2 and "is not an executable" in p.stderr
    assert not (tmp_path / "x").exists()
    p = study("--help")
    assert p.returncode == 0 and "--short" in p.stdout and "--one-gpu" in p.stdout


def test_study_on_the_cpu_backend(tmp_path):
    need_binary()
    out = tmp_path / "cpu"
    p = study("--backend", "cpu", out)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "bars:" in p.stdout and "written:" in p.stdout
    for path in ("default", "nchannels1", "sockets"):
        d = out / path
        for name in ("micro_n2.h5", "link_n2.json", "profile_n2.json",
                     "real_tiny-mla-moe_n2.h5", "model_tiny-mla-moe_n2.h5"):
            assert (d / name).exists(), d / name
        link = json.loads((d / "link_n2.json").read_text())
        assert link["fit_gbps"] > 0 and link["ranks"] == 2
    table = (out / "summary.md").read_text().split("## Bars")[0]
    assert table.count("| real | tiny-mla-moe | 2 | 300 |") == 3 * 2 * 3  # paths x B x 3 runs
    check = (out / "check.txt").read_text()
    assert "# slowed paths" in check and check.count("\nok\n") == 2 and "PROBLEMS" not in check
    assert (out / "report" / "hopb_exposed_tiny-mla-moe_n2.png").exists()
    with open_trace(str(out / "sockets" / "real_tiny-mla-moe_n2.h5")) as f:
        runs = load_decode_runs(f)
        assert "NCCL_P2P_DISABLE=1" in f.attrs["nccl_env"]
    assert all(r.get("verified") for r in runs)
    assert all(r.chunk_us is not None for r in runs)
