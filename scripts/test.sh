#!/usr/bin/env bash
# Sets up what is missing, builds, and runs every test: C++ unit tests, multi-rank exactness tests
# through mpiexec, command-line tests, the install and Slurm tests (CTest), and the Python tests
# (pytest, in the environment of scripts/setup.sh). Prints the time of each stage.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
start=$SECONDS
"$root/scripts/setup.sh"
t_setup=$((SECONDS - start))
"$root/scripts/build.sh" -DHELIX_WERROR=ON
t_build=$((SECONDS - start - t_setup))
source "$root/scripts/env.sh"
(cd "$root/build" && ctest -j "$HELIX_JOBS" --output-on-failure)
t_ctest=$((SECONDS - start - t_setup - t_build))
(cd "$root" && python3 -m pytest -q scripts/tests)
t_pytest=$((SECONDS - start - t_setup - t_build - t_ctest))
echo "test.sh: all tests passed in $((SECONDS - start)) s (setup $t_setup s, build $t_build s," \
     "ctest $t_ctest s, pytest $t_pytest s)"
