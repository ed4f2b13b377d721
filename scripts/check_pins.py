#!/usr/bin/env python3
"""Checks that requirements.txt resolves to wheels (nothing to compile) for every Python version
the project claims, on x86_64 and aarch64 Linux, without installing anything:

  scripts/check_pins.py [--python 3.9,3.10,3.11,3.12,3.13] [--arch x86_64,aarch64]

For each version the pins are first reduced by their `python_version` markers (pip evaluates
markers of a requirements file against the interpreter it runs in, not the --python-version
target), then `pip install --dry-run --only-binary=:all: --python-version V --platform ...
--report` resolves them with their dependencies against the package index (PyPI metadata only,
no wheel downloads). Needs network access to the index; not run by CI (about a minute).
Exit code 0 when every combination resolves, 1 otherwise."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
except ImportError:  # pip vendors packaging
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pins_for(path, version, arch):
    env = dict(default_environment(), python_version=version, python_full_version=version + ".0",
               platform_machine=arch, sys_platform="linux", platform_system="Linux")
    out = []
    for line in open(path):
        line = line.split("#")[0].strip()
        if not line:
            continue
        r = Requirement(line)
        if r.marker is None or r.marker.evaluate(env):
            r.marker = None
            out.append(str(r))
    return out


def resolve(pins, version, arch):
    with tempfile.TemporaryDirectory() as tmp:
        req = os.path.join(tmp, "req.txt")
        with open(req, "w") as f:
            f.write("\n".join(pins) + "\n")
        report = os.path.join(tmp, "report.json")
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
               "--disable-pip-version-check", "--only-binary=:all:", "--implementation", "cp",
               "--python-version", version, "--target", os.path.join(tmp, "t"),
               "--report", report, "-r", req]
        for tag in ("manylinux2014", "manylinux_2_17", "manylinux_2_28"):
            cmd += ["--platform", f"{tag}_{arch}"]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            return None, (p.stderr.strip().splitlines() or ["pip failed"])[-1]
        with open(report) as f:
            names = [f"{i['metadata']['name']}=={i['metadata']['version']}"
                     for i in json.load(f)["install"]]
        return names, ""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default="3.9,3.10,3.11,3.12,3.13")
    ap.add_argument("--arch", default="x86_64,aarch64")
    ap.add_argument("--requirements", default=os.path.join(REPO, "requirements.txt"))
    opts = ap.parse_args(argv)
    failed = 0
    for version in opts.python.split(","):
        for arch in opts.arch.split(","):
            pins = pins_for(opts.requirements, version, arch)
            names, err = resolve(pins, version, arch)
            if names is None:
                failed += 1
                print(f"Python {version} {arch}: FAILED: {err}")
            else:
                print(f"Python {version} {arch}: {len(names)} wheels: {' '.join(pins)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
