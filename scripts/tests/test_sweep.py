"""helix-sweep: grid, merge into one trace, resume after a kill, real mpirun runs."""
import os
import signal
import subprocess
import sys
import time

import h5py

from conftest import BINARY, HERE, SCRIPTS, call_main, need_binary, run_tool, tool_env
from helixbench.sweep import main as sweep_main

FAKE = os.path.join(HERE, "fake_helix_bench.py")
FAKE_GRID = ["--np", "2", "--models", "tiny-gqa", "--layouts", "tp,helix", "--seq", "64,128,1K",
             "--batch", "1", "--launcher", "env FAKE_NP={np}", "--binary", FAKE]


def sweep_points(path):
    with h5py.File(path, "r") as f:
        g = f["decode"]
        return [g[n].attrs["sweep_point"] for n in sorted(g)]


def test_fake_grid_merges_every_point(tmp_path):
    out = tmp_path / "sweep.h5"
    p = call_main(sweep_main, *FAKE_GRID, "--out", out, "--", "--iters", "4")
    assert p.returncode == 0, p.stdout + p.stderr
    pts = sweep_points(out)
    assert len(pts) == 6 and len(set(pts)) == 6
    assert "[6/6] np=2 tiny-gqa helix S=1024 B=1 --iters 4" in p.stdout
    with h5py.File(out, "r") as f:
        assert f.attrs["schema_version"] == "1.0" and "sweep_command" in f.attrs
        assert f["decode/run_0005"].attrs["seq_len"] == 1024
        assert f["decode/run_0005/step_us"].shape == (4,)
        assert f["decode/run_0000"].attrs["job_command_line"] == "synthetic"
    # A second run skips everything and changes nothing.
    before = os.path.getmtime(out)
    p = call_main(sweep_main, *FAKE_GRID, "--out", out, "--", "--iters", "4")
    assert p.returncode == 0 and p.stdout.count("skipped") == 6
    assert os.path.getmtime(out) == before
    # Other decode options make other points: they are added, not skipped.
    p = call_main(sweep_main, *FAKE_GRID, "--out", out, "--", "--iters", "3")
    assert p.returncode == 0 and len(sweep_points(out)) == 12


def test_repeated_jobs_of_every_point(tmp_path):
    """--repeat: every point once, then again; each run records its repeat; resuming a sweep
    with more repeats adds only the missing jobs."""
    out = tmp_path / "rep.h5"
    p = call_main(sweep_main, *FAKE_GRID, "--out", out, "--repeat", "2")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "[1/6] np=2 tiny-gqa tp S=64 B=1 #2" in p.stdout
    with h5py.File(out, "r") as f:
        g = f["decode"]
        reps = [(g[n].attrs["sweep_point"], int(g[n].attrs["sweep_repeat"])) for n in sorted(g)]
    assert len(reps) == 12 and len(set(reps)) == 12
    assert [r for _, r in reps] == [0] * 6 + [1] * 6
    p = call_main(sweep_main, *FAKE_GRID, "--out", out, "--repeat", "3")
    assert p.returncode == 0 and "12 already in" in p.stdout and len(sweep_points(out)) == 18
    assert call_main(sweep_main, *FAKE_GRID, "--out", out, "--repeat", "0").returncode == 2


