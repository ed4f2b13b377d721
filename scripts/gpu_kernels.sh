#!/usr/bin/env bash
# On a machine with a Hopper GPU (H100, H200): the Hopper kernels of kernels/ (the wgmma + TMA MLA
# decode attention, the grouped MoE FFN) built, checked and measured in one go, the table last.
#   scripts/gpu_kernels.sh [OUTDIR]          (default gpu-kernels-out)
# 1. builds helix_cuda_tests and helix-kernel-bench for sm_90a (warnings and register spills are
#    errors) into BUILD_DIR (default build-gpu; SKIP_BUILD=1 uses what is there);
# 2. runs the GPU kernel tests (every attention configuration and the MoE FFN against their CPU
#    references on random data, outputs poisoned, per-head / per-token diagnostics on failure):
#    OUTDIR/tests.log, the failures repeated at the end;
# 3. runs helix-kernel-bench: the compiler's register and local-memory figures of both kernels,
#    the stream and bf16 GEMM ceilings, then MLA attention (128 heads at B = 8 against 0.60 of the
#    GEMM rate, 16 and 32 heads against 0.85 of the stream ceiling, each beside the mma.sync
#    kernel it replaces, outputs compared) and the MoE FFN (DeepSeek-R1 shapes, EP 1 and 4,
#    B = 1, 8, 32, against 0.75 of the stream ceiling): OUTDIR/bench.json, OUTDIR/bench.log;
# 4. prints the table last.
# Environment: CUDA_ARCH (default 90a), ITERS (default 10), QUICK=1 (short shapes, a smoke run),
# TESTS (gtest filter of step 2, default every GPU kernel test), TIMEOUT_S (per step, default 600;
# the kernels also trap instead of hanging on a barrier that never completes).
# Exit code: 0 when the build, every test and every case ran and the attention kernels agree
# (bars missed are listed in the table, not failed); 1 otherwise.
set -uo pipefail
out=${1:-gpu-kernels-out}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${BUILD_DIR:-build-gpu}
mkdir -p "$out" || { echo "gpu_kernels: cannot create $out"; exit 1; }
start=$SECONDS
failed=()
nvidia-smi -L || { echo "gpu_kernels: nvidia-smi failed: no usable NVIDIA GPU"; exit 1; }
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  echo "== build (sm_${CUDA_ARCH:-90a}) =="
  cmake -S . -B "$build" -DHELIX_CUDA=ON -DHELIX_WERROR=ON -DHELIX_BUILD_TESTS=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" >/dev/null &&
    cmake --build "$build" -j"$(nproc)" --target helix_cuda_tests helix-kernel-bench ||
    { echo "gpu_kernels: the CUDA build failed (see above)"; exit 1; }
  echo "gpu_kernels: built in $((SECONDS - start)) s"
fi
for exe in helix_cuda_tests helix-kernel-bench; do
  [[ -x $build/bin/$exe ]] || { echo "gpu_kernels: $build/bin/$exe missing"; exit 1; }
done

echo "== GPU kernel tests =="
t0=$SECONDS
timeout "${TIMEOUT_S:-600}" "$build/bin/helix_cuda_tests" --gtest_filter="${TESTS:-Gpu.*}" \
  --gtest_color=no >"$out/tests.log" 2>&1
rc=$?
grep -E '^\[ +(OK|FAILED|SKIPPED) +\]' "$out/tests.log" | sed 's/^/  /'
((rc == 124)) && failed+=("helix_cuda_tests did not finish in ${TIMEOUT_S:-600} s (a hang?)")
((rc == 0 || rc == 124)) ||
  failed+=("helix_cuda_tests exited $rc (failures and diagnostics in $out/tests.log)")
echo "gpu_kernels: tests in $((SECONDS - t0)) s"

echo "== helix-kernel-bench =="
bench_args=(--iters "${ITERS:-10}" --json "$out/bench.json")
[[ ${QUICK:-0} == 1 ]] && bench_args+=(--quick)
timeout "${TIMEOUT_S:-600}" "$build/bin/helix-kernel-bench" "${bench_args[@]}" \
  >"$out/bench.table" 2>"$out/bench.log"
rc=$?
cat "$out/bench.log"
((rc == 0)) || failed+=("helix-kernel-bench exited $rc (1: the attention kernels disagree; 124: timeout)")

echo "== failures =="
if ((${#failed[@]})); then
  grep -B2 -A12 -E 'Failure|rows with relative error|FAILED' "$out/tests.log" | head -80
fi
for f in "${failed[@]}"; do echo "gpu_kernels: FAILED: $f"; done
echo "gpu_kernels: outputs in $out ($((SECONDS - start)) s)"
echo "== table =="
cat "$out/bench.table" 2>/dev/null
((${#failed[@]} == 0))
