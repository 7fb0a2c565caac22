#!/usr/bin/env bash
# A real, single-node Kubernetes control plane for the e2e, built from the Go module proxy (e2e/tools/build.sh).
#
#   netns $K8S_NETNS (default k8s-node) = the lab "node"; everything below listens on its loopback only
#   +---------------------------------------------------------------------------------------------+
#   |  etcd 127.0.0.1:2379  <-  kube-apiserver https://127.0.0.1:6443 (TLS, Node,RBAC, SA signing)   |
#   |                            ^  kube-controller-manager, kube-scheduler (own client certs)       |
#   |                            ^  fake-kubelet (system:node:$K8S_NODE): Node + Lease, runs the     |
#   |                               Pods bound to it as processes here (hostNetwork; other Pods in a  |
#   |                               netns $K8S_NETNS-pod-<uid> each, API server proxied in), SA tokens|
#   +---------------------------------------------------------------------------------------------+
#   host: kubectl / helm wrappers in $K8S_STATE/bin enter the netns (`eval "$(cluster.sh env)"`)
#
# Usage: e2e/k8s/cluster.sh start|stop|env|status
# Env: K8S_STATE (state dir, default /tmp/k8s-iotrelay), K8S_NETNS, K8S_NODE (default lab-node),
#      IOTRELAY_CACHE (binaries in $IOTRELAY_CACHE/bin), K8S_POD_PATH (dirs prepended to PATH of pod processes,
#      default <repo>/target/release), K8S_KEEP_STATE=1 (stop keeps the state dir, e.g. for logs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
: "${IOTRELAY_CACHE:=/var/cache/iotrelay}"
: "${K8S_STATE:=/tmp/k8s-iotrelay}"
: "${K8S_NETNS:=k8s-node}"
: "${K8S_NODE:=lab-node}"
: "${K8S_POD_PATH:=$repo/target/release}"
bin="$IOTRELAY_CACHE/bin"
pki="$K8S_STATE/pki"
api=https://127.0.0.1:6443

log() { echo "cluster: $*" >&2; }
in_ns() { ip netns exec "$K8S_NETNS" "$@"; }

gen_pki() {
  mkdir -p "$pki"
  cd "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=iotrelay-e2e-ca 2>/dev/null
  # name, subject, extensions
  cert() {
    local name=$1 subj=$2 ext=$3
    openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
    printf '%s\n' "$ext" > "$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" -days 2 \
      -extfile "$name.ext" 2>/dev/null
  }
  cert apiserver /CN=kube-apiserver "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  local client="basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  cert admin "/O=system:masters/CN=kubernetes-admin" "$client"
  cert controller-manager /CN=system:kube-controller-manager "$client"
  cert scheduler /CN=system:kube-scheduler "$client"
  cert node "/O=system:nodes/CN=system:node:$K8S_NODE" "$client"
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  for who in admin controller-manager scheduler node; do
    cat > "$K8S_STATE/$who.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: $api, certificate-authority: $pki/ca.crt}
users:
- name: $who
  user: {client-certificate: $pki/$who.crt, client-key: $pki/$who.key}
contexts:
- name: e2e
  context: {cluster: e2e, user: $who}
current-context: e2e
EOF
  done
  cd - >/dev/null
}

# spawn NAME CMD...: runs CMD in the node netns, detached, logging to logs/NAME.log.
spawn() {
  local name=$1
  shift
  setsid ip netns exec "$K8S_NETNS" "$@" > "$K8S_STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$K8S_STATE/pids/$name"
}

wait_for() { # what timeout cmd...
  local what=$1 timeout=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $((SECONDS - start)) -ge "$timeout" ]; then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
  log "$what after $((SECONDS - start)) s"
}

alive() { kill -0 "$(cat "$K8S_STATE/pids/$1")" 2>/dev/null; }

