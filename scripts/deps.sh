#!/usr/bin/env bash
# Installs what the lab, the tests and the demo need. Idempotent: a second run only checks.
# Everything comes from Debian, crates.io and the Go module proxy; build outputs go to $IOTRELAY_CACHE.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${IOTRELAY_CACHE:=/var/cache/iotrelay}"
mkdir -p "$IOTRELAY_CACHE/bin"

apt_pkgs=(strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins
          iproute2 iptables socat tcpdump iperf3 jq lua5.4 python3-yaml procps psmisc openssl curl)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The strongSwan units must not run a system-wide charon: every lab charon is private to its namespace.
systemctl disable --now strongswan-starter strongswan 2>/dev/null || true

# Rust components used by `make lint`.
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

# Go-built tools (helm, kubectl, etcd, kube-apiserver, ...) into $IOTRELAY_CACHE/bin.
if [ -x e2e/tools/build.sh ]; then e2e/tools/build.sh; fi
# cargo-fuzz for `make fuzz`.
if [ -x scripts/fuzz-deps.sh ]; then scripts/fuzz-deps.sh; fi
echo "deps: ok"
