#!/usr/bin/env bash
# Fuzzes every parser of user files for a bounded time: the fuzz targets of build-sanitize
# (model JSON, hardware profiles, decode traces for `model --validate`; libFuzzer when built with
# clang, the seeded mutation loop otherwise; AddressSanitizer and UndefinedBehaviorSanitizer on)
# starting from the committed corpus under tests/fuzz/corpus, and the Python tools' readers
# (tests/fuzz/fuzz_python_tools.py). New inputs go to a scratch folder; the committed corpus is
# never changed. A crash, a sanitizer report, a hang or an unexpected exception fails the run and
# leaves the input in fuzz-out/.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 30; FUZZ_SEED=N for another seed)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/env.sh"
seconds=${1:-30}
seed=${FUZZ_SEED:-1}
build=${SANITIZE_BUILD_DIR:-$root/build-sanitize}
out=$root/fuzz-out
rm -rf "$out"
mkdir -p "$out"
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
pids=()
for t in model_json hardware_json trace; do
  exe=$build/bin/fuzz_$t
  [[ -x $exe ]] || { echo "fuzz: $exe missing (run scripts/sanitize.sh --build-only)" >&2; exit 2; }
  mkdir -p "$out/$t/new"
  # Two targets at a time on two cores: each gets its share of the time budget.
  (cd "$out/$t" && "$exe" -max_total_time="$seconds" -seed="$seed" -timeout=20 -rss_limit_mb=4096 \
     -print_final_stats=1 -artifact_prefix="$out/$t/" new "$root/tests/fuzz/corpus/$t" \
     >"$out/$t/log" 2>&1; echo $? >"$out/$t/rc") &
  pids+=($!)
  if (( ${#pids[@]} >= HELIX_JOBS )); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
(cd "$out" && python3 "$root/tests/fuzz/fuzz_python_tools.py" --seconds "$seconds" --seed "$seed" \
   --bin "$root/build/bin" >"$out/python.log" 2>&1; echo $? >"$out/python.rc") &
pids+=($!)
wait "${pids[@]}"
for t in model_json hardware_json trace; do
  rc=$(cat "$out/$t/rc")
  runs=$(grep -Eo "stat::number_of_executed_units: *[0-9]+|[0-9]+ inputs" "$out/$t/log" | grep -Eo "[0-9]+" | tail -1)
  echo "fuzz: $t: ${runs:-?} inputs in ${seconds} s, exit $rc"
  if [[ $rc != 0 ]]; then status=1; tail -30 "$out/$t/log"; fi
done
tail -1 "$out/python.log"
if [[ $(cat "$out/python.rc") != 0 ]]; then status=1; tail -25 "$out/python.log"; fi
[[ $status == 0 ]] && rm -rf "$out"
exit $status
