# shellcheck shell=bash
# Sourced by e2e/k8s/run.sh (not run alone): operations at scale and the end of the run (uninstall, secrets scan). Cases register with `tc`; run.sh counts every `^tc ` line
# of itself and of cases/*.sh as the expected total.
# ---------------------------------------------------------------------------------------------------------------
# No reconcile storm; a relay pod the API server refuses makes the IotRelay Stalled.

# api_writes: write requests (POST, PUT, PATCH, APPLY, DELETE) the API server has counted for the kinds the operator
# writes (iotrelays with their status, deployments, serviceaccounts, roles, rolebindings), from its /metrics. A
# Deployment's status is the deployment controller's (it catches up with 20 new Deployments at its own pace, seen
# as 0 to 12 writes in the window); the operator never writes it.
api_writes() {
  kubectl get --raw /metrics | awk '/^apiserver_request_total[{]/ && /verb="(POST|PUT|PATCH|APPLY|DELETE)"/ \
    && /resource="(iotrelays|deployments|serviceaccounts|roles|rolebindings)"/ \
    && !(/resource="deployments"/ && /subresource="status"/) { n += $NF } END { printf "%d\n", n }'
}
idle_n=${K8S_IDLE_RELAYS:-20}
idle_ns=k8s-idle
idle_pending() { # all idle relays report their unschedulable pod (the operator has written every status)
  [ "$(kubectl -n $idle_ns get iotrelay -o json | jq '[.items[] | select(any(.status.conditions[]?;
    .type == "Ready" and .reason == "Unschedulable"))] | length')" = "$idle_n" ]
}
# $idle_n IotRelays whose pods stay Pending (a nodeSelector no node has), then a 60 s window in which nothing
# changes but what a relay's periodic status write changes (traffic counters, written here for them 3 times).
# Before this case existed the operator rechecked every Pending relay every 10 s with four applies and a status write
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

# A ResourceQuota smaller than the relay's default memory request (the chart's relay.resources: 64Mi) refuses the
# relay pod: the IotRelay is Stalled with the quota's message, not "waiting for the relay pod to be created".
t_quota() {
  requires operator crd || return 1
  local qns=k8s-quota st
  kubectl create namespace $qns > /dev/null 2>&1
  kubectl -n $qns create quota relay-quota --hard=requests.memory=32Mi,limits.memory=1Gi > /dev/null \
    || { why="creating the ResourceQuota failed"; return 1; }
  kubectl -n $qns create secret generic aws-vpn --from-literal=tunnel1=$psk1 --from-literal=tunnel2=$psk2 > /dev/null 2>&1
  relay k8s-quota $qns | kubectl apply -f - > /dev/null || { why="apply failed"; return 1; }
  quota() { kubectl -n $qns get iotrelay k8s-quota -o jsonpath="{.status.conditions[?(@.type==\"Stalled\")].$1}"; }
  wait_until 90 is True quota status || { why="not Stalled after 90 s: Ready $(kubectl -n $qns get iotrelay k8s-quota -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}')"; return 1; }
  st="$(quota reason): $(quota message)"
  [[ "$st" == FailedCreate:*"exceeded quota: relay-quota"*requests.memory* ]] || { why="Stalled $st"; return 1; }
  kubectl delete namespace $qns --wait=false > /dev/null 2>&1
}
tc resource-quota-refusal-stalled t_quota

# ---------------------------------------------------------------------------------------------------------------
# The kubectl plugin, installed as the docs say (the binary copied into a directory on PATH, where kubectl
# finds it): `kubectl iotrelay status`, `diagnose` on a healthy and on two broken relays, `rekey` through the API.
plugin_dir=$K8S_STATE/plugin-bin
prereq_why[ops]="IotRelay k8s-ops never became Ready (or the plugin was not built)"
kip() { # kubectl iotrelay ARGS...: as a user runs it (KUBECONFIG, the plugin on PATH; kubectl takes no flags before it)
  ip netns exec "$K8S_NETNS" env PATH="$plugin_dir:$PATH" KUBECONFIG="$K8S_STATE/admin.kubeconfig" \
    "$IOTRELAY_CACHE/bin/kubectl" iotrelay "$@"
}
t_plugin_status() {
  requires operator crd || return 1
  [ -x "$relbin/kubectl-iotrelay" ] || { why="not yet: $relbin/kubectl-iotrelay missing (make build)"; return 1; }
  mkdir -p "$plugin_dir" && cp "$relbin/kubectl-iotrelay" "$plugin_dir/" || { why="cannot install the plugin"; return 1; }
  local out t
  relay k8s-ops $ns | kubectl apply -f - > /dev/null || { why="apply failed"; return 1; }
  kubectl -n $ns wait --for=condition=Ready iotrelay/k8s-ops --timeout=120s > /dev/null 2>&1 \
    || { why="k8s-ops not Ready after 120 s: $(cond k8s-ops Ready message)"; diag k8s-ops; return 1; }
  wait_until 30 is "Established Established" status k8s-ops '.status.tunnels[*].state' \
    || { why="k8s-ops tunnels: $(status k8s-ops '.status.tunnels[*].state')"; return 1; }
  have[ops]=1
  out=$(kip status k8s-ops -n $ns 2>&1) || { why="kubectl iotrelay status failed: $out"; return 1; }
  echo "$out" | sed 's/^/# /' >&2
  grep -Eq '^k8s-ops +True +TunnelEstablished +2/2 +tunnel[12] +1/1 +lab-node +198\.51\.100\.1 ' <<< "$out" \
    || { why="no healthy summary row: $(head -2 <<< "$out" | tail -1)"; return 1; }
  for t in tunnel1 tunnel2; do
    # Established, IKE and CHILD SA ages, CHILD rekey due, no rekeys yet, IKE messages from AWS (at least the
    # IKE_SA_INIT and IKE_AUTH answers), no error.
    grep -Eq "^k8s-ops +$t +Established +(yes|-) +[0-9]+[smhd][0-9hm]* +[0-9]+[smhd][0-9hm]* +in [0-9]+[smhd][0-9hm]* +0/0 +([2-9]|[1-9][0-9]+) +-\$" <<< "$out" \
      || { why="no established row for $t: $(grep " $t " <<< "$out")"; return 1; }
  done
  grep -Eq '^k8s-ops +admin +yes +198\.51\.100\.1:7000 +[0-9]+ +[0-9]+/[0-9]+ +none$' <<< "$out" \
    || { why="no forward row: $(grep ' admin ' <<< "$out")"; return 1; }
  out=$(kip status -A 2>&1) || { why="kubectl iotrelay status -A failed: $out"; return 1; }
  grep -Eq "^$ns +k8s-ops +True " <<< "$out" || { why="status -A does not list $ns/k8s-ops: $out"; return 1; }
}
tc plugin-status-healthy-relay t_plugin_status

