#!/usr/bin/env bash
# On a machine with NVIDIA GPUs: checks what profilers and NVML see of helix-bench.
#   scripts/gpu_profile_check.sh OUTDIR
# 1. builds helix-bench and helix-micro with CUDA into BUILD_DIR (default build-gpu; SKIP_BUILD=1
#    uses what is there);
# 2. a decode trace on NP ranks (helix, KVP 2 when NP >= 2): OUTDIR/decode.h5; every run must
#    carry the NVML attributes (clocks, power, throttle reasons before and after, one value per
#    rank) - scripts/check_profile.py telemetry;
# 3. Nsight Systems (when nsys is on PATH): the same runs with --profile-once under
#    `nsys profile -t cuda,nvtx --capture-range=cudaProfilerApi`, one report per rank
#    (OUTDIR/nsys.<rank>.nsys-rep); `nsys stats --report nvtx_sum` of rank 0 must name every phase
#    that has time in the trace, and nothing else but `step` (check_profile.py nvtx);
# 4. Nsight Compute (when ncu is on PATH): rank 0 of the same layout emulated on one GPU
#    (--emulate NP, no collectives to deadlock under replay), once per phase with
#    `ncu --nvtx --nvtx-include "step/<phase>/" --profile-from-start off`; each phase must select
#    kernels, different ones per phase, the attention kernel only under attention
#    (check_profile.py ncu);
# 5. with NCCL_TESTS=<nccl-tests build folder> and NP >= 2: all_reduce_perf and helix-micro's
#    all_reduce over the same sizes (8 B .. 256 MiB, factor 2), both logs parsed by
#    `python3 -m helixbench.nccl_table`, which must find the same columns and, for every size,
#    the same count, type, redop and root (OUTDIR/all_reduce_perf.log, OUTDIR/helix-micro.log).
# Environment: NP (default: the GPUs, at most 4), MODEL (default llama-3.1-8b), SEQ (default 16K),
# BATCH (default 8), MPIRUN (default mpirun), CUDA_ARCH (default 90a, as the build), NCCL_TESTS.
# The checks of steps 2-4 need h5py and numpy (scripts/setup.sh's environment); where this machine
# has no such Python the files stay in OUTDIR and the script prints the check commands to run on
# a machine that has it. Step 5 needs only the standard library.
# Exit code: 0 when every step that could run passed, 1 otherwise (each failure is named); steps
# skipped for a missing tool are listed.
set -uo pipefail
out=${1:?usage: scripts/gpu_profile_check.sh OUTDIR}
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source scripts/env.sh
build=${BUILD_DIR:-build-gpu}
mkdir -p "$out" || { echo "gpu_profile_check: cannot create $out"; exit 1; }
out=$(cd "$out" && pwd)
failed=() skipped=()

gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
((gpus > 0)) || { echo "gpu_profile_check: nvidia-smi lists no GPU"; exit 1; }
np=${NP:-$((gpus < 4 ? gpus : 4))}
model=${MODEL:-llama-3.1-8b}
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  cmake -S . -B "$build" -DHELIX_CUDA=ON -DHELIX_WERROR=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" >/dev/null &&
    cmake --build "$build" -j"$(nproc)" --target helix-bench helix-micro ||
    { echo "gpu_profile_check: the CUDA build failed (see above)"; exit 1; }
fi
bench=$build/bin/helix-bench
layout=(--layouts helix)
((np >= 2)) && layout+=(--kvp 2 --tpa $((np / 2)))
decode=(decode --backend cuda --model "$model" "${layout[@]}" --seq "${SEQ:-16K}"
        --batch "${BATCH:-8}")
mpirun_=("${MPIRUN:-mpirun}" -np "$np")
later=()  # checks to run elsewhere when this Python lacks h5py or numpy
check() {   # check NAME ARGS...: scripts/check_profile.py ARGS, or printed for later
  local name=$1
  shift
  if python3 -c 'import h5py, numpy' 2>/dev/null; then
    python3 scripts/check_profile.py "$@" || failed+=("$name")
  else
    later+=("python3 scripts/check_profile.py $*")
  fi
}

