#!/usr/bin/env bash
# The HOP-B study: Helix against HOP-B with 2, 4 and 8 batch chunks where communication costs,
# on one node of 2 to 8 GPUs (one rank per GPU, NCCL), over the default NCCL path (NVLink) and
# over slowed NCCL paths, each path's all-to-all measured in the same job, with the emulation and
# the cost model at the measured link figures beside the real runs.
#
# Usage: scripts/gpu_hopb_study.sh [options] OUTDIR
#   --short        meant to fit in about 6 minutes on 4 H200s (also HOPB_STUDY_SHORT=1):
#                  DeepSeek-R1 only, N = 4 (or the GPUs there are), S = 128K, B = 8 and 32,
#                  chunks 2, 4, 8, over three paths (default, NCCL_MAX_NCHANNELS=1, sockets),
#                  5 timed iterations; the elapsed time is printed last
#   --full         the whole grid (default): DeepSeek-R1 and Llama-3.1-405B (KVP = N, TPA = 1),
#                  N = 2 and 4, S = 128K and 1M, B = 8, 16, 32, 64, chunks 2, 4, 8, over four
#                  paths (default, NCCL_MAX_NCHANNELS=1, NCCL_P2P_DISABLE=1 (shared host
#                  memory), NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 (sockets)); about an hour
#   --one-gpu      the part one GPU can do (also HOPB_STUDY_ONE_GPU=1; with --short or --full
#                  for the grid, all four paths): per path, N and model, rank 0 of N emulated on
#                  GPU 0 at the path's link figures, its chunk timeline checked (the exchanges
#                  beside the next chunk's attention on the slowed paths), and the cost model at
#                  the same figures validated against it. Link figures: those an earlier study
#                  measured (--links DIR: its OUTDIR/PATH/link_nN.json), else the nccl-tests
#                  all-to-all bus bandwidth of the four paths on 4 H200s at 64 MiB (261, 19, 29
#                  and 2.4 GB/s) with the base profile's latency; no real run
#   --models LIST  override the models of the grid (comma list, e.g. llama-3.1-405b)
#   --links DIR    --one-gpu: link figures from an earlier study's OUTDIR
#   --backend cpu  the same pipeline on the CPU backend with a test model (tiny-mla-moe, N = 2,
#                  S = 300, B = 4 and 8, chunks 2 and 4, the short mode's three paths; MPI over
#                  host memory, the NCCL variables set but unused; no emulation, which needs a
#                  GPU): checks the script and the tools, measures nothing about GPUs
#   --dry-run      print every command instead of running it
# Per path P, OUTDIR/P/ gets: micro_nN.h5 (helix-micro's all-to-all over N ranks),
# nccltests_nN.txt (nccl-tests' alltoall_perf at 64 MiB over the same ranks and path, when
# nccl-tests is there: NCCL_TESTS names its build/ folder or alltoall_perf, else PATH), link_nN.json
# and profile_nN.json (latency and bus bandwidth fitted to helix-micro's all-to-all, nccl-tests'
# bus bandwidth beside them, and the hardware profile at the fitted figures), real_MODEL_nN.h5/.txt
# (the real runs), emulated_MODEL_nN.h5 (rank 0 of N on one GPU, --link-gbps/--link-latency-us at
# the path's figures), model_MODEL_nN.h5 (helix-bench model --validate of the real runs, of the
# emulated ones with --one-gpu, at the same figures). OUTDIR/check.txt: the chunk timelines
# (/decode/run_N/chunks) checked; OUTDIR/summary.md and summary.csv: the table (printed last),
# the exposed All-to-All apart from the other collectives, and the bars; OUTDIR/report/ the
# helix-report plots (exposed communication against the chunk count per path).
# Environment: BUILD_DIR (default build-gpu, build for cpu), HELIX_BENCH, HELIX_MICRO (default
# BUILD_DIR/bin/...),
# HOPB_STUDY_PROFILE (base hardware profile of the model: built-in name or .json; default h200,
# tests/data/cpu-test-profile.json for cpu), MPIRUN (default mpirun), NCCL_TESTS.
# Exit codes: 0 done (the bars are in the summary, not in the exit code); 2 bad input; other: a
# step failed (its log is named).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage="usage: scripts/gpu_hopb_study.sh [--short|--full] [--one-gpu [--links DIR]] [--models LIST] [--backend cuda|cpu] [--dry-run] OUTDIR"
mode=full
[[ ${HOPB_STUDY_SHORT:-0} == 1 ]] && mode=short
one_gpu=0
[[ ${HOPB_STUDY_ONE_GPU:-0} == 1 ]] && one_gpu=1
backend=cuda
dry=0
out=
links=
models_arg=
start=$SECONDS
while (($#)); do
  case $1 in
    --short) mode=short ;;
    --full) mode=full ;;
    --one-gpu) one_gpu=1 ;;
    --dry-run) dry=1 ;;
    --links | --models)
      [[ $# -ge 2 && -n $2 ]] || { echo "gpu_hopb_study.sh: error: $1 needs a value ($usage)" >&2; exit 2; }
      [[ $1 == --links ]] && links=$2 || models_arg=$2
      shift
      ;;
    --backend)
      backend=${2:-}
      shift
      ;;
    --backend=*) backend=${1#--backend=} ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    -*)
      echo "gpu_hopb_study.sh: error: unknown option $1 ($usage)" >&2
      exit 2
      ;;
    *)
      [[ -z $out ]] || { echo "gpu_hopb_study.sh: error: one OUTDIR ($usage)" >&2; exit 2; }
      out=$1
      ;;
  esac
  shift
