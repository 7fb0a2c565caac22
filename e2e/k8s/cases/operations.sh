# shellcheck shell=bash
# Sourced by e2e/k8s/run.sh (not run alone): operations at scale and the end of the run (uninstall, secrets scan). Cases register with `tc`; run.sh counts every `^tc ` line
# of itself and of cases/*.sh as the expected total.
# ---------------------------------------------------------------------------------------------------------------
# Issue 16: no reconcile storm; a relay pod the API server refuses makes the IotRelay Stalled.

# api_writes: write requests (POST, PUT, PATCH, APPLY, DELETE) the API server has counted for the kinds the operator
# writes (iotrelays with their status, deployments, serviceaccounts, roles, rolebindings), from its /metrics.
api_writes() {
  kubectl get --raw /metrics | awk '/^apiserver_request_total[{]/ && /verb="(POST|PUT|PATCH|APPLY|DELETE)"/ \
    && /resource="(iotrelays|deployments|serviceaccounts|roles|rolebindings)"/ { n += $NF } END { printf "%d\n", n }'
}
idle_n=${K8S_IDLE_RELAYS:-20}
idle_ns=k8s-idle
idle_pending() { # all idle relays report their unschedulable pod (the operator has written every status)
  [ "$(kubectl -n $idle_ns get iotrelay -o json | jq '[.items[] | select(any(.status.conditions[]?;
    .type == "Ready" and .reason == "Unschedulable"))] | length')" = "$idle_n" ]
}
# $idle_n IotRelays whose pods stay Pending (a nodeSelector no node has), then a 60 s window in which nothing
# changes but what a relay's periodic status write changes (traffic counters, written here for them 3 times).
# Before issue 16 the operator rechecked every Pending relay every 10 s with four applies and a status write
# (5 x 6 x N writes a minute) and ran a pass for every counter write; now it writes nothing and runs no pass.
t_idle_writes() {
  requires operator crd || return 1
  local i before after ours=0 writes leader r0 r1 round
  kubectl create namespace $idle_ns > /dev/null 2>&1
  kubectl -n $idle_ns create secret generic aws-vpn --from-literal=tunnel1=$psk1 --from-literal=tunnel2=$psk2 > /dev/null 2>&1
  for i in $(seq 1 "$idle_n"); do relay "idle-$i" $idle_ns 'spec.nodeSelector={"iotrelay.dev/e2e":"no-such-node"}'; done \
    | jq -s '{apiVersion: "v1", kind: "List", items: .}' | kubectl apply -f - > /dev/null || { why="apply failed"; return 1; }
  wait_until 120 idle_pending || { why="not every idle relay reports Unschedulable after 120 s"; diag idle-1; return 1; }
  leader=$(lease_holder)
  before=$(api_writes); r0=$(op_reconciles "$leader")
  for round in 1 2 3; do
    for i in $(seq 1 "$idle_n"); do
      kubectl -n $idle_ns patch iotrelay "idle-$i" --subresource=status --type=merge \
        -p "{\"status\":{\"datapath\":{\"drops\":{\"malformed\":$round}}}}" > /dev/null && ours=$((ours + 1))
    done
    sleep 20
  done
  after=$(api_writes); r1=$(op_reconciles "$leader")
  writes=$((after - before - ours))
  echo "# idle: $idle_n Pending relays, 60 s: $writes writes by others than this test, $((r1 - r0)) operator passes" >&2
  [ "$writes" -le 10 ] || { why="$writes API writes in 60 s with $idle_n unchanged relays (want <= 10)"; return 1; }
  [ $((r1 - r0)) -le 2 ] || { why="$((r1 - r0)) reconcile passes for status-only writes (want <= 2)"; return 1; }
}
tc idle-relays-cause-no-writes t_idle_writes
[ -n "${have[crd]:-}" ] && kubectl delete namespace $idle_ns --wait=false > /dev/null 2>&1

# Pod Security "restricted" refuses a hostNetwork pod: the ReplicaSet's FailedCreate surfaces as Stalled.
t_pod_security() {
  requires operator crd || return 1
  local pns=k8s-restricted st
  kubectl create namespace $pns > /dev/null 2>&1
  kubectl label namespace $pns pod-security.kubernetes.io/enforce=restricted --overwrite > /dev/null
  kubectl -n $pns create secret generic aws-vpn --from-literal=tunnel1=$psk1 --from-literal=tunnel2=$psk2 > /dev/null 2>&1
  relay k8s-psa $pns | kubectl apply -f - > /dev/null || { why="apply failed"; return 1; }
  psa() { kubectl -n $pns get iotrelay k8s-psa -o jsonpath="{.status.conditions[?(@.type==\"Stalled\")].$1}"; }
  wait_until 90 is True psa status || { why="not Stalled after 90 s: Ready $(kubectl -n $pns get iotrelay k8s-psa -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}')"; return 1; }
  st="$(psa reason): $(psa message)"
  [[ "$st" == FailedCreate:*PodSecurity* ]] || { why="Stalled $st"; return 1; }
  kubectl delete namespace $pns --wait=false > /dev/null 2>&1
}
tc pod-security-refusal-stalled t_pod_security

t_uninstall() {
  requires chart || return 1
  save_pod_logs before-uninstall
  helm uninstall iotrelay -n $opns --wait --timeout 60s > /dev/null 2>&1 || { why="helm uninstall failed"; return 1; }
  kubectl get crd iotrelays.iotrelay.dev > /dev/null 2>&1 || { why="the CRD was removed (crds.keep adds helm.sh/resource-policy: keep)"; return 1; }
}
tc helm-uninstall-keeps-crds t_uninstall

# Secrets never appear in logs, status or events: after the whole run, every IotRelay (status included), every
# Event, every pod's log (kubectl logs, and the kubelet's pod-logs directory with the logs of restarted containers)
# and the control plane's logs are scanned for the PSKs of this run and for every key the AWS side derived (IKE SA
# and ESP keys of every SA). etcd's data, the Secrets themselves and the pods' Secret volumes are not scanned.
t_no_secrets() {
  requires cluster || return 1
  local d=$K8S_STATE/secrets-scan out
  rm -rf "$d"; mkdir -p "$d"
  kubectl get iotrelays -A -o yaml > "$d/iotrelays.yaml" 2>&1
  kubectl get events -A -o yaml > "$d/events.yaml" 2>&1
  kubectl get events.events.k8s.io -A -o yaml > "$d/events-v1.yaml" 2>&1
  # plant-7's relay log, saved before its IotRelay was deleted, must be among them (a scan of nothing proves nothing).
  [ -n "$(find "$K8S_STATE/scan-logs" -name 'before-delete-k8s-e2e-iotrelay-plant-7-*' -size +0 2>/dev/null)" ] \
    || { why="plant-7's relay log was not saved before it was deleted (nothing to scan)"; return 1; }
  out=$(python3 "$repo/e2e/lab/secrets.py" --psk "$psk1" --psk "$psk2" --psk wrong-wrong-wrong \
    --keys-from "$(lab_aws_dir 1)/charon.log" --keys-from "$(lab_aws_dir 2)/charon.log" \
    "$d" "$K8S_STATE/scan-logs" "$K8S_STATE/logs" "$K8S_STATE/pod-logs") || { why="$(echo "$out" | tr '\n' ' ')"; return 1; }
  echo "# $out" >&2
}
tc no-secrets-in-logs-status-events t_no_secrets
