"""Launch scripts: syntax (bash -n, shellcheck when installed), the mpirun launcher's command and
exports, the Slurm batch scripts run outside Slurm with a stand-in srun, the CI gate against
the committed CPU baseline, and the GPU scripts' logic with stand-ins for the GPU."""
import glob
import json
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from conftest import REPO, SCRIPTS, need_binary, tool_env

SHELL_SCRIPTS = sorted(glob.glob(os.path.join(SCRIPTS, "slurm", "*.sbatch")) +
                       [os.path.join(SCRIPTS, "slurm", "common.sh")] +
                       glob.glob(os.path.join(SCRIPTS, "launch", "*.sh")) +
                       [os.path.join(SCRIPTS, "gate.sh"),
                        os.path.join(SCRIPTS, "gpu_kv_transfer.sh"),
                        os.path.join(SCRIPTS, "gpu_ab.sh"),
                        os.path.join(SCRIPTS, "gpu_layers.sh"),
                        os.path.join(SCRIPTS, "gpu_kernels.sh")])
BASELINE = os.path.join(REPO, "results", "baseline", "cpu-np2.h5")


def sh(cmd, **kw):
    env = kw.pop("env", tool_env())
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, **kw)


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=os.path.basename)
def test_shell_syntax(script):
    p = sh(["bash", "-n", script])
    assert p.returncode == 0, p.stderr
    if shutil.which("shellcheck"):
        p = sh(["shellcheck", "-S", "warning", script])
        assert p.returncode == 0, p.stdout


def test_slurm_scripts_requeue_append_and_detect_the_mpi_plugin():
    for path in glob.glob(os.path.join(SCRIPTS, "slurm", "*.sbatch")):
        text = open(path).read()
        assert "#SBATCH --requeue" in text and "#SBATCH --open-mode=append" in text
        assert "--mpi=pmix" not in text and "scripts/slurm/common.sh" in text
        assert "--gpus-per-task=1" in text  # the warning against it
    common = open(os.path.join(SCRIPTS, "slurm", "common.sh")).read()
    assert "srun --mpi=list" in common and "HELIX_SRUN_MPI" in common
    assert "--export=ALL" in common and "--gpu-bind=none" in common


def test_mpirun_launcher_command():
    env = dict(tool_env(), UCX_NET_DEVICES="mlx5_0:1", OMPI_MCA_pml="ucx")
    p = sh([os.path.join(SCRIPTS, "launch", "mpirun.sh"), "--print", "--hosts", "n1,n2",
            "--gpus-per-node", "8", "--cpus-per-rank", "12", "prog", "--flag"], env=env)
    assert p.returncode == 0, p.stderr
    if "Open MPI" in sh(["mpirun", "--version"]).stdout:
        assert "-np 16" in p.stdout and "ppr:8:node:PE=12" in p.stdout
        assert "-x NCCL_NVLS_ENABLE" in p.stdout
        assert "-x UCX_NET_DEVICES" in p.stdout and "-x OMPI_MCA_pml" in p.stdout
    assert p.stdout.strip().endswith("prog --flag")
    p = sh([os.path.join(SCRIPTS, "launch", "mpirun.sh"), "-np", "0", "prog"])
    assert p.returncode == 2 and "-np" in p.stderr
    p = sh([os.path.join(SCRIPTS, "launch", "mpirun.sh"), "--help"])
    assert p.returncode == 0 and "node-local rank" in p.stdout


