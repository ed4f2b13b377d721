#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds the CUDA backend and runs the GPU tests (every CUDA
# kernel against its CPU reference; the four layouts on the CUDA backend against the single-rank
# reference at 1, 2 and 4 ranks; the randomized exactness sweep of scripts/gpu_exact_sweep.py at
# 1 rank (label gpu) and at 2 and 4 ranks with one GPU each (label gpu-multi, skipped when fewer
# GPUs are visible); the KV transfer from a TP prefill layout to a Helix decode layout at 2 and 4
# ranks, every block checked). Usage: scripts/gpu_validate.sh [extra ctest args], e.g.
# scripts/gpu_validate.sh -R gpu_kv_transfer for the KV transfer alone.
# Environment: BUILD_DIR (default build-gpu), CUDA_ARCH (default 90a: Hopper with wgmma).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${BUILD_DIR:-build-gpu}
nvidia-smi -L
cmake -S . -B "$build" -DHELIX_CUDA=ON -DHELIX_WERROR=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" >/dev/null
cmake --build "$build" -j"$(nproc)" --target helix-bench helix_cuda_tests
ctest --test-dir "$build" -L gpu --output-on-failure "$@"
