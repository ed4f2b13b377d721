#!/usr/bin/env bash
# On one GPU: emulated traces of one layer of llama-3.1-405b and of deepseek-r1 (a MoE layer) for
# the four layouts at N = 8, 16, 32 and 64, S = 128K and 1M, B = 1, 8 and 32. Every compute phase
# runs at the shard shapes of rank 0 of the N-rank layout; every collective takes, on the GPU, the
# time the cost model prices it at from a hardware profile (default gb200-nvl72: 900 GB/s, 3 us;
# --hardware PROFILE and --link-gbps / --link-latency-us among the extra options change it; the
# traces of results/emulated were taken at 900 GB/s and 5 us: --link-latency-us 5). Each file
# also holds the read-only stream ceiling measured in the same job. Runs that do not fit are
# refused by the memory planner and recorded.
# Usage: scripts/gpu_emulated.sh OUTDIR [extra decode options]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?usage: scripts/gpu_emulated.sh OUTDIR [decode options]}
shift
bin=${HELIX_BENCH:-build-gpu/bin/helix-bench}
mkdir -p "$out"
for model in llama-3.1-405b deepseek-r1; do
  for n in 8 16 32 64; do
    echo "== $model, emulating rank 0 of N = $n" >&2
    "$bin" decode --model "$model" --backend cuda --emulate "$n" --seq 128K,1M --batch 1,8,32 \
      --iters 10 --warmup 3 --quiet --out "$out/${model}_n${n}.h5" "$@" >"$out/${model}_n${n}.txt"
  done
done
python3 scripts/summarize_decode.py "$out"/*.h5
