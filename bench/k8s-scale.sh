#!/usr/bin/env bash
# Operator at scale on the e2e's real control plane (issue 16): N IotRelays whose relay pods stay Pending (a
# nodeSelector no node has), the operator binary run beside the API server (no leader election). Measures
#   - seconds from `kubectl apply` of N IotRelays until all N Deployments exist and every IotRelay has a status,
#     and until every IotRelay reports its pod Unschedulable (the control plane created all pods: settled),
#   - the operator's peak RSS (VmHWM) over the run,
#   - API writes per minute once nothing changes (apiserver_request_total, write verbs, the kinds the operator
#     writes; nothing else writes them here), over a 60 s window,
#   - reconcile passes in that window (the operator's /metrics).
# Targets from issue 16 (N=1000): all children < 60 s, RSS <= 64 MiB, < 100 writes/min when idle.
#
#   flock /tmp/iotrelay-lab.lock bench/k8s-scale.sh [N]     (root; default N=1000; needs a release build)
# Prints one line `k8s-scale: N=... children_s=... rss_peak_mib=... idle_writes_per_min=... idle_passes=...`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
n=${1:-1000}
: "${IOTRELAY_CACHE:=/var/cache/iotrelay}"
export K8S_STATE=${K8S_STATE:-/tmp/k8s-iotrelay-bench} K8S_NETNS=${K8S_NETNS:-k8s-bench} IOTRELAY_CACHE
op=${OPERATOR:-${CARGO_TARGET_DIR:-$repo/target}/release/iotrelay-operator}
[ -x "$op" ] || { echo "k8s-scale: no $op (cargo build --release -p iotrelay-operator)" >&2; exit 1; }
ns=k8s-scale
oppid=""
finish() {
  [ -n "$oppid" ] && kill "$oppid" 2>/dev/null
  "$repo/e2e/k8s/cluster.sh" stop > /dev/null 2>&1 || true
}
trap finish EXIT
"$repo/e2e/k8s/cluster.sh" start > "$K8S_STATE.start.log" 2>&1 || { tail -5 "$K8S_STATE.start.log"; exit 1; }
kc() { ip netns exec "$K8S_NETNS" "$IOTRELAY_CACHE/bin/kubectl" --kubeconfig "$K8S_STATE/admin.kubeconfig" "$@"; }
kc apply --server-side -f "$repo/crds/" > /dev/null
# `kubectl wait` fails at once while the new CRD has no status.conditions yet: ask again.
for _ in $(seq 30); do kc wait --for=condition=Established crd/iotrelays.iotrelay.dev --timeout=60s > /dev/null 2>&1 && break; sleep 1; done
kc create namespace $ns > /dev/null
kc -n $ns create secret generic aws-vpn --from-literal=tunnel1=bench-psk-1 --from-literal=tunnel2=bench-psk-2 > /dev/null

ip netns exec "$K8S_NETNS" env KUBECONFIG="$K8S_STATE/admin.kubeconfig" IOTRELAY_LEADER_ELECTION=false \
  IOTRELAY_ADMIN_ADDR=127.0.0.1:18080 IOTRELAY_LOG_FORMAT=text RUST_LOG=warn "$op" > "$K8S_STATE.operator.log" 2>&1 &
oppid=$!
hwm() { awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$oppid/status"; }
metrics() { ip netns exec "$K8S_NETNS" curl -sf http://127.0.0.1:18080/metrics; }
passes() { metrics | awk '$1 ~ /^iotrelay_operator_reconciles_total/ {n += $2} END {print n + 0}'; }
writes() {
  kc get --raw /metrics | awk '/^apiserver_request_total[{]/ && /verb="(POST|PUT|PATCH|APPLY|DELETE)"/ \
    && /resource="(iotrelays|deployments|serviceaccounts|roles|rolebindings)"/ { n += $NF } END { printf "%d\n", n }'
}
for _ in $(seq 30); do metrics > /dev/null 2>&1 && break; sleep 1; done

python3 - "$n" "$ns" "$repo/e2e/k8s/relay.py" > "$K8S_STATE.relays.json" <<'PY'
import json, subprocess, sys
n, ns, tool = int(sys.argv[1]), sys.argv[2], sys.argv[3]
base = json.loads(subprocess.check_output([tool, "x", ns, 'spec.nodeSelector={"iotrelay.dev/bench":"no-such-node"}']))
items = []
for i in range(n):
    r = json.loads(json.dumps(base))
    r["metadata"]["name"] = f"scale-{i}"
    items.append(r)
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)
PY
t0=$(date +%s.%N)
kc apply --server-side -f "$K8S_STATE.relays.json" > /dev/null
all_children() {
  [ "$(kc -n $ns get deploy -o name | wc -l)" -ge "$n" ] \
    && [ "$(kc -n $ns get iotrelay -o json | jq '[.items[] | select(.status.observedGeneration != null)] | length')" -ge "$n" ]
}
until all_children; do
  kill -0 "$oppid" || { echo "k8s-scale: the operator died: $(tail -3 "$K8S_STATE.operator.log")" >&2; exit 1; }
  sleep 1
done
t1=$(date +%s.%N)
children_s=$(echo "$t1 - $t0" | bc)
# Let the last passes settle: the kube-controller-manager creates the pods at its own pace after the children
# exist, and each relay's status follows its pod to Unschedulable. Then an idle minute.
settled() {
  [ "$(kc -n $ns get iotrelay -o json | jq '[.items[] | select(any(.status.conditions[]?;
      .type == "Ready" and .reason == "Unschedulable"))] | length')" -ge "$n" ]
}
until settled; do
  [ "$(echo "$(date +%s.%N) - $t0 > 900" | bc)" = 1 ] && { echo "k8s-scale: not every relay reports Unschedulable after 900 s" >&2; exit 1; }
  sleep 2
done
settled_s=$(echo "$(date +%s.%N) - $t0" | bc)
sleep 5
w0=$(writes) p0=$(passes)
sleep 60
w1=$(writes) p1=$(passes)
printf 'k8s-scale: N=%s children_s=%.1f settled_s=%.1f rss_peak_mib=%s idle_writes_per_min=%s idle_passes=%s\n' \
  "$n" "$children_s" "$settled_s" "$(hwm)" "$((w1 - w0))" "$((p1 - p0))"
