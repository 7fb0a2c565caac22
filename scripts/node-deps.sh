#!/usr/bin/env bash
# What the Kubernetes e2e's real node needs on top of scripts/deps.sh: containerd, runc and the CNI plugins from
# Debian, and kubelet, kube-proxy, crictl and the pause binary built from the Go module proxy into
# $IOTRELAY_CACHE/bin (`e2e/tools/build.sh node`, next to the control plane that scripts/deps.sh builds).
# Idempotent: a second run only checks. Called by `make e2e` (a stage of `make test`).
# Nothing here starts a service: e2e/k8s/cluster.sh starts its own containerd inside the node's namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
apt_pkgs=(containerd runc containernetworking-plugins iptables conntrack)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "node-deps: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's package starts a system-wide containerd where systemd runs; the e2e runs its own (own socket and
  # root), so one we just installed is not left running. (One that was there before is someone's: untouched.)
  if [[ " ${missing[*]} " == *" containerd "* ]]; then systemctl disable --now containerd 2>/dev/null || true; fi
fi
e2e/tools/build.sh node
echo "node-deps: ok ($((SECONDS - t0)) s)"
