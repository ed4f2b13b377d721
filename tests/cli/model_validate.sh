#!/usr/bin/env bash
# A decode trace validated against the cost model: every run gets a predicted and a measured time
# per phase and per step, written under /validate.
#   model_validate.sh HELIX_BENCH PROFILE WORKDIR -- MPIEXEC...
set -euo pipefail
bench=$1 profile=$2 work=$3
shift 3
[[ ${1:-} == -- ]] && shift
mkdir -p "$work"
rm -f "$work/trace.h5" "$work/validate.h5"
"$@" "$bench" decode --model tiny-gqa --seq 100 --batch 2 --iters 2 --warmup 1 --quiet \
  --out "$work/trace.h5" >/dev/null
"$bench" model --validate "$work/trace.h5" --hardware "$profile" --out "$work/validate.h5" \
  | tee "$work/validate.log"
grep -Eq '^run_0002 +helix +2 +2 +100 step ' "$work/validate.log"
python3 - "$work/validate.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1]) as f:
    assert f.attrs["kind"] == "model"
    v = f["validate"]
    n = len(v["predicted_us"])
    phases = v["phase"][()].astype(str)
    assert n > 4 * 3, n
    assert (phases == "step").sum() == 4, phases  # one per layout
    pred, meas = v["predicted_us"][()], v["measured_us"][()]
    # The critical rank's wait can be exactly 0 (it waited for no one); every other row is > 0.
    waits = phases == "wait"
    assert np.all(pred >= 0) and np.all(meas[~waits] > 0) and np.all(meas[waits] >= 0)
    pos = meas > 0
    assert np.allclose(v["rel_error"][()][pos], pred[pos] / meas[pos] - 1)
print("validate: ok")
PY
