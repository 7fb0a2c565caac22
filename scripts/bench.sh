#!/usr/bin/env bash
# Crypto benchmarks for the ESP hot path (1400-octet packets): RustCrypto against ring and aws-lc-rs (AES-GCM, AES-CBC, HMAC), and
# SaCipher for every suite. Prints ns/op, MB/s and, per group, the ratio to that group's baseline line measured in
# the same run (so a busy machine skews both sides alike). Extra arguments: a group filter (substring), e.g.
#   scripts/bench.sh hmac        BENCH_MS=500 BENCH_ROUNDS=9 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
nice cargo bench -q -p iotrelay-crypto --bench suites -- "$@"
