#!/usr/bin/env bash
# Builds the e2e's Kubernetes toolbox from the Go module proxy into $IOTRELAY_CACHE/bin:
#   control plane (default): helm, etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
#                            (upstream, versions in go.mod), kstatus (ours, cmd/)
#   node (`build.sh node`, scripts/node-deps.sh): kubelet, kube-proxy (go.mod's k8s.io/kubernetes), crictl
#                            (sigs.k8s.io/cri-tools at $CRICTL_VERSION, its own module), pause (ours, cmd/)
# Idempotent: a binary is rebuilt only when go.mod/go.sum or its own sources changed (a stamp file next to it
# holds the hash). GOCACHE/GOMODCACHE live under $IOTRELAY_CACHE/go, so later builds reuse compiled packages.
# Usage: e2e/tools/build.sh [control|node|name...]   (default: control, helm first)
set -euo pipefail
cd "$(dirname "$0")"
: "${IOTRELAY_CACHE:=/var/cache/iotrelay}"
bin="$IOTRELAY_CACHE/bin"
mkdir -p "$bin" "$IOTRELAY_CACHE/go"
export GOCACHE="$IOTRELAY_CACHE/go/build" GOMODCACHE="$IOTRELAY_CACHE/go/mod" GOTOOLCHAIN=local GOFLAGS=-mod=readonly
export CGO_ENABLED=0

declare -A pkg=(
  [helm]=helm.sh/helm/v3/cmd/helm
  [etcd]=./cmd/etcd
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
  [kubectl]=k8s.io/kubernetes/cmd/kubectl
  [kstatus]=./cmd/kstatus
  [kubelet]=k8s.io/kubernetes/cmd/kubelet
  [kube-proxy]=k8s.io/kubernetes/cmd/kube-proxy
  [pause]=./cmd/pause
)
# crictl is not in go.mod: cri-tools has its own module graph (no replace directives), so `go install
# pkg@version` builds it without touching the versions the control plane is built with.
: "${CRICTL_VERSION:=v1.37.0}"
pkg[crictl]=sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION
control=(helm etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kstatus)
node=(kubelet kube-proxy crictl pause)
order=()
[ $# -gt 0 ] || set -- control
for a in "$@"; do
  case "$a" in control) order+=("${control[@]}") ;; node) order+=("${node[@]}") ;; *) order+=("$a") ;; esac
done

command -v go >/dev/null || { echo "build.sh: go is not installed (Go >= $(sed -n 's/^go //p' go.mod) needed)" >&2; exit 1; }
# Stamp the Kubernetes version into the k8s binaries (go build leaves v0.0.0-master, which trips up version
# checks such as a chart's kubeVersion).
kver=$(sed -n 's/^\tk8s.io\/kubernetes \(v[0-9.]*\).*/\1/p' go.mod)
kminor=$(echo "$kver" | cut -d. -f2)
kldflags=""
for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kldflags+=" -X $v.gitVersion=$kver -X $v.gitMajor=1 -X $v.gitMinor=$kminor -X $v.gitTreeState=clean"
done
total_start=$SECONDS
built=0
for name in "${order[@]}"; do
  p="${pkg[$name]:-}"
  [ -n "$p" ] || { echo "build.sh: unknown tool $name" >&2; exit 2; }
  # Our own tools also depend on their sources.
  src=""
  case "$p" in
    ./*) src=$(find "$p" -name '*.go' -print0 | sort -z | xargs -0 cat) ;;
    *@*) src=$p ;;
  esac
  stamp=$( { cat go.mod go.sum; go env GOVERSION; echo "$src"; } | sha256sum | cut -d' ' -f1)
  if [ -x "$bin/$name" ] && [ "$(cat "$bin/$name.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "build.sh: $name up to date"
    continue
  fi
  start=$SECONDS
  echo "build.sh: building $name ($p)"
  ldflags="-s"
  case "$p" in k8s.io/kubernetes/*) ldflags+="$kldflags" ;; esac
  case "$p" in
    *@*) # outside this module: go install into a private GOBIN, then move into place
      rm -rf "$bin/.gobin"
      GOBIN="$bin/.gobin" GOFLAGS= nice -n 10 go install -trimpath -ldflags="$ldflags" "$p"
      mv -f "$bin/.gobin/$(basename "${p%@*}")" "$bin/$name.tmp"
      rmdir "$bin/.gobin" ;;
    *) nice -n 10 go build -trimpath -ldflags="$ldflags" -o "$bin/$name.tmp" "$p" ;;
  esac
  mv -f "$bin/$name.tmp" "$bin/$name"
  echo "$stamp" > "$bin/$name.stamp"
  built=$((built + 1))
  echo "build.sh: $name built in $((SECONDS - start)) s"
done
echo "build.sh: $built built, total $((SECONDS - total_start)) s"
