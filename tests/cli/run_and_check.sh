#!/usr/bin/env bash
# Runs a command that must succeed, then a checker of what it wrote; the output files are removed
# first so a stale file cannot pass.
#   run_and_check.sh "FILE [FILE...]" -- COMMAND... -- CHECKER...
set -u
files=$1
shift
[[ ${1:-} == -- ]] && shift
cmd=()
while [[ $# -gt 0 && $1 != -- ]]; do cmd+=("$1"); shift; done
shift
for f in $files; do rm -f "$f" "$f".tmp.*; done
if ! log=$("${cmd[@]}" 2>&1); then
  echo "FAIL: command exited with an error: ${cmd[*]}"
  echo "$log"
  exit 1
fi
for f in $files; do
  [[ -s $f ]] || { echo "FAIL: $f was not written"; echo "$log"; exit 1; }
done
"$@"
