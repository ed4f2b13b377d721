#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: every decode-attention kernel configuration on the bar shapes,
# to choose the defaults (kernels/attention.cu) and to show what each one reaches.
#   scripts/gpu_attn_variants.sh OUTDIR
# Builds helix-micro into BUILD_DIR (default build-gpu; SKIP_BUILD=1 uses what is there), then runs
# helix-micro --backend cuda once per configuration (HELIX_ATTN_VARIANT=<name>): GQA ones on
# Llama-3.1-405B's one-KV-head shards and the SDPA peer shapes, MLA ones on DeepSeek-R1's 16- and
# 128-head shards; each shape verified against the CPU reference first, each run with its own
# read-only stream ceiling. Writes OUTDIR/<variant>.h5 and prints, last, the fraction of the
# ceiling of every shape under every configuration (scripts/attn_variants.py, also written to
# OUTDIR/variants.json). Environment: ITERS (default 10), MPIRUN, CUDA_ARCH, PYTHON.
set -uo pipefail
out=${1:?usage: scripts/gpu_attn_variants.sh OUTDIR}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
build=${BUILD_DIR:-build-gpu}
py=${PYTHON:-python3}
iters=${ITERS:-10}
mkdir -p "$out" || { echo "gpu_attn_variants: cannot create $out"; exit 1; }
nvidia-smi -L || { echo "gpu_attn_variants: no usable NVIDIA GPU"; exit 1; }
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  cmake -S . -B "$build" -DHELIX_CUDA=ON -DHELIX_WERROR=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" >/dev/null &&
    cmake --build "$build" -j"$(nproc)" --target helix-micro ||
    { echo "gpu_attn_variants: the CUDA build failed (see above)"; exit 1; }
fi
micro=$build/bin/helix-micro
# The configurations, as kernels/attention.cu names them.
names() { grep -oE "\"$1-(wgmma-)?h[0-9]+-t[0-9]+-s[0-9]+-w[0-9]+\"" kernels/attention.cu | tr -d '"' | sort -u; }
variants_gqa=$(names gqa)
variants_mla=$(names mla)
[[ -n $variants_gqa && -n $variants_mla ]] || { echo "gpu_attn_variants: no variants found"; exit 1; }
failed=()
run() {  # variant filter extra-args...
  local v=$1 filter=$2
  shift 2
  echo "== $v =="
  HELIX_ATTN_VARIANT=$v "${MPIRUN:-mpirun}" -np 1 "$micro" --backend cuda --iters "$iters" \
    --benchmark_filter="$filter" --out "$out/$v.h5" "$@" >"$out/$v.log" 2>&1
  local rc=$?
  tail -n 3 "$out/$v.log"
  ((rc == 0)) || failed+=("$v: helix-micro exited $rc (see $out/$v.log)")
}
for v in $variants_gqa; do
  run "$v" '^attn_gqa/(llama-3.1-405b/B1_q(8|16)_kv1_|custom/)' \
    --models llama-3.1-405b --gqa-shapes B1_q64_kv8_T1M,B8_q64_kv8_T128K,B16_q16_kv1_T64K
done
for v in $variants_mla; do
  run "$v" '^attn_mla/deepseek-r1/B1_h(128|16)_' --models deepseek-r1
done
"$py" scripts/attn_variants.py "$out"/*.h5 --json "$out/variants.json" ||
  failed+=("attn_variants.py failed")
for f in "${failed[@]}"; do echo "gpu_attn_variants: FAILED: $f"; done
((${#failed[@]} == 0))
