#!/usr/bin/env bash
# Real, emulated and modeled decode layers side by side on the GPUs of one machine (2 to 8 GPUs,
# one rank per GPU over NCCL), with the KV transfer across real GPUs, into one folder:
#   scripts/gpu_study.sh OUTDIR
#
#  1. builds helix-bench with CUDA into BUILD_DIR (default build-gpu; SKIP_BUILD=1 uses it as is);
#  2. calibrate on the GPUs of the study (collective curves per group size 2, 4, ..., launch
#     costs, attention efficiency): OUTDIR/profile.json;
#  3. for each model, rank count N and split: real runs (OUTDIR/real/, --no-verify at the study's
#     S), the same shapes verified against the reference at S = 2047 with two decode steps that
#     cross a KV block boundary (OUTDIR/verify/), the same points emulated on one GPU with every
#     rank's compute and the calibrated profile (`--emulate N --emulate-rank all --hardware`,
#     OUTDIR/emulated/, N >= 2), and `model --validate` of each real trace with the profile
#     (OUTDIR/model/). Splits: the layouts' defaults, plus for GQA models the KV-sharded
#     alternatives at the same N (KVP x TPA = 2 x N/2 and N x 1: at N = 4, 2x2 and 4x1) for kvp,
#     helix and helix-hopb;
#  4. the KV cache moved from a TP prefill layout into a Helix decode layout over NCCL, next to
#     the send/recv and all-to-all bus bandwidth of the same job and the disaggregation model's
#     transfer term priced by the profile (OUTDIR/kv/);
#  5. OUTDIR/study.md and .json (helix-study: one table per model, real / emulated / modeled step
#     and every phase with the errors, Helix over TP, KV transfer) and OUTDIR/report/
#     (helix-report over every trace and the profile).
#
# STUDY_MODE (default full; the build is not in the times; each step prints its start time):
#   one    ONE GPU, sized to finish in 7 minutes on an H200 (not yet timed): calibrate on 1
#          rank (--quick; no collective figures, the cited link fallbacks named in the
#          profile); real N = 1 runs and their
#          verification; llama-3.1-405b (default split, and KVP x TPA 2x2 at N = 4) and
#          deepseek-r1 emulated at N = 2 and 4 with every rank's compute (--emulate-rank all),
#          S = 128K, B = 1, layouts tp and helix, 5 iterations; `model --validate` of every
#          trace (the model against the real run at N = 1 and against the emulation at N = 2, 4);
#          the table of real N = 1, emulated and modeled. No KV transfer and no gate (they need
#          two GPUs).
#   short  2 to 4 GPUs, sized to finish in 9 minutes on 4 H200s (not yet timed): calibrate
#          --quick over the GPUs; the same models and points real at N = 1, 2, 4 (up to the
#          GPUs), verified at S = 2047, emulated at N >= 2 and modeled; one KV transfer
#          (deepseek-r1, 2 ranks, 128K tokens); the gate checked twice (scripts/gate_check.sh:
#          a fresh baseline of 2 jobs per point, a plain rerun that must pass and a rerun with
#          ffn slowed by 10% that must be caught naming ffn_us)
#   full   llama-3.1-70b, llama-3.1-405b, deepseek-r1; N = 1, 2, 4, 8 up to the GPUs; S = 128K,
#          1M, 4M; B = 1, 2, 4, 8, 16, 32 (runs that do not fit are refused by the memory
#          planner and recorded); the four layouts and the KV-sharded splits; 10 iterations; KV
#          transfer of deepseek-r1 and llama-3.1-405b on 2 and 4 ranks, 16K to 1M tokens; the
#          gate checked as in short with 3 jobs per point in the baseline
# Every mode ends with a short table (one line per point: step real / emulated / modeled with
# the errors, critical ranks, verification; then the gate check) and packs OUTDIR into one
# tarball, STUDY_TARBALL (default OUTDIR.tar.gz).
# Environment: STUDY_GATE (1/0: check the gate or not; default 1 on cuda in short and full mode
# with 2 GPUs or more), STUDY_GATE_REPEAT (jobs per point of the gate's baseline), STUDY_TARBALL,
# GPUS (default: the GPUs nvidia-smi lists, at most 8), BUILD_DIR, SKIP_BUILD,
# CUDA_ARCH (default 90a), LAUNCH (default scripts/launch/mpirun.sh: one rank per GPU, NCCL
# variables passed on, NCCL_NVLS_ENABLE=0), STUDY_DRY_RUN=1 (write OUTDIR/commands.txt and print
# the commands without running them), STUDY_BACKEND=cpu (the same pipeline on the CPU backend
# with the test models tiny-gqa and tiny-mla-moe on GPUS ranks, default 2, for checking the
# script; no emulation, which needs a GPU).
# Exit code: 0 when every step ran and every checked run verified; 1 otherwise (failures named).
set -uo pipefail
out=${1:?usage: scripts/gpu_study.sh OUTDIR (STUDY_MODE=one|short|full)}
out=${out%/}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
source scripts/env.sh
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
mode=${STUDY_MODE:-full}
backend=${STUDY_BACKEND:-cuda}
dry=${STUDY_DRY_RUN:-0}
case $mode in one|short|full) ;; *) echo "gpu_study: STUDY_MODE must be one, short or full, got '$mode'" >&2; exit 2 ;; esac
case $backend in cuda|cpu) ;; *) echo "gpu_study: STUDY_BACKEND must be cuda or cpu, got '$backend'" >&2; exit 2 ;; esac

