#!/usr/bin/env bash
# Smoke test of the e2e's node alone (no iotrelay code): start the cluster, `helm install` a throwaway chart whose
# pod runs the node's pause image in the pod network, see it Running+Ready, reach the API server through the
# `kubernetes` Service (kube-proxy), check the host-port conflict is caught by the scheduler, uninstall, see the
# container gone, stop, and see that the node left nothing behind (processes, mounts, cgroups, namespace).
# Prints PASS/FAIL lines and `N passed, N failed`.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${K8S_STATE:=/tmp/k8s-iotrelay-smoke}"
: "${K8S_NETNS:=k8s-smoke}"
: "${IOTRELAY_CACHE:=/var/cache/iotrelay}"
export K8S_STATE K8S_NETNS IOTRELAY_CACHE
passed=0 failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1${2:+: $2}"; failed=$((failed + 1)); }
check() { local name=$1; shift; if "$@"; then pass "$name"; else fail "$name"; fi; }
stopped=0
finish() {
  [ $stopped = 1 ] || "$here/cluster.sh" stop >/dev/null 2>&1
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
pod_net() { [[ "$(kubectl -n $ns get pod "$pod" -o jsonpath='{.status.podIP}')" == 100.96.0.* ]]; }
check pod-in-cni-network pod_net
pod_pid=$("$here/cluster.sh" pid "$(kubectl -n $ns get pod "$pod" -o jsonpath='{.status.containerStatuses[0].containerID}')")
# From the pod's own network namespace, through the Service IP (kube-proxy's DNAT to the API server).
service_reachable() {
  local svc code
  [ -n "$pod_pid" ] || return 1
  svc=$(kubectl get service kubernetes -o jsonpath='{.spec.clusterIP}')
  code=$(nsenter --net="/proc/$pod_pid/ns/net" curl -sk -o /dev/null -w '%{http_code}' --max-time 5 "https://$svc/readyz")
  [ "$code" = 401 ] || [ "$code" = 200 ] || [ "$code" = 403 ]
}
check api-through-service-from-pod service_reachable

# A second release on the same host port must stay Pending (the scheduler's NodePorts filter).
helm install smoke2 "$here/smoke-chart" -n k8s-smoke2 --create-namespace >/dev/null 2>&1
hostport_pending() {
  local i
  for i in $(seq 1 20); do
    grep -q "free ports" <<< "$(kubectl -n k8s-smoke2 get events --field-selector reason=FailedScheduling \
      -o jsonpath='{.items[*].message}')" && return 0
    sleep 1
  done
  return 1
}
check hostport-conflict-unschedulable hostport_pending
helm uninstall smoke2 -n k8s-smoke2 >/dev/null 2>&1

check helm-uninstall helm uninstall smoke -n $ns --wait --timeout 60s
gone() { [ -n "$pod_pid" ] || return 1; for _ in $(seq 1 100); do kill -0 "$pod_pid" 2>/dev/null || return 0; sleep 0.2; done; return 1; }
check pod-container-stopped gone

"$here/cluster.sh" stop >/dev/null 2>&1
stopped=1
nothing_left() {
  local left=""
  [ ! -e "/run/netns/$K8S_NETNS" ] || left+="netns $K8S_NETNS; "
  [ ! -e "$K8S_STATE" ] || left+="$K8S_STATE; "
  ! grep -q "$K8S_STATE" /proc/self/mountinfo || left+="mounts under $K8S_STATE; "
  ! ls -d /sys/fs/cgroup/*/"$(basename "$K8S_STATE")" /sys/fs/cgroup/"$(basename "$K8S_STATE")" >/dev/null 2>&1 || left+="cgroups; "
  local p
  for p in /proc/[0-9]*; do
    grep -q "$K8S_STATE" <<< "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" && left+="process ${p#/proc/}; "
  done
  [ -z "$left" ] || { echo "left behind: $left" >&2; return 1; }
}
check cluster-stop-leaves-nothing nothing_left
