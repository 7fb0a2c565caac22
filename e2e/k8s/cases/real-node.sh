# shellcheck shell=bash
# Sourced by e2e/k8s/run.sh (not run alone): what only a real node shows (runtime, restarts, probes, logs, drain). Cases register with `tc`; run.sh counts every `^tc ` line
# of itself and of cases/*.sh as the expected total.
# ---------------------------------------------------------------------------------------------------------------
# What only a real node shows: the container the runtime made from the pod spec, the kubelet's restarts, probes,
# logs and drain, the pod network and the kubernetes Service.

# The relay's container process runs as the user and with exactly the capabilities its pod spec asks for
# (capabilities.drop ALL + add: the bounding set is exactly the added ones; for uid 0 they are also effective),
# no_new_privs for allowPrivilegeEscalation false, seccomp filtering for RuntimeDefault.
t_relay_process() {
  requires relay || return 1
  local pod pid out
  pod=$(relay_pod plant-7) || { why="no relay pod"; return 1; }
  pid=$(container_pid $ns "$pod")
  [ -n "$pid" ] && [ -r "/proc/$pid/status" ] || { why="no process for the relay container"; return 1; }
  out=$(kubectl -n $ns get pod "$pod" -o json | python3 "$here/procstatus.py" relay "/proc/$pid/status" 2>&1) \
    || { why="$out"; return 1; }
  echo "# relay process: $out" >&2
}
tc relay-process-user-and-capabilities-as-pod-spec t_relay_process

# The kubelet restarts a killed relay container in the same pod; the relay starts fresh (INITIAL_CONTACT) and the
# AWS side ends with exactly one SA pair per tunnel, the relay's new one.
t_relay_killed() {
  requires relay || return 1
  local pod uid pid restarts
  pod=$(relay_pod plant-7) || { why="no relay pod"; return 1; }
  uid=$(kubectl -n $ns get pod "$pod" -o jsonpath='{.metadata.uid}')
  relay_restarts() { kubectl -n $ns get pod "$pod" -o jsonpath='{.status.containerStatuses[0].restartCount}'; }
  restarts=$(relay_restarts)
  pid=$(container_pid $ns "$pod")
  [ -n "$pid" ] || { why="no process for the relay container"; return 1; }
  kill -KILL "$pid"
  wait_until 60 eval '[ "$(relay_restarts)" -gt "$restarts" ]' || { why="the kubelet did not restart the killed relay"; diag plant-7; return 1; }
  [ "$(container_pid $ns "$pod")" != "$pid" ] || { why="same process after the restart"; return 1; }
  wait_until 90 is "Established Established" status plant-7 '.status.tunnels[*].state' \
    || { why="tunnels not re-established: $(status plant-7 '.status.tunnels[*].state')"; diag plant-7; return 1; }
  wait_until 30 cond_is plant-7 Ready True || { why="not Ready after the restart"; return 1; }
  [ "$(kubectl -n $ns get pod "$(relay_pod plant-7)" -o jsonpath='{.metadata.uid}')" = "$uid" ] || { why="the pod was replaced, not restarted"; return 1; }
  wait_until 30 t_spis || return 1   # exactly one CHILD_SA per tunnel at AWS, equal to the relay's status
  ask 7000 "after-kill-$RANDOM" || { why="no echo through the relay after the restart"; return 1; }
}
tc relay-killed-restarted-one-sa-pair-per-tunnel t_relay_killed

# A readiness probe failure takes the relay pod out of Ready (here: the process is frozen, so /readyz does not
# answer), and it comes back when the probe passes again; the container is not restarted for it.
t_readiness() {
  requires relay || return 1
  local pod pid restarts
  pod=$(relay_pod plant-7) || { why="no relay pod"; return 1; }
  pod_ready() { kubectl -n $ns get pod "$pod" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}'; }
  relay_restarts() { kubectl -n $ns get pod "$pod" -o jsonpath='{.status.containerStatuses[0].restartCount}'; }
  # The previous case restarted the container: the kubelet marks the pod Ready at its next passing probe, which can
  # come after the IotRelay's own Ready (written by the relay) that the previous case waited for.
  wait_until 30 is True pod_ready || { why="relay pod not Ready to begin with (30 s)"; return 1; }
  restarts=$(relay_restarts)
  pid=$(container_pid $ns "$pod")
  [ -n "$pid" ] || { why="no process for the relay container"; return 1; }
  kill -STOP "$pid"
  if ! wait_until 20 is False pod_ready; then
    kill -CONT "$pid"
    why="the pod stayed Ready 20 s with its readiness probe failing"
    return 1
  fi
  kill -CONT "$pid"
  wait_until 30 is True pod_ready || { why="not Ready again 30 s after the probe passes"; return 1; }
  [ "$(relay_restarts)" = "$restarts" ] || { why="the container was restarted (liveness) during a short freeze"; return 1; }
  wait_until 30 cond_is plant-7 Ready True || { why="IotRelay not Ready again"; return 1; }
}
tc readiness-probe-failure-takes-relay-out-of-ready t_readiness

