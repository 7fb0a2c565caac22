#!/usr/bin/env bash
# Operator at scale on the e2e's real control plane: N IotRelays whose relay pods stay Pending (a
# nodeSelector no node has), the operator binary run beside the API server (no leader election). Measures
#   - seconds the `kubectl apply` of N IotRelays itself takes ($APPLY_PARALLEL kubectl processes, default 8), from
#     its start until all N Deployments exist and every IotRelay has a status (and that part after the apply
#     returned), and until every IotRelay reports its pod Unschedulable (the control plane created all pods: settled),
#   - CPU seconds of etcd, the API server, the kube-controller-manager, the scheduler and the operator, and the API
#     requests by verb and resource (everyone's), from the apply until all children exist and until settled,
#   - the operator's peak RSS (VmHWM) over the run,
#   - API writes per minute once nothing changes (apiserver_request_total, write verbs, the kinds the operator
#     writes, by anyone: the controller manager writes Deployment status), over a 60 s window that starts once
#     those kinds saw no write for 15 s; and the operator's own writes in it (its server-side applies),
#   - reconcile passes in that window (the operator's /metrics).
# Targets (N=1000): all children < 60 s, RSS <= 64 MiB, < 100 writes/min when idle.
#
#   flock /tmp/iotrelay-lab.lock bench/k8s-scale.sh [N]     (root; default N=1000; needs a release build)
# Prints the CPU and request breakdown, then one line
# `k8s-scale: N=... apply_s=... children_s=... children_after_apply_s=... settled_s=... quiet_s=... rss_peak_mib=...
# idle_writes_per_min=... idle_operator_writes=... idle_passes=...`.
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
# CPU seconds used so far by each control-plane process and the operator (utime + stime).
cpu() {
  local p pid
  for p in etcd kube-apiserver kube-controller-manager kube-scheduler; do
    pid=$(cat "$K8S_STATE/pids/$p")
    printf '%s=%s ' "$p" "$(awk '{print $14 + $15}' "/proc/$pid/stat")"
  done
  printf 'operator=%s\n' "$(awk '{print $14 + $15}' "/proc/$oppid/stat")"
}
# API requests so far by verb and resource (everyone's).
requests() {
  kc get --raw /metrics | awk '/^apiserver_request_total[{]/ {
      match($0, /resource="[^"]*"/); r = substr($0, RSTART + 10, RLENGTH - 11)
      match($0, /verb="[^"]*"/); v = substr($0, RSTART + 6, RLENGTH - 7)
      n[v " " r] += $NF } END { for (k in n) print k, n[k] }' | sort
}

# The IotRelays in $par files, applied by $par kubectl processes at once: one kubectl applies a file's objects one
# request after the other, which for 1000 objects took longer than the operator needed to create every child.
par=${APPLY_PARALLEL:-8}
rm -f "$K8S_STATE".relays.*.json
python3 - "$n" "$ns" "$repo/e2e/k8s/relay.py" "$par" "$K8S_STATE.relays" <<'PY'
import json, subprocess, sys
n, ns, tool, par, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
base = json.loads(subprocess.check_output([tool, "x", ns, 'spec.nodeSelector={"iotrelay.dev/bench":"no-such-node"}']))
items = [[] for _ in range(par)]
for i in range(n):
    r = json.loads(json.dumps(base))
    r["metadata"]["name"] = f"scale-{i}"
    items[i % par].append(r)
for k, chunk in enumerate(items):
    if chunk:
        with open(f"{out}.{k}.json", "w") as f:
            json.dump({"apiVersion": "v1", "kind": "List", "items": chunk}, f)
PY
requests > "$K8S_STATE.requests.0"
c0=$(cpu)
t0=$(date +%s.%N)
appliers=()
for f in "$K8S_STATE".relays.*.json; do
  kc apply --server-side -f "$f" > /dev/null &
  appliers+=($!)
done
for p in "${appliers[@]}"; do wait "$p"; done
t_applied=$(date +%s.%N)
apply_s=$(echo "$t_applied - $t0" | bc)
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
after_apply_s=$(echo "$t1 - $t_applied" | bc)
c1=$(cpu)
requests > "$K8S_STATE.requests.1"
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
c2=$(cpu)
requests > "$K8S_STATE.requests.2"
# The kube-controller-manager goes on working through its backlog at its own client rate (20 requests/s) after
# every relay reports Unschedulable: on a quiet machine 660 Deployment status updates (PUT) and 327 Events fell
# into the minute after "settled". That is not "nothing changes": the idle minute starts once the kinds counted by
# writes() saw no write for 15 s (waited for at most 600 s).
quiet_from=$(date +%s) last=$(writes)
while [ $(( $(date +%s) - quiet_from )) -lt 15 ]; do
  [ "$(echo "$(date +%s.%N) - $t0 > $settled_s + 600" | bc)" = 1 ] && { echo "k8s-scale: still writing 600 s after settled" >&2; break; }
  sleep 5
  cur=$(writes)
  [ "$cur" = "$last" ] || { last=$cur; quiet_from=$(date +%s); }
done
quiet_s=$(echo "$(date +%s.%N) - $t0" | bc)
w0=$(writes) p0=$(passes)
requests > "$K8S_STATE.requests.3"
sleep 60
w1=$(writes) p1=$(passes)
requests > "$K8S_STATE.requests.4"
echo "k8s-scale: cpu ticks (1/100 s) at apply: $c0"
echo "k8s-scale: cpu ticks at children:     $c1"
echo "k8s-scale: cpu ticks at settled:      $c2"
echo "k8s-scale: API requests from apply to children (verb resource count):"
join -a2 -e0 -o 0,1.2,2.2 <(awk '{print $1"/"$2, $3}' "$K8S_STATE.requests.0") \
  <(awk '{print $1"/"$2, $3}' "$K8S_STATE.requests.1") | awk '$3 - $2 > 0 {print "  " $1, $3 - $2}'
echo "k8s-scale: API requests from children to settled:"
join -a2 -e0 -o 0,1.2,2.2 <(awk '{print $1"/"$2, $3}' "$K8S_STATE.requests.1") \
  <(awk '{print $1"/"$2, $3}' "$K8S_STATE.requests.2") | awk '$3 - $2 > 0 {print "  " $1, $3 - $2}'
echo "k8s-scale: API requests in the idle minute:"
join -a2 -e0 -o 0,1.2,2.2 <(awk '{print $1"/"$2, $3}' "$K8S_STATE.requests.3") \
  <(awk '{print $1"/"$2, $3}' "$K8S_STATE.requests.4") | awk '$3 - $2 > 0 {print "  " $1, $3 - $2}'
# The operator writes only by server-side apply (verb APPLY), and nobody else applies once the IotRelays exist.
ops_writes=$(join -a2 -e0 -o 0,1.2,2.2 <(awk '{print $1"/"$2, $3}' "$K8S_STATE.requests.3") \
  <(awk '{print $1"/"$2, $3}' "$K8S_STATE.requests.4") | awk '$1 ~ /^APPLY\// {n += $3 - $2} END {print n + 0}')
echo "k8s-scale: load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
printf 'k8s-scale: N=%s apply_s=%.1f children_s=%.1f children_after_apply_s=%.1f settled_s=%.1f quiet_s=%.1f rss_peak_mib=%s idle_writes_per_min=%s idle_operator_writes=%s idle_passes=%s\n' \
  "$n" "$apply_s" "$children_s" "$after_apply_s" "$settled_s" "$quiet_s" "$(hwm)" "$((w1 - w0))" "$ops_writes" "$((p1 - p0))"
