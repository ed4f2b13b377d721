#!/usr/bin/env bash
# Performance gate: runs a short fixed decode sweep, checks the trace, writes a report and compares
# it with a committed baseline (helix-compare). The CI job of .github/workflows/gpu-bench.yml
# runs this on a GPU runner; it runs the same way on a workstation.
#
# Usage: scripts/gate.sh [--backend cpu|cuda] [--np N] [--baseline FILE] [--threshold PCT]
#                        [--repeat R] [--work DIR] [--update-baseline]
#   --backend         cpu (default; tiny-gqa on 2 ranks, for the tests of this script) or cuda
#                     (llama-3.1-70b, S = 32K, B = 1 and 8, tp and helix, 30 iterations, on every
#                     GPU of this node, at most 8: phases of 20 to 300 us)
#   --np              ranks (default: 2 for cpu; the GPUs nvidia-smi lists for cuda)
#   --baseline        reference trace (default: results/baseline/<backend>[-<GPU>]-np<N>.h5,
#                     e.g. cpu-np2.h5, cuda-nvidia-h200-np4.h5)
#   --threshold       slowdown of a median that fails the gate, percent (default: 50% on the
#                     shared-CPU backend, 5% on cuda); a metric's limit is at least twice the
#                     spread of its medians over the baseline's jobs (the noise band)
#   --repeat          jobs per point (default: 3 with --update-baseline on cuda, else 1): a
#                     baseline of several jobs carries the job-to-job noise band
#   --work            folder for candidate.h5, compare.json and report/ (default: gate-out)
#   --update-baseline copy the candidate over the baseline instead of comparing (then commit it)
# Checking the gate itself: HELIX_TEST_SLOW_PHASE=ffn:0.10 scripts/gate.sh --backend cuda slows
# the ffn phase of every rank by 10% (a calibrated delay; test only, recorded in the trace); the
# gate must fail and name ffn_us.
# Exit codes: those of helix-compare (0 pass, 1 regression, 2 nothing matched or no baseline),
# or the failing step's.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=/dev/null
source "$root/scripts/env.sh"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"

backend=cpu; np=""; baseline=""; threshold=""; work=gate-out; update=0; repeat=""
while (($#)); do
  case $1 in
    --backend) backend=$2; shift 2 ;;
    --np) np=$2; shift 2 ;;
    --baseline) baseline=$2; shift 2 ;;
    --threshold) threshold=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --update-baseline) update=1; shift ;;
    -h|--help) sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gate.sh: error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

case $backend in
  cpu)
    np=${np:-2}; device=""; threshold=${threshold:-50%}; min_us=1; repeat=${repeat:-1}
    grid=(--models tiny-gqa --seq 256 --batch "1,4")
    decode=(--backend cpu --iters 15 --warmup 3 --kvp 2 --tpa 1)
    launcher="mpirun -np {np}" ;;
  cuda)
    gpus=$(nvidia-smi -L | grep -c '^GPU')
    np=${np:-$((gpus < 8 ? gpus : 8))}
    device=$(nvidia-smi --query-gpu=name --format=csv,noheader -i 0 | tr -c 'A-Za-z0-9.\n' '-' | tr '[:upper:]' '[:lower:]')
    threshold=${threshold:-5%}; min_us=2
    repeat=${repeat:-$((update ? 3 : 1))}
    grid=(--models llama-3.1-70b --layouts "tp,helix" --seq 32K --batch "1,8")
    decode=(--backend cuda --iters 30 --warmup 5 --no-verify)
    launcher="$root/scripts/launch/mpirun.sh -np {np}" ;;
  *) echo "gate.sh: error: --backend must be cpu or cuda, got '$backend'" >&2; exit 2 ;;
esac
baseline=${baseline:-$root/results/baseline/$backend${device:+-$device}-np$np.h5}

mkdir -p "$work"
candidate=$work/candidate.h5
rm -f "$candidate"
[[ $repeat =~ ^[1-9][0-9]*$ ]] || { echo "gate.sh: error: --repeat must be a positive integer" >&2; exit 2; }
if [[ -n ${HELIX_TEST_SLOW_PHASE:-} ]]; then
  echo "gate.sh: HELIX_TEST_SLOW_PHASE=$HELIX_TEST_SLOW_PHASE: a phase is slowed on purpose (test only)"
  ((update)) && { echo "gate.sh: error: refusing to make a baseline with HELIX_TEST_SLOW_PHASE set" >&2; exit 2; }
fi
python3 -m helixbench.sweep --np "$np" "${grid[@]}" --launcher "$launcher" --out "$candidate" \
  --repeat "$repeat" -- "${decode[@]}"
python3 "$root/scripts/check_trace.py" "$candidate" >/dev/null
python3 -m helixbench.report "$candidate" --out "$work/report"

if ((update)); then
  mkdir -p "$(dirname "$baseline")"
  cp "$candidate" "$baseline"
  echo "gate.sh: baseline updated: $baseline (commit it)"
  exit 0
fi
if [[ ! -f $baseline ]]; then
  echo "gate.sh: no baseline $baseline: review $candidate, then run with --update-baseline and commit it" >&2
  exit 2
fi
set +e
python3 -m helixbench.compare "$baseline" "$candidate" --threshold "$threshold" \
  --min-us "$min_us" --json "$work/compare.json"
code=$?
set -e
# The regressed metrics by name (the phase that slowed down).
python3 - "$work/compare.json" <<'PY' || true
import json, sys
res = json.load(open(sys.argv[1]))
for run in res.get("runs", []):
    for metric, row in run.get("metrics", {}).items():
        if row.get("verdict") == "REGRESSION":
            print(f"gate.sh: REGRESSION {metric} of {run['label']}: "
                  f"{row['base_median_us']:.1f} -> {row['cand_median_us']:.1f} us "
                  f"({row['change'] * 100:+.1f}%, limit {row['threshold'] * 100:.1f}%)")
PY
echo "gate.sh: helix-compare exit code $code (0 pass, 1 regression, 2 nothing matched)"
exit $code
