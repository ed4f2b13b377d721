#!/usr/bin/env bash
# On a machine with a Hopper GPU (H100, H200): the Hopper kernels of kernels/ (the wgmma + TMA MLA
# decode attention, the grouped MoE FFN) built, checked and measured in one go, then whole real
# layers against their roofline, the tables last (about 6 minutes on an H200, the build included).
#   scripts/gpu_kernels.sh [OUTDIR]          (default gpu-kernels-out)
# 1. builds helix_cuda_tests, helix-kernel-bench and helix-bench for sm_90a (warnings and
#    register spills are errors) into BUILD_DIR (default build-gpu; SKIP_BUILD=1 uses what is
#    there);
# 2. runs the GPU kernel tests (every attention configuration and the MoE FFN against their CPU
#    references on random data, outputs poisoned, per-head / per-token diagnostics on failure):
#    the attention and other tests in one process, each MoE test in its own (a kernel fault ends
#    only its own process), the MoE reference test once more without the programmatic launch
#    (HELIX_MOE_PDL=0: every unit from the queue); OUTDIR/tests.log, the failures repeated at the
#    end;
# 3. runs helix-kernel-bench, each part in its own process: the compiler's register and
#    local-memory figures of both kernels, the stream and bf16 GEMM ceilings (measured once, the
#    later processes reuse them), MLA attention (128 heads at B = 8, 128K and 1M tokens, against
#    0.60 of the GEMM rate; 32 and 16 heads at 1M against 0.85 of the stream ceiling; 128 heads at
#    B = 1, 256K; each beside the mma.sync kernel it replaces, outputs compared), then the MoE FFN
#    (DeepSeek-R1 shapes, EP 1 and 4, B = 1, 8, 32, one process each, against 0.75 of the stream
#    ceiling, its output checked against a per-expert cuBLAS recomputation):
#    OUTDIR/bench_*.json, OUTDIR/bench.log;
# 4. prints one table of every case that ran (OUTDIR/bench.table);
# 5. unless LAYERS=0: scripts/gpu_layers.sh OUTDIR/layers: helix-bench decode --backend cuda of
#    deepseek-r1 and llama-3.1-405b at N = 1 (S = 128K, B = 1 and 8, --no-verify, 5 iterations;
#    NP=4 adds N = 4), each printing rank 0's roofline table: every compute phase's measured time,
#    roofline and fraction, and the step's, with the phase that limits it.
# Environment: CUDA_ARCH (default 90a), ITERS (default 10), QUICK=1 (short shapes, a smoke run),
# HELIX_MOE_PDL=0 (every MoE test and case without the programmatic launch),
# TESTS (gtest filter of step 2, default every GPU kernel test), MLA_CASES and MOE_CASES (the
# helix-kernel-bench --mla-cases list, and the EP:BATCH cases run one per process), TIMEOUT_S
# (per process, default 300; the kernels also trap instead of hanging on a barrier that never
# completes).
# Exit code: 0 when the build, every test and every case ran and every output agreed with its
# reference (bars missed are listed in the table, not failed); 1 otherwise.
set -uo pipefail
out=${1:-gpu-kernels-out}
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
build=${BUILD_DIR:-build-gpu}
tmo=${TIMEOUT_S:-300}
mkdir -p "$out" || { echo "gpu_kernels: cannot create $out"; exit 1; }
rm -f "$out"/bench_*.json "$out"/tests.log "$out"/bench.log "$out"/bench.table
start=$SECONDS
failed=()
nvidia-smi -L || { echo "gpu_kernels: nvidia-smi failed: no usable NVIDIA GPU"; exit 1; }
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  echo "== build (sm_${CUDA_ARCH:-90a}) =="
  cmake -S . -B "$build" -DHELIX_CUDA=ON -DHELIX_WERROR=ON -DHELIX_BUILD_TESTS=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" >/dev/null &&
    cmake --build "$build" -j"$(nproc)" \
      --target helix_cuda_tests helix-kernel-bench helix-bench ||
    { echo "gpu_kernels: the CUDA build failed (see above)"; exit 1; }
  echo "gpu_kernels: built in $((SECONDS - start)) s"
fi
tests=$build/bin/helix_cuda_tests
bench=$build/bin/helix-kernel-bench
for exe in "$tests" "$bench"; do
  [[ -x $exe ]] || { echo "gpu_kernels: $exe missing"; exit 1; }
done

# Runs one test process (gtest filter $1, label $2, environment settings after), appending its
# log to tests.log.
run_tests() {
  local filter=$1 label=$2 rc
  shift 2
  echo "---- $label" >>"$out/tests.log"
  env "$@" timeout "$tmo" "$tests" --gtest_filter="$filter" --gtest_color=no \
    >>"$out/tests.log" 2>&1
  rc=$?
  ((rc == 124)) && failed+=("$label did not finish in $tmo s (a hang?)")
  ((rc == 0 || rc == 124)) || failed+=("$label exited $rc (failures and diagnostics in $out/tests.log)")
}

