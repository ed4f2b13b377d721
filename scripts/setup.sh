#!/usr/bin/env bash
# Installs what helix-bench needs to build and run, and only what is missing:
#   1. system packages: compilers, CMake, Open MPI, HDF5, GoogleTest, Google Benchmark, CLI11,
#      nlohmann-json, Python 3 with venv. Debian and Ubuntu through apt-get; RHEL, Rocky, Alma and
#      Fedora through dnf (on EL, EPEL and CRB/PowerTools provide the libraries; setup says so
#      when it cannot find a package). Root or sudo is needed for this step only.
#   2. a Python virtual environment, .venv in the checkout (HELIX_VENV=DIR for another place),
#      made with the system's `python3 -m venv`: nothing is installed into the system Python, so
#      PEP 668 ("externally-managed-environment", Debian 12, Ubuntu 24.04) does not apply.
#   3. into it, the pinned packages of requirements.txt (wheels only, nothing compiled) and the
#      helixbench package of this checkout, editable: .venv/bin/helix-report, helix-compare,
#      helix-sweep and helix-export follow the checkout.
#   4. a pinned CMake wheel into the environment when the system CMake is older than this
#      project needs (Ubuntu 22.04 ships 3.22).
# Scripts that source scripts/env.sh put .venv/bin first on PATH; elsewhere run
# `source .venv/bin/activate`. HELIX_PYTHON=/path/to/python3.X picks the interpreter (3.9 or
# newer; default: python3 when new enough, else the newest python3.X found).
# Set HELIX_SKIP_SYSTEM_PACKAGES=1 to skip step 1 (no root; packages from modules or Spack).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${HELIX_VENV:-$root/.venv}
cmake_min=3.24      # cmake_minimum_required of CMakeLists.txt
cmake_pin=3.31.6    # wheel installed into the environment when the system CMake is older
die() { echo "setup: error: $*" >&2; exit 1; }

# ------------------------------------------------------------------------------------------
# 1. System packages
# ------------------------------------------------------------------------------------------
sudo_cmd() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "not root and no sudo: install as root: ${*: -1} (or set HELIX_SKIP_SYSTEM_PACKAGES=1)"
  fi
}

os_id="" os_like=""
if [[ -r /etc/os-release ]]; then
  # shellcheck source=/dev/null
  os_id=$(. /etc/os-release && echo "${ID:-}")
  # shellcheck source=/dev/null
  os_like=$(. /etc/os-release && echo "${ID_LIKE:-}")
fi

apt_packages() {
  local want=(build-essential cmake git pkg-config libopenmpi-dev openmpi-bin libhdf5-dev
              libgtest-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev python3 python3-venv)
  local missing=() p
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
    case $p in  # a toolchain already on PATH counts as installed
      cmake) command -v cmake >/dev/null && continue ;;
      build-essential) command -v g++ >/dev/null && command -v make >/dev/null && continue ;;
      git) command -v git >/dev/null && continue ;;
      python3) command -v python3 >/dev/null && continue ;;
      python3-venv) [[ -n ${HELIX_PYTHON:-} ]] && continue
                    python3 -c 'import ensurepip, venv' 2>/dev/null && continue ;;
    esac
    missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    echo "setup: system packages present"
    return
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd apt-get update -qq
  sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
}

dnf_packages() {
  local want=(gcc-c++ make cmake git pkgconf-pkg-config openmpi-devel hdf5-devel gtest-devel
              google-benchmark-devel cli11-devel json-devel python3)
  local missing=() p
  for p in "${want[@]}"; do
    rpm -q "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    echo "setup: system packages present"
    return
  fi
  echo "setup: installing RPM packages: ${missing[*]}"
  if [[ $os_id != fedora ]] && ! rpm -q epel-release >/dev/null 2>&1; then
    echo "setup: enabling EPEL and CRB (hdf5, gtest, google-benchmark, cli11 and json come from there)"
    sudo_cmd dnf install -y -q epel-release \
      || die "install epel-release (RHEL: https://docs.fedoraproject.org/en-US/epel/) and rerun"
    sudo_cmd dnf config-manager --set-enabled crb 2>/dev/null \
      || sudo_cmd dnf config-manager --set-enabled powertools 2>/dev/null || true
  fi
  sudo_cmd dnf install -y -q "${missing[@]}"
}

if [[ ${HELIX_SKIP_SYSTEM_PACKAGES:-0} == 1 ]]; then
  echo "setup: system packages skipped (HELIX_SKIP_SYSTEM_PACKAGES=1)"
elif command -v apt-get >/dev/null && command -v dpkg-query >/dev/null; then
  apt_packages
elif command -v dnf >/dev/null && command -v rpm >/dev/null; then
  dnf_packages
