# shellcheck shell=bash
# Sourced by e2e/k8s/run.sh (not run alone): the user's path (kubectl apply, Ready, tunnels, traffic). Cases register with `tc`; run.sh counts every `^tc ` line
# of itself and of cases/*.sh as the expected total.
# ---------------------------------------------------------------------------------------------------------------
# The user's path: a Secret and an IotRelay with kubectl apply; the relay pod runs on the lab node.

t_relay_ready() {
  requires operator crd || return 1
  local t
  kubectl -n $ns create secret generic aws-vpn --from-literal=tunnel1=$psk1 --from-literal=tunnel2=$psk2 > /dev/null
  relay plant-7 $ns | kubectl apply -f - > /dev/null || { why="kubectl apply failed"; return 1; }
  kubectl -n $ns wait --for=condition=Ready iotrelay/plant-7 --timeout=120s > /dev/null 2>&1 \
    || { t=$(node_taints); why="not Ready after 120 s: $(cond plant-7 Ready message)${t:+ (node taints:$t)}"; diag plant-7; return 1; }
  have[relay]=1
}
tc iotrelay-ready t_relay_ready

t_scheduled() {
  requires relay || return 1
  local pod node
  pod=$(relay_pod plant-7) || { why="no Deployment owned by plant-7"; return 1; }
  node=$(kubectl -n $ns get pod "$pod" -o jsonpath='{.spec.nodeName}/{.status.phase}/{.spec.hostNetwork}')
  [ "$node" = "lab-node/Running/true" ] || { why="relay pod $pod: nodeName/phase/hostNetwork = $node"; return 1; }
}
tc relay-pod-scheduled-on-lab-node t_scheduled