t_plugin_diagnose_healthy() {
  requires ops || return 1
  local out rc
  out=$(kip diagnose k8s-ops -n $ns 2>&1); rc=$?
  [ $rc = 0 ] || { why="exit status $rc: $(tr '\n' '|' <<< "$out")"; return 1; }
  [ "$(tail -1 <<< "$out")" = healthy ] || { why="last line '$(tail -1 <<< "$out")'"; return 1; }
  grep -q '^  FAIL' <<< "$out" && { why="a step failed: $(grep '^  FAIL' <<< "$out")"; return 1; }
  grep -Eq '^  ok +AWS answering +IKE messages received: tunnel1 [1-9][0-9]*, tunnel2 [1-9]' <<< "$out" \
    || { why="AWS answering: $(grep 'AWS answering' <<< "$out")"; return 1; }
  grep -Eq '^  ok +tunnels established ' <<< "$out" || { why="$(grep 'tunnels established' <<< "$out")"; return 1; }
}
tc plugin-diagnose-healthy-exit-0 t_plugin_diagnose_healthy

# `kubectl iotrelay rekey` annotates the IotRelay; the relay rekeys tunnel1's CHILD_SA (childRekeys goes up, tunnel1's
# peer sees a CREATE_CHILD_SA) and records the request id in status. Idempotent: the same id again changes nothing,
# and a restarted relay (SIGTERM; the kubelet restarts it) neither repeats nor erases the handled request. A second
# id rekeys once more: exactly two CREATE_CHILD_SA requests reach tunnel1's peer in all (requests are handled in
# order, so a repeated one would have shown before the second).
t_plugin_rekey() {
  requires ops || return 1
  local a b before out pod pid restarts handled spis
  a=$(aws1_rekeys)
  before=$(status k8s-ops '.status.tunnels[0].childRekeys')
  out=$(kip rekey k8s-ops -n $ns --tunnel tunnel1 --id e2e-rekey-1 2>&1) || { why="rekey failed: $out"; return 1; }
  grep -q '^Started: CHILD_SA rekey started on tunnel1$' <<< "$out" || { why="rekey said: $out"; return 1; }
  wait_until 30 eval '[ "$(status k8s-ops ".status.tunnels[0].childRekeys")" -gt "${before:-0}" ]' \
    || { why="tunnel1 childRekeys stayed ${before:-unset} after the request"; diag k8s-ops; return 1; }
  [ "$(status k8s-ops '.status.tunnels[1].childRekeys')" = 0 ] || { why="tunnel2 was rekeyed too"; return 1; }
  handled=$(status k8s-ops '.status.lastRekeyRequest.handledAt')
  out=$(kip rekey k8s-ops -n $ns --tunnel tunnel1 --id e2e-rekey-1 2>&1) || { why="repeated rekey failed: $out"; return 1; }
  pod=$(relay_pod k8s-ops) || { why="no relay pod"; return 1; }
  restarts=$(kubectl -n $ns get pod "$pod" -o jsonpath='{.status.containerStatuses[0].restartCount}')
  spis=$(relay_spis k8s-ops)
  pid=$(container_pid $ns "$pod")
  [ -n "$pid" ] || { why="no process for the relay container"; return 1; }
  kill -TERM "$pid"
  restarted() {
    [ "$(kubectl -n $ns get pod "$pod" -o jsonpath='{.status.containerStatuses[0].restartCount}')" -gt "$restarts" ] \
      && [ "$(relay_spis k8s-ops)" != "$spis" ] && is "Established Established" status k8s-ops '.status.tunnels[*].state'
  }
  wait_until 90 restarted || { why="the relay did not come back with new SAs after SIGTERM"; diag k8s-ops; return 1; }
  [ "$(status k8s-ops '.status.lastRekeyRequest.id')/$(status k8s-ops '.status.lastRekeyRequest.handledAt')" \
    = "e2e-rekey-1/$handled" ] || { why="the restarted relay changed the record: $(status k8s-ops '.status.lastRekeyRequest')"; return 1; }
  before=$(status k8s-ops '.status.tunnels[0].childRekeys')
  out=$(kip rekey k8s-ops -n $ns --tunnel tunnel1 --id e2e-rekey-2 2>&1) || { why="second rekey failed: $out"; return 1; }
  wait_until 30 eval '[ "$(status k8s-ops ".status.tunnels[0].childRekeys")" -gt "${before:-0}" ]' \
    || { why="the second request did not rekey"; return 1; }
  b=$(aws1_rekeys)
  [ $((b - a)) = 2 ] || { why="tunnel1's peer saw $((b - a)) CREATE_CHILD_SA requests for 2 request ids"; return 1; }
}
tc plugin-rekey-through-annotation-idempotent t_plugin_rekey

