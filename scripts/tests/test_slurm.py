"""The batch scripts of scripts/slurm/ under a real Slurm: a single-node cluster of Debian's munge,
slurmctld and slurmd on this machine (tests/slurm/cluster.sh), every script submitted with
sbatch on the CPU backend, its trace checked, and a sweep requeued in the middle to show that it
resumes where it stopped (same job, log appended).

Skipped where Slurm is not installed or the tests do not run as root; HELIX_REQUIRE_SLURM=1 (set
by .ci/run, which installs Slurm) makes that a failure instead."""
import os
import shutil
import subprocess
import sys
import time

import h5py
import pytest

from conftest import BINARY, REPO, SCRIPTS, need_binary, tool_env

CLUSTER = os.path.join(REPO, "tests", "slurm", "cluster.sh")
# Fits the 2-core CI machine: the scripts' #SBATCH defaults ask for 8 GPUs and 8 tasks of 8 cores.
SMALL = ["--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--gpus-per-node=0",
         "--time=10"]


def missing_slurm():
    if not all(shutil.which(x) for x in ("slurmctld", "slurmd", "sbatch", "munged")):
        return "Slurm not installed (apt-get install munge slurmctld slurmd slurm-client)"
    if os.geteuid() != 0:
        return "the test cluster's slurmd runs as root"
    return None


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    why = missing_slurm()
    if why:
        if os.environ.get("HELIX_REQUIRE_SLURM") == "1":
            pytest.fail(why + " (HELIX_REQUIRE_SLURM=1)")
        pytest.skip(why)
    need_binary()
    d = tmp_path_factory.mktemp("slurm")
    p = subprocess.run([CLUSTER, "start", str(d)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    env = tool_env()
    env["SLURM_CONF"] = str(d / "slurm.conf")
    # the Python environment of scripts/setup.sh, as the scripts find it
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    yield env
    subprocess.run([CLUSTER, "stop", str(d)], capture_output=True, text=True, timeout=120)


def probe(tmp_path, sleep_s=0.0):
    """A stand-in for helix-bench that records each task's UCX_* and OMPI_MCA_* variables, then
    runs the real binary (after a pause, to make a sweep slow enough to requeue mid-way)."""
    exe = tmp_path / "probe.sh"
    exe.write_text("#!/usr/bin/env bash\n"
                   f'env | grep -E "^(UCX_|OMPI_MCA_)" | sort > "{tmp_path}/env.$SLURM_PROCID"\n'
                   f"sleep {sleep_s}\n"
                   f'exec "{BINARY}" "$@"\n')
    exe.chmod(0o755)
    return str(exe)


def sbatch(env, script, args, log, extra=()):
    cmd = ["sbatch", "--parsable", *SMALL, *extra, f"--output={log}", os.path.join(SCRIPTS,
                                                                                  "slurm", script),
           *args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout.strip().split(";")[0]


def job_state(env, job):
    p = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, env=env)
    fields = dict(f.split("=", 1) for f in p.stdout.split() if "=" in f)
    return fields.get("JobState", "?"), fields


def wait_job(env, job, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        state, fields = job_state(env, job)
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return state, fields
        time.sleep(0.5)
    raise AssertionError(f"job {job} still {state} after {timeout} s")


def points(path):
    with h5py.File(path, "r") as f:
        return [f["decode"][n].attrs["sweep_point"] for n in sorted(f["decode"])]


def check_trace(path):
    p = subprocess.run([sys.executable, os.path.join(SCRIPTS, "check_trace.py"), str(path)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("script", ["one-node-8gpu.sbatch", "multi-node.sbatch"])
def test_script_runs_under_slurm(slurm, script, tmp_path):
    env = dict(slurm, UCX_LOG_LEVEL="warn", OMPI_MCA_mpi_show_mpi_alloc_mem_leaks="0")
    out, log = tmp_path / "sweep.h5", tmp_path / "job.log"
    job = sbatch(env, script, ["--np", "2", "--models", "tiny-gqa", "--layouts", "tp,helix",
                               "--seq", "64", "--batch", "1,2", "--out", str(out),
                               "--binary", probe(tmp_path), "--", "--iters", "2",
                               "--warmup", "1"], log)
    state, fields = wait_job(env, job)
    text = log.read_text()
    assert state == "COMPLETED" and fields["ExitCode"] == "0:0", text
    assert "no GPU found" in text and "2 ranks per node, backend cpu" in text
    assert "srun --mpi=pmix (from srun --mpi=list)" in text
    assert "UCX_LOG_LEVEL=warn" in text and "OMPI_MCA_mpi_show_mpi_alloc_mem_leaks=0" in text
    assert "4 points, 0 already in" in text and "to run in 2 job steps" in text
    assert "4 of 4 points done, 0 failed" in text
    check_trace(out)
    with h5py.File(out, "r") as f:
        runs = [f["decode"][n].attrs for n in sorted(f["decode"])]
        assert [(r["layout"], int(r["batch"])) for r in runs] == [
            ("tp", 1), ("helix", 1), ("tp", 2), ("helix", 2)]
        assert all(r["job_slurm_job_id"] == job and r["backend"] == "cpu" for r in runs)
    # every task of every job step got the submitter's UCX_* and OMPI_MCA_* variables
    for rank in (0, 1):
        seen = (tmp_path / f"env.{rank}").read_text()
        assert "UCX_LOG_LEVEL=warn" in seen and "OMPI_MCA_mpi_show_mpi_alloc_mem_leaks=0" in seen


def test_requeued_sweep_resumes(slurm, tmp_path):
    out, log = tmp_path / "sweep.h5", tmp_path / "job.log"
    grid = ["--np", "2", "--models", "tiny-gqa", "--layouts", "tp,kvp", "--seq", "64,96,128,160",
            "--batch", "1", "--out", str(out), "--binary", probe(tmp_path, sleep_s=1.5), "--",
            "--iters", "2", "--warmup", "0"]
    job = sbatch(slurm, "one-node-8gpu.sbatch", grid, log)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.exists() and len(points(out)) >= 2):
        time.sleep(0.2)
    before = points(out)
    assert 2 <= len(before) < 8, log.read_text()
    p = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, env=slurm)
    assert p.returncode == 0, p.stderr
    # A requeued job waits (BeginTime, about two minutes) before it may start again; shorten the
    # wait to a few seconds (starting it at once races with the revocation of the old attempt's
    # credential: "Job credential revoked").
    deadline = time.time() + 60
    while time.time() < deadline:
        if job_state(slurm, job)[0] == "PENDING":
            subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now+3"],
                           capture_output=True, env=slurm)
            break
        time.sleep(0.2)
    state, fields = wait_job(slurm, job)
    text = log.read_text()
    assert state == "COMPLETED" and fields["Restarts"] == "1", text
    # one log, both attempts (--open-mode=append)
    assert "restart count 0" in text and "restart count 1" in text
    assert "DUE TO JOB REQUEUE" in text
    after = points(out)
    assert len(after) == 8 and len(set(after)) == 8
    assert after[:len(before)] == before  # nothing lost, nothing measured twice
    assert text.count("skipped (already in the trace)") >= len(before)
    check_trace(out)
