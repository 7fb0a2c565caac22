#!/usr/bin/env bash
# `make test`: every stage runs, even after a failure, so one run shows everything; the exit code is non-zero if
# any stage failed. The last line is the plain `stages: N passed, N failed` summary CI reads.
# The case suites (interop, datapath, e2e) write their counts to $IOTRELAY_SUMMARY (e2e/lab/lib.sh lab_report): a
# stage whose summary is missing, says it was aborted, or ran fewer cases than it expected fails even if its exit
# status was 0. An interrupted `make test` (SIGINT/SIGTERM) ends red.
set -uo pipefail
cd "$(dirname "$0")/.."
stages=(deps lint unit fuzz chart interop datapath gateway bgp demo e2e)
[ $# -gt 0 ] && stages=("$@")
passed=0 failed=0 failures=()
summary=$(mktemp /tmp/iotrelay-summary.XXXXXX)
trap 'rm -f "$summary"' EXIT
trap 'echo "=== interrupted: stages: $passed passed, $((failed + 1)) failed"; exit 130' INT
trap 'echo "=== terminated: stages: $passed passed, $((failed + 1)) failed"; exit 143' TERM
# counted_ok STAGE: for a case suite, its summary says every expected case ran and none failed.
counted_ok() {
  case $1 in interop | datapath | gateway | bgp | e2e) ;; *) return 0 ;; esac
  local line
  line=$(grep '^cases: ' "$summary" 2>/dev/null)
  [ -n "$line" ] || { echo "=== $1: no case summary (the suite ended before reporting)"; return 1; }
  grep -qE '^[0-9]+ passed, 0 failed$' "$summary" || { echo "=== $1: $(tail -1 "$summary")"; return 1; }
  # "cases: expected E, ran R, skipped S" and nothing after it: all ran (a full run selects every case).
  [[ $line =~ ^cases:\ expected\ ([0-9]+),\ ran\ ([0-9]+),\ skipped\ 0$ ]] && [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ] \
    || { echo "=== $1: short run: $line"; return 1; }
}
for s in "${stages[@]}"; do
  echo "=== make $s ($(date -u +%H:%M:%S))"
  start=$SECONDS
  : > "$summary"
  if IOTRELAY_SUMMARY=$summary make --no-print-directory "$s" && counted_ok "$s"; then
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