# `kubectl logs` (apiserver -> kubelet -> the container's log file) of the relay and the operator: JSON lines,
# and no pre-shared key anywhere in them.
t_logs() {
  requires relay || return 1
  local pod out bad
  pod=$(relay_pod plant-7) || { why="no relay pod"; return 1; }
  out=$(kubectl -n $ns logs "$pod" 2>&1) || { why="kubectl logs: $(echo "$out" | tail -1)"; return 1; }
  [ "$(echo "$out" | grep -c .)" -ge 3 ] || { why="only $(echo "$out" | grep -c .) log lines"; return 1; }
  bad=$(echo "$out" | grep . | jq -R 'fromjson? // "BAD"' 2>/dev/null | grep -c '^"BAD"$' || true)
  [ "$bad" = 0 ] || { why="$bad relay log lines are not JSON: $(echo "$out" | grep -v '^{' | head -1)"; return 1; }
  local p
  for p in $(kubectl -n $opns get pods -o name); do out+=$(kubectl -n $opns logs "$p" --all-containers 2>&1); done
  if echo "$out" | grepq -F -e "$psk1" -e "$psk2"; then why="a pre-shared key is in the logs"; return 1; fi
  # (control: the kubelet's log API works at all, and the check would see the key: it is in the Secret)
  kubectl -n $ns get secret aws-vpn -o jsonpath='{.data.tunnel1}' | base64 -d | grepq -F "$psk1" \
    || { why="control failed: the Secret does not hold the key searched for"; return 1; }
}
tc relay-logs-json-without-secrets t_logs

# The operator runs in the pod network (its own netns, a CNI address) and reaches the API server through the
# `kubernetes` Service, i.e. through kube-proxy's DNAT: its environment names the Service IP and it has an
# established connection to that IP.
t_operator_service() {
  requires operator || return 1
  local pod pid svc ip hostnet conn
  pod=$(kubectl -n $opns get pods -o jsonpath='{.items[0].metadata.name}')
  hostnet=$(kubectl -n $opns get pod "$pod" -o jsonpath='{.spec.hostNetwork}')
  ip=$(kubectl -n $opns get pod "$pod" -o jsonpath='{.status.podIP}')
  [ "$hostnet" != true ] || { why="the operator pod is hostNetwork"; return 1; }
  [[ "$ip" == 100.96.0.* ]] || { why="operator pod IP '$ip' is not in the CNI's 100.96.0.0/24"; return 1; }
  svc=$(kubectl -n default get service kubernetes -o jsonpath='{.spec.clusterIP}')
  pid=$(container_pid $opns "$pod")
  [ -n "$pid" ] || { why="no process for the operator container"; return 1; }
  tr '\0' '\n' < "/proc/$pid/environ" | grepq -x "KUBERNETES_SERVICE_HOST=$svc" \
    || { why="operator env KUBERNETES_SERVICE_HOST is not the Service IP $svc"; return 1; }
  # /proc/<pid>/net/tcp is the pod's namespace: remote address hex little-endian, state 01 = ESTABLISHED.
  conn=$(printf '%02X%02X%02X%02X:01BB' $(echo "$svc" | awk -F. '{print $4, $3, $2, $1}'))
  awk -v r="$conn" '$3 == r && $4 == "01"' "/proc/$pid/net/tcp" | grepq . \
    || { why="no established connection from the operator to $svc:443"; return 1; }
  ip netns exec "$K8S_NETNS" iptables -t nat -S KUBE-SERVICES 2>/dev/null | grepq -- "-d $svc/32 .*dport 443" \
    || { why="kube-proxy has no rule for $svc:443"; return 1; }
}
tc operator-reaches-api-through-kubernetes-service t_operator_service

