#!/usr/bin/env bash
# Runs every IKEv2 fuzz target (ikev2/fuzz) for a bounded time from its committed seed corpus; fails on a crash.
#
# Stable Rust: cargo-fuzz's default AddressSanitizer build needs `-Zsanitizer`, i.e. nightly. With `-s none` it
# passes only stable flags (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*, --cfg fuzzing), so the
# targets are coverage-guided libFuzzer binaries on stable 1.95 without RUSTC_BOOTSTRAP. Safe Rust needs no ASan
# for memory errors; panics, overflow checks and debug assertions (-O default) are what a crash means here.
#
# Env: FUZZ_SECONDS per target (default 20), FUZZ_TARGETS (default: all), FUZZ_TARGET_DIR (default
# ikev2/fuzz/target, git-ignored). New corpus entries go to a temporary directory, never into git; a crashing
# input is kept in ikev2/fuzz/artifacts/<target>/ (git-ignored); reproduce with
#   (cd ikev2/fuzz && cargo fuzz run -s none <target> artifacts/<target>/crash-...)
set -euo pipefail
cd "$(dirname "$0")/../ikev2/fuzz"
secs=${FUZZ_SECONDS:-20}
targets=${FUZZ_TARGETS:-"parse_message parse_payloads reassembler responder_datagrams authenticated_peer"}
tdir=${FUZZ_TARGET_DIR:-$PWD/target}
command -v cargo-fuzz >/dev/null 2>&1 || { echo "fuzz: cargo-fuzz missing (scripts/fuzz-deps.sh)" >&2; exit 1; }
work=$(mktemp -d /tmp/iotrelay-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT

cargo fuzz build -s none --target-dir "$tdir"  # all targets
failed=()
for t in $targets; do
  mkdir -p "$work/$t" "artifacts/$t"
  echo "fuzz: $t for ${secs}s"
  if cargo fuzz run -s none --target-dir "$tdir" "$t" "$work/$t" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -artifact_prefix="artifacts/$t/" \
      -print_final_stats=1 > "$work/$t.log" 2>&1; then
    grep -E "^stat::number_of_executed_units|^Done" "$work/$t.log" | tr '\n' ' '; echo
  else
    failed+=("$t")
    tail -40 "$work/$t.log"
    echo "fuzz: $t FAILED; input kept in ikev2/fuzz/artifacts/$t/" >&2
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ok ($targets)"
