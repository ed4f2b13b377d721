#!/usr/bin/env bash
# Same points, two builds: decode layers run by a baseline and a candidate helix-bench on the
# same GPUs, one after the other, then compared with helix-compare (a step time or phase slower by
# more than the threshold and significant is a regression; exposed communication is compared only
# where both builds define it the same way). The points are those of the 4-GPU figures: one layer
# of llama-3.1-405b and of deepseek-r1, the four layouts, S = 128K and 1M, B = 1 and 8, emulated
# on one GPU as rank 0 of 4 at 900 GB/s and 5 us per collective (the figures every build accepts:
# --link-gbps 900 --link-latency-us 5), and, with NP > 1, real over NP GPUs.
# Usage: scripts/gpu_ab.sh BASE_HELIX_BENCH CAND_HELIX_BENCH OUTDIR [NP] [extra decode options]
# Exit code: helix-compare's (0 no regression, 1 a regression, 2 nothing matched or bad input).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage="usage: scripts/gpu_ab.sh BASE_HELIX_BENCH CAND_HELIX_BENCH OUTDIR [NP] [decode options]"
base=${1:?$usage}
cand=${2:?$usage}
out=${3:?$usage}
np=${4:-1}
shift $(($# < 4 ? $# : 4))
for bin in "$base" "$cand"; do
  [[ -x $bin ]] || { echo "gpu_ab.sh: $bin is not an executable" >&2; exit 2; }
done
mkdir -p "$out"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
mpirun=(mpirun --allow-run-as-root -x NCCL_NVLS_ENABLE=0)
points=(--seq "128K,1M" --batch "1,8" --iters 10 --warmup 3 --quiet)
code=0
for model in llama-3.1-405b deepseek-r1; do
  for who in base cand; do
    bin=$base
    [[ $who == cand ]] && bin=$cand
    echo "== $model emulated (rank 0 of 4), $who: $bin" >&2
    "$bin" decode --backend cuda --model "$model" --emulate 4 --link-gbps 900 \
      --link-latency-us 5 "${points[@]}" --out "$out/${model}_emulated_$who.h5" "$@" \
      >"$out/${model}_emulated_$who.txt"
    if ((np > 1)); then
      echo "== $model real on $np GPUs, $who: $bin" >&2
      "${mpirun[@]}" -np "$np" "$bin" decode --backend cuda --model "$model" --no-verify \
        "${points[@]}" --out "$out/${model}_np${np}_$who.h5" "$@" \
        >"$out/${model}_np${np}_$who.txt"
    fi
  done
  for kind in emulated $( ((np > 1)) && echo "np$np"); do
    echo "== helix-compare $model $kind" >&2
    python3 -m helixbench.compare "$out/${model}_${kind}_base.h5" "$out/${model}_${kind}_cand.h5" \
      --threshold 5% --all --json "$out/${model}_${kind}_compare.json" \
      | tee "$out/${model}_${kind}_compare.txt" || code=$?
  done
done
exit "$code"