# kubectl drain evicts the relay and the operator (the only node: they wait, Pending), deletes nothing else
# (IotRelay, its Deployment, Secret, ServiceAccount keep their uids); after uncordon the relay comes back Ready
# with new SAs, exactly one pair per tunnel at AWS, and the forward works.
t_drain() {
  requires relay || return 1
  local before after out
  objs() {
    echo "$(status plant-7 .metadata.uid) $(kubectl -n $ns get deploy,sa,secret,role,rolebinding -o jsonpath='{.items[*].metadata.uid}')"
  }
  before=$(objs)
  out=$(kubectl drain "$node" --ignore-daemonsets --delete-emptydir-data --timeout=120s 2>&1) \
    || { kubectl uncordon "$node" > /dev/null 2>&1; why="drain: $(echo "$out" | tail -2 | tr '\n' ' ')"; return 1; }
  on_node() { kubectl get pods -A --field-selector "spec.nodeName=$node" -o name | grep -c . || true; }
  [ "$(on_node)" = 0 ] || { kubectl uncordon "$node" > /dev/null 2>&1; why="pods left on the drained node: $(on_node)"; return 1; }
  after=$(objs)
  kubectl uncordon "$node" > /dev/null 2>&1 || { why="uncordon failed"; return 1; }
  [ "$before" = "$after" ] || { why="drain changed or deleted objects: $before -> $after"; return 1; }
  kubectl -n $opns wait --for=condition=Available deploy --all --timeout=90s > /dev/null 2>&1 \
    || { why="operator not Available after uncordon"; return 1; }
  kubectl -n $ns wait --for=condition=Ready iotrelay/plant-7 --timeout=120s > /dev/null 2>&1 \
    || { why="relay not Ready 120 s after uncordon: $(cond plant-7 Ready message)"; diag plant-7; return 1; }
  wait_until 60 is "Established Established" status plant-7 '.status.tunnels[*].state' || { why="tunnels not Established"; return 1; }
  wait_until 30 t_spis || return 1
  ask 7000 "after-drain-$RANDOM" || { why="no echo through the relay after uncordon"; return 1; }
}
tc drain-uncordon-relay-comes-back t_drain

t_hostport() {
  requires relay || return 1
  relay plant-8 $ns 'spec.insideAddress=100.127.0.8' | kubectl apply -f - > /dev/null || { why="apply failed"; return 1; }
  local ok=1 r m
  ready_explained() { [ -n "$(cond plant-8 Ready message)$(cond plant-8 Ready reason)" ]; }
  wait_until 60 ready_explained || { why="plant-8's Ready condition says nothing after 60 s"; ok=0; }
  # The scheduler's own verdict, waited for (not slept on): the pod is Unschedulable.
  pod8_unschedulable() { local p; p=$(relay_pod plant-8) && [ -n "$p" ] \
    && [ "$(kubectl -n $ns get pod "$p" -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].reason}')" = Unschedulable ]; }
  [ $ok = 0 ] || wait_until 60 pod8_unschedulable || { why="plant-8's pod not reported Unschedulable in 60 s"; ok=0; }
  r=$(cond plant-8 Ready status)
  m="$(cond plant-8 Ready reason) $(cond plant-8 Ready message)"
  [ "$r" != True ] || { why="plant-8 (same listenPort) is Ready"; ok=0; }
  local pod8
  if [ $ok = 1 ] && pod8=$(relay_pod plant-8) && [ -n "$pod8" ]; then
    [ -z "$(kubectl -n $ns get pod "$pod8" -o jsonpath='{.spec.nodeName}')" ] \
      || { why="plant-8's pod was scheduled onto the node despite the host port conflict"; ok=0; }
  fi
  if [ $ok = 1 ] && ! echo "$m" | grepq -iE 'port|schedul'; then why="not Ready, but the reason is not clear: '$m'"; ok=0; fi
  # and plant-7 is untouched
  [ $ok = 0 ] || cond_is plant-7 Ready True || { why="plant-7 lost Ready"; ok=0; }
  [ $ok = 1 ] || diag plant-8
  kubectl -n $ns delete iotrelay plant-8 --wait=false > /dev/null 2>&1
  [ $ok = 1 ]
}
tc hostport-conflict-not-ready-with-reason t_hostport

