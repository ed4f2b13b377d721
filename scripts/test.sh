#!/usr/bin/env bash
# Sets up what is missing, builds, and runs every test: C++ unit tests, multi-rank exactness tests
# through mpiexec, command-line tests, the install and Slurm tests (CTest), the Python tests
# (pytest, in the environment of scripts/setup.sh), the bad-input matrix, the kill test, the CPU
# tests under AddressSanitizer and UndefinedBehaviorSanitizer, and a bounded run of the fuzzers.
# Prints the time of every step.
#   HELIX_FUZZ_SECONDS=N  seconds per fuzz target (default 20)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
start=$SECONDS
timings=()
step() {
  local name=$1 t=$SECONDS
  shift
  echo "== test.sh: $name"
  "$@"
  timings+=("$(printf '  %-34s %5d s' "$name" $((SECONDS - t)))")
}
step "setup" "$root/scripts/setup.sh"
step "build" "$root/scripts/build.sh" -DHELIX_WERROR=ON
source "$root/scripts/env.sh"
step "ctest" bash -c "cd '$root/build' && ctest -j '$HELIX_JOBS' --output-on-failure"
if [[ -d "$root/scripts/tests" ]]; then
  step "pytest" bash -c "cd '$root' && python3 -m pytest -q scripts/tests"
fi
step "bad-input matrix" python3 "$root/tests/bad_input/run_matrix.py" --bin "$root/build/bin" \
  --jobs "$HELIX_JOBS"
step "kill test" python3 "$root/tests/kill/kill_test.py" --bin "$root/build/bin" \
  --jobs "$HELIX_JOBS"
step "sanitized build" "$root/scripts/sanitize.sh" --build-only
step "sanitized tests" "$root/scripts/sanitize.sh"
step "sanitized matrix (1 case in 2)" env ASAN_OPTIONS=abort_on_error=1:detect_leaks=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 python3 "$root/tests/bad_input/run_matrix.py" \
  --bin "$root/build-sanitize/bin" --jobs "$HELIX_JOBS" --sample 2 --cpp-only
step "fuzzing" "$root/scripts/fuzz.sh" "${HELIX_FUZZ_SECONDS:-20}"
echo "test.sh: time per step"
printf '%s\n' "${timings[@]}"
echo "test.sh: all tests passed in $((SECONDS - start)) s"
