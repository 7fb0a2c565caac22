#!/usr/bin/env bash
# Runs every fuzz target for a bounded time from its committed seed corpus; fails on a crash or a broken oracle.
#   crates/ikev2/fuzz: the IKEv2 codec and engine (FUZZ_SECONDS each, default 16)
#   crates/fuzz: the datapath: ESP decapsulation + replay window, inner IPv4 reassembly, the relay's sessions, the
#               sidecar's 500/4500 demux, the BGP speaker, the TUN offloads (FUZZ_DATAPATH_SECONDS each, default 8)
#
# Stable Rust: cargo-fuzz's default AddressSanitizer build needs `-Zsanitizer`, i.e. nightly. With `-s none` it
# passes only stable flags (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*, --cfg fuzzing), so the
# targets are coverage-guided libFuzzer binaries on stable 1.95 without RUSTC_BOOTSTRAP. Safe Rust needs no ASan
# for memory errors; panics, overflow checks and debug assertions (-O default) are what a crash means here.
#
# Env: FUZZ_SECONDS / FUZZ_DATAPATH_SECONDS per target, FUZZ_TARGETS / FUZZ_DATAPATH_TARGETS (default: all; set
# one to "" to skip that crate), FUZZ_TARGET_DIR (default <fuzz crate>/target, git-ignored; both crates may share
# one). New corpus entries go to a temporary directory, never into git; a crashing input is kept in
# <crate>/artifacts/<target>/ (git-ignored); reproduce with
#   (cd crates/ikev2/fuzz && cargo fuzz run -s none --fuzz-dir . <target> artifacts/<target>/crash-...)   # or crates/fuzz
#   (--fuzz-dir: cargo-fuzz otherwise looks for the fuzz crate in a `fuzz/` folder of the nearest enclosing crate)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${FUZZ_SECONDS:-16}
targets=${FUZZ_TARGETS-"parse_message parse_payloads reassembler responder_datagrams spoofed_peer authenticated_peer"}
dsecs=${FUZZ_DATAPATH_SECONDS:-8}
dtargets=${FUZZ_DATAPATH_TARGETS-"esp_replay ipv4_reassembly relay_sessions sidecar_demux bgp_speaker tun_offload"}
command -v cargo-fuzz >/dev/null 2>&1 || { echo "fuzz: cargo-fuzz missing (scripts/fuzz-deps.sh)" >&2; exit 1; }
work=$(mktemp -d /tmp/iotrelay-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
failed=()

# fuzz_crate DIR SECONDS TARGETS...
fuzz_crate() {
  local dir=$1 s=$2 t tdir
  shift 2
  [ $# -gt 0 ] || return 0
  cd "$root/$dir"
  tdir=${FUZZ_TARGET_DIR:-$PWD/target}
  cargo fuzz build -s none --fuzz-dir "$PWD" --target-dir "$tdir"  # all targets of the crate
  for t in "$@"; do
    mkdir -p "$work/$t" "artifacts/$t"
    echo "fuzz: $t for ${s}s"
    if cargo fuzz run -s none --fuzz-dir "$PWD" --target-dir "$tdir" "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$s" -timeout=20 -rss_limit_mb=2048 -artifact_prefix="artifacts/$t/" \
        -print_final_stats=1 > "$work/$t.log" 2>&1; then
      grep -E "^stat::number_of_executed_units|^Done" "$work/$t.log" | tr '\n' ' '; echo
    else
      failed+=("$t")
      tail -40 "$work/$t.log"
      echo "fuzz: $t FAILED; input kept in $dir/artifacts/$t/" >&2
    fi
  done
}

# shellcheck disable=SC2086 # word splitting of the target lists is intended
fuzz_crate crates/ikev2/fuzz "$secs" $targets
# shellcheck disable=SC2086
fuzz_crate crates/fuzz "$dsecs" $dtargets
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ok ($targets $dtargets)"