def test_killed_sweep_resumes_without_loss_or_duplicates(tmp_path):
    out = tmp_path / "sweep.h5"
    env = tool_env()
    env["FAKE_SLEEP_S"] = "0.4"
    cmd = [sys.executable, "-m", "helixbench.sweep", *FAKE_GRID, "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=SCRIPTS)
    deadline = time.time() + 60
    done = 0
    while time.time() < deadline:
        if out.exists():
            try:
                done = len(sweep_points(out))
            except OSError:  # never expected: the file is replaced atomically
                raise
            if done >= 2:
                break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # as a scheduler ending the job
    proc.wait()
    # Every process of the job gone (a killed point may take a moment on a busy machine; until
    # then it still holds the sweep's lock and writes into its work folder).
    end = time.time() + 30
    while time.time() < end:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    assert 2 <= done < 6
    killed_with = sweep_points(out)  # the file left behind is whole
    assert len(killed_with) == len(set(killed_with)) < 6
    p = call_main(sweep_main, *FAKE_GRID, "--out", out)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("skipped") == len(killed_with)
    final = sweep_points(out)
    assert len(final) == 6 and len(set(final)) == 6
    assert final[:len(killed_with)] == killed_with
    # the killed sweep's work folder was cleaned up by the resumed one
    assert os.listdir(tmp_path) == ["sweep.h5"]


def test_failed_point_is_reported_and_others_run(tmp_path):
    out = tmp_path / "sweep.h5"
    os.environ["FAKE_FAIL_LAYOUT"] = "helix"
    try:
        p = call_main(sweep_main, *FAKE_GRID, "--out", out)
    finally:
        del os.environ["FAKE_FAIL_LAYOUT"]
    assert p.returncode == 1
    assert p.stdout.count("FAILED (exit code 2") == 3
    assert len(sweep_points(out)) == 3
    # the failed points run again on the next invocation
    p = call_main(sweep_main, *FAKE_GRID, "--out", out)
    assert p.returncode == 0 and len(sweep_points(out)) == 6


def test_spec_file_and_dry_run(tmp_path):
    spec = tmp_path / "grid.json"
    spec.write_text('{"np": [2, 4], "models": ["tiny-gqa"], "layouts": ["helix"], '
                    '"seq": ["4K"], "batch": [1, 8], "args": ["--iters", "7"]}')
    p = call_main(sweep_main, "--spec", spec, "--out", tmp_path / "x.h5", "--dry-run",
                  "--launcher", "srun --mpi=pmix -n {np}", "--binary", "helix-bench")
    assert p.returncode == 0, p.stderr
    lines = [l for l in p.stdout.splitlines() if l.startswith("srun")]
    assert len(lines) == 4
    assert lines[-1].startswith("srun --mpi=pmix -n 4 helix-bench decode --model tiny-gqa "
                                "--layouts helix --seq 4096 --batch 8 --quiet --out POINT.h5 "
                                "--iters 7")


def test_bad_input_exits_2(tmp_path):
    out = tmp_path / "x.h5"
    cases = [
        (["--models", "tiny-gqa", "--seq", "64", "--batch", "1", "--layouts", "ring"],
         "unknown layout"),
        (["--models", "tiny-gqa", "--seq", "sixty", "--batch", "1"], "token count"),
        (["--models", "tiny-gqa", "--batch", "1"], "--seq: required"),
        (["--models", "tiny-gqa", "--seq", "64", "--batch", "1", "--binary",
          str(tmp_path / "nope")], "is not an executable"),
        (["--models", "tiny-gqa", "--seq", "64", "--batch", "1", "--", "--out", "y.h5"],
         "set by the sweep"),
        (["--models", "tiny-gqa", "--seq", "64", "--batch", "1", "--launcher", "mpirun"],
         "{np}"),
    ]
    for args, msg in cases:
        p = call_main(sweep_main, "--out", out, *args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert msg in p.stderr, (args, p.stderr)
    notrace = tmp_path / "notes.h5"
    notrace.write_text("text")
    p = call_main(sweep_main, "--models", "m", "--seq", "1", "--batch", "1", "--out", notrace)
    assert p.returncode == 2 and "not an HDF5 file" in p.stderr
    p = run_tool("sweep", "--help")
    assert p.returncode == 0 and "tokens" in p.stdout and "resum" in p.stdout.lower()


def test_real_decode_sweep_through_mpirun(tmp_path):
    need_binary()
    out = tmp_path / "real.h5"
    args = ["--np", "2", "--models", "tiny-gqa", "--layouts", "tp,helix-hopb", "--seq", "64",
            "--batch", "1,3", "--out", out, "--binary", BINARY, "--", "--backend", "cpu",
            "--iters", "2", "--warmup", "1", "--decode-steps", "2"]
    p = run_tool("sweep", *args)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "4 of 4 points done, 0 failed" in p.stdout
    check = subprocess.run([sys.executable, os.path.join(SCRIPTS, "check_trace.py"), str(out)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    with h5py.File(out, "r") as f:
        runs = [f["decode"][n].attrs for n in sorted(f["decode"])]
        assert [(r["layout"], int(r["batch"])) for r in runs] == [
            ("tp", 1), ("helix-hopb", 1), ("tp", 3), ("helix-hopb", 3)]
        assert all(r["job_devices"] == "rank0=cpu;rank1=cpu" for r in runs)
    p = run_tool("sweep", *args)
    assert p.returncode == 0 and "4 already in" in p.stdout


def test_layouts_of_a_point_run_as_one_job_step(tmp_path):
    p = call_main(sweep_main, "--np", "2", "--models", "tiny-gqa", "--layouts", "tp,kvp,helix",
                  "--seq", "64,128", "--batch", "1", "--out", tmp_path / "x.h5", "--dry-run",
                  "--launcher", "srun -n {np}", "--binary", "helix-bench")
    assert p.returncode == 0, p.stderr
    assert "6 to run in 2 job steps" in p.stdout
    lines = [l for l in p.stdout.splitlines() if l.startswith("srun")]
    assert [l.split("--layouts ")[1].split()[0] for l in lines] == ["tp,kvp,helix"] * 2
    assert "--seq 64 " in lines[0] and "--seq 128 " in lines[1]


def test_job_with_a_failing_layout_is_retried_layout_by_layout(tmp_path):
    out = tmp_path / "sweep.h5"
    os.environ["FAKE_FAIL_LAYOUT"] = "tp"
    try:
        p = call_main(sweep_main, *FAKE_GRID, "--out", out, "--seq", "64")
    finally:
        del os.environ["FAKE_FAIL_LAYOUT"]
    assert p.returncode == 1
    assert "the job of 2 layouts exited with code 2 and no trace; running them one by one" \
        in p.stdout
    assert [s.split(";")[2] for s in sweep_points(out)] == ["layout=helix"]