echo "== GPU kernel tests =="
t0=$SECONDS
filter=${TESTS:-Gpu.*}
if [[ $filter == *-* ]]; then rest="$filter:Gpu.MoeFfn*"; else rest="$filter:-Gpu.MoeFfn*"; fi
run_tests "$rest" "helix_cuda_tests (all but the MoE FFN)"
moe_tests=$("$tests" --gtest_list_tests --gtest_filter="$filter" 2>/dev/null |
  awk '/^[^ ]/ {suite=$1} /^  / {print suite $1}' | grep '^Gpu\.MoeFfn' || true)
for t in $moe_tests; do
  run_tests "$t" "$t"
done
if grep -qx 'Gpu.MoeFfnMatchesReference' <<<"$moe_tests"; then
  run_tests Gpu.MoeFfnMatchesReference "Gpu.MoeFfnMatchesReference (HELIX_MOE_PDL=0)" \
    HELIX_MOE_PDL=0
fi
grep -E '^\[ +(OK|FAILED|SKIPPED) +\] .*\([0-9]+ ms\)$' "$out/tests.log" | sed 's/^/  /'
grep -E '^helix-bench: .*(failed|error)' "$out/tests.log" | sed 's/^/  /'
echo "gpu_kernels: tests in $((SECONDS - t0)) s"

echo "== helix-kernel-bench =="
t0=$SECONDS
iters=(--iters "${ITERS:-10}")
mla=${MLA_CASES:-8:128:128K,8:128:1M,8:32:1M,8:16:1M,1:128:256K}
moe=${MOE_CASES:-1:1 1:8 1:32 4:1 4:8 4:32}
[[ ${QUICK:-0} == 1 ]] && { mla=${MLA_CASES:-8:128:64K,8:32:128K}; moe=${MOE_CASES:-4:1 4:8}; }
# Runs one bench process: label, JSON name, arguments.
run_bench() {
  local label=$1 json=$2 rc
  shift 2
  echo "---- $label" >>"$out/bench.log"
  timeout "$tmo" "$bench" "${iters[@]}" "$@" --json "$out/$json" >/dev/null 2>>"$out/bench.log"
  rc=$?
  ((rc == 0)) && return
  if ((rc == 124)); then
    failed+=("helix-kernel-bench $label did not finish in $tmo s")
  elif ((rc == 1)) && [[ -f $out/$json ]]; then
    failed+=("helix-kernel-bench $label: an output disagrees with its reference (MISMATCH in the table)")
  else
    failed+=("helix-kernel-bench $label exited $rc (see $out/bench.log)")
  fi
}
run_bench "attention" bench_attn.json --kernels attn --mla-cases "$mla"
ceil=()
[[ -f $out/bench_attn.json ]] && ceil=(--ceilings-from "$out/bench_attn.json")
for c in $moe; do
  run_bench "MoE EP:B $c" "bench_moe_${c/:/_}.json" --kernels moe --moe-cases "$c" "${ceil[@]}"
done
grep -v '^---- ' "$out/bench.log" | grep -vE '^helix-kernel-bench: .*(SMs|compute capability)' |
  awk '!(/registers\/thread|ceilings/ && seen[$0]++)'
echo "gpu_kernels: benchmarks in $((SECONDS - t0)) s"
jsons=()
[[ -f $out/bench_attn.json ]] && jsons+=("$out/bench_attn.json")
for c in $moe; do
  [[ -f $out/bench_moe_${c/:/_}.json ]] && jsons+=("$out/bench_moe_${c/:/_}.json")
done
if ((${#jsons[@]})); then
  "$bench" --table "${jsons[@]}" >"$out/bench.table"
fi

if [[ ${LAYERS:-1} != 0 ]]; then
  echo "== real layers against their roofline =="
  t0=$SECONDS
  SKIP_BUILD=1 BUILD_DIR=$build scripts/gpu_layers.sh "$out/layers" >"$out/layers.log" 2>&1 ||
    failed+=("scripts/gpu_layers.sh (see $out/layers.log)")
  echo "gpu_kernels: layers in $((SECONDS - t0)) s"
fi

echo "== failures =="
if ((${#failed[@]})); then
  grep -B2 -A12 -E 'Failure|rows with relative error|FAILED|failed at' "$out/tests.log" | head -80
fi
for f in "${failed[@]}"; do echo "gpu_kernels: FAILED: $f"; done
echo "gpu_kernels: outputs in $out ($((SECONDS - start)) s)"
echo "== table =="
cat "$out/bench.table" 2>/dev/null
if [[ -f $out/layers.log ]]; then
  echo "== layers =="
  sed -n '/^== /,$p' "$out/layers.log"
fi
((${#failed[@]} == 0))
