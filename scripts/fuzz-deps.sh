#!/usr/bin/env bash
# Installs cargo-fuzz for `make fuzz` (scripts/fuzz.sh). Idempotent. Needs a C++ compiler (libfuzzer-sys builds
# libFuzzer) but no nightly toolchain: scripts/fuzz.sh builds with `-s none` (no sanitizer), which needs no -Z flag.
set -euo pipefail
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz-deps: cargo install cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
command -v c++ >/dev/null 2>&1 || { echo "fuzz-deps: a C++ compiler (g++) is needed for libFuzzer" >&2; exit 1; }
