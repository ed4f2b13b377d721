#!/usr/bin/env bash
# One command from a fresh clone: installs what is missing (scripts/setup.sh), builds
# (scripts/build.sh), and compares the four layouts (tp, kvp, helix, helix-hopb) on 4 MPI ranks.
# The backend is CUDA when nvidia-smi lists a GPU and the build has the CUDA backend, otherwise
# the CPU backend; HELIX_BACKEND=cpu|cuda forces one. Ends with the table and
# results/quickstart.h5, checked with h5py.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
source "$root/scripts/env.sh"
backend=${HELIX_BACKEND:-}
if [[ -z $backend ]]; then
  backend=cpu
  if grep -q '^CMAKE_CUDA_COMPILER:' "$root/build/CMakeCache.txt" 2>/dev/null \
     && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    backend=cuda
  fi
fi
echo "quickstart: backend $backend"
mkdir -p "$root/results"
mpiexec -n 4 "$root/build/bin/helix-bench" decode --model tiny-gqa --kvp 2 --tpa 2 \
  --layouts tp,kvp,helix,helix-hopb --seq 1000,4000 --batch 1,8 --backend "$backend" \
  --out "$root/results/quickstart.h5"
python3 "$root/scripts/check_trace.py" "$root/results/quickstart.h5"