done
[[ -n $out ]] || { echo "gpu_hopb_study.sh: error: OUTDIR missing ($usage)" >&2; exit 2; }
[[ $backend == cuda || $backend == cpu ]] ||
  { echo "gpu_hopb_study.sh: error: --backend: cuda or cpu, got '$backend'" >&2; exit 2; }
((one_gpu)) && [[ $backend == cpu ]] &&
  { echo "gpu_hopb_study.sh: error: --one-gpu emulates on a GPU: not with --backend cpu" >&2; exit 2; }
[[ -z $links ]] || ((one_gpu)) ||
  { echo "gpu_hopb_study.sh: error: --links goes with --one-gpu" >&2; exit 2; }
[[ -z $links || -d $links ]] ||
  { echo "gpu_hopb_study.sh: error: --links: $links is not a folder" >&2; exit 2; }
[[ -z $models_arg || $models_arg =~ ^[A-Za-z0-9._/-]+(,[A-Za-z0-9._/-]+)*$ ]] ||
  { echo "gpu_hopb_study.sh: error: --models: a comma list of model names, got '$models_arg'" >&2; exit 2; }

source "$root/scripts/env.sh"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
build=${BUILD_DIR:-$root/build-gpu}
profile=${HOPB_STUDY_PROFILE:-h200}
if [[ $backend == cpu ]]; then
  build=${BUILD_DIR:-$root/build}
  profile=${HOPB_STUDY_PROFILE:-$root/tests/data/cpu-test-profile.json}
fi
bench=${HELIX_BENCH:-$build/bin/helix-bench}
micro=${HELIX_MICRO:-$build/bin/helix-micro}
mpirun=${MPIRUN:-mpirun}
if ((!dry)); then
  needed=("$bench")
  ((one_gpu)) || needed+=("$micro")
  for b in "${needed[@]}"; do
    [[ -x $b ]] || { echo "gpu_hopb_study.sh: error: $b is not an executable (build first, or set HELIX_BENCH / HELIX_MICRO)" >&2; exit 2; }
  done
fi

# The grid. Paths: name|NCCL variables|all-to-all GB/s for --one-gpu without --links (nccl-tests'
# alltoall_perf bus bandwidth at 64 MiB over 4 H200s of one node, one process per GPU).
declare -a paths models ranks
all_paths=("default||261" "nchannels1|NCCL_MAX_NCHANNELS=1|19" "shm|NCCL_P2P_DISABLE=1|29"
  "sockets|NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1|2.4")
short_paths=("${all_paths[0]}" "${all_paths[1]}" "${all_paths[3]}")
if [[ $backend == cpu ]]; then
  paths=("${short_paths[@]}")
  models=(tiny-mla-moe)
  ranks=(2)
  seqs=300
  batches=4,8
  chunks=2,4
  iters=(--iters 3 --warmup 1)
  micro_sizes=(--quick --min-bytes 4K --max-bytes 1M --stream-bytes 16M)
  fit=(--fit-min-bytes 4096 --fit-max-bytes 1048576)
  gpus=0
