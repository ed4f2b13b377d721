#!/usr/bin/env bash
# Installs what helix-bench needs to build and run on a Debian/Ubuntu machine: compilers, CMake,
# Open MPI, HDF5, GoogleTest, Google Benchmark, CLI11, nlohmann-json (Debian packages), the
# pinned Python packages of requirements.txt, and the helixbench package of the repository root
# (commands helix-report, helix-compare, helix-sweep). Installs only what is missing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages=(build-essential cmake git pkg-config libopenmpi-dev openmpi-bin libhdf5-dev
          libgtest-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev python3 python3-pip)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A toolchain already on PATH (cmake, g++, python3 from elsewhere) counts as installed.
filtered=()
for p in "${missing[@]}"; do
  case $p in
    cmake) command -v cmake >/dev/null || filtered+=("$p") ;;
    build-essential) command -v g++ >/dev/null && command -v make >/dev/null || filtered+=("$p") ;;
    python3) command -v python3 >/dev/null || filtered+=("$p") ;;
    python3-pip) python3 -m pip --version >/dev/null 2>&1 || filtered+=("$p") ;;
    git) command -v git >/dev/null || filtered+=("$p") ;;
    *) filtered+=("$p") ;;
  esac
done
if ((${#filtered[@]})); then
  echo "setup: installing Debian packages: ${filtered[*]}"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup: run as root or install: ${filtered[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${filtered[@]}"
else
  echo "setup: Debian packages present"
fi

if python3 - "$root/requirements.txt" <<'PY'
import sys
from importlib import metadata
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, version = line.split("==")
    try:
        if metadata.version(name) != version:
            sys.exit(1)
    except metadata.PackageNotFoundError:
        sys.exit(1)
PY
then
  echo "setup: Python packages present"
else
  echo "setup: installing Python packages from requirements.txt"
  python3 -m pip install -q -r "$root/requirements.txt" 2>&1 | grep -v "Running pip as the 'root' user" || true
  python3 -c "import h5py, numpy, matplotlib" || { echo "setup: Python packages failed to install" >&2; exit 1; }
fi

# The helixbench package, editable (the commands follow this checkout), without dependencies
# (pinned above) and without fetching build tools (setuptools comes with pip).
if python3 - "$root" <<'PY'
import os, sys
try:
    import helixbench
except ImportError:
    sys.exit(1)
sys.exit(0 if os.path.dirname(os.path.dirname(os.path.abspath(helixbench.__file__)))
         == os.path.abspath(sys.argv[1]) else 1)
PY
then
  echo "setup: helixbench package present"
else
  echo "setup: installing the helixbench package (helix-report, helix-compare, helix-sweep)"
  python3 -m pip install -q --no-deps --no-build-isolation -e "$root" 2>&1 \
    | grep -v "Running pip as the 'root' user" || true
  python3 -c "import helixbench" 2>/dev/null \
    || echo "setup: helixbench did not install; run the tools as PYTHONPATH=. python3 -m helixbench.<tool>" >&2
fi
