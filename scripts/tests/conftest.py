"""Shared fixtures: the package on sys.path, the built binary, MPI settings for workstation runs,
and one real decode trace made by the CPU backend (made once per test session)."""
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.dirname(HERE)
REPO = os.path.dirname(SCRIPTS)
sys.path.insert(0, SCRIPTS)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

BINARY = os.path.join(REPO, "build", "bin", "helix-bench")

# As scripts/env.sh: root allowed, oversubscription allowed, ranks yield while they wait.
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_mpi_yield_when_idle": "1",
    "OMPI_MCA_hwloc_base_binding_policy": "none",
    "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
    # Open MPI 5 (PRRTE) names
    "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe",
    "PRTE_MCA_hwloc_default_binding_policy": "none",
}


def tool_env():
    env = dict(os.environ)
    for k, v in MPI_ENV.items():
        env.setdefault(k, v)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["MPLBACKEND"] = "Agg"
    return env


def run_tool(module, *args, timeout=300, cwd=REPO):
    """Runs `python3 -m helixbench.<module> ARGS` as users would; returns CompletedProcess."""
    return subprocess.run([sys.executable, "-m", f"helixbench.{module}", *map(str, args)],
                          capture_output=True, text=True, env=tool_env(), timeout=timeout,
                          cwd=cwd)


def need_binary():
    if not (os.access(BINARY, os.X_OK) and shutil.which("mpirun")):
        pytest.skip("build/bin/helix-bench or mpirun missing (run scripts/build.sh)")


@pytest.fixture(scope="session")
def cpu_trace(tmp_path_factory):
    """A decode trace of the four layouts on 2 ranks, CPU backend: 2 sequence lengths x 2
    batches."""
    need_binary()
    out = tmp_path_factory.mktemp("cpu") / "decode.h5"
    cmd = ["mpirun", "-np", "2", BINARY, "decode", "--model", "tiny-gqa", "--seq", "64,256",
           "--batch", "1,4", "--iters", "5", "--warmup", "1", "--backend", "cpu", "--quiet",
           "--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return str(out)


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def call_main(main, *args):
    """Runs an entry point's main() in this process (faster than a subprocess); returns its
    exit code and captured output like subprocess.run."""
    import contextlib
    import io
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse --help / usage errors
            code = e.code
    return Result(code, out.getvalue(), err.getvalue())
