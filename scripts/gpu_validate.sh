#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds the CUDA backend and runs the GPU tests (every CUDA
# kernel against its CPU reference; the four layouts on the CUDA backend against the single-rank
# reference at 1, 2 and 4 ranks; the randomized exactness sweep of scripts/gpu_exact_sweep.py at
# 1 rank (label gpu) and at 2 and 4 ranks with one GPU each (label gpu-multi, skipped when fewer
# GPUs are visible); the KV transfer from a TP prefill layout to a Helix decode layout at 2 and 4
# ranks, every block checked). Usage: scripts/gpu_validate.sh [extra ctest args], e.g.
# scripts/gpu_validate.sh -R gpu_kv_transfer for the KV transfer alone.
#
# scripts/gpu_validate.sh --sanitize: the GPU code under compute-sanitizer instead, once per tool
# (SANITIZE_TOOLS, default "memcheck racecheck"; synccheck and initcheck also accepted; memcheck
# with leak checking unless SANITIZE_LEAKS=0):
#   - the CUDA tests (helix_cuda_tests), one process per test, so that a fault or a slow test
#     ends only its own entry (SANITIZE_GTEST_FILTER narrows them, default every test);
#   - helix-bench decode of the four layouts on both test models at 1 and 2 ranks, and at 1 rank
#     with --cuda-graph (small sizes: the tools slow kernels down by orders of magnitude);
#   - the KV transfer at 2 ranks; helix-micro's attention and combine cases with verification.
# Every rank runs under the tool with its own log. Each entry is bounded by SANITIZE_TIMEOUT_S
# (default 600 s; a timeout is a failure). SANITIZE_ONLY=REGEX runs only the entries whose name
# matches. The script ends with one table (tool, entry, ranks, result, errors the tool counted,
# seconds) and one line of totals, also in $BUILD_DIR/sanitizer-logs/summary.txt.
# Results: clean; ERRORS (the tool reported errors: memory, leaks, races); TIMEOUT; FAILED (the
# program under the tool failed without a tool error: a test failure or a crash); NO-SUMMARY (no
# tool summary in the logs: the tool did not run to the end); SKIPPED (a CUDA test skipped itself:
# no usable GPU).
# Exit code (--sanitize): 0 every entry clean; 1 any other result; 2 setup problem (no GPU, no
# compute-sanitizer, the build failed).
# Environment: BUILD_DIR (default build-gpu), CUDA_ARCH (default 90a: Hopper with wgmma),
# SKIP_BUILD=1 (use what is in BUILD_DIR).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${BUILD_DIR:-build-gpu}
sanitize=0
if [[ ${1:-} == --sanitize ]]; then
  sanitize=1
  shift
fi
nvidia-smi -L || { echo "gpu_validate: nvidia-smi failed: no usable NVIDIA GPU" >&2; exit 2; }
configure() {
  cmake -S . -B "$build" -DHELIX_CUDA=ON -DHELIX_WERROR=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" >/dev/null
}
if [[ $sanitize == 0 ]]; then
  configure
  cmake --build "$build" -j"$(nproc)" --target helix-bench helix_cuda_tests
  ctest --test-dir "$build" -L gpu --output-on-failure "$@"
  exit 0
fi