# spec.privileged and spec.image are honoured only when the chart allows them: until then such an IotRelay is
# Stalled with a reason naming the Helm value, and has no Deployment (the operator applies children before it
# writes status in the same pass, so Stalled written means nothing was applied). With relay.allowPrivileged=true
# the same IotRelay gets a privileged Deployment (its pod cannot be scheduled next to plant-7's host ports, which
# is fine here), while the image override stays refused. The chart value is set back afterwards.
owned_deploy() { # NAME: the Deployment the IotRelay owns (by uid), if any
  local uid
  uid=$(status "$1" .metadata.uid)
  [ -n "$uid" ] && kubectl -n $ns get deploy -o json | jq -r --arg u "$uid" \
    '.items[] | select(any(.metadata.ownerReferences[]?; .uid == $u)) | .metadata.name'
}
t_policy() {
  requires operator crd || return 1
  local ok=1 n name reason value
  relay k8s-priv $ns 'spec.privileged=true' | kubectl apply -f - > /dev/null || { why="apply k8s-priv failed"; return 1; }
  relay k8s-image $ns 'spec.image=example.org/iotrelay:other' | kubectl apply -f - > /dev/null || { why="apply k8s-image failed"; return 1; }
  for n in k8s-priv:PrivilegedNotAllowed:relay.allowPrivileged k8s-image:ImageOverrideNotAllowed:relay.allowImageOverride; do
    IFS=: read -r name reason value <<< "$n"
    wait_until 30 cond_is "$name" Stalled True || { why="$name not Stalled after 30 s"; diag "$name"; ok=0; break; }
    [ "$(cond "$name" Stalled reason)" = "$reason" ] || { why="$name: Stalled reason '$(cond "$name" Stalled reason)', want $reason"; ok=0; break; }
    cond "$name" Stalled message | grepq -F "$value" || { why="$name: the message does not name $value: $(cond "$name" Stalled message)"; ok=0; break; }
    [ -z "$(owned_deploy "$name")" ] || { why="$name is refused but has a Deployment"; ok=0; break; }
  done
  priv_template() { local d; d=$(owned_deploy k8s-priv) && [ -n "$d" ] && kubectl -n $ns get deploy "$d" -o jsonpath='{.spec.template.spec.containers[0].securityContext.privileged}'; }
  if [ $ok = 1 ]; then
    if ! helm upgrade iotrelay "$chart" -n $opns --reuse-values --set relay.allowPrivileged=true --wait --timeout 120s > /dev/null 2>&1; then
      why="helm upgrade --set relay.allowPrivileged=true failed"; ok=0
    elif ! wait_until 60 is true priv_template; then
      why="with relay.allowPrivileged=true k8s-priv has no privileged Deployment after 60 s (Stalled: $(cond k8s-priv Stalled reason))"; ok=0
    elif [ "$(cond k8s-priv Stalled reason)" = PrivilegedNotAllowed ]; then
      why="k8s-priv still Stalled PrivilegedNotAllowed"; ok=0
    elif [ "$(cond k8s-image Stalled reason)" != ImageOverrideNotAllowed ] || [ -n "$(owned_deploy k8s-image)" ]; then
      why="allowing privileged relays also let k8s-image's image through"; ok=0
    fi
  fi
  kubectl -n $ns delete iotrelay k8s-priv k8s-image --timeout=60s > /dev/null 2>&1
  helm upgrade iotrelay "$chart" -n $opns --reuse-values --set relay.allowPrivileged=false --wait --timeout 120s > /dev/null 2>&1 \
    || { [ $ok = 0 ] || why="helm upgrade back to relay.allowPrivileged=false failed"; ok=0; }
  [ $ok = 1 ]
}
tc privileged-or-image-stalled-unless-chart-allows t_policy

t_helm_upgrade() {
  requires relay || return 1
  local op_before op_after pod_before pod_after spis_before spis_after key
  op_before=$(kubectl -n $opns get pods -o jsonpath='{.items[*].metadata.uid}')
  pod_before=$(kubectl -n $ns get pod "$(relay_pod plant-7)" -o jsonpath='{.metadata.uid}/{.status.containerStatuses[*].containerID}')
  spis_before=$(relay_spis plant-7)
  key=podAnnotations
  grep -q "^podAnnotations:" "$chart/values.yaml" || { why="not yet: charts/iotrelay/values.yaml has no podAnnotations to change"; return 1; }
  helm upgrade iotrelay "$chart" -n $opns --reuse-values --set-string "$key.k8s-e2e-rollout=$RANDOM" --wait --timeout 120s > /dev/null 2>&1 \
    || { why="helm upgrade failed"; return 1; }
  op_pods() { kubectl -n $opns get pods -o jsonpath='{.items[*].metadata.uid}'; }
  wait_until 60 eval '[ "$(op_pods)" != "$op_before" ]'
  op_after=$(kubectl -n $opns get pods -o jsonpath='{.items[*].metadata.uid}')
  [ "$op_after" != "$op_before" ] || { why="the operator pod did not roll"; return 1; }
  kubectl -n $opns wait --for=condition=Available deploy --all --timeout=60s > /dev/null 2>&1 \
    || { why="the upgraded operator Deployment is not Available"; return 1; }
  local u
  for u in $op_before; do
    wait_until 60 eval "! kubectl -n $opns get pods -o jsonpath='{.items[*].metadata.uid}' | grepq $u" \
      || { why="the old operator pod $u is still there"; return 1; }
  done
  # Only the new operator is left: it must reconcile (a new IotRelay whose Secret is missing becomes Stalled).
  relay k8s-upgrade $ns 'spec.tunnels.0.preSharedKeySecretRef.name=k8s-upgrade-missing' \
    'spec.tunnels.1.preSharedKeySecretRef.name=k8s-upgrade-missing' | kubectl apply -f - > /dev/null || { why="apply failed"; return 1; }
  wait_until 60 cond_is k8s-upgrade Stalled True || { why="the upgraded operator did not reconcile a new IotRelay in 60 s"; return 1; }
  kubectl -n $ns delete iotrelay k8s-upgrade --timeout=60s > /dev/null 2>&1
  pod_after=$(kubectl -n $ns get pod "$(relay_pod plant-7)" -o jsonpath='{.metadata.uid}/{.status.containerStatuses[*].containerID}')
  spis_after=$(relay_spis plant-7)
  [ "$pod_before" = "$pod_after" ] || { why="relay pod restarted: $pod_before -> $pod_after"; return 1; }
  [ "$spis_before" = "$spis_after" ] || { why="SPIs changed: $spis_before -> $spis_after"; return 1; }
  cond_is plant-7 Ready True || { why="plant-7 not Ready after upgrade"; return 1; }
}
tc helm-upgrade-keeps-relays t_helm_upgrade

