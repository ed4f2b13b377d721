#!/usr/bin/env bash
# calibrate on one rank: the profile has no collective curves, takes its link figures from a
# built-in profile named in its sources, and `model --validate` reads it.
#   calibrate_one_rank.sh HELIX_BENCH WORKDIR -- MPIEXEC (launching one rank)...
set -euo pipefail
bench=$1 work=$2
shift 2
[[ ${1:-} == -- ]] && shift
mkdir -p "$work"
rm -f "$work/profile.json" "$work/trace.h5" "$work/validate.h5"
"$@" "$bench" calibrate --quick --backend cpu --out "$work/profile.json" >/dev/null
python3 - "$work/profile.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
assert p["kind"] == "calibrated" and "one rank" in p["description"], p["description"]
assert not p.get("collectives"), p.get("collectives")
for key in ("nvlink.bw_gbps", "nvlink.latency_us", "network.bw_gbps", "network.latency_us"):
    assert p["sources"][key].startswith("fallback (not measured: one rank): built-in profile "), \
        p["sources"][key]
assert p["nvlink"]["bw_gbps"] > 0 and p["nvlink"]["latency_us"] > 0
print("one-rank profile: ok")
PY
"$@" "$bench" decode --model tiny-gqa --seq 100 --batch 2 --iters 2 --warmup 1 --quiet \
  --out "$work/trace.h5" >/dev/null
"$bench" model --validate "$work/trace.h5" --hardware "$work/profile.json" \
  --out "$work/validate.h5" >/dev/null
python3 - "$work/validate.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1]) as f:
    v = f["validate"]
    assert len(v["predicted_us"]) > 0 and np.all(np.isfinite(v["predicted_us"][()]))
print("model --validate with the one-rank profile: ok")
PY