else
  echo "setup: neither apt-get nor dnf found ($os_id $os_like): install by hand a C++17 compiler," \
       "CMake >= $cmake_min, MPI, HDF5 (C), GoogleTest, Google Benchmark, CLI11, nlohmann-json" \
       "and Python >= 3.9 with venv" >&2
fi

# ------------------------------------------------------------------------------------------
# 2. Python virtual environment
# ------------------------------------------------------------------------------------------
py_ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; }
python=${HELIX_PYTHON:-}
if [[ -z $python ]]; then
  for cand in python3 python3.13 python3.12 python3.11 python3.10 python3.9; do
    if command -v "$cand" >/dev/null && py_ok "$cand"; then python=$cand; break; fi
  done
fi
if [[ -z $python && ${HELIX_SKIP_SYSTEM_PACKAGES:-0} != 1 ]] && command -v dnf >/dev/null; then
  echo "setup: no Python 3.9 or newer (EL8 ships 3.6): installing python3.11"
  sudo_cmd dnf install -y -q python3.11 && python=python3.11
fi
[[ -n $python ]] && py_ok "$python" \
  || die "no Python 3.9 or newer found (install python3.11, or set HELIX_PYTHON)"

if [[ ! -x $venv/bin/python3 ]] || ! py_ok "$venv/bin/python3"; then
  echo "setup: creating the Python environment $venv ($("$python" --version 2>&1))"
  rm -rf "$venv"
  "$python" -m venv "$venv" \
    || die "'$python -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)"
fi
vpy=$venv/bin/python3
pip=("$vpy" -m pip --disable-pip-version-check --no-input)

# ------------------------------------------------------------------------------------------
# 3. Pinned packages and the helixbench package
# ------------------------------------------------------------------------------------------
# Exit 0 when every requirement that applies to this interpreter is installed at its pin.
pins_present() {
  "$vpy" -I - "$root/requirements.txt" <<'PY'
import platform, re, sys
from importlib import metadata
ver = "%d.%d" % sys.version_info[:2]
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    spec, _, marker = line.partition(";")
    m = re.fullmatch(r'\s*python_version\s*(==|<|>=)\s*"([\d.]+)"\s*', marker) if marker else None
    if marker and not m:
        sys.exit(1)  # a marker this check does not know: let pip decide
    if m:
        want = tuple(int(x) for x in m.group(2).split("."))
        have = sys.version_info[:len(want)]
        if not {"==": have == want, "<": have < want, ">=": have >= want}[m.group(1)]:
            continue
    name, version = (s.strip() for s in spec.split("=="))
    try:
        if metadata.version(name) != version:
            sys.exit(1)
    except metadata.PackageNotFoundError:
        sys.exit(1)
PY
}
if pins_present; then
  echo "setup: pinned Python packages present in $venv"
else
  echo "setup: installing the pinned Python packages of requirements.txt into $venv"
  "${pip[@]}" install -q --only-binary=:all: -r "$root/requirements.txt" \
    || die "pip could not install requirements.txt (no network? a proxy needs HTTPS_PROXY)"
fi

# The package, editable: its commands follow this checkout. Reinstalled when the environment's
# helixbench is not this checkout's (a moved or second checkout).
if "$vpy" -I - "$root" <<'PY'
import os, sys
from importlib import util
spec = util.find_spec("helixbench")
sys.exit(0 if spec and spec.origin and os.path.samefile(
    os.path.dirname(os.path.dirname(spec.origin)), sys.argv[1]) else 1)
PY
then
  echo "setup: helixbench package present (editable, this checkout)"
else
  echo "setup: installing the helixbench package (helix-report, helix-compare, helix-sweep, helix-export)"
  "${pip[@]}" install -q --no-deps --no-build-isolation -e "$root" || die "pip install -e $root failed"
fi

# ------------------------------------------------------------------------------------------
# 4. CMake new enough
# ------------------------------------------------------------------------------------------
version_ge() {  # version_ge A B: A >= B
  local lowest
  lowest=$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)
  [[ $lowest == "$2" ]]
}
cmake_version() { "$1" --version 2>/dev/null | head -n 1 | awk '{print $3}'; }
have_cmake=""
command -v cmake >/dev/null && have_cmake=$(cmake_version cmake)
if [[ -x $venv/bin/cmake ]]; then
  echo "setup: CMake $(cmake_version "$venv/bin/cmake") in $venv"
elif [[ -n $have_cmake ]] && version_ge "$have_cmake" "$cmake_min"; then
  echo "setup: CMake $have_cmake"
else
  echo "setup: system CMake ${have_cmake:-missing} is older than $cmake_min: installing cmake==$cmake_pin into $venv"
  "${pip[@]}" install -q --only-binary=:all: "cmake==$cmake_pin" || die "pip could not install cmake"
fi
echo "setup: done; the tools: $venv/bin/helix-report, helix-compare, helix-sweep, helix-export"
