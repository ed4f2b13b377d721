#!/usr/bin/env bash
# Runs the given command when a GPU is visible; exits 77 (CTest: skipped) otherwise.
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "no GPU visible: skipped"
  exit 77
fi
exec "$@"