((${#@} == 0)) || { echo "gpu_validate --sanitize: takes no further arguments (got: $*)" >&2; exit 2; }
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  { configure && cmake --build "$build" -j"$(nproc)" --target helix-bench helix-micro \
      helix_cuda_tests; } || { echo "gpu_validate --sanitize: the CUDA build failed" >&2; exit 2; }
fi
source scripts/env.sh
cs=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
[[ -x $cs ]] || { echo "gpu_validate: compute-sanitizer not found (set COMPUTE_SANITIZER)" >&2; exit 2; }
bin=$build/bin
for exe in helix-bench helix-micro helix_cuda_tests; do
  [[ -x $bin/$exe ]] || { echo "gpu_validate --sanitize: $bin/$exe missing" >&2; exit 2; }
done
logs=$build/sanitizer-logs
rm -rf "$logs"
mkdir -p "$logs"
tmo=${SANITIZE_TIMEOUT_S:-600}
only=${SANITIZE_ONLY:-.}
echo "gpu_validate --sanitize: $("$cs" --version | grep -m1 -i version), tools: ${SANITIZE_TOOLS:-memcheck racecheck}, at most $tmo s per entry"
rows=()
bad=0
# entry TOOL NAME NP COMMAND...: every rank under the tool, one log per rank, bounded in time.
entry() {
  local tool=$1 name=$2 np=$3
  shift 3
  [[ $name =~ $only ]] || return 0
  local extra=()
  [[ $tool == memcheck && ${SANITIZE_LEAKS:-1} == 1 ]] && extra=(--leak-check full)
  [[ $tool == racecheck ]] && extra=(--racecheck-report all)
  local launch=()
  ((np > 1)) && launch=(mpirun -np "$np")
  local base=$logs/$tool.$name t0=$SECONDS rc=0
  echo "== compute-sanitizer --tool $tool: $name ($np rank(s))"
  timeout -k 30 "$tmo" "${launch[@]}" "$cs" --tool "$tool" "${extra[@]}" --error-exitcode 99 \
    --print-limit 50 --log-file "$base.%p.log" "$@" >"$base.out" 2>&1 || rc=$?
  local secs=$((SECONDS - t0)) errors=0 summaries=0 n
  # The tool's own summaries, one per rank: "ERROR SUMMARY: N errors" (memcheck, synccheck,
  # initcheck) and "RACECHECK SUMMARY: H hazards displayed (N errors, W warnings)".
  while read -r n; do
    summaries=$((summaries + 1))
    errors=$((errors + n))
  done < <(cat "$base".*.log 2>/dev/null |
    sed -nE 's/.*ERROR SUMMARY: ([0-9]+) error.*/\1/p; s/.*RACECHECK SUMMARY: .*\(([0-9]+) error.*/\1/p')
  local result=clean
  if ((rc == 124 || rc == 137)); then
    result=TIMEOUT
  elif ((errors > 0 || rc == 99)); then
    result=ERRORS
  elif ((rc != 0)); then
    result="FAILED(exit $rc)"
  elif ((summaries < np)); then
    result=NO-SUMMARY
  elif grep -q "^\[  SKIPPED \]" "$base.out"; then
    result=SKIPPED  # a GPU test that did not run (no usable GPU?)
  fi
  [[ $result == clean ]] || bad=$((bad + 1))
  echo "   $result, $errors error(s), $secs s"
  rows+=("$(printf '%-10s %-44s %5s %-16s %7s %6s' "$tool" "$name" "$np" "$result" "$errors" "$secs")")
}

# The CUDA tests, one process each (names from the binary; listing them needs no GPU).
mapfile -t gtests < <("$bin/helix_cuda_tests" --gtest_list_tests \
  --gtest_filter="${SANITIZE_GTEST_FILTER:-*}" |
  awk '/^[^ ]/ && /\.$/ { s = $1 } /^  [^ ]/ { print s $1 }')
((${#gtests[@]})) || { echo "gpu_validate --sanitize: helix_cuda_tests lists no tests" >&2; exit 2; }
small=(--seq 37,300 --batch 1,3 --kv-block 4 --decode-steps 3 --iters 1 --warmup 0 --quiet)
t_all=$SECONDS
for tool in ${SANITIZE_TOOLS:-memcheck racecheck}; do
  for t in "${gtests[@]}"; do
    entry "$tool" "cuda_test.${t//\//_}" 1 "$bin/helix_cuda_tests" --gtest_filter="$t" \
      --gtest_brief=1
  done
  for model in tiny-gqa tiny-mla-moe; do
    for np in 1 2; do
      entry "$tool" "decode_${model}_np$np" "$np" "$bin/helix-bench" decode --backend cuda \
        --model "$model" "${small[@]}"
    done
    entry "$tool" "decode_${model}_np1_cuda_graph" 1 "$bin/helix-bench" decode --backend cuda \
      --model "$model" --cuda-graph "${small[@]}"
  done
  entry "$tool" kv_transfer_np2 2 "$bin/helix-bench" kv-transfer --backend cuda \
    --model tiny-mla-moe --prefill-ranks 1 --kvp 1 --tpa 1 --tokens 999 --kv-block 7 --layers 2 \
    --iters 1 --warmup 0 --quiet
  entry "$tool" micro_attn_combine 1 "$bin/helix-micro" --backend cuda --quick --verify \
    --models tiny-gqa,tiny-mla-moe --stream-bytes 64M --max-kv-bytes 4M --max-weight-bytes 4M \
    --iters 1 --coll-iters 1 --warmup 0 --benchmark_filter='attn|lse_combine' \
    --collectives all_reduce
done
{
  printf '%-10s %-44s %5s %-16s %7s %6s\n' tool entry ranks result errors s
  printf '%s\n' "${rows[@]}"
  echo "gpu_validate --sanitize: ${#rows[@]} entries, $((${#rows[@]} - bad)) clean, $bad not" \
    "clean, $((SECONDS - t_all)) s; logs in $logs"
} | tee "$logs/summary.txt"
((${#rows[@]} > 0)) || { echo "gpu_validate --sanitize: SANITIZE_ONLY='$only' selects nothing" >&2; exit 2; }
((bad == 0)) || exit 1