if [[ $backend == cuda ]]; then
  build=${BUILD_DIR:-build-gpu}
  if [[ -z ${GPUS:-} ]]; then
    if ((dry)); then GPUS=4; else GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); fi
  fi
  [[ $mode == one ]] && GPUS=1
  read -ra launch <<<"${LAUNCH:-scripts/launch/mpirun.sh}"
else
  build=${BUILD_DIR:-build}
  GPUS=${GPUS:-2}
  read -ra launch <<<"${LAUNCH:-mpirun}"
fi
((GPUS > 8)) && GPUS=8
if ((GPUS < 1)); then echo "gpu_study: no GPU found (nvidia-smi -L)" >&2; exit 1; fi
bin=$build/bin/helix-bench

# The grid of the mode.
if [[ $backend == cpu ]]; then
  models=(tiny-gqa tiny-mla-moe); seqs=256; batches=1,4; small_s=47; iters=3; warmup=1
  [[ $mode == full ]] && seqs=256,1024
  kv_models=(tiny-mla-moe); kv_tokens=(4K); kv_ranks=(2)
elif [[ $mode != full ]]; then
  models=(llama-3.1-405b deepseek-r1); seqs=128K; batches=1; small_s=2047; iters=5; warmup=2
  kv_models=(deepseek-r1); kv_tokens=(128K); kv_ranks=(2)
else
  models=(llama-3.1-70b llama-3.1-405b deepseek-r1); seqs=128K,1M,4M; batches=1,2,4,8,16,32
  small_s=2047; iters=10; warmup=3
  kv_models=(deepseek-r1 llama-3.1-405b); kv_tokens=(16K 128K 1M); kv_ranks=(2 4)
fi
# ns: the rank counts of the study; a point runs for real where N <= GPUS (the others, in mode
# one, only emulated on the one GPU).
ns=()
case $mode in
  one) ns=(1 2 4) ;;
  short) for n in 1 2 4; do ((n <= GPUS)) && ns+=("$n"); done ;;
  full) for n in 1 2 4 8; do ((n <= GPUS)) && ns+=("$n"); done ;;
esac