# The relay pod as the API server stored it: non-root, only NET_BIND_SERVICE, no privilege escalation, read-only
# root, RuntimeDefault seccomp; the admin port is not a (host) port and the probes use the node's loopback.
t_pod_privileges() {
  requires relay || return 1
  local pod j bad
  pod=$(relay_pod plant-7) || { why="no relay pod"; return 1; }
  j=$(kubectl -n $ns get pod "$pod" -o json) || { why="cannot read pod $pod"; return 1; }
  bad=$(jq -r '.spec as $s | ($s.securityContext // {}) as $p | $s.containers[] | select(.name == "relay")
    | (.securityContext // {}) as $c | [
      (if ($c.runAsNonRoot // $p.runAsNonRoot) != true then "runAsNonRoot is not true" else empty end),
      (if (($c.runAsUser // $p.runAsUser) // 0) == 0 then "runs as uid 0" else empty end),
      (if $c.privileged == true then "privileged" else empty end),
      (if $c.allowPrivilegeEscalation != false then "allowPrivilegeEscalation is not false" else empty end),
      (if $c.readOnlyRootFilesystem != true then "writable root filesystem" else empty end),
      (if ($c.capabilities.add // []) != ["NET_BIND_SERVICE"] then "capabilities added: \($c.capabilities.add)" else empty end),
      (if (($c.capabilities.drop // []) | index("ALL")) == null then "capabilities not dropped: ALL" else empty end),
      (if ($c.seccompProfile.type // $p.seccompProfile.type) != "RuntimeDefault" then "seccomp is not RuntimeDefault" else empty end),
      (if [(.ports // [])[] | select(.containerPort == 9464 or .hostPort == 9464)] != [] then "the admin port 9464 is a pod port" else empty end),
      (if [.livenessProbe.httpGet.host, .readinessProbe.httpGet.host] != ["127.0.0.1", "127.0.0.1"] then "probes not on 127.0.0.1" else empty end)
    ] | join("; ")' <<< "$j")
  grep -q NET_ADMIN <<< "$j" && bad+="; NET_ADMIN in the pod"
  [ -z "$bad" ] || { why="pod $pod: $bad"; return 1; }
}
tc relay-pod-least-privilege t_pod_privileges

t_established() {
  requires relay || return 1
  local s
  wait_until 30 is "Established Established" status plant-7 '.status.tunnels[*].state'
  s=$(status plant-7 '.status.tunnels[*].state')
  [ "$s" = "Established Established" ] || { why="tunnel states: '$s'"; return 1; }
}
tc both-tunnels-established t_established

t_spis() {
  requires relay || return 1
  local i in out aws
  for i in 1 2; do
    in=$(status plant-7 ".status.tunnels[$((i - 1))].childSa.inboundSpi")
    out=$(status plant-7 ".status.tunnels[$((i - 1))].childSa.outboundSpi")
    aws=$(aws_child_spis $i)
    # The AWS side's spi-in is the relay's outbound SPI and vice versa; AWS keeps exactly one SA pair.
    [ "$(echo "$aws" | grep -c .)" = 1 ] || { why="tunnel$i: AWS side has $(echo "$aws" | grep -c .) CHILD_SAs: $aws"; return 1; }
    [ "$aws" = "$out $in" ] || { why="tunnel$i: status in=$in out=$out, swanctl in/out=$aws"; return 1; }
  done
}
tc child-sa-spis-match-aws t_spis

t_kstatus() {
  requires relay || return 1
  local out
  out=$(kubectl -n $ns get iotrelay plant-7 -o json | "$IOTRELAY_CACHE/bin/kstatus") || { why="kstatus: $out"; return 1; }
  [[ "$out" == Current* ]] || { why="kstatus: $out"; return 1; }
}
tc kstatus-current t_kstatus

# Every condition has one writer (the server-side apply field managers of the live object): the operator owns
# Ready, Reconciling and Stalled, the relay TunnelsReady and Degraded, and no condition is owned by both.
t_condition_writers() {
  requires relay || return 1
  local owners want
  owners=$(kubectl -n $ns get iotrelay plant-7 -o json --show-managed-fields | jq -r '
    [.metadata.managedFields[] | select(.subresource == "status") | .manager as $m
      | (.fieldsV1["f:status"]["f:conditions"] // {}) | keys[] | select(startswith("k:"))
      | (ltrimstr("k:") | fromjson | .type) + "=" + $m] | sort | join(" ")') || { why="kubectl/jq failed"; return 1; }
  want="Degraded=iotrelay-sidecar Ready=iotrelay-operator Reconciling=iotrelay-operator Stalled=iotrelay-operator"
  want+=" TunnelsReady=iotrelay-sidecar"
  [ "$owners" = "$want" ] || { why="condition owners: $owners (want: $want)"; return 1; }
  # Ready is the relay's TunnelsReady passed on.
  [ "$(cond plant-7 Ready reason)|$(cond plant-7 Ready message)" = "$(cond plant-7 TunnelsReady reason)|$(cond plant-7 TunnelsReady message)" ] \
    || { why="Ready $(cond plant-7 Ready reason) vs TunnelsReady $(cond plant-7 TunnelsReady reason)"; return 1; }
}
tc condition-writers t_condition_writers

t_udp() {
  requires relay || return 1
  ask 7000 "admin-$RANDOM" || { why="no echo from the device through the relay"; return 1; }
}
tc udp-admin-packet-roundtrip t_udp

t_rbac() {
  requires relay || return 1
  local pod sa token api=https://127.0.0.1:6443 code
  pod=$(relay_pod plant-7) || { why="no relay pod"; return 1; }
  sa=$(kubectl -n $ns get pod "$pod" -o jsonpath='{.spec.serviceAccountName}')
  # The token as the relay container sees it.
  token="/proc/$(container_pid "$ns" "$pod")/root/var/run/secrets/kubernetes.io/serviceaccount/token"
  [ -s "$token" ] || { why="relay pod has no ServiceAccount token (automount off?)"; return 1; }
  kubectl -n $ns create secret generic k8s-other --from-literal=x=y > /dev/null 2>&1
  # Control: the token is valid and is the relay's ServiceAccount (so the 403s below are RBAC, not a bad token).
  local who
  who=$(ip netns exec "$K8S_NETNS" curl -s --cacert "$K8S_STATE/pki/ca.crt" -H "Authorization: Bearer $(cat "$token")" \
    -H 'Content-Type: application/json' -X POST -d '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}' \
    "$api/apis/authentication.k8s.io/v1/selfsubjectreviews" | jq -r .status.userInfo.username)
  [ "$who" = "system:serviceaccount:$ns:$sa" ] || { why="the pod's token authenticates as '$who', not $sa"; return 1; }
  # Real requests with the pod's own token; authorization comes before lookup, so a missing object still
  # answers 403 when access is denied (404 would mean "allowed").
  # Real requests with the pod's own token.
  for path in "api/v1/namespaces/$ns/secrets/k8s-other" "api/v1/namespaces/$ns/secrets" "api/v1/secrets" \
              "apis/iotrelay.dev/v1alpha1/namespaces/$ns/iotrelays/other" "apis/iotrelay.dev/v1alpha1/iotrelays"; do
    code=$(ip netns exec "$K8S_NETNS" curl -s -o /dev/null -w '%{http_code}' --cacert "$K8S_STATE/pki/ca.crt" \
      -H "Authorization: Bearer $(cat "$token")" "$api/$path")
    [ "$code" = 403 ] || { why="relay SA $sa got HTTP $code for GET /$path (want 403)"; return 1; }
  done
}
tc relay-token-least-privilege t_rbac

# Secrets by `get` only: the relay on its own PSK Secret (resourceNames), the operator cluster-wide; neither may
# list or watch (both once could, the relay even on its named Secret). Asked of the API server's
# authorizer for the two ServiceAccounts.
t_secret_verbs() {
  requires relay || return 1
  local pod sa opsa v bad=""
  pod=$(relay_pod plant-7) || { why="no relay pod"; return 1; }
  sa=system:serviceaccount:$ns:$(kubectl -n $ns get pod "$pod" -o jsonpath='{.spec.serviceAccountName}')
  opsa=system:serviceaccount:$opns:$(kubectl -n $opns get pods -o jsonpath='{.items[0].spec.serviceAccountName}')
  can() { kubectl auth can-i "$@" 2>/dev/null; }
  [ "$(can get secret/aws-vpn -n $ns --as="$sa")" = yes ] || bad+="relay cannot get secret/aws-vpn; "
  for v in list watch; do
    [ "$(can $v secret/aws-vpn -n $ns --as="$sa")" = no ] || bad+="relay can $v secret/aws-vpn; "
    [ "$(can $v secrets -n $ns --as="$sa")" = no ] || bad+="relay can $v secrets; "
    [ "$(can $v secrets --all-namespaces --as="$opsa")" = no ] || bad+="operator can $v secrets; "
  done
  [ "$(can get secret/aws-vpn -n $ns --as="$opsa")" = yes ] || bad+="operator cannot get secret/aws-vpn; "
  [ -z "$bad" ] || { why="$bad"; return 1; }
}
tc relay-and-operator-get-secrets-only t_secret_verbs

forward2='spec.forwards.1={"name":"admin2","protocol":"UDP","listenPort":7001,"allowedSources":["203.0.113.10/32"],"target":{"address":"100.64.1.10","port":7001}}'
t_add_forward() {
  requires relay || return 1
  local before after
  before="$(relay_spis plant-7)|$(aws_spis)"
  relay plant-7 $ns "$forward2" | kubectl apply -f - > /dev/null || { why="kubectl apply failed"; return 1; }
  wait_until 60 is true status plant-7 '.status.forwards[?(@.name=="admin2")].listening' \
    || { why="forward admin2 not listening after 60 s"; diag plant-7; return 1; }
  ask 7001 "admin2-$RANDOM" || { why="no echo through the new forward"; return 1; }
  ask 7000 "admin-$RANDOM" || { why="the old forward stopped working"; return 1; }
  after="$(relay_spis plant-7)|$(aws_spis)"
  [ "$before" = "$after" ] || { why="SPIs changed (tunnels re-established): $before -> $after"; return 1; }
  # The relay's TunnelsReady says which generation it applied: the new one; the operator's Ready follows it.
  local gen
  gen=$(status plant-7 .metadata.generation)
  wait_until 15 is "$gen" cond plant-7 TunnelsReady observedGeneration \
    || { why="TunnelsReady.observedGeneration $(cond plant-7 TunnelsReady observedGeneration), generation $gen"; return 1; }
  wait_until 15 is "$gen True" eval 'echo "$(cond plant-7 Ready observedGeneration) $(cond plant-7 Ready status)"' \
    || { why="Ready $(cond plant-7 Ready status) for generation $(cond plant-7 Ready observedGeneration), generation $gen"; return 1; }
}
tc add-forward-keeps-tunnels t_add_forward

# A tunnel setting (here the IKE lifetime) needs new SAs: the relay closes its tunnels and exits, its container
# restarts in the same pod with the new spec, and the AWS side ends with exactly the new CHILD_SAs.
t_tunnel_change() {
  requires relay || return 1
  local pod uid restarts before
  pod=$(relay_pod plant-7) || { why="no relay pod"; return 1; }
  uid=$(kubectl -n $ns get pod "$pod" -o jsonpath='{.metadata.uid}')
  relay_restarts() { kubectl -n $ns get pod "$pod" -o jsonpath='{.status.containerStatuses[0].restartCount}'; }
  restarts=$(relay_restarts)
  before=$(relay_spis plant-7)
  relay plant-7 $ns "$forward2" 'spec.ike.lifetime=4h' | kubectl apply -f - > /dev/null || { why="kubectl apply failed"; return 1; }
  wait_until 60 eval '[ "$(relay_restarts)" -gt "$restarts" ]' || { why="the relay did not restart for the new IKE lifetime"; diag plant-7; return 1; }
  new_sas_up() { [ "$(relay_spis plant-7)" != "$before" ] && is "Established Established" status plant-7 '.status.tunnels[*].state'; }
  wait_until 60 new_sas_up || { why="no new established SAs 60 s after the restart: $(status plant-7 '.status.tunnels[*].state')"; diag plant-7; return 1; }
  wait_until 30 cond_is plant-7 Ready True || { why="not Ready after the restart"; return 1; }
  [ "$(kubectl -n $ns get pod "$(relay_pod plant-7)" -o jsonpath='{.metadata.uid}')" = "$uid" ] || { why="the pod was replaced, not restarted"; return 1; }
  wait_until 20 t_spis || return 1   # exactly one CHILD_SA per tunnel on the AWS side, the relay's new one
  ask 7001 "after-restart-$RANDOM" || { why="no echo through the forward after the restart"; return 1; }
}
tc tunnel-setting-change-restarts-relay t_tunnel_change

# The relay's admin server (/status, POST /rekey) listens on the node's loopback only. From the IoT server's and
# the AWS peer's namespaces the node's metrics address answers /metrics (so TCP reaches the node: the control) and
# nothing else, and the admin port refuses connections.
# http_code NETNS METHOD URL [curl args]: the HTTP status, 000 when no connection was made.
http_code() {
  local n=$1 m=$2 u=$3
  shift 3
  ip netns exec "$n" curl -s -o /dev/null -w '%{http_code}' --max-time 3 -X "$m" "$@" "$u"
}
t_admin_loopback() {
  requires relay || return 1
  local from addr code u
  for from in "$LAB_NS_IOT/$LAB_RELAY_IOT_ADDR" "$LAB_ID-aws1/$LAB_RELAY_PUBLIC"; do
    addr=${from#*/}
    from=${from%%/*}
    code=$(http_code "$from" GET "http://$addr:9465/metrics")
    [ "$code" = 200 ] || { why="control: GET http://$addr:9465/metrics from $from answered $code (want 200)"; return 1; }
    for u in "GET /status" "POST /rekey?tunnel=tunnel1"; do
      code=$(http_code "$from" "${u% *}" "http://$addr:9465${u#* }")
      [[ "$code" != 2* ]] || { why="$u on the metrics address from $from answered $code"; return 1; }
      code=$(http_code "$from" "${u% *}" "http://$addr:9464${u#* }")
      [ "$code" = 000 ] || { why="$u on the admin port from $from answered $code (want no connection)"; return 1; }
    done
  done
  code=$(http_code "$K8S_NETNS" GET http://127.0.0.1:9464/status)
  [ "$code" = 200 ] || { why="control: GET /status on the node's loopback answered $code"; return 1; }
}
tc admin-port-loopback-only t_admin_loopback

# POST /rekey: refused on plant-7 as installed (no rekeyTokenSecretRef), even on the node's loopback with a token;
# after the opt-in (a token Secret, mounted as a file), refused without the token and with a wrong one, accepted
# with it. The relay handles admin commands in order, so a refused request that had started a rekey would show
# on the AWS side before the accepted one: exactly one CREATE_CHILD_SA request reaches tunnel1's peer.
aws1_rekeys() { grep -c 'parsed CREATE_CHILD_SA request' "$(lab_aws_dir 1)/charon.log"; }
rekey_at() { http_code "$K8S_NETNS" POST "http://127.0.0.1:9464/rekey?tunnel=tunnel1" "$@"; }
t_rekey_token() {
  requires relay || return 1
  local token code pod uid before a b sa
  token=k8s-rekey-$RANDOM$RANDOM
  for code in "$(rekey_at)" "$(rekey_at -H "Authorization: Bearer $token")"; do
    [[ "$code" != 2* ]] || { why="POST /rekey without rekeyTokenSecretRef answered $code"; return 1; }
  done
  kubectl -n $ns create secret generic k8s-rekey --from-literal=token="$token" > /dev/null 2>&1
  pod=$(relay_pod plant-7) || { why="no relay pod"; return 1; }
  uid=$(kubectl -n $ns get pod "$pod" -o jsonpath='{.metadata.uid}')
  before=$(relay_spis plant-7)
  relay plant-7 $ns "$forward2" 'spec.ike.lifetime=4h' 'spec.rekeyTokenSecretRef={"name":"k8s-rekey","key":"token"}' \
    | kubectl apply -f - > /dev/null || { why="kubectl apply failed"; return 1; }
  # The token changes the pod (a volume): a new pod, new SAs.
  new_pod_up() {
    local p
    p=$(relay_pod plant-7) && [ "$(kubectl -n $ns get pod "$p" -o jsonpath='{.metadata.uid}')" != "$uid" ] \
      && [ "$(relay_spis plant-7)" != "$before" ] && is "Established Established" status plant-7 '.status.tunnels[*].state' \
      && cond_is plant-7 Ready True
  }
  wait_until 120 new_pod_up || { why="no new relay pod with established tunnels 120 s after the opt-in"; diag plant-7; return 1; }
  pod=$(relay_pod plant-7)
  sa=system:serviceaccount:$ns:$(kubectl -n $ns get pod "$pod" -o jsonpath='{.spec.serviceAccountName}')
  [ "$(kubectl auth can-i get secret/k8s-rekey -n $ns --as="$sa" 2>/dev/null)" = no ] \
    || { why="the relay's ServiceAccount can get the token Secret (it is mounted, not read through the API)"; return 1; }
  a=$(aws1_rekeys)
  before=$(status plant-7 '.status.tunnels[0].childSa.inboundSpi')
  for code in "$(rekey_at)" "$(rekey_at -H "Authorization: Bearer wrong-$token")" "$(rekey_at -H "Authorization: $token")"; do
    [[ "$code" != 2* ]] || { why="POST /rekey without the right token answered $code"; return 1; }
  done
  code=$(rekey_at -H "Authorization: Bearer $token")
  [[ "$code" = 2* ]] || { why="control: POST /rekey with the token answered $code"; return 1; }
  wait_until 30 eval '[ "$(status plant-7 ".status.tunnels[0].childSa.inboundSpi")" != "$before" ]' \
    || { why="tunnel1's CHILD_SA was not rekeyed 30 s after the accepted POST /rekey"; return 1; }
  b=$(aws1_rekeys)
  [ $((b - a)) = 1 ] || { why="tunnel1's peer saw $((b - a)) CREATE_CHILD_SA requests (want 1: refused requests must not rekey)"; return 1; }
}
tc rekey-refused-without-token t_rekey_token
