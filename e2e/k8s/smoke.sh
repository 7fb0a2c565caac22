#!/usr/bin/env bash
# Smoke test of the e2e infrastructure alone (no iotrelay code): start the control plane, `helm install` a
# throwaway chart whose pod lists pods with its own ServiceAccount token and serves the answer over HTTP,
# see it Running+Ready via the fake kubelet, check the host-port conflict is caught by the scheduler,
# uninstall, see the pod process gone, stop. Prints PASS/FAIL lines and `N passed, N failed`.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${K8S_STATE:=/tmp/k8s-iotrelay-smoke}"
: "${K8S_NETNS:=k8s-smoke}"
export K8S_STATE K8S_NETNS
passed=0 failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1${2:+: $2}"; failed=$((failed + 1)); }
check() { local name=$1; shift; if "$@"; then pass "$name"; else fail "$name"; fi; }
finish() {
  "$here/cluster.sh" stop >/dev/null 2>&1
  rm -rf /run/k8s-smoke /etc/k8s-smoke-settings.conf   # mount points fake-kubelet created on the host
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
}
trap finish EXIT

if ! "$here/cluster.sh" start; then fail cluster-start; exit; fi
pass cluster-start
eval "$("$here/cluster.sh" env)"
ns=k8s-smoke

check helm-install helm install smoke "$here/smoke-chart" -n $ns --create-namespace --wait --timeout 90s
check pod-running-ready kubectl -n $ns wait --for=condition=Ready pod -l app=web --timeout=60s
pod=$(kubectl -n $ns get pod -l app=web -o jsonpath='{.items[0].metadata.name}')
in_cluster_list() { ip netns exec "$K8S_NETNS" curl -sf http://127.0.0.1:18080/pods.json | grep -q "\"name\": *\"$pod\""; }
check pod-token-in-cluster-config in_cluster_list
pod_pid=$(kubectl -n $ns get pod "$pod" -o jsonpath='{.status.containerStatuses[0].containerID}' | sed 's|fake://||')

volumes_mounted() {
  kubectl -n $ns wait --for=condition=Ready pod/volumes --timeout=30s > /dev/null &&
    grep -q 'smoke-secret-valuesmoke-config-value ok' "$K8S_STATE/kubelet/pods/${ns}_volumes/c.log" &&
    ! grep -q smoke-secret-value /run/k8s-smoke/psk/psk 2>/dev/null   # the host sees only the empty mount point
}
check pod-volumes-mounted volumes_mounted

# A second release on the same host port must stay Pending (the scheduler's NodePorts filter).
helm install smoke2 "$here/smoke-chart" -n k8s-smoke2 --create-namespace >/dev/null 2>&1
hostport_pending() {
  sleep 3
  kubectl -n k8s-smoke2 get events --field-selector reason=FailedScheduling -o jsonpath='{.items[*].message}' \
    | grep -q "free ports"
}
check hostport-conflict-unschedulable hostport_pending
helm uninstall smoke2 -n k8s-smoke2 >/dev/null 2>&1

check helm-uninstall helm uninstall smoke -n $ns --wait --timeout 60s
gone() { for _ in $(seq 1 50); do kill -0 "$pod_pid" 2>/dev/null || return 0; sleep 0.2; done; return 1; }
check pod-process-stopped gone
