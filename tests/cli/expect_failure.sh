#!/usr/bin/env bash
# Runs a command that must fail and checks how: the exit code, a message, and that no output file
# (nor a temporary one) was left behind.
#   expect_failure.sh EXIT_CODE|nonzero REGEX OUTFILE -- COMMAND...
set -u
want_rc=$1 regex=$2 outfile=$3
shift 3
[[ ${1:-} == -- ]] && shift
rm -f "$outfile" "$outfile".tmp.*
log=$("$@" 2>&1)
rc=$?
status=0
if [[ $want_rc == nonzero ]]; then
  [[ $rc -ne 0 ]] || { echo "FAIL: expected a non-zero exit code, got 0"; status=1; }
elif [[ $rc -ne $want_rc ]]; then
  echo "FAIL: expected exit code $want_rc, got $rc"
  status=1
fi
if ! grep -Eq -- "$regex" <<<"$log"; then
  echo "FAIL: output does not match /$regex/"
  status=1
fi
if compgen -G "$outfile*" >/dev/null; then
  echo "FAIL: output file left behind: $(ls "$outfile"*)"
  status=1
fi
if [[ $status -ne 0 ]]; then
  echo "--- output of: $*"
  echo "$log"
fi
exit $status
