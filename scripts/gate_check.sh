#!/usr/bin/env bash
# Checks the performance gate itself on this machine: scripts/gate.sh run twice against the same
# baseline, once plainly (it must pass) and once with one phase slowed on purpose by a calibrated
# delay (HELIX_TEST_SLOW_PHASE, test only; it must fail and name that phase).
#
# Usage: scripts/gate_check.sh [--backend cpu|cuda] [--np N] [--phase PHASE] [--fraction F]
#                              [--baseline FILE] [--repeat R] [--work DIR]
#   --backend   cpu (default; tiny-gqa on 2 ranks) or cuda (gate.sh's GPU sweep)
#   --np        ranks (default: gate.sh's)
#   --phase     the phase to slow (default ffn)
#   --fraction  how much longer it gets (default 0.10 on cuda; 2.0 on cpu, where the gate's
#               threshold is 50% for the shared CPU's noise)
#   --baseline  an existing baseline trace; default: a fresh one made first in WORK/baseline.h5
#               from --repeat jobs per point (commit it under results/baseline/ once reviewed)
#   --repeat    jobs per point of the fresh baseline (default 3: the gate's noise band)
#   --work      output folder (default gate-check): baseline.h5, plain/, slowed/, summary.txt
# Prints one line per gate run and a verdict; exit 0 when the plain rerun passed and the slowed
# one was caught naming the phase, 1 otherwise, 2 on bad input. GATE_SCRIPT replaces
# scripts/gate.sh (for testing this script).
# On the CPU backend the shared cores' noise can fail a plain rerun: the check is meant for GPUs.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

backend=cpu; np=(); phase=ffn; fraction=""; baseline=""; repeat=3; work=gate-check
while (($#)); do
  case $1 in
    --backend) backend=${2:-}; shift 2 ;;
    --np) np=(--np "${2:-}"); shift 2 ;;
    --phase) phase=${2:-}; shift 2 ;;
    --fraction) fraction=${2:-}; shift 2 ;;
    --baseline) baseline=${2:-}; shift 2 ;;
    --repeat) repeat=${2:-}; shift 2 ;;
    --work) work=${2:-}; shift 2 ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gate_check.sh: error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case $backend in
  cpu) fraction=${fraction:-2.0} ;;
  cuda) fraction=${fraction:-0.10} ;;
  *) echo "gate_check.sh: error: --backend must be cpu or cuda, got '$backend'" >&2; exit 2 ;;
esac
phases=" qkv kv_append attention attn_comm combine o_proj o_comm ffn ffn_comm out_comm "
[[ $phases == *" $phase "* ]] ||
  { echo "gate_check.sh: error: --phase must be one of:$phases, got '$phase'" >&2; exit 2; }
[[ $repeat =~ ^[1-9][0-9]*$ ]] ||
  { echo "gate_check.sh: error: --repeat must be a positive integer, got '$repeat'" >&2; exit 2; }
if [[ -n $baseline && ! -f $baseline ]]; then
  echo "gate_check.sh: error: --baseline $baseline does not exist" >&2; exit 2
fi
unset HELIX_TEST_SLOW_PHASE
mkdir -p "$work" || { echo "gate_check.sh: error: cannot create $work" >&2; exit 2; }
gate=("${GATE_SCRIPT:-$root/scripts/gate.sh}" --backend "$backend" "${np[@]}")
summary=$work/summary.txt
: >"$summary"
say() { echo "gate_check: $*" | tee -a "$summary"; }
start=$SECONDS

if [[ -z $baseline ]]; then
  baseline=$work/baseline.h5
  "${gate[@]}" --work "$work/base" --baseline "$baseline" --repeat "$repeat" --update-baseline \
    >"$work/base.log" 2>&1 || { say "making the baseline failed (see $work/base.log)"; exit 1; }
  say "baseline: $baseline ($repeat jobs per point, $((SECONDS - start)) s)"
fi

"${gate[@]}" --work "$work/plain" --baseline "$baseline" >"$work/plain.log" 2>&1
plain=$?
say "plain rerun: exit $plain (0 = pass), $((SECONDS - start)) s"
HELIX_TEST_SLOW_PHASE="$phase:$fraction" "${gate[@]}" --work "$work/slowed" \
  --baseline "$baseline" >"$work/slowed.log" 2>&1
slowed=$?
named=$(grep -c "REGRESSION ${phase}_us of" "$work/slowed.log")
others=$(grep "REGRESSION " "$work/slowed.log" | grep -vc "REGRESSION ${phase}_us of\|REGRESSION step_us of")
say "rerun with $phase slowed by $fraction: exit $slowed (1 = regression), $named run(s) name" \
  "${phase}_us, $others other phase regression(s), $((SECONDS - start)) s"
grep "REGRESSION " "$work/slowed.log" | tee -a "$summary"
ok=1
((plain == 0)) || { ok=0; say "FAILED: the plain rerun did not pass (see $work/plain.log)"; }
((slowed == 1 && named > 0)) ||
  { ok=0; say "FAILED: the slowed rerun was not caught naming ${phase}_us (see $work/slowed.log)"; }
((ok)) && say "OK: plain rerun passed; slowed rerun caught, naming ${phase}_us"
((ok))
