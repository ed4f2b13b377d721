#!/usr/bin/env bash
# Sets up what is missing, builds, and runs every test: C++ unit tests, multi-rank exactness tests
# through mpiexec, command-line tests (CTest), and the Python script tests (pytest).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
start=$SECONDS
"$root/scripts/setup.sh"
"$root/scripts/build.sh" -DHELIX_WERROR=ON
source "$root/scripts/env.sh"
(cd "$root/build" && ctest -j "$HELIX_JOBS" --output-on-failure)
if [[ -d "$root/scripts/tests" ]]; then
  (cd "$root" && python3 -m pytest -q scripts/tests)
fi
echo "test.sh: all tests passed in $((SECONDS - start)) s"