elif [[ $mode == short ]]; then
  paths=("${short_paths[@]}")
  models=(deepseek-r1)
  ranks=(4)
  seqs=128K
  batches=8,32
  chunks=2,4,8
  iters=(--iters 5 --warmup 2)
  micro_sizes=(--min-bytes 64K --max-bytes 16M --coll-iters 10 --stream-bytes 256M)
  fit=(--fit-min-bytes 65536 --fit-max-bytes 16777216)
else
  paths=("${all_paths[@]}")
  models=(deepseek-r1 llama-3.1-405b)
  ranks=(2 4)
  seqs=128K,1M
  batches=8,16,32,64
  chunks=2,4,8
  iters=(--iters 10 --warmup 3)
  micro_sizes=(--min-bytes 64K --max-bytes 64M --stream-bytes 256M)
  fit=(--fit-min-bytes 65536 --fit-max-bytes 16777216)
fi
((one_gpu)) && paths=("${all_paths[@]}") && ranks=(2 4)
((one_gpu)) && [[ $mode == short ]] && ranks=(4)
[[ -n $models_arg ]] && IFS=, read -r -a models <<<"$models_arg"
if [[ $backend == cuda ]]; then
  gpus=$( ((dry)) && echo 4 || (nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true))
  if ((one_gpu)); then
    ((dry || gpus >= 1)) || { echo "gpu_hopb_study.sh: error: no GPU found" >&2; exit 2; }
  else
    ((gpus >= 2)) || { echo "gpu_hopb_study.sh: error: needs at least 2 GPUs, found $gpus (on one GPU: --one-gpu)" >&2; exit 2; }
    kept=()
    for n in "${ranks[@]}"; do ((n <= gpus)) && kept+=("$n"); done
    ((${#kept[@]})) || kept=("$gpus")
    [[ ${kept[*]} == "${ranks[*]}" ]] ||
      echo "gpu_hopb_study.sh: $gpus GPUs: N = ${kept[*]} (not ${ranks[*]})" >&2
    ranks=("${kept[@]}")
  fi
fi

# nccl-tests' all-to-all, when it is there (NCCL_TESTS: its build/ folder or the binary).
nccl_tests=
if ((!one_gpu)) && [[ $backend == cuda ]]; then
  if [[ -n ${NCCL_TESTS:-} ]]; then
    nccl_tests=$NCCL_TESTS
    [[ -d $nccl_tests ]] && nccl_tests=$nccl_tests/alltoall_perf
    [[ -x $nccl_tests ]] || { echo "gpu_hopb_study.sh: error: NCCL_TESTS: no alltoall_perf at $nccl_tests" >&2; exit 2; }
  else
    nccl_tests=$(command -v alltoall_perf || true)
  fi
  [[ -n $nccl_tests ]] || echo "gpu_hopb_study.sh: nccl-tests' alltoall_perf not found (NCCL_TESTS or PATH): helix-micro's all-to-all only" >&2
fi
nccl_mpi=0
[[ -n $nccl_tests ]] && ldd "$nccl_tests" 2>/dev/null | grep -q libmpi && nccl_mpi=1

step=0
if ((one_gpu)); then
  per_n=$((1 + 2 * ${#models[@]}))
else
  per_n=$((2 + 3 * ${#models[@]}))
  [[ -n $nccl_tests ]] && per_n=$((per_n + 1))
fi
total=$((${#paths[@]} * ${#ranks[@]} * per_n))
# run [--soft] LOG CMD...: runs (or prints) one step; its output goes to LOG. A failed step ends
# the study, a failed --soft one is reported and skipped.
run() {
  local soft=0
  [[ $1 == --soft ]] && soft=1 && shift
  local log=$1
  shift
  step=$((step + 1))
  if ((dry)); then
    local a
    for a in "$@"; do
      if [[ -z $a || $a =~ [[:space:]\'\"\$\;\&\|] ]]; then printf "'%s' " "$a"; else printf '%s ' "$a"; fi
    done
    echo
    return 0
  fi
  echo "== [$step/$total] $*" >&2
  if ! "$@" >"$log" 2>&1; then
    echo "gpu_hopb_study.sh: step failed: $* (log: $log)" >&2
    tail -n 20 "$log" >&2
    ((soft)) && return 1
    exit 1
  fi
}
link_figure() {  # link_figure JSON KEY
  ((dry)) && { echo "<$2>"; return; }
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"
}

if ((!dry)); then
  mkdir -p "$out"
  python3 - "$out/study.json" "$mode" "$backend" "$one_gpu" "${paths[@]}" <<'PY'
import json, os, sys
path, mode, backend, one_gpu, *paths = sys.argv[1:]
meta = {"mode": (mode + (" one-gpu" if one_gpu == "1" else "")) if backend == "cuda" else "cpu",
        "backend": backend,
        "paths": [{"name": p.split("|")[0], "env": p.split("|")[1]} for p in paths]}
with open(path + ".tmp", "w") as fh:
    json.dump(meta, fh, indent=1)
os.replace(path + ".tmp", path)
PY
fi
what="real runs"
((one_gpu)) && what="one GPU: emulated runs"
echo "gpu_hopb_study.sh: $mode mode, backend $backend, $what: ${#paths[@]} paths, models ${models[*]}, N = ${ranks[*]}, S = $seqs, B = $batches, chunks $chunks -> $out" >&2

declare -a emulations=()
for p in "${paths[@]}"; do
  IFS='|' read -r name env table_gbps <<<"$p"
  dir=$out/$name
  ((dry)) || mkdir -p "$dir"
  # Every rank runs under `env` with the path's variables (any MPI launcher passes them so).
  # shellcheck disable=SC2206
  xenv=(env NCCL_NVLS_ENABLE=0 $env)
  for n in "${ranks[@]}"; do
    if ((one_gpu)); then
      if [[ -n $links ]]; then
        src=$links/$name/link_n$n.json
        ((dry)) || [[ -f $src ]] || { echo "gpu_hopb_study.sh: error: --links: no $src" >&2; exit 2; }
        gbps=$(link_figure "$src" fit_gbps)
        lat=$(link_figure "$src" fit_latency_us)
        source="measured by an earlier study ($src)"
      else
        gbps=$table_gbps
        lat=$(python3 -c "import json,os,sys; p=sys.argv[1]; p=p if os.path.exists(p) else os.path.join(sys.argv[2],'analytic','hardware',p+'.json'); print(json.load(open(p))['nvlink']['latency_us'])" "$profile" "$root")
        source="nccl-tests all-to-all busbw at 64 MiB on 4 H200s over $name; latency of the $(basename "$profile" .json) profile"
      fi
      run "$dir/link_n$n.txt" python3 -m helixbench.hopb linkset --ranks "$n" --name "$name" \
        --base "$profile" --gbps "$gbps" --latency-us "$lat" --source "$source" \
        --out-json "$dir/link_n$n.json" --out-profile "$dir/profile_n$n.json"
    else
      # The path's all-to-all, measured in this job, and the link figures fitted to it.
      run "$dir/micro_n$n.txt" "$mpirun" -np "$n" "${xenv[@]}" "$micro" --backend "$backend" \
        --models tiny-gqa --collectives all_to_all "${micro_sizes[@]}" \
        --no-verify --benchmark_filter=coll/ --out "$dir/micro_n$n.h5"
      nt=()
      if [[ -n $nccl_tests ]]; then
        perf=(-b 64M -e 64M -f 2 -w 5 -n 20)
        if ((nccl_mpi)); then
          ncmd=("$mpirun" -np "$n" "${xenv[@]}" "$nccl_tests" "${perf[@]}" -g 1)
        else
          ncmd=("${xenv[@]}" "$nccl_tests" "${perf[@]}" -g "$n")
        fi
        run --soft "$dir/nccltests_n$n.txt" "${ncmd[@]}" && nt=(--nccl-tests "$dir/nccltests_n$n.txt")
      fi
      run "$dir/link_n$n.txt" python3 -m helixbench.hopb linkfit "$dir/micro_n$n.h5" --ranks "$n" \
        --name "$name" --base "$profile" "${fit[@]}" "${nt[@]}" --out-json "$dir/link_n$n.json" \
        --out-profile "$dir/profile_n$n.json"
    fi
    ((dry)) || cat "$dir/link_n$n.txt" >&2
    gbps=$(link_figure "$dir/link_n$n.json" fit_gbps)
    lat=$(link_figure "$dir/link_n$n.json" fit_latency_us)
    for m in "${models[@]}"; do
      grid=(--model "$m" --layouts "helix,helix-hopb" --kvp "$n" --tpa 1 --hopb-chunks "$chunks"
        --seq "$seqs" --batch "$batches" "${iters[@]}" --quiet)
      emulate=(--backend cuda --emulate "$n" --hardware "$dir/profile_n$n.json" --link-gbps "$gbps"
        --link-latency-us "$lat")
      if ((one_gpu)); then
        run "$dir/emulated_${m}_n$n.txt" "$bench" decode "${emulate[@]}" "${grid[@]}" \
          --out "$dir/emulated_${m}_n$n.h5"
        validated=$dir/emulated_${m}_n$n.h5
      else
        verify=(--no-verify)
        [[ $backend == cpu ]] && verify=()
        run "$dir/real_${m}_n$n.txt" "$mpirun" -np "$n" "${xenv[@]}" "$bench" decode \
          --backend "$backend" "${grid[@]}" "${verify[@]}" --out "$dir/real_${m}_n$n.h5"
        if [[ $backend == cuda ]]; then
          emulations+=("$dir/emulated_${m}_n$n|$bench decode ${emulate[*]} ${grid[*]} --out $dir/emulated_${m}_n$n.h5")
        else
          step=$((step + 1)) # no emulation without a GPU
        fi
        validated=$dir/real_${m}_n$n.h5
      fi
      run "$dir/model_${m}_n$n.txt" "$bench" model --validate "$validated" \
        --hardware "$dir/profile_n$n.json" --out "$dir/model_${m}_n$n.h5"
    done
  done
done

# The emulations beside the real runs, one per GPU at a time (each runs rank 0 of N on one GPU).
if ((${#emulations[@]})); then
  slot=0
  declare -a pids=()
  for e in "${emulations[@]}"; do
    stem=${e%%|*}
    cmd=${e#*|}
    step=$((step + 1))
    if ((dry)); then
      echo "CUDA_VISIBLE_DEVICES=$slot $cmd"
    else
      echo "== [$step/$total] CUDA_VISIBLE_DEVICES=$slot $cmd" >&2
      # shellcheck disable=SC2086
      CUDA_VISIBLE_DEVICES=$slot $cmd >"$stem.txt" 2>&1 &
      pids[slot]=$!
    fi
    slot=$((slot + 1))
    if ((slot == gpus)); then
      ((dry)) || for pid in "${pids[@]}"; do wait "$pid" || { echo "gpu_hopb_study.sh: an emulation failed (logs: $out/*/emulated_*.txt)" >&2; exit 1; }; done
      slot=0
      pids=()
    fi
  done
  ((dry)) || for pid in "${pids[@]}"; do wait "$pid" || { echo "gpu_hopb_study.sh: an emulation failed (logs: $out/*/emulated_*.txt)" >&2; exit 1; }; done
fi
((dry)) && exit 0

# Chunk timelines: every one consistent; on the slowed paths every HOP-B chunk's exchange beside
# the next chunk's attention (real runs, or on one GPU the emulated rank's timeline).
shopt -s nullglob
measured=("$out"/*/real_*.h5)
((one_gpu)) && measured=("$out"/*/emulated_*.h5)
slowed=()
for t in "${measured[@]}"; do [[ $t == "$out"/default/* ]] || slowed+=("$t"); done
{
  echo "# consistency of every chunk timeline"
  python3 -m helixbench.hopb check "${measured[@]}" 2>&1 && echo "ok" || echo "PROBLEMS (above)"
  if ((${#slowed[@]})); then
    echo "# slowed paths: each HOP-B chunk's exchange beside the next chunk's attention"
    python3 -m helixbench.hopb check --expect-overlap "${slowed[@]}" 2>&1 && echo "ok" ||
      echo "PROBLEMS (above)"
  fi
} >"$out/check.txt"
grep -q PROBLEMS "$out/check.txt" && echo "gpu_hopb_study.sh: chunk timeline problems: $out/check.txt" >&2
traces=("${measured[@]}")
((one_gpu)) || traces+=("$out"/*/emulated_*.h5)
python3 -m helixbench.report "${traces[@]}" --out "$out/report" >&2
python3 -m helixbench.hopb summary "$out"
echo "gpu_hopb_study.sh: done in $((SECONDS - start)) s" >&2
