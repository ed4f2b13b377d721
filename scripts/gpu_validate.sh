#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds the CUDA backend and runs the GPU tests (every CUDA
# kernel against its CPU reference; the four layouts on the CUDA backend against the single-rank
# reference at 1, 2 and 4 ranks; the randomized exactness sweep of scripts/gpu_exact_sweep.py at
# 1 rank (label gpu) and at 2 and 4 ranks with one GPU each (label gpu-multi, skipped when fewer
# GPUs are visible); the KV transfer from a TP prefill layout to a Helix decode layout at 2 and 4
# ranks, every block checked). Usage: scripts/gpu_validate.sh [extra ctest args], e.g.
# scripts/gpu_validate.sh -R gpu_kv_transfer for the KV transfer alone.
#
# scripts/gpu_validate.sh --sanitize: the same GPU code under compute-sanitizer instead, once per
# tool (memcheck with leak checking, then racecheck; SANITIZE_TOOLS="memcheck racecheck" by
# default, synccheck and initcheck also accepted): the CUDA kernel tests, the four decode layouts
# on both test models at 1 and 2 ranks (small sizes: the tools slow kernels down by orders of
# magnitude), the KV transfer at 2 ranks, and helix-micro's attention and combine cases with
# their verification. Every rank runs under the tool with its own log; any error the tool reports
# (or a non-zero exit) fails the script, and the logs stay in $BUILD_DIR/sanitizer-logs.
# Environment: BUILD_DIR (default build-gpu), CUDA_ARCH (default 90a: Hopper with wgmma).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${BUILD_DIR:-build-gpu}
sanitize=0
if [[ ${1:-} == --sanitize ]]; then
  sanitize=1
  shift
fi
nvidia-smi -L
cmake -S . -B "$build" -DHELIX_CUDA=ON -DHELIX_WERROR=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" >/dev/null
if [[ $sanitize == 0 ]]; then
  cmake --build "$build" -j"$(nproc)" --target helix-bench helix_cuda_tests
  ctest --test-dir "$build" -L gpu --output-on-failure "$@"
  exit 0
fi

cmake --build "$build" -j"$(nproc)" --target helix-bench helix-micro helix_cuda_tests
source scripts/env.sh
cs=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
[[ -x $cs ]] || { echo "gpu_validate: compute-sanitizer not found (set COMPUTE_SANITIZER)" >&2; exit 2; }
logs=$build/sanitizer-logs
rm -rf "$logs"
mkdir -p "$logs"
bin=$build/bin
failed=()
# run TOOL NAME NP COMMAND...: every rank under the tool, one log per rank.
run() {
  local tool=$1 name=$2 np=$3
  shift 3
  local extra=()
  [[ $tool == memcheck ]] && extra=(--leak-check full)
  [[ $tool == racecheck ]] && extra=(--racecheck-report all)
  local launch=()
  ((np > 1)) && launch=(mpirun -np "$np")
  echo "== compute-sanitizer --tool $tool: $name"
  if ! "${launch[@]}" "$cs" --tool "$tool" "${extra[@]}" --error-exitcode 99 --print-limit 50 \
       --log-file "$logs/$tool.$name.%p.log" "$@" >"$logs/$tool.$name.out" 2>&1; then
    failed+=("$tool $name (exit code; see $logs/$tool.$name.*)")
    return
  fi
  # The tool's own summaries, in case an error did not reach the exit code.
  if cat "$logs/$tool.$name".*.log 2>/dev/null |
     grep -qE "ERROR SUMMARY: [1-9]|RACECHECK SUMMARY: .*\(([1-9][0-9]*) errors?"; then
    failed+=("$tool $name (errors reported; see $logs/$tool.$name.*)")
  fi
}
small=(--seq 37,300 --batch 1,3 --kv-block 4 --decode-steps 3 --iters 1 --warmup 0 --quiet)
for tool in ${SANITIZE_TOOLS:-memcheck racecheck}; do
  run "$tool" cuda_kernels 1 "$bin/helix_cuda_tests"
  for model in tiny-gqa tiny-mla-moe; do
    for np in 1 2; do
      run "$tool" "decode_${model}_np$np" "$np" "$bin/helix-bench" decode --backend cuda \
        --model "$model" "${small[@]}"
    done
  done
  run "$tool" kv_transfer_np2 2 "$bin/helix-bench" kv-transfer --backend cuda --model tiny-mla-moe \
    --prefill-ranks 1 --kvp 1 --tpa 1 --tokens 999 --kv-block 7 --layers 2 --iters 1 --warmup 0 \
    --quiet
  run "$tool" micro 1 "$bin/helix-micro" --backend cuda --quick --verify --models tiny-gqa,tiny-mla-moe \
    --stream-bytes 64M --max-kv-bytes 4M --max-weight-bytes 4M --iters 1 --coll-iters 1 --warmup 0 \
    --benchmark_filter='attn|lse_combine' --collectives all_reduce
done
if ((${#failed[@]})); then
  printf 'gpu_validate --sanitize: FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "gpu_validate --sanitize: no errors from ${SANITIZE_TOOLS:-memcheck racecheck} (logs in $logs)"