mkdir -p "$out"/{real,verify,emulated,model,kv} || { echo "gpu_study: cannot create $out" >&2; exit 1; }
: >"$out/commands.txt"
failed=()
start=$SECONDS
# Runs one step (or only lists it with STUDY_DRY_RUN=1); its output goes to LOG.
step() {
  local log=$1; shift
  printf '%q ' "$@" >>"$out/commands.txt"; echo >>"$out/commands.txt"
  if ((dry)); then printf '%q ' "$@"; echo; return 0; fi
  echo "[$((SECONDS - start)) s] $*" >&2
  "$@" >"$log" 2>&1
  local rc=$?
  ((rc == 0)) || { failed+=("exit $rc: $* (log $log)"); tail -5 "$log" >&2; }
  return $rc
}

if [[ $backend == cuda && ${SKIP_BUILD:-0} != 1 && $dry == 0 ]]; then
  { cmake -S . -B "$build" -DHELIX_CUDA=ON -DHELIX_WERROR=ON \
      -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" >/dev/null &&
    cmake --build "$build" -j"$(nproc)" --target helix-bench; } >"$out/build.log" 2>&1 ||
    { echo "gpu_study: the CUDA build failed ($out/build.log)" >&2; exit 1; }
fi
[[ $dry == 1 || -x $bin ]] || { echo "gpu_study: $bin missing (build it or unset SKIP_BUILD)" >&2; exit 1; }

# 2. The profile of this machine, over the GPUs of the study.
cal_ranks=1
for n in "${ns[@]}"; do ((n <= GPUS)) && cal_ranks=$n; done
quick=(); [[ $mode != full || $backend == cpu ]] && quick=(--quick)
step "$out/calibrate.log" "${launch[@]}" -np "$cal_ranks" "$bin" calibrate --backend "$backend" \
  "${quick[@]}" --name "study-$(hostname)-${cal_ranks}x" --out "$out/profile.json"

# 3. Decode: real, verified at a smaller S, emulated, modeled.
splits_of() {  # the splits of model $1 at N = $2: "default" and KVP x TPA alternatives
  echo default
  [[ $backend == cpu && $1 == tiny-mla-moe ]] && return
  [[ $1 == deepseek-r1 || $1 == tiny-mla-moe || $2 -lt 2 ]] && return
  local half=$(($2 / 2))
  ((half > 1)) && echo "2x$half"
  echo "$2x1"
}
for model in "${models[@]}"; do
  for n in "${ns[@]}"; do
    for split in $(splits_of "$model" "$n"); do
      layouts=tp,kvp,helix,helix-hopb; extra=(); tag=${model}_n$n
      if [[ $split != default ]]; then
        layouts=kvp,helix,helix-hopb; extra=(--kvp "${split%x*}" --tpa "${split#*x}")
        tag=${tag}_kvp$split
      fi
      if [[ $mode != full && $backend == cuda ]]; then
        layouts=tp,helix; [[ $split != default ]] && layouts=helix
        [[ $model == llama-3.1-405b && $split != default && $split != 2x2 ]] && continue
      fi
      [[ $n == 1 ]] && layouts=tp  # every layout is the same on one rank
      common=(decode --backend "$backend" --model "$model" --layouts "$layouts" "${extra[@]}"
              --batch "$batches" --quiet)
      if ((n <= GPUS)); then
        step "$out/real/$tag.log" "${launch[@]}" -np "$n" "$bin" "${common[@]}" --seq "$seqs" \
          --iters "$iters" --warmup "$warmup" --no-verify --out "$out/real/$tag.h5"
        step "$out/verify/$tag.log" "${launch[@]}" -np "$n" "$bin" "${common[@]}" \
          --seq "$small_s" --decode-steps 2 --iters 1 --warmup 0 --out "$out/verify/$tag.h5"
        if ((dry)) || [[ -f $out/real/$tag.h5 ]]; then
          step "$out/model/$tag.log" "$bin" model --validate "$out/real/$tag.h5" \
            --hardware "$out/profile.json" --out "$out/model/$tag.h5"
        fi
      fi
      if [[ $backend == cuda && $n -ge 2 ]]; then
        step "$out/emulated/$tag.log" "$bin" "${common[@]}" --seq "$seqs" --iters "$iters" \
          --warmup "$warmup" --emulate "$n" --emulate-rank all --hardware "$out/profile.json" \
          --out "$out/emulated/$tag.h5"
        # Without a real run the model is checked against the emulation.
        if ((n > GPUS)) && { ((dry)) || [[ -f $out/emulated/$tag.h5 ]]; }; then
          step "$out/model/${tag}_emulated.log" "$bin" model --validate \
            "$out/emulated/$tag.h5" --hardware "$out/profile.json" \
            --out "$out/model/${tag}_emulated.h5"
        fi
      fi
    done
  done