# Two operator replicas: exactly one holds the Lease and reconciles; when the leader stops renewing (frozen with
# SIGSTOP, then killed: it never releases the Lease) the standby takes over after the Lease expires and
# reconciles a change, and the killed replica's restarted process stays standby. Each operator pod runs in the
# pod network (a network namespace of its own), so /metrics is read there.
op_pid() { container_pid $opns "$1"; }
# (the pods' namespaces are mounted in the node's mount namespace only: enter through the process.)
op_metrics() { nsenter --net="/proc/$(op_pid "$1")/ns/net" curl -sf --max-time 3 http://127.0.0.1:8080/metrics; }
op_leader_gauge() { op_metrics "$1" | awk '$1 == "iotrelay_operator_leader" {print $2}'; }
op_reconciles() { op_metrics "$1" | awk '$1 ~ /^iotrelay_operator_reconciles_total/ {n += $2} END {print n + 0}'; }
op_ready_pods() {
  kubectl -n $opns get pods -o json | jq -r '.items[] | select(.metadata.deletionTimestamp == null)
    | select(any(.status.conditions[]?; .type == "Ready" and .status == "True")) | .metadata.name' | sort
}
op_ready_count() { op_ready_pods | grep -c .; }
lease_holder() { kubectl -n $opns get lease iotrelay-operator-leader -o jsonpath='{.spec.holderIdentity}'; }
op_restarts() { kubectl -n $opns get pod "$1" -o jsonpath='{.status.containerStatuses[0].restartCount}'; }
t_leader() {
  requires operator crd || return 1
  helm upgrade iotrelay "$chart" -n $opns --reuse-values --set replicaCount=2 --wait --timeout 90s > /dev/null 2>&1 \
    || { why="helm upgrade --set replicaCount=2 failed"; return 1; }
  wait_until 60 is 2 op_ready_count || { why="not 2 operator pods Ready: $(op_ready_pods | tr '\n' ' ')"; return 1; }
  local pods a b pg
  mapfile -t pods < <(op_ready_pods)
  # (After the rollout above the new replica may still be waiting for the old one's Lease to be released.)
  holder_is_a_pod() { local h; h=$(lease_holder); [ -n "$h" ] && printf '%s\n' "${pods[@]}" | grepq -x "$h"; }
  wait_until 30 holder_is_a_pod
  a=$(lease_holder)
  case "$a" in "${pods[0]}") b=${pods[1]} ;; "${pods[1]}") b=${pods[0]} ;;
    *) why="Lease holder '$a' is not one of the operator pods ${pods[*]}"; return 1 ;; esac
  wait_until 10 is 1 op_leader_gauge "$a" || { why="leader $a: iotrelay_operator_leader=$(op_leader_gauge "$a")"; return 1; }
  [ "$(op_leader_gauge "$b")" = 0 ] || { why="standby $b: iotrelay_operator_leader=$(op_leader_gauge "$b")"; return 1; }
  [ "$(op_reconciles "$b")" = 0 ] || { why="standby $b reconciled $(op_reconciles "$b") times"; return 1; }
  pg=$(op_pid "$a")
  [ -n "$pg" ] && kill -0 "$pg" 2>/dev/null || { why="no process for leader $a"; return 1; }
  kill -STOP -- "-$pg"
  local t0=$SECONDS
  wait_until 45 is "$b" lease_holder || { kill -CONT -- "-$pg"; why="Lease still held by '$(lease_holder)' 45 s after the leader froze"; return 1; }
  local took=$((SECONDS - t0))
  kill -KILL -- "-$pg"
  # A change only the leader acts on: an IotRelay whose Secret is missing must become Stalled.
  relay k8s-leader $ns 'spec.tunnels.0.preSharedKeySecretRef.name=k8s-leader-missing' \
    'spec.tunnels.1.preSharedKeySecretRef.name=k8s-leader-missing' | kubectl apply -f - > /dev/null || { why="apply failed"; return 1; }
  wait_until 30 cond_is k8s-leader Stalled True || { why="the new leader $b did not reconcile a new IotRelay in 30 s"; return 1; }
  [ "$(op_leader_gauge "$b")" = 1 ] || { why="new leader $b: iotrelay_operator_leader=$(op_leader_gauge "$b")"; return 1; }
  # The killed replica's container restarts (same Pod, same identity) and waits as the standby.
  wait_until 30 eval '[ "$(op_restarts "$a")" -ge 1 ] && [ "$(op_leader_gauge "$a")" = 0 ]' \
    || { why="killed leader $a: restarts=$(op_restarts "$a") leader=$(op_leader_gauge "$a")"; return 1; }
  [ "$(lease_holder)" = "$b" ] || { why="Lease moved back to '$(lease_holder)'"; return 1; }
  echo "# leader: $a froze, $b took over after $took s" >&2
}
tc operator-two-replicas-one-leader-failover t_leader
[ -n "${have[crd]:-}" ] && kubectl -n $ns delete iotrelay k8s-leader --timeout=60s > /dev/null 2>&1