start() {
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm fake-kubelet; do
    [ -x "$bin/$b" ] || { log "missing $bin/$b: run e2e/tools/build.sh"; exit 1; }
  done
  if [ -d "$K8S_STATE/pids" ] && ls "$K8S_STATE/pids"/* >/dev/null 2>&1; then
    log "a cluster seems to be running (state in $K8S_STATE): stop it first"
    exit 1
  fi
  local t0=$SECONDS
  rm -rf "$K8S_STATE"
  # A failed start leaves nothing running; the logs stay in $K8S_STATE.
  trap 'log "start failed; logs in $K8S_STATE/logs"; K8S_KEEP_STATE=1 stop' ERR
  mkdir -p "$K8S_STATE"/{logs,pids,bin,etcd,kubelet}
  if ! ip netns list | grep -qw "^$K8S_NETNS"; then
    ip netns add "$K8S_NETNS"
    touch "$K8S_STATE/created-netns"
  fi
  ip -n "$K8S_NETNS" link set lo up
  # In-cluster clients that use the DNS name (e.g. kube-rs' incluster_dns) find the API server: `ip netns exec`
  # bind-mounts /etc/netns/<ns>/hosts over /etc/hosts for everything started in the node namespace.
  mkdir -p "/etc/netns/$K8S_NETNS"
  if [ ! -e "/etc/netns/$K8S_NETNS/hosts" ]; then
    { cat /etc/hosts
      echo "127.0.0.1 kubernetes kubernetes.default kubernetes.default.svc kubernetes.default.svc.cluster.local"
    } > "/etc/netns/$K8S_NETNS/hosts"
    touch "$K8S_STATE/created-hosts"
  fi
  gen_pki

  # Wrappers so that host-side commands reach the API server on the node's loopback.
  for b in kubectl helm kstatus; do
    printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$K8S_NETNS" "$bin/$b" > "$K8S_STATE/bin/$b"
    chmod +x "$K8S_STATE/bin/$b"
  done

  spawn etcd "$bin/etcd" --name e2e --data-dir "$K8S_STATE/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster e2e=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
    --unsafe-no-fsync --quota-backend-bytes 1073741824
  wait_for "etcd healthy" 60 in_ns curl -sf http://127.0.0.1:2381/health

  spawn kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers http://127.0.0.1:2379 \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port 6443 \
    --endpoint-reconciler-type none \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=true --profiling=false
  wait_for "kube-apiserver ready" 120 in_ns curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" \
    --key "$pki/admin.key" "$api/readyz"

  spawn kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$K8S_STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$K8S_STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$K8S_STATE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10257 --leader-elect=false \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --use-service-account-credentials=true --controllers '*,-node-ipam-controller' \
    --cert-dir "$K8S_STATE/kcm-certs"
  spawn kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$K8S_STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$K8S_STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$K8S_STATE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --cert-dir "$K8S_STATE/scheduler-certs"
  spawn fake-kubelet "$bin/fake-kubelet" --kubeconfig "$K8S_STATE/node.kubeconfig" --node-name "$K8S_NODE" \
    --node-ip 127.0.0.1 --state-dir "$K8S_STATE/kubelet" --path-prepend "$K8S_POD_PATH" \
    --pod-netns-prefix "$K8S_NETNS-pod-"

  local k=("$bin/kubectl" --kubeconfig "$K8S_STATE/admin.kubeconfig")
  wait_for "node $K8S_NODE Ready" 60 in_ns "${k[@]}" wait --for=condition=Ready "node/$K8S_NODE" --timeout=1s
  wait_for "default ServiceAccount" 60 in_ns "${k[@]}" get serviceaccount default -n default
  for p in etcd kube-apiserver kube-controller-manager kube-scheduler fake-kubelet; do
    alive "$p" || { log "$p died"; tail -20 "$K8S_STATE/logs/$p.log" >&2; false; }
  done
  trap - ERR
  log "up in $((SECONDS - t0)) s; use: eval \"\$($0 env)\""
}

stop() {
  [ -d "$K8S_STATE/pids" ] || { log "not running"; return 0; }
  # The kubelet first (it stops the pod processes), the control plane last.
  for p in fake-kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do
    local f="$K8S_STATE/pids/$p"
    [ -f "$f" ] || continue
    local pid
    pid=$(cat "$f")
    if kill -TERM "$pid" 2>/dev/null; then
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  # Network namespaces of non-hostNetwork pods (fake-kubelet removes them; a killed one may leave some).
  local n
  for n in $(ip netns list | awk '{print $1}' | grep "^$K8S_NETNS-pod-" || true); do ip netns del "$n" 2>/dev/null || true; done
  if [ -f "$K8S_STATE/created-hosts" ]; then
    rm -f "/etc/netns/$K8S_NETNS/hosts"
    rmdir "/etc/netns/$K8S_NETNS" 2>/dev/null || true
  fi
  if [ -f "$K8S_STATE/created-netns" ]; then
    ip netns del "$K8S_NETNS" 2>/dev/null || true
  fi
  if [ "${K8S_KEEP_STATE:-0}" = 1 ]; then
    log "stopped; state kept in $K8S_STATE"
  else
    rm -rf "$K8S_STATE"
    log "stopped"
  fi
}

env_() {
  echo "export KUBECONFIG=$K8S_STATE/admin.kubeconfig"
  echo "export PATH=$K8S_STATE/bin:\$PATH"
  echo "export K8S_NETNS=$K8S_NETNS K8S_NODE=$K8S_NODE K8S_STATE=$K8S_STATE"
}

status() {
  for p in etcd kube-apiserver kube-controller-manager kube-scheduler fake-kubelet; do
    if [ -f "$K8S_STATE/pids/$p" ] && alive "$p"; then echo "$p: running"; else echo "$p: stopped"; fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) env_ ;;
  status) status ;;
  *) echo "usage: $0 start|stop|env|status" >&2; exit 2 ;;
esac
