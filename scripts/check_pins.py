#!/usr/bin/env python3
"""Checks that requirements.txt resolves to wheels (nothing to compile) for every Python version
the project claims, on x86_64 and aarch64 Linux, without installing anything:

  scripts/check_pins.py [--python 3.9,3.10,3.11,3.12,3.13] [--arch x86_64,aarch64] [--download DIR]

For each version the pins are first reduced by their `python_version` markers (pip evaluates
markers of a requirements file against the interpreter it runs in, not the --python-version
target), then `pip install --dry-run --only-binary=:all: --python-version V --platform ...
--report` resolves them with their dependencies against the package index (PyPI metadata only,
no wheel downloads). With --download DIR the wheels are fetched instead, with `pip download
--only-binary=:all: --python-version V --platform ...` into DIR/V-ARCH (about 140 MB per
combination). Needs network access to the index; not run by CI (two to three minutes without
--download).
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


def resolve(pins, version, arch, download=None):
    """The distributions the pins resolve to (name==version, or the wheel files downloaded into
    `download`), and an error line when they do not resolve."""
    with tempfile.TemporaryDirectory() as tmp:
        req = os.path.join(tmp, "req.txt")
        with open(req, "w") as f:
            f.write("\n".join(pins) + "\n")
        report = os.path.join(tmp, "report.json")
        common = ["--disable-pip-version-check", "--only-binary=:all:", "--implementation", "cp",
                  "--python-version", version, "-r", req]
        for tag in ("manylinux2014", "manylinux_2_17", "manylinux_2_28"):
            common += ["--platform", f"{tag}_{arch}"]
        if download:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "-d", download] + common
        else:
            cmd = [sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
                   "--target", os.path.join(tmp, "t"), "--report", report] + common
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            return None, (p.stderr.strip().splitlines() or ["pip failed"])[-1]
        if download:
            return sorted(f for f in os.listdir(download) if f.endswith(".whl")), ""
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
    ap.add_argument("--download", metavar="DIR",
                    help="download the wheels into DIR/VERSION-ARCH (pip download) instead of "
                         "resolving their metadata only")
    opts = ap.parse_args(argv)
    if not os.path.isfile(opts.requirements):
        print(f"check_pins.py: no such file: {opts.requirements}", file=sys.stderr)
        return 2
    failed = 0
    for version in opts.python.split(","):
        for arch in opts.arch.split(","):
            pins = pins_for(opts.requirements, version, arch)
            into = None
            if opts.download:
                into = os.path.join(opts.download, f"{version}-{arch}")
                os.makedirs(into, exist_ok=True)
            names, err = resolve(pins, version, arch, into)
            if names is None:
                failed += 1
                print(f"Python {version} {arch}: FAILED: {err}", flush=True)
            elif into:
                print(f"Python {version} {arch}: {len(names)} wheels downloaded into {into}: "
                      f"{' '.join(names)}", flush=True)
            else:
                print(f"Python {version} {arch}: {len(names)} wheels: {' '.join(pins)}",
                      flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