done

# 4. KV transfer across real GPUs, with the same job's links and the model's transfer term.
for model in "${kv_models[@]}"; do
  for np in "${kv_ranks[@]}"; do
    ((np <= GPUS)) || continue
    case $np in
      2) layout=(--prefill-ranks 1 --kvp 1 --tpa 1) ;;
      4) layout=(--prefill-ranks 2 --kvp 2 --tpa 1) ;;
    esac
    for tokens in "${kv_tokens[@]}"; do
      step "$out/kv/kvt_${model}_np${np}_T$tokens.log" "${launch[@]}" -np "$np" "$bin" kv-transfer \
        --backend "$backend" --model "$model" "${layout[@]}" --tokens "$tokens" --layers 4 \
        --iters 10 --warmup 2 --link-check --hardware "$out/profile.json" \
        --out "$out/kv/kvt_${model}_np${np}_T$tokens.h5"
    done
  done
done

# 5. The gate checked twice on the GPUs (scripts/gate_check.sh): a fresh baseline, a plain rerun
# that must pass, a rerun with one phase slowed on purpose that must be caught naming it.
gate=${STUDY_GATE:-0}
[[ -z ${STUDY_GATE:-} && $backend == cuda && $mode != one && $GPUS -ge 2 ]] && gate=1
if ((gate)); then
  gate_repeat=${STUDY_GATE_REPEAT:-3}; [[ $mode == short ]] && gate_repeat=${STUDY_GATE_REPEAT:-2}
  step "$out/gate_check.log" scripts/gate_check.sh --backend "$backend" --np "$GPUS" \
    --repeat "$gate_repeat" --work "$out/gate"
fi

# 6. The tables and the report.
step "$out/study.log" python3 -m helixbench.study "$out/real" "$out/emulated" "$out/model" \
  "$out/kv" "$out/profile.json" --verify "$out/verify" --out "$out/study" --brief
shopt -s nullglob
traces=("$out"/real/*.h5 "$out"/emulated/*.h5 "$out"/model/*.h5)
shopt -u nullglob
((dry)) && traces=("$out/real/*.h5" "$out/emulated/*.h5" "$out/model/*.h5")
step "$out/report.log" python3 -m helixbench.report "${traces[@]}" "$out/profile.json" \
  --out "$out/report"
if ((dry)); then exit 0; fi
for f in "$out"/verify/*.log; do
  grep -q ' NO (' "$f" 2>/dev/null && failed+=("verification failed: $f")
done
tarball=${STUDY_TARBALL:-$out.tar.gz}
echo "gpu_study: $mode mode, $backend, N = ${ns[*]} on $GPUS GPU(s): $((SECONDS - start)) s" \
  >"$out/summary.txt"
for f in "${failed[@]}"; do echo "gpu_study: FAILED: $f" >>"$out/summary.txt"; done
tar czf "$tarball" -C "$(dirname "$out")" "$(basename "$out")" ||
  failed+=("cannot write the tarball $tarball")
# The short table last: the study's summary and one line per point, the gate check, the verdict.
cat "$out/study.log"
[[ -f $out/gate/summary.txt ]] && cat "$out/gate/summary.txt"
cat "$out/summary.txt"
echo "gpu_study: tables in $out/study.md; everything in $tarball"
((${#failed[@]} == 0))