def test_mpirun_launcher_runs_decode_and_nccl_env_is_recorded(tmp_path):
    need_binary()
    out = tmp_path / "t.h5"
    env = tool_env()
    env["NCCL_DEBUG"] = "WARN"
    env.pop("NCCL_NVLS_ENABLE", None)
    p = sh([os.path.join(SCRIPTS, "launch", "mpirun.sh"), "-np", "2",
            os.path.join(REPO, "build", "bin", "helix-bench"), "decode", "--model", "tiny-gqa",
            "--layouts", "helix", "--seq", "64", "--batch", "1", "--iters", "2",
            "--backend", "cpu", "--quiet", "--out", str(out)], env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    with h5py.File(out, "r") as f:
        nccl = f.attrs["nccl_env"]
    assert "NCCL_NVLS_ENABLE=0" in nccl and "NCCL_DEBUG=WARN" in nccl


@pytest.mark.parametrize("script", ["one-node-8gpu.sbatch", "multi-node.sbatch"])
def test_slurm_script_outside_slurm(script, tmp_path):
    """Runs the batch script as Slurm would, with an srun that keeps -n and hands the job to
    mpirun; the user's options (after the defaults) pick a tiny CPU grid."""
    need_binary()
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text(
        "#!/usr/bin/env bash\n"
        "n=1\n"
        "while (($#)); do case $1 in -n) n=$2; shift 2;; -N) shift 2;; -*) shift;; *) break;;"
        " esac; done\n"
        'exec mpirun -np "$n" "$@"\n')
    (fake / "srun").chmod(0o755)
    env = tool_env()
    env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    env.update(SLURM_JOB_ID="4242", SLURM_SUBMIT_DIR=REPO, SLURM_GPUS_ON_NODE="2",
               SLURM_JOB_NUM_NODES="1")
    out = tmp_path / "slurm.h5"
    p = sh(["bash", os.path.join(SCRIPTS, "slurm", script), "--np", "2", "--models", "tiny-gqa",
            "--layouts", "tp", "--seq", "64", "--batch", "1", "--out", str(out), "--",
            "--backend", "cpu", "--iters", "2", "--warmup", "0"], env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "NCCL_NVLS_ENABLE=0" in p.stdout
    assert "helix: 2 GPUs per node (from SLURM_GPUS_ON_NODE)" in p.stdout
    with h5py.File(out, "r") as f:
        assert len(f["decode"]) == 1
        assert "NCCL_NVLS_ENABLE=0" in f.attrs["nccl_env"]


def test_committed_baseline_is_a_verified_trace():
    p = sh(["python3", os.path.join(SCRIPTS, "check_trace.py"), BASELINE])
    assert p.returncode == 0, p.stdout + p.stderr
    with h5py.File(BASELINE, "r") as f:
        assert len(f["decode"]) == 8 and f.attrs["backend"] == "cpu"
        for name in f["decode"]:
            assert f["decode"][name]["step_us"].shape == (15,)


def test_gate_against_committed_baseline(tmp_path):
    """The CI gate end to end on the CPU backend: sweep, check, report, compare. Timings of
    host-memory MPI on a shared, oversubscribed CPU swing by several times between runs, so
    this checks the pipeline and that every run matches its baseline run (exit 0 or 1, never
    2); catching a regression is checked on traces with a known slowdown."""
    need_binary()
    work = tmp_path / "gate"
    p = sh([os.path.join(SCRIPTS, "gate.sh"), "--work", str(work)], cwd=REPO)
    assert p.returncode in (0, 1), p.stdout + p.stderr
    res = json.loads((work / "compare.json").read_text())
    assert res["exit_code"] == p.returncode
    assert len(res["runs"]) == 8 and not res["unmatched_baseline"]
    assert all("step_us" in r["metrics"] for r in res["runs"])
    assert (work / "report" / "summary.md").exists()


def test_gate_fails_on_a_slowed_baseline_copy(tmp_path):
    slowed = tmp_path / "slowed.h5"
    shutil.copyfile(BASELINE, slowed)
    with h5py.File(slowed, "a") as f:
        ph = f["decode/run_0003/phase_us"]
        names = list(ph.attrs["phases"])
        v = ph[()]
        ffn = v[:, :, names.index("ffn")]
        ffn += 0.2 * np.median(ffn.max(axis=1)) + np.ptp(ffn.max(axis=1))
        ph[...] = v
    env = tool_env()
    for cand, code in ((BASELINE, 0), (slowed, 1)):
        p = sh(["python3", "-m", "helixbench.compare", BASELINE, str(cand), "--threshold", "5%"],
               env=env)
        assert p.returncode == code, p.stdout + p.stderr


def test_ci_example_uses_the_gate():
    text = open(os.path.join(REPO, ".github", "workflows", "gpu-bench.yml")).read()
    assert "self-hosted" in text and "scripts/gate.sh --backend cuda" in text
    assert "upload-artifact" in text and "\t" not in text


def ab_stub(path, slow):
    """A stand-in helix-bench for gpu_ab.sh: writes a synthetic emulated decode trace to --out,
    its attention 30% slower when `slow`."""
    tests = os.path.dirname(os.path.abspath(__file__))
    path.write_text(f"""#!/usr/bin/env bash
out=""
while [[ $# -gt 0 ]]; do [[ $1 == --out ]] && out=$2; shift; done
python3 - "$out" <<'PY'
import sys
sys.path.insert(0, {tests!r})
import synth
scale = {{(None, "attention"): 1.3}} if {slow!r} else None
synth.write_decode(sys.argv[1], seed=3 if {slow!r} else 4, noise=0.01, scale=scale,
                   extra_attrs={{"emulated_ranks": 4, "exposed_comm_definition": "step_minus_compute"}})
PY
""")
    path.chmod(0o755)
    return str(path)


def test_gpu_ab_compares_two_builds(tmp_path):
    base = ab_stub(tmp_path / "base", slow=False)
    same = ab_stub(tmp_path / "same", slow=False)
    slow = ab_stub(tmp_path / "slow", slow=True)
    script = os.path.join(SCRIPTS, "gpu_ab.sh")
    p = sh(["bash", script, base, same, str(tmp_path / "same_out")])
    assert p.returncode == 0, p.stdout + p.stderr
    assert os.path.exists(tmp_path / "same_out" / "deepseek-r1_emulated_compare.json")
    p = sh(["bash", script, base, slow, str(tmp_path / "slow_out")])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "REGRESSION" in p.stdout and "attention_us" in p.stdout
    p = sh(["bash", script, base])
    assert p.returncode != 0 and "usage" in p.stderr


def test_gpu_layers_prints_every_roofline(tmp_path):
    """scripts/gpu_layers.sh with a stand-in nvidia-smi (two GPUs) and a helix-bench that runs the
    real binary on the CPU backend: every model at N = 1 and N = 2, each trace's roofline
    checked, the roofline tables printed last."""
    need_binary()
    fake = tmp_path / "fakebin"
    fake.mkdir()
    smi = fake / "nvidia-smi"
    smi.write_text("#!/usr/bin/env bash\necho 'GPU 0: stand-in'\necho 'GPU 1: stand-in'\n")
    smi.chmod(0o755)
    (tmp_path / "build" / "bin").mkdir(parents=True)
    wrapper = tmp_path / "build" / "bin" / "helix-bench"
    wrapper.write_text("#!/usr/bin/env bash\nargs=()\nfor a in \"$@\"; do "
                       "[[ $a == cuda ]] && a=cpu; args+=(\"$a\"); done\n"
                       f"exec {os.path.join(REPO, 'build', 'bin', 'helix-bench')} "
                       "\"${args[@]}\"\n")
    wrapper.chmod(0o755)
    env = tool_env()
    env.update({"PATH": f"{fake}{os.pathsep}{env['PATH']}", "SKIP_BUILD": "1",
                "BUILD_DIR": str(tmp_path / "build"), "MODELS": "tiny-mla-moe tiny-gqa",
                "SEQ": "100", "BATCH": "1,4", "ITERS": "2", "NP": "2"})
    out = tmp_path / "out"
    p = sh(["bash", os.path.join(SCRIPTS, "gpu_layers.sh"), str(out)], env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    for name in ("tiny-mla-moe_np1", "tiny-mla-moe_np2", "tiny-gqa_np1", "tiny-gqa_np2"):
        assert (out / f"{name}.h5").exists(), name
        assert f"== {name.replace('_np', ', N = ')} ==" in p.stdout
    assert p.stdout.count("roofline of rank 0") == 4
    assert p.stdout.count("dense GEMM ceiling") == 4
    # A job that fails is reported and fails the script.
    env["MODELS"] = "no-such-model"
    env["NP"] = "1"
    p = sh(["bash", os.path.join(SCRIPTS, "gpu_layers.sh"), str(tmp_path / "bad")], env=env)
    assert p.returncode == 1
    assert "gpu_layers: FAILED: no-such-model N=1 exited 2" in p.stdout
