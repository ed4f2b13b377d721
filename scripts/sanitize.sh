#!/usr/bin/env bash
# The CPU test suite under AddressSanitizer and UndefinedBehaviorSanitizer: configures
# build-sanitize (clang with libFuzzer when installed, otherwise the default compiler and the
# seeded mutation loop for the fuzz targets; CUDA off: its device code is checked by
# compute-sanitizer, scripts/gpu_validate.sh --sanitize), builds what the subset needs and runs
# it through CTest. Any sanitizer report aborts the process and fails its test.
#   scripts/sanitize.sh [--build-only] [--all] [extra ctest args]
# The default subset (--all: every CPU test) keeps CI within its time: the unit tests, the
# replay of the fuzz corpus, two decode exactness runs (GQA and MLA+MoE, 2 and 3 ranks), the KV
# transfer at 5 ranks, the cost model's validation against a trace, helix-micro's verification
# path, calibrate, and the command-line tests of bad input.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/env.sh"
build=${SANITIZE_BUILD_DIR:-$root/build-sanitize}
build_only=0 all=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --build-only) build_only=1; shift ;;
    --all) all=1; shift ;;
    *) break ;;
  esac
done
args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1"
      "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g1" -DHELIX_CUDA=OFF -DHELIX_WERROR=ON
      -DHELIX_SANITIZE=address,undefined)
if command -v clang++ >/dev/null && echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, long) { return 0; }' \
     | clang++ -x c++ -fsanitize=fuzzer - -o /dev/null 2>/dev/null; then
  args+=(-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DHELIX_LIBFUZZER=ON)
  echo "sanitize: clang with libFuzzer"
else
  echo "sanitize: $(${CXX:-c++} --version | head -1) (no libFuzzer: fuzz targets use the seeded mutation loop)"
fi
cmake -S "$root" -B "$build" "${args[@]}" >/dev/null
cmake --build "$build" -j "$HELIX_JOBS" --target helix-bench helix-micro helix_unit_tests \
  helix_micro_check fuzz_model_json fuzz_hardware_json fuzz_trace
[[ $build_only == 1 ]] && exit 0

asan=abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/sanitize/lsan.supp}
cd "$build"
# The unit tests and the replay of the fuzz corpus: no MPI job, leak checking on. (The paper
# reproduction's speed bound, 10 s for the full sweep, is a performance test the sanitizers'
# slowdown breaks; its sweep runs sanitized in the other design-space tests.)
ASAN_OPTIONS=${ASAN_OPTIONS:-$asan:detect_leaks=1} \
  ctest -j "$HELIX_JOBS" --output-on-failure -L "^(unit|fuzz)$" -E "^Reproduction\.HelixPaperTable$" "$@"
# Jobs launched through mpiexec: Open MPI's components are unloaded at MPI_Finalize, so the
# allocations they keep cannot be attributed or suppressed; leak checking is off there.
if [[ $all == 1 ]]; then
  subset=(-LE "^(unit|fuzz|gpu)$")
else
  subset=(-R "^(exact_tiny-gqa_np2_kvp2|exact_tiny-mla-moe_np3_default|kv_transfer_mla_np5|model_validate_trace|micro_verify_np2|calibrate_np2|(model_|disagg_|micro_)?bad_input_.*|kv_transfer_bad_.*)$")
fi
ASAN_OPTIONS=${ASAN_OPTIONS:-$asan:detect_leaks=0} \
  ctest -j "$HELIX_JOBS" --output-on-failure "${subset[@]}" "$@"
