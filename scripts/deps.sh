#!/usr/bin/env bash
# Installs what the demo and the tests need. Idempotent: a second run only checks.
#   scripts/deps.sh demo   only what `make demo` needs: strongSwan (charon with kernel-libipsec, swanctl) and the
#                          few tools the lab uses (ip, python3, jq, curl); a minute or so from Debian's mirrors
#   scripts/deps.sh        (= all) also the tools of `make test`: clippy/rustfmt, tcpdump, iperf3, lua, the
#                          Kubernetes control plane, kubectl and helm (e2e/tools/build.sh, ~7 min the first time on 2
#                          cores) and cargo-fuzz (scripts/fuzz-deps.sh)
# Everything comes from Debian, crates.io and the Go module proxy; build outputs go to $IOTRELAY_CACHE.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${IOTRELAY_CACHE:=/var/cache/iotrelay}"
what=${1:-all}
case $what in demo|all) ;; *) echo "usage: scripts/deps.sh [demo|all]" >&2; exit 2 ;; esac

apt_pkgs=(strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins
          iproute2 python3 python3-yaml jq curl procps)
[ "$what" = all ] && apt_pkgs+=(iptables socat tcpdump iperf3 lua5.4 psmisc openssl iputils-ping bird2)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The strongSwan units must not run a system-wide charon: every lab charon is private to its namespace.
systemctl disable --now strongswan-starter strongswan 2>/dev/null || true
command -v cargo >/dev/null || { echo "deps: cargo is missing (install Rust, e.g. with rustup)" >&2; exit 1; }
if [ "$what" = demo ]; then
  echo "deps: ok (demo)"
  exit 0
fi

# Rust components used by `make lint`.
grep -q '^clippy' <<< "$(rustup component list --installed 2>/dev/null)" || rustup component add clippy rustfmt
mkdir -p "$IOTRELAY_CACHE/bin"
# Go-built tools (helm, kubectl, etcd, kube-apiserver, ...) into $IOTRELAY_CACHE/bin.
if [ -x e2e/tools/build.sh ]; then e2e/tools/build.sh; fi
# cargo-fuzz for `make fuzz`.
if [ -x scripts/fuzz-deps.sh ]; then scripts/fuzz-deps.sh; fi
echo "deps: ok"
