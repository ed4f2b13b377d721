"""The helixbench package as users install it: a non-editable `pip install` (into a folder) gives
the five commands, and helix-sweep then finds helix-bench on PATH or says where it looked."""
import os
import subprocess
import sys

import pytest

from conftest import REPO, tool_env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package built from this checkout and installed, not editable, into a folder."""
    target = tmp_path_factory.mktemp("site")
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--no-build-isolation", "--target", str(target), REPO],
                       capture_output=True, text=True, timeout=300,
                       cwd=str(tmp_path_factory.mktemp("build-cwd")))
    if p.returncode != 0 and "No module named 'setuptools'" in p.stderr:
        pytest.skip("setuptools missing in this environment (scripts/setup.sh installs it)")
    assert p.returncode == 0, p.stdout + p.stderr
    return str(target)


def run_installed(site, args, cwd, path_dirs=()):
    env = tool_env()
    env["PYTHONPATH"] = site  # the installed copy only, not the checkout
    env["PATH"] = os.pathsep.join(list(path_dirs) + [os.path.dirname(sys.executable), "/usr/bin",
                                                     "/bin"])
    return subprocess.run([sys.executable, "-m", "helixbench.sweep", *args], capture_output=True,
                          text=True, env=env, cwd=str(cwd), timeout=120)


def test_non_editable_install_has_the_commands(installed):
    names = sorted(os.listdir(os.path.join(installed, "bin")))
    assert names == ["helix-compare", "helix-export", "helix-report", "helix-study", "helix-sweep"]
    pkg = os.path.join(installed, "helixbench")
    assert os.path.isfile(os.path.join(pkg, "sweep.py")) and not os.path.islink(pkg)


def test_installed_sweep_finds_helix_bench_on_path(installed, tmp_path):
    bindir = tmp_path / "prefix" / "bin"
    bindir.mkdir(parents=True)
    exe = bindir / "helix-bench"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    grid = ["--np", "2", "--models", "tiny-gqa", "--layouts", "helix", "--seq", "64", "--batch",
            "1", "--out", str(tmp_path / "x.h5"), "--dry-run"]
    p = run_installed(installed, grid, tmp_path, [str(bindir)])
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"mpirun -np 2 {exe} decode --model tiny-gqa --layouts helix" in p.stdout
    # build/bin under the current directory comes before PATH
    local = tmp_path / "build" / "bin"
    local.mkdir(parents=True)
    (local / "helix-bench").write_text("#!/bin/sh\nexit 0\n")
    (local / "helix-bench").chmod(0o755)
    p = run_installed(installed, grid, tmp_path, [str(bindir)])
    assert p.returncode == 0 and "mpirun -np 2 build/bin/helix-bench decode" in p.stdout


def test_installed_sweep_without_a_binary_says_where_it_looked(installed, tmp_path):
    p = run_installed(installed, ["--models", "tiny-gqa", "--seq", "64", "--batch", "1",
                                  "--out", str(tmp_path / "x.h5")], tmp_path)
    assert p.returncode == 2
    assert "--binary: helix-bench not found in" in p.stderr and "PATH" in p.stderr
    assert not (tmp_path / "x.h5").exists()