degraded_ok=0
peer1_stopped_at=""   # when tunnel1's peer was stopped (set by t_degraded, read by t_degraded_event)
t_degraded() {
  requires relay || return 1
  [ "$(status plant-7 '.status.tunnels[0].active')/$(status plant-7 '.status.tunnels[1].active')" = true/false ] \
    || { why="tunnel1 was not the active tunnel before the outage"; return 1; }
  peer1_stopped_at=$(date +%s)
  lab_aws_stop 1 KILL   # an outage: no DELETE, only DPD can tell
  lab_fail_over
  wait_until 60 cond_is plant-7 Degraded True || { why="Degraded not True 60 s after tunnel1's peer stopped"; diag plant-7; return 1; }
  local s
  s=$(status plant-7 '.status.tunnels[0].state')
  [ "$s" != Established ] || { why="tunnel1 still Established"; return 1; }
  cond_is plant-7 Ready True || { why="Ready should stay True on tunnel2"; return 1; }
  degraded_ok=1
}
tc tunnel1-down-degraded t_degraded
t_degraded_traffic() {
  requires relay || return 1
  [ $degraded_ok = 1 ] || { why="not Degraded"; return 1; }
  [ "$(status plant-7 '.status.tunnels[1].active')" = true ] || { why="tunnel2 not active"; return 1; }
  ask 7000 "failover-$RANDOM" 9 || { why="no echo through tunnel2"; return 1; }
}
tc tunnel1-down-traffic-on-tunnel2 t_degraded_traffic
# The Event caused by the outage: tunnel1's IKE SA lost to dead peer detection, recorded after the peer stopped
# (the startup Events also mention tunnel1).
t_degraded_event() {
  requires relay || return 1
  [ -n "$peer1_stopped_at" ] || { why="not yet: tunnel1's peer was never stopped"; return 1; }
  dpd_event() {
    events_for plant-7 | jq -e --argjson t "$peer1_stopped_at" '.items[]
      | select((.message // .note // "") | test("tunnel tunnel1: IKE SA lost \\(DeadPeer\\)"))
      | select([.series.lastObservedTime, .eventTime, .lastTimestamp] | map(select(. != null)
          | sub("\\.[0-9]+"; "") | fromdateiso8601) | max >= $t)' > /dev/null
  }
  wait_until 30 dpd_event || { why="no Event 'tunnel tunnel1: IKE SA lost (DeadPeer)' after its peer stopped"; return 1; }
}
tc tunnel1-down-event t_degraded_event
if [ -n "${have[cluster]:-}" ]; then
  lab_aws_start 1 "$psk1" > /dev/null 2>&1
  lab_fail_back
fi

# AWS deletes tunnel2's IKE SA (swanctl --terminate sends the DELETE): an Event says DeletedByPeer and the relay
# starts a fresh IKE SA at once (startupAction Start), not after DPD or a backoff.
t_peer_delete() {
  requires relay || return 1
  wait_until 30 is Established status plant-7 '.status.tunnels[1].state' || { why="tunnel2 not Established"; return 1; }
  local old t
  old=$(status plant-7 '.status.tunnels[1].ikeSa.localSpi')
  t=$(date +%s)
  lab_swanctl 2 --terminate --ike aws > /dev/null 2>&1 || { why="swanctl --terminate failed"; return 1; }
  deleted_event() {
    events_for plant-7 | jq -e --argjson t "$t" '.items[]
      | select((.message // .note // "") | test("tunnel tunnel2: IKE SA lost \\(DeletedByPeer\\)"))
      | select([.series.lastObservedTime, .eventTime, .lastTimestamp] | map(select(. != null)
          | sub("\\.[0-9]+"; "") | fromdateiso8601) | max >= $t)' > /dev/null
  }
  wait_until 30 deleted_event || { why="no Event 'tunnel tunnel2: IKE SA lost (DeletedByPeer)' after the DELETE"; return 1; }
  fresh() { local s; s=$(status plant-7 '.status.tunnels[1].ikeSa.localSpi'); [ -n "$s" ] && [ "$s" != "$old" ] \
    && is Established status plant-7 '.status.tunnels[1].state' && is 1 aws_ike_count 2; }
  wait_until 15 fresh || { why="no fresh IKE SA on tunnel2 within 15 s of the DELETE"; return 1; }
}
tc peer-delete-event-and-restart t_peer_delete

declare -A aws_log_mark=() aws_had_sa=()
# save_pod_logs TAG: every container's log (current and previous) of every pod, for the secrets scan at the end
# (a deleted pod's logs are gone with it).
save_pod_logs() {
  local d=$K8S_STATE/scan-logs p c
  mkdir -p "$d"
  kubectl get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace} {.metadata.name}{"\n"}{end}' 2>/dev/null \
    | while read -r p c; do
      kubectl -n "$p" logs --all-containers "$c" > "$d/$1-$p-$c.txt" 2>&1
      kubectl -n "$p" logs --all-containers --previous "$c" > "$d/$1-$p-$c-previous.txt" 2>&1
    done
}
t_delete_gc() {
  requires relay || return 1
  save_pod_logs before-delete
  local uid kinds k left
  uid=$(status plant-7 .metadata.uid)
  kinds="deployments roles.rbac.authorization.k8s.io serviceaccounts rolebindings.rbac.authorization.k8s.io"
  owned() {
    for k in $kinds; do
      kubectl -n $ns get "$k" -o json | jq -r --arg u "$uid" --arg k "$k" \
        '.items[] | select(any(.metadata.ownerReferences[]?; .uid == $u)) | "\($k)/\(.metadata.name)"'
    done
  }
  [ "$(owned | grep -c ^deployments/)" -ge 1 ] && [ "$(owned | grep -c ^roles)" -ge 1 ] \
    && [ "$(owned | grep -c ^serviceaccounts/)" -ge 1 ] || { why="plant-7 does not own a Deployment, Role and ServiceAccount: $(owned | tr '\n' ' ')"; return 1; }
  for k in 1 2; do
    aws_log_mark[$k]=$(wc -l < "$(lab_aws_dir $k)/charon.log")
    aws_had_sa[$k]=$(aws_ike_count $k)
  done
  kubectl -n $ns delete iotrelay plant-7 --timeout=60s > /dev/null 2>&1 || { why="delete did not finish in 60 s"; return 1; }
  wait_until 60 eval '[ -z "$(owned)" ]' || { why="left behind: $(owned | tr '\n' ' ')"; return 1; }
}
tc delete-garbage-collects-children t_delete_gc
t_delete_aws() {
  requires relay || return 1
  [ -n "${aws_log_mark[2]:-}" ] || { why="not yet: the IotRelay was never deleted"; return 1; }
  [ "${aws_had_sa[2]:-0}" -ge 1 ] || { why="aws2 had no IKE SA when the IotRelay was deleted (nothing to prove)"; return 1; }
  local k
  for k in 1 2; do
    wait_until 20 is 0 aws_ike_count $k || { why="aws$k: IKE SAs '$(aws_ike_count $k || echo "charon unreachable")'"; return 1; }
    # The DELETE the relay sent when its IotRelay was deleted (log lines after the delete only), for each AWS
    # endpoint that held an IKE SA then (tunnel1 may still be reconnecting after its outage).
    [ "${aws_had_sa[$k]:-0}" -ge 1 ] || continue
    tail -n +"$((aws_log_mark[$k] + 1))" "$(lab_aws_dir $k)/charon.log" | grepq 'received DELETE for IKE_SA' \
      || { why="aws$k received no DELETE after the IotRelay was deleted (the SA timed out instead?)"; return 1; }
  done
}
tc delete-aws-side-has-no-sa t_delete_aws

t_wrong_psk() {
  requires operator crd || return 1
  kubectl -n $ns create secret generic k8s-wrong --from-literal=tunnel1=wrong-wrong-wrong > /dev/null 2>&1
  relay k8s-badpsk $ns 'spec.tunnels.1=--' 'spec.tunnels.0.preSharedKeySecretRef={"name":"k8s-wrong","key":"tunnel1"}' \
    | kubectl apply -f - > /dev/null || { why="apply failed"; return 1; }
  wait_until 90 cond_is k8s-badpsk Stalled True || { why="Stalled not True after 90 s"; diag k8s-badpsk; return 1; }
  [ "$(cond k8s-badpsk Stalled reason)" = AuthenticationFailed ] || { why="Stalled reason '$(cond k8s-badpsk Stalled reason)'"; return 1; }
}
tc wrong-psk-stalled-authentication-failed t_wrong_psk
t_wrong_psk_event() {
  requires operator crd || return 1
  events_for k8s-badpsk | jq -e '.items[] | select(((.reason // "") + (.message // "")) | test("(?i)authentication"))' > /dev/null \
    || { why="no Event about the authentication failure"; return 1; }
}
tc wrong-psk-event t_wrong_psk_event
t_no_hot_loop() {
  requires operator crd || return 1
  cond_is k8s-badpsk Stalled True || { why="not Stalled"; return 1; }
  local log="$(lab_aws_dir 1)/charon.log" a b restarts pod
  a=$(grep -c 'parsed IKE_SA_INIT request' "$log")
  # Stalled waits for a change; one slow retry (30 s backoff) is tolerated, a loop is not: waited for, 30 s.
  if wait_until 30 eval '[ "$(grep -c "parsed IKE_SA_INIT request" "$log")" -gt $((a + 1)) ]'; then
    b=$(grep -c 'parsed IKE_SA_INIT request' "$log")
    why="$((b - a)) IKE_SA_INIT attempts within 30 s while Stalled"
    return 1
  fi
  pod=$(relay_pod k8s-badpsk) && restarts=$(kubectl -n $ns get pod "$pod" -o jsonpath='{.status.containerStatuses[0].restartCount}')
  [ "${restarts:-0}" -le 1 ] || { why="relay pod restarted $restarts times"; return 1; }
}
tc wrong-psk-no-hot-loop t_no_hot_loop
[ -n "${have[crd]:-}" ] && kubectl -n $ns delete iotrelay k8s-badpsk --timeout=60s > /dev/null 2>&1

t_missing_secret() {
  requires operator crd || return 1
  relay k8s-late $ns 'spec.tunnels.0.preSharedKeySecretRef.name=k8s-late-secret' \
    'spec.tunnels.1.preSharedKeySecretRef.name=k8s-late-secret' | kubectl apply -f - > /dev/null || { why="apply failed"; return 1; }
  wait_until 60 cond_is k8s-late Stalled True || { why="Stalled not True after 60 s"; diag k8s-late; return 1; }
  cond k8s-late Stalled message | grepq k8s-late-secret || { why="Stalled message does not name the Secret: '$(cond k8s-late Stalled message)'"; return 1; }
  missing_stalled=1
}
missing_stalled=0
tc missing-secret-stalled-names-secret t_missing_secret
t_missing_secret_recovers() {
  requires operator crd || return 1
  [ $missing_stalled = 1 ] || { why="not yet: the missing Secret was never reported (recovering from nothing proves nothing)"; return 1; }
  kubectl -n $ns create secret generic k8s-late-secret --from-literal=tunnel1=$psk1 --from-literal=tunnel2=$psk2 > /dev/null
  kubectl -n $ns wait --for=condition=Ready iotrelay/k8s-late --timeout=120s > /dev/null 2>&1 \
    || { why="not Ready 120 s after the Secret was created: $(cond k8s-late Ready message)"; diag k8s-late; return 1; }
  # Not stalled any more: Stalled False or absent (kstatus reads an absent abnormal-true condition as False).
  [ "$(cond k8s-late Stalled status)" != True ] || { why="still Stalled: $(cond k8s-late Stalled reason)"; diag k8s-late; return 1; }
}
tc missing-secret-created-recovers t_missing_secret_recovers
[ -n "${have[crd]:-}" ] && kubectl -n $ns delete iotrelay k8s-late --timeout=60s > /dev/null 2>&1