echo "== decode trace on $np rank(s): $out/decode.h5 =="
if "${mpirun_[@]}" "$bench" "${decode[@]}" --iters 10 --warmup 3 --out "$out/decode.h5"; then
  check "NVML attributes" telemetry "$out/decode.h5"
else
  failed+=("decode run")
fi

echo "== Nsight Systems: NVTX ranges of --profile-once =="
if command -v nsys >/dev/null; then
  rm -f "$out"/nsys.*.nsys-rep "$out"/nvtx_nvtx_sum.csv
  "${mpirun_[@]}" nsys profile -t cuda,nvtx --capture-range=cudaProfilerApi -f true \
    -o "$out/nsys.%q{OMPI_COMM_WORLD_RANK}" "$bench" "${decode[@]}" --profile-once --warmup 2
  if [[ -f $out/nsys.0.nsys-rep ]] &&
     nsys stats --report nvtx_sum --format csv --output "$out/nvtx" "$out/nsys.0.nsys-rep" \
       >/dev/null && [[ -f $out/nvtx_nvtx_sum.csv ]]; then
    check "NVTX ranges under nsys" nvtx "$out/nvtx_nvtx_sum.csv" "$out/decode.h5"
  else
    failed+=("nsys wrote no report / nvtx_sum (see above)")
  fi
else
  skipped+=("nsys (not on PATH)")
fi

echo "== Nsight Compute: kernels selected by phase range =="
if command -v ncu >/dev/null; then
  pairs=() emulate=()
  ((np >= 2)) && emulate=(--emulate "$np")
  for phase in qkv attention combine ffn; do
    csv=$out/ncu_$phase.csv
    # the nested form first; the phase's range alone where this ncu does not match nesting
    for expr in "step/$phase/" "$phase/"; do
      ncu --nvtx --nvtx-include "$expr" --profile-from-start off --print-summary none \
        --csv --page raw --metrics gpu__time_duration.sum --log-file "$csv" \
        "$bench" "${decode[@]}" "${emulate[@]}" --profile-once --warmup 1 >/dev/null
      grep -q '^"[0-9]' "$csv" 2>/dev/null && break  # a row per profiled kernel
      echo "gpu_profile_check: ncu --nvtx-include '$expr' selected no kernel"
    done
    echo "gpu_profile_check: $phase: ncu --nvtx-include '$expr' -> $csv"
    pairs+=("$phase=$csv")
  done
  check "ncu --nvtx-include by phase" ncu "${pairs[@]}"
else
  skipped+=("ncu (not on PATH)")
fi

echo "== helix-micro all_reduce against nccl-tests =="
if [[ -n ${NCCL_TESTS:-} && -x ${NCCL_TESTS}/all_reduce_perf ]] && ((np >= 2)); then
  "${mpirun_[@]}" "${NCCL_TESTS}/all_reduce_perf" -b 8 -e 256M -f 2 -g 1 \
    >"$out/all_reduce_perf.log" 2>&1 || failed+=("all_reduce_perf")
  "${mpirun_[@]}" "$build/bin/helix-micro" --backend cuda --collectives all_reduce \
    --benchmark_filter=coll/all_reduce --min-bytes 8 --max-bytes 256M --size-factor 2 \
    >"$out/helix-micro.log" 2>&1 || failed+=("helix-micro all_reduce")
  python3 -m helixbench.nccl_table "$out/helix-micro.log" "$out/all_reduce_perf.log" \
    --collective all_reduce || failed+=("all_reduce tables differ in structure")
else
  skipped+=("nccl-tests comparison (set NCCL_TESTS to the folder of all_reduce_perf; NP >= 2)")
fi

for s in "${skipped[@]}"; do echo "gpu_profile_check: skipped: $s"; done
for c in "${later[@]}"; do echo "gpu_profile_check: no h5py/numpy here; run elsewhere: $c"; done
if ((${#failed[@]})); then
  for f in "${failed[@]}"; do echo "gpu_profile_check: FAILED: $f"; done
  exit 1
fi
echo "gpu_profile_check: all checks that ran passed ($out)"
