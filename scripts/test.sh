#!/usr/bin/env bash
# `make test`: every stage runs, even after a failure, so one run shows everything; the exit code is non-zero if
# any stage failed. The last line is the plain `stages: N passed, N failed` summary CI reads.
set -uo pipefail
cd "$(dirname "$0")/.."
stages=(deps lint unit fuzz chart interop datapath e2e)
[ $# -gt 0 ] && stages=("$@")
passed=0 failed=0 failures=()
for s in "${stages[@]}"; do
  echo "=== make $s ($(date -u +%H:%M:%S))"
  start=$SECONDS
  if make --no-print-directory "$s"; then
    passed=$((passed + 1)); echo "=== $s: ok ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1)); failures+=("$s"); echo "=== $s: FAILED ($((SECONDS - start)) s)"
    # Without the tools nothing else can run meaningfully.
    [ "$s" = deps ] && break
  fi
done
[ ${#failures[@]} -gt 0 ] && echo "failed stages: ${failures[*]}"
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
