#!/usr/bin/env bash
# `make test`: every stage runs, even after a failure, so one run shows everything; the exit code is non-zero if
# any stage failed. The last line is the plain `stages: N passed, N failed` summary CI reads.
set -uo pipefail
cd "$(dirname "$0")/.."
# The Kubernetes end-to-end test (`make e2e`, issue 5) is not a default stage yet: in its first runs against the
# real sidecar the relay became Ready with SPIs matching the AWS side, but the UDP round trip, live forward
# changes and kstatus Current still fail there. Run it with `make e2e` or `scripts/test.sh e2e`; it joins the
# default list when it passes.
stages=(deps lint unit fuzz chart interop datapath)
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
