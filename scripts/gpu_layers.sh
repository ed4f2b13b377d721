#!/usr/bin/env bash
# On a machine with Hopper GPUs: whole decode layers of the real models on the CUDA backend, each
# compute phase against its roofline (the bytes and FLOPs it must move against the read-only
# stream and the bf16 GEMM rate measured at the start of the same job), in a few minutes.
#   scripts/gpu_layers.sh [OUTDIR]          (default gpu-layers-out)
# For each of MODELS (default deepseek-r1 llama-3.1-405b): helix-bench decode --backend cuda at
# N = 1 (S = SEQ, B = BATCH, --no-verify, ITERS timed iterations after 2 warm-ups), the phase
# table and rank 0's roofline table (measured_us, roofline_us with * for compute-bound, fraction,
# per compute phase and for the step, with the limiting phase); with NP=4 (4 GPUs) also N = 4
# over mpirun (scripts/launch/mpirun.sh), layouts tp and helix. Files: OUTDIR/<model>_np<N>.h5
# (traces with every rank's roofline) and .log (the tables); the roofline tables are printed last.
# Environment: BUILD_DIR (default build-gpu), SKIP_BUILD=1 (use what is there), CUDA_ARCH
# (default 90a), MODELS, SEQ (default 128K), BATCH (default 1,8), ITERS (default 5), NP (unset:
# N = 1 only), DECODE_ARGS (more decode options, e.g. --cuda-graph), TIMEOUT_S (per job, default
# 600).
# Exit code: 0 when every job finished and its trace holds a roofline; 1 otherwise.
set -uo pipefail
out=${1:-gpu-layers-out}
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source scripts/env.sh
build=${BUILD_DIR:-build-gpu}
tmo=${TIMEOUT_S:-600}
mkdir -p "$out" || { echo "gpu_layers: cannot create $out"; exit 1; }
nvidia-smi -L || { echo "gpu_layers: nvidia-smi failed: no usable NVIDIA GPU"; exit 1; }
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  cmake -S . -B "$build" -DHELIX_CUDA=ON -DHELIX_WERROR=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" >/dev/null &&
    cmake --build "$build" -j"$(nproc)" --target helix-bench ||
    { echo "gpu_layers: the CUDA build failed (see above)"; exit 1; }
fi
bin=$build/bin/helix-bench
[[ -x $bin ]] || { echo "gpu_layers: $bin missing"; exit 1; }
failed=()
jobs=("1")
[[ -n ${NP:-} && ${NP} != 1 ]] && jobs+=("$NP")
for model in ${MODELS:-deepseek-r1 llama-3.1-405b}; do
  for np in "${jobs[@]}"; do
    name=${model}_np${np}
    rm -f "$out/$name.h5" "$out/$name.log"
    args=(decode --backend cuda --model "$model" --seq "${SEQ:-128K}" --batch "${BATCH:-1,8}"
      --iters "${ITERS:-5}" --warmup 2 --no-verify --out "$out/$name.h5")
    read -r -a extra <<<"${DECODE_ARGS:-}"
    args+=("${extra[@]}")
    echo "gpu_layers: $model, N = $np" >&2
    if ((np == 1)); then
      timeout "$tmo" "$bin" "${args[@]}" --layouts tp >"$out/$name.log" 2>&1
    else
      timeout "$tmo" scripts/launch/mpirun.sh -np "$np" "$bin" "${args[@]}" --layouts tp,helix \
        >"$out/$name.log" 2>&1
    fi
    rc=$?
    if ((rc != 0)); then
      failed+=("$model N=$np exited $rc (see $out/$name.log)")
    elif ! python3 scripts/check_trace.py "$out/$name.h5" --roofline --allow-unverified \
      >>"$out/$name.log" 2>&1; then
      failed+=("$model N=$np: the trace's roofline does not check out (see $out/$name.log)")
    fi
  done
done
for model in ${MODELS:-deepseek-r1 llama-3.1-405b}; do
  for np in "${jobs[@]}"; do
    log=$out/${model}_np${np}.log
    [[ -f $log ]] || continue
    echo "== $model, N = $np =="
    grep -E 'ceiling:' "$log"
    sed -n '/^model /,/^trace:/p' "$log" | grep -v '^trace:'
  done
done
for f in "${failed[@]}"; do echo "gpu_layers: FAILED: $f"; done
((${#failed[@]} == 0))
