#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the decode kernels against their performance bars.
#   scripts/gpu_micro.sh OUTDIR
# 1. builds helix-micro and helix-bench with CUDA into BUILD_DIR (default build-gpu; as
#    scripts/gpu_validate.sh; SKIP_BUILD=1 uses what is there);
# 2. runs helix-micro --backend cuda on the bar cases: GQA decode attention of Llama-3.1-405B's
#    shards (one KV head, 8 or 16 query heads, B = 1, 128K..1M tokens), the SDPA peer shapes
#    (--gqa-shapes), MLA with 128 and 16 heads, every LSE combine, Llama-3.1-405B's GEMM shards;
#    every attention and combine shape verified against the CPU reference first;
#    writes OUTDIR/micro.h5 and OUTDIR/micro.json;
# 3. stock PyTorch SDPA (flash backend) on the GQA shapes: OUTDIR/sdpa.json, then the side-by-side
#    table and its bars: OUTDIR/sdpa_compare.json (needs torch; skipped with a message without);
# 4. helix-bench calibrate --backend cuda: OUTDIR/profile.json;
# 5. prints the bar table last (scripts/micro_bars.py).
# Environment: NP (ranks, default 1: the kernel bars are per GPU; more ranks add the collectives),
# MPIRUN (default mpirun), CUDA_ARCH (default 90a), PYTHON (default python3), ITERS (default 20).
# Exit code: 0 when every step ran and every bar was met, 1 otherwise (each failure is named).
set -uo pipefail
out=${1:?usage: scripts/gpu_micro.sh OUTDIR}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
build=${BUILD_DIR:-build-gpu}
np=${NP:-1}
py=${PYTHON:-python3}
iters=${ITERS:-20}
mkdir -p "$out" || { echo "gpu_micro: cannot create $out"; exit 1; }
start=$SECONDS
failed=()

nvidia-smi -L || { echo "gpu_micro: nvidia-smi failed: no usable NVIDIA GPU"; exit 1; }
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  cmake -S . -B "$build" -DHELIX_CUDA=ON -DHELIX_WERROR=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" >/dev/null &&
    cmake --build "$build" -j"$(nproc)" --target helix-micro helix-bench ||
    { echo "gpu_micro: the CUDA build failed (see above)"; exit 1; }
fi
for exe in helix-micro helix-bench; do
  [[ -x $build/bin/$exe ]] || { echo "gpu_micro: $build/bin/$exe missing"; exit 1; }
done
launch=("${MPIRUN:-mpirun}" -np "$np")

# The bar cases. Benchmark names: see `helix-micro --help`.
peer_shapes=B1_q64_kv8_T1M,B8_q64_kv8_T128K,B16_q16_kv1_T64K
filter='^(attn_gqa/llama-3.1-405b/B1_q(8|16)_kv1_|attn_gqa/custom/|attn_mla/deepseek-r1/B1_h(128|16)_|lse_combine/|gemm/llama-3.1-405b/'
if ((np > 1)); then filter+='|coll/'; fi
filter+=')'

echo "== helix-micro (cuda, $np rank(s)) =="
"${launch[@]}" "$build/bin/helix-micro" --backend cuda --gqa-shapes "$peer_shapes" \
  --iters "$iters" --benchmark_filter="$filter" --out "$out/micro.h5" \
  --benchmark_out="$out/micro.json" --benchmark_counters_tabular=true
rc=$?
((rc == 0)) || failed+=("helix-micro exited $rc (3: verification mismatch or wrong collective elements)")

echo "== stock SDPA (flash backend) =="
sdpa_ok=0
if "$py" -c 'import torch' 2>/dev/null; then
  if "$py" scripts/sdpa_peer.py --out "$out/sdpa.json"; then
    sdpa_ok=1
  else
    failed+=("sdpa_peer.py failed")
  fi
else
  failed+=("torch not importable by $py: no SDPA comparison (set PYTHON to an interpreter with torch)")
fi
cmp_args=()
if ((sdpa_ok)) && [[ -s $out/micro.h5 ]]; then
  echo "== helix-micro vs SDPA =="
  "$py" scripts/compare_sdpa.py "$out/micro.h5" "$out/sdpa.json" --json "$out/sdpa_compare.json"
  rc=$?
  ((rc == 0)) || failed+=("compare_sdpa.py exited $rc")
  [[ -s $out/sdpa_compare.json ]] && cmp_args=(--sdpa-compare "$out/sdpa_compare.json")
fi

echo "== helix-bench calibrate (cuda) =="
"${launch[@]}" "$build/bin/helix-bench" calibrate --backend cuda --iters "$iters" \
  --out "$out/profile.json"
rc=$?
((rc == 0)) || failed+=("helix-bench calibrate exited $rc")
prof_args=()
[[ -s $out/profile.json ]] && prof_args=(--profile "$out/profile.json")

echo "== bars ($((SECONDS - start)) s) =="
if [[ -s $out/micro.h5 ]]; then
  "$py" scripts/micro_bars.py "$out/micro.h5" "${cmp_args[@]}" "${prof_args[@]}" ||
    failed+=("a kernel bar was missed (table above)")
else
  failed+=("no $out/micro.h5: helix-micro did not finish")
fi
for f in "${failed[@]}"; do echo "gpu_micro: FAILED: $f"; done
echo "gpu_micro: outputs in $out ($((SECONDS - start)) s)"
((${#failed[@]} == 0))
