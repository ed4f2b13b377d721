"""--profile-once on the CPU backend, and scripts/check_profile.py (the checks that
scripts/gpu_profile_check.sh runs on profiler output and GPU traces) on inputs made here."""
import os
import subprocess
import sys

import h5py
import numpy as np

import synth
from conftest import BINARY, REPO, need_binary, tool_env

CHECK = os.path.join(REPO, "scripts", "check_profile.py")


def check(*args):
    return subprocess.run([sys.executable, CHECK, *map(str, args)], capture_output=True,
                          text=True)


def test_profile_once_runs_one_step_per_run_and_writes_nothing(tmp_path):
    need_binary()
    base = ["mpirun", "-np", "2", BINARY, "decode", "--model", "tiny-gqa", "--layouts",
            "tp,helix", "--seq", "64", "--batch", "1", "--backend", "cpu", "--profile-once"]
    p = subprocess.run(base, capture_output=True, text=True, env=tool_env(), cwd=tmp_path,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "profile-once: 2 run(s), one step each inside the profiler capture range" in p.stdout
    assert "step_us" not in p.stdout  # no timing table
    p = subprocess.run(base + ["--out", str(tmp_path / "x.h5")], capture_output=True, text=True,
                       env=tool_env(), timeout=120)
    assert p.returncode == 2
    assert "--out: --profile-once measures nothing and writes no trace" in p.stderr
    assert os.listdir(tmp_path) == []


def test_cpu_trace_has_no_gpu_telemetry(cpu_trace):
    with h5py.File(cpu_trace, "r") as f:
        for run in f["decode"].values():
            assert not [k for k in run.attrs if k.startswith("gpu_")]


def gpu_trace(path, ranks=2, attrs=None):
    synth.write_decode(str(path), ranks=ranks, backend="cuda",
                       runs=[{"layout": "helix", "seq_len": 64, "batch": 1}])
    with h5py.File(path, "a") as f:
        a = f["decode/run_0000"].attrs
        a["gpu_telemetry"] = "nvml"
        for when in ("before", "after"):
            a[f"gpu_sm_clock_mhz_{when}"] = np.full(ranks, 1980.0)
            a[f"gpu_mem_clock_mhz_{when}"] = np.full(ranks, 3201.0)
            a[f"gpu_power_w_{when}"] = np.full(ranks, 400.0)
            a[f"gpu_temperature_c_{when}"] = np.full(ranks, 40.0)
            a[f"gpu_throttle_reasons_{when}"] = np.zeros(ranks, dtype=np.int64)
        a["gpu_power_violation_us"] = np.zeros(ranks)
        a["gpu_thermal_violation_us"] = np.zeros(ranks)
        a["gpu_throttled"] = 0
        a["gpu_throttled_ranks"] = ""
        for k, v in (attrs or {}).items():
            a[k] = v
    return str(path)


def test_check_telemetry(tmp_path):
    ok = gpu_trace(tmp_path / "ok.h5")
    p = check("telemetry", ok)
    assert p.returncode == 0, p.stdout
    bad = gpu_trace(tmp_path / "bad.h5", attrs={"gpu_power_w_after": np.array([400.0])})
    p = check("telemetry", bad)
    assert p.returncode == 1 and "gpu_power_w_after has 1 values, 2 ranks" in p.stdout
    none = gpu_trace(tmp_path / "none.h5", attrs={"gpu_telemetry": "none: no driver"})
    p = check("telemetry", none)
    assert p.returncode == 1 and "gpu_telemetry = 'none: no driver'" in p.stdout


def test_check_nvtx_ranges(tmp_path):
    trace = gpu_trace(tmp_path / "t.h5")
    header = '"Time (%)","Total Time (ns)","Instances","Avg (ns)","Style","Range"\n'
    phases = ["qkv", "kv_append", "attention", "attn_comm", "combine", "o_proj", "o_comm",
              "ffn", "ffn_comm"]  # the synthetic helix run has no out_comm time
    rows = "".join(f'1.0,100,1,100.0,"PushPop","{p}"\n' for p in ["step"] + phases)
    good = tmp_path / "good.csv"
    good.write_text("Generating stats\n" + header + rows)
    p = check("nvtx", good, trace)
    assert p.returncode == 0, p.stdout
    short = tmp_path / "short.csv"
    short.write_text(header + rows.replace('"attention"', '"other"'))
    p = check("nvtx", short, trace)
    assert p.returncode == 1
    assert "phases without an NVTX range: attention" in p.stdout
    assert "NVTX ranges that are no phase: other" in p.stdout


def test_check_ncu_kernel_sets(tmp_path):
    def report(name, kernels):
        path = tmp_path / f"{name}.csv"
        path.write_text('"ID","Kernel Name","Metric Name","Metric Value"\n' + "".join(
            f'"{i}","{k}(Params)","gpu__time_duration.sum","1000"\n'
            for i, k in enumerate(kernels)))
        return f"{name}={path}"
    a = report("attention", ["decode_attention_kernel", "combine_kernel"])
    f = report("ffn", ["silu_mul_kernel", "sm90_xmma_gemm_bf16"])
    p = check("ncu", a, f)
    assert p.returncode == 0, p.stdout
    c = report("combine", ["combine_kernel"])  # shared with attention's split merge: fine
    assert check("ncu", a, c, f).returncode == 0
    leak = report("combine", ["combine_kernel", "decode_attention_kernel"])
    p = check("ncu", a, leak)
    assert p.returncode == 1 and "attention kernel under step/combine/" in p.stdout
    same = report("ffn", ["decode_attention_kernel", "combine_kernel"])
    p = check("ncu", a, same)
    assert p.returncode == 1 and "attention and ffn selected the same kernels" in p.stdout
    e = report("qkv", [])
    p = check("ncu", a, e)
    assert p.returncode == 1 and "no kernel profiled under step/qkv/" in p.stdout