# Broken relays: a pod no node can take, and (with the node's ports free again) a wrong pre-shared key. diagnose
# exits 1, names the failing step and what to check next.
t_plugin_diagnose_unschedulable() {
  requires operator crd || return 1
  [ -x "$plugin_dir/kubectl-iotrelay" ] || { why="not yet: the plugin is not installed"; return 1; }
  local out rc
  relay k8s-ops-nowhere $ns 'spec.nodeSelector={"iotrelay.dev/e2e":"no-such-node"}' | kubectl apply -f - > /dev/null \
    || { why="apply failed"; return 1; }
  wait_until 60 eval '[ "$(cond k8s-ops-nowhere Ready reason)" = Unschedulable ]' || { why="not Unschedulable"; return 1; }
  out=$(kip diagnose k8s-ops-nowhere -n $ns 2>&1); rc=$?
  echo "$out" | sed 's/^/# /' >&2
  [ $rc = 1 ] || { why="exit status $rc (want 1)"; return 1; }
  grep -Eq "^  FAIL +relay pod scheduled +Unschedulable: .*node affinity/selector" <<< "$out" \
    || { why="no scheduling failure: $(grep -m1 'FAIL' <<< "$out")"; return 1; }
  grep -q '^next: .*spec.nodeSelector' <<< "$out" || { why="$(grep '^next' <<< "$out")"; return 1; }
  out=$(kip status k8s-ops-nowhere -n $ns 2>&1)
  grep -Eq '^k8s-ops-nowhere +False +Unschedulable ' <<< "$out" || { why="status: $out"; return 1; }
  kubectl -n $ns delete iotrelay k8s-ops-nowhere --wait=false > /dev/null 2>&1
}
tc plugin-diagnose-unschedulable-exit-1 t_plugin_diagnose_unschedulable

t_plugin_diagnose_wrong_psk() {
  requires operator crd || return 1
  [ -x "$plugin_dir/kubectl-iotrelay" ] || { why="not yet: the plugin is not installed"; return 1; }
  local out rc
  kubectl -n $ns delete iotrelay k8s-ops --timeout=60s > /dev/null 2>&1   # frees the node's UDP 500/4500
  kubectl -n $ns create secret generic k8s-wrong --from-literal=tunnel1=wrong-wrong-wrong > /dev/null 2>&1
  relay k8s-ops-badpsk $ns 'spec.tunnels.1=--' 'spec.tunnels.0.preSharedKeySecretRef={"name":"k8s-wrong","key":"tunnel1"}' \
    | kubectl apply -f - > /dev/null || { why="apply failed"; return 1; }
  wait_until 90 cond_is k8s-ops-badpsk Stalled True || { why="not Stalled after 90 s"; diag k8s-ops-badpsk; return 1; }
  out=$(kip diagnose k8s-ops-badpsk -n $ns 2>&1); rc=$?
  echo "$out" | sed 's/^/# /' >&2
  [ $rc = 1 ] || { why="exit status $rc (want 1)"; return 1; }
  grep -Eq '^  ok +AWS answering +IKE messages received: tunnel1 [1-9]' <<< "$out" \
    || { why="$(grep 'AWS answering' <<< "$out")"; return 1; }
  grep -Eq '^  FAIL +tunnels established +tunnel1: .*AUTHENTICATION_FAILED' <<< "$out" \
    || { why="$(grep 'tunnels established' <<< "$out")"; return 1; }
  grep -q '^next: the pre-shared key (Secret k8s-wrong key tunnel1)' <<< "$out" || { why="$(grep '^next' <<< "$out")"; return 1; }
  kubectl -n $ns delete iotrelay k8s-ops-badpsk --timeout=60s > /dev/null 2>&1
}
tc plugin-diagnose-wrong-psk-exit-1 t_plugin_diagnose_wrong_psk

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
