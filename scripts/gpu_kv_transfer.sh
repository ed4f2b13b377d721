#!/usr/bin/env bash
# On a machine with NVIDIA GPUs: one request's KV cache moved from a TP prefill layout to a Helix
# decode layout on the CUDA backend (`helix-bench kv-transfer --backend cuda`), every block checked
# at its destination.
#   scripts/gpu_kv_transfer.sh OUTDIR
# 1. builds helix-bench with CUDA into BUILD_DIR (default build-gpu; as scripts/gpu_validate.sh;
#    SKIP_BUILD=1 uses what is there);
# 2. runs DeepSeek-R1 (one 576-value latent per token and layer) and Llama-3.1-405B (8 KV heads of
#    128 keys + 128 values) at 16K and 128K tokens, LAYERS layers, on 2 ranks (prefill TP 1 ->
#    decode KVP x TPA 1 x 1) and 4 ranks (prefill TP 2 -> decode KVP x TPA 2 x 1), writing
#    OUTDIR/kvt_<model>_np<ranks>_T<tokens>.h5 (`/kv_transfer`, results/README.md);
# 3. prints one line per run and writes them to OUTDIR/summary.txt.
# One GPU per rank (node-local rank): with as many GPUs as ranks the exchange runs over NCCL
# (comm_backend nccl); with fewer, ranks share GPUs (two ranks with the same PCI bus id) and it
# falls back to MPI with host staging (comm_backend mpi-host-staged: correct, but not a link
# measurement).
# Environment: RANKS (default "2 4"), TOKENS (default "16K 128K"), LAYERS (default 4), ITERS
# (default 10), MPIRUN (default mpirun), CUDA_ARCH (default 90a).
# Exit code: 0 when every run finished and verified, 1 otherwise (each failure is named).
set -uo pipefail
out=${1:?usage: scripts/gpu_kv_transfer.sh OUTDIR}
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source scripts/env.sh
build=${BUILD_DIR:-build-gpu}
ranks_list=${RANKS:-2 4}
tokens_list=${TOKENS:-16K 128K}
layers=${LAYERS:-4}
iters=${ITERS:-10}
mkdir -p "$out" || { echo "gpu_kv_transfer: cannot create $out"; exit 1; }
start=$SECONDS
failed=()

nvidia-smi -L || { echo "gpu_kv_transfer: nvidia-smi failed: no usable NVIDIA GPU"; exit 1; }
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  cmake -S . -B "$build" -DHELIX_CUDA=ON -DHELIX_WERROR=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" >/dev/null &&
    cmake --build "$build" -j"$(nproc)" --target helix-bench ||
    { echo "gpu_kv_transfer: the CUDA build failed (see above)"; exit 1; }
fi
[[ -x $build/bin/helix-bench ]] || { echo "gpu_kv_transfer: $build/bin/helix-bench missing"; exit 1; }

: >"$out/summary.txt"
for model in deepseek-r1 llama-3.1-405b; do
  for np in $ranks_list; do
    case $np in
      2) layout=(--prefill-ranks 1 --kvp 1 --tpa 1) ;;
      4) layout=(--prefill-ranks 2 --kvp 2 --tpa 1) ;;
      *) failed+=("no layout for $np ranks (2 or 4)"); continue ;;
    esac
    for tokens in $tokens_list; do
      h5=$out/kvt_${model}_np${np}_T${tokens}.h5
      echo "== $model, $np ranks, $tokens tokens x $layers layers =="
      log=$("${MPIRUN:-mpirun}" -np "$np" "$build/bin/helix-bench" kv-transfer --backend cuda \
        --model "$model" "${layout[@]}" --tokens "$tokens" --layers "$layers" \
        --iters "$iters" --warmup 2 --out "$h5" 2>&1)
      rc=$?
      echo "$log"
      grep '^kv-transfer:' <<<"$log" >>"$out/summary.txt"
      ((rc == 0)) || failed+=("$model np $np T $tokens exited $rc (3: a block missed)")
    done
  done
done

echo "== summary ($((SECONDS - start)) s) =="
cat "$out/summary.txt"
for f in "${failed[@]}"; do echo "gpu_kv_transfer: FAILED: $f"; done
echo "gpu_kv_transfer: outputs in $out ($((SECONDS - start)) s)"
((${#failed[@]} == 0))
