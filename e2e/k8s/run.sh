#!/usr/bin/env bash
# End to end on a real Kubernetes control plane (issue 5): Helm install, kubectl apply, status from live SAs.
#
#   k8s-iot 203.0.113.10 ── k8s-relay (the node, $K8S_NETNS): control plane, kubelet, containerd, kube-proxy,
#                           the relay pod (hostNetwork), the operator pod (pod network, CNI bridge)
#                           198.51.100.1 ── k8s-wan ── k8s-aws1 198.51.100.2 (strongSwan, tunnel1) ─┐
#                                                   └─ k8s-aws2 198.51.100.3 (strongSwan, tunnel2) ─┴ k8s-vpc 100.64.1.10
#   The lab is e2e/lab/lib.sh (the same AWS side as the datapath suite) with LAB_ID=k8s, so every namespace is
#   k8s-* and never collides with the other suites' lab-*; its relay host namespace is the Kubernetes node.
#   (details in e2e/lab/lib.sh and cluster.sh). The pods run the project's image, built from the release binaries
#   in the Dockerfile's layout (image.py) under the chart's default name, so `helm install` is the user's.
#
# Every assertion of issue 5 is a separate case printing `PASS name` or `FAIL name: why`; the last line is
# `N passed, N failed`; the exit status is non-zero on any failure. A case whose prerequisite is missing (no chart,
# no operator binary, relay never Ready, ...) fails at once saying `not yet: ...` instead of waiting out timeouts.
# Needs: root, scripts/deps.sh and scripts/node-deps.sh done, `make build` (iotrelay-operator, iotrelay-sidecar
# in ${CARGO_TARGET_DIR:-target}/release). Logs of a run are copied to $K8S_ARTIFACTS (default /tmp/k8s-iotrelay-artifacts).
# K8S_KEEP=1 leaves the cluster and the lab running afterwards, for a look with kubectl.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
: "${IOTRELAY_CACHE:=/var/cache/iotrelay}"
export K8S_STATE=${K8S_STATE:-/tmp/k8s-iotrelay-e2e}
relbin=${CARGO_TARGET_DIR:-$repo/target}/release   # the binaries the image is built from
artifacts=${K8S_ARTIFACTS:-/tmp/k8s-iotrelay-artifacts}
chart=${K8S_CHART:-$repo/charts/iotrelay}
crds=${K8S_CRDS:-$repo/crds}   # used without a chart
# shellcheck source=../lab/lib.sh
LAB_ID=k8s
export LAB_AWS_LOG_KEYS=1   # the AWS side logs the derived keys for the secrets scan (the last case)
source "$repo/e2e/lab/lib.sh"
export K8S_NETNS=$LAB_NS_RELAY   # the node: hostNetwork pods (the relay) run in the lab's relay host namespace

ns=k8s-e2e                 # namespace of the IotRelays
node=${K8S_NODE:-lab-node}  # the cluster's one node
opns=k8s-iotrelay-system   # the operator's release namespace
psk1=k8s-e2e-psk-tunnel1-0123456789
psk2=k8s-e2e-psk-tunnel2-9876543210
passed=0 failed=0 skipped=0
# Every top-level `tc` line of this file is one case; fewer ran (an abort, a case lost in a refactor) is red.
expected=$(grep -c '^tc ' "$0")
why=""
declare -A have=()         # prerequisites met so far: cluster image chart operator crd relay

pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1${2:+: $2}"; failed=$((failed + 1)); }
# tc NAME FUNC [ARGS]: one test case; FUNC returns non-zero and sets $why on failure.
tc() {
  local name=$1
  shift
  why=""
  if "$@"; then pass "$name"; else fail "$name" "${why:-failed}"; fi
}
# requires PREREQ...: fails the current case (returns 1) with `not yet` when a prerequisite is missing.
requires() {
  local p
  for p in "$@"; do
    if [ -z "${have[$p]:-}" ]; then why="not yet: ${prereq_why[$p]:-$p missing}"; return 1; fi
  done
}
declare -A prereq_why=(
  [cluster]="control plane did not start"
  [image]="the iotrelay image was not built (make build?)"
  [chart]="no chart at charts/iotrelay (helm install failed)"
  [operator]="operator not Ready after helm install"
  [crd]="IotRelay CRD not established"
  [relay]="IotRelay plant-7 never became Ready"
)

cleanup() {
  mkdir -p "$artifacts"
  # Control plane, kubelet, containerd and kube-proxy logs; every container's log (also of restarted ones).
  cp -r "$K8S_STATE/logs" "$artifacts/cluster" 2>/dev/null || true
  cp -r "$K8S_STATE/pod-logs" "$artifacts/pods" 2>/dev/null || true
  for i in 1 2; do cp "$(lab_aws_dir $i)/charon.log" "$artifacts/aws$i-charon.log" 2>/dev/null || true; done
  cp "$LAB_DIR/device.log" "$artifacts/device.log" 2>/dev/null || true
  if [ "${K8S_KEEP:-0}" = 1 ]; then
    echo "K8S_KEEP=1: cluster and lab left running; eval \"\$(K8S_STATE=$K8S_STATE K8S_NETNS=$K8S_NETNS $here/cluster.sh env)\"; stop with:"
    echo "  K8S_STATE=$K8S_STATE K8S_NETNS=$K8S_NETNS $here/cluster.sh stop; (LAB_ID=k8s source $repo/e2e/lab/lib.sh; lab_down)"
  else
    # The cluster first (its pods run in the lab's relay namespace), then the lab (namespaces, charons, echo).
    "$here/cluster.sh" stop >/dev/null 2>&1
    lab_down >/dev/null 2>&1
  fi
  echo "logs: $artifacts"
  lab_report "$passed" "$failed" "$skipped" "$expected" "$k8s_rc"
  exit $?
}
# The real status survives: an abort (exit 1 half way, unbound variable, SIGINT/SIGTERM) is red (lab_report).
trap 'k8s_rc=$?; trap - EXIT; cleanup' EXIT
lab_traps

kubectl() { ip netns exec "$K8S_NETNS" "$IOTRELAY_CACHE/bin/kubectl" --kubeconfig "$K8S_STATE/admin.kubeconfig" "$@"; }
helm() { ip netns exec "$K8S_NETNS" "$IOTRELAY_CACHE/bin/helm" --kubeconfig "$K8S_STATE/admin.kubeconfig" "$@"; }
relay() { "$here/relay.py" "$@"; }
# status NAME JSONPATH
status() { kubectl -n $ns get iotrelay "$1" -o jsonpath="{$2}" 2>/dev/null; }
cond() { status "$1" ".status.conditions[?(@.type==\"$2\")].$3"; }
# wait_until TIMEOUT CMD...: poll every second.
wait_until() {
  local t=$1 start=$SECONDS
  shift
  until "$@" >/dev/null 2>&1; do
    [ $((SECONDS - start)) -ge "$t" ] && return 1
    sleep 1
  done
}
cond_is() { [ "$(cond "$1" "$2" status)" = "$3" ]; }
ask() { lab_ask "$LAB_NS_IOT" "$LAB_RELAY_IOT_ADDR" "$1" "$2" "${3:-6}"; }
# aws_child_spis N: "<in> <out>" SPIs of the installed CHILD_SAs as AWS endpoint N sees them (one line per SA).
aws_child_spis() {
  lab_swanctl "$1" --list-sas --raw 2>/dev/null | grep -o 'spi-in=[0-9a-f]* spi-out=[0-9a-f]*' \
    | sed 's/spi-in=//; s/spi-out=//'
}
# aws_ike_count N: established IKE SAs on AWS endpoint N; prints nothing and fails when charon cannot be asked.
aws_ike_count() { local o; o=$(lab_swanctl "$1" --list-sas --raw 2>/dev/null) || return 1; grep -c 'state=ESTABLISHED' <<< "$o"; true; }
# is EXPECTED CMD...: the output of CMD equals EXPECTED (for wait_until, which re-runs it on every poll).
is() { local want=$1; shift; [ "$("$@")" = "$want" ]; }
relay_spis() { status "$1" '.status.tunnels[*].childSa.inboundSpi'; echo -n /; status "$1" '.status.tunnels[*].childSa.outboundSpi'; }
aws_spis() { aws_child_spis 1 | tr '\n' ' '; echo -n /; aws_child_spis 2 | tr '\n' ' '; }
relay_pod() { # NAME -> pod name of the relay (via the Deployment the IotRelay owns)
  local uid dep sel
  uid=$(status "$1" .metadata.uid)
  dep=$(kubectl -n $ns get deploy -o json | jq -r --arg u "$uid" \
    '.items[] | select(any(.metadata.ownerReferences[]?; .uid == $u)) | .metadata.name' | head -1)
  [ -n "$dep" ] || return 1
  sel=$(kubectl -n $ns get deploy "$dep" -o json | jq -r '.spec.selector.matchLabels | to_entries | map("\(.key)=\(.value)") | join(",")')
  kubectl -n $ns get pod -l "$sel" -o jsonpath='{.items[0].metadata.name}'
}
# container_pid NAMESPACE POD: host PID of the pod's (first) container process.
container_pid() {
  "$here/cluster.sh" pid "$(kubectl -n "$1" get pod "$2" -o jsonpath='{.status.containerStatuses[0].containerID}')"
}
events_for() { kubectl -n $ns get events --field-selector "involvedObject.kind=IotRelay,involvedObject.name=$1" -o json; }
diag() { # NAME: dump a relay's status and pod into the artifacts for a failed case
  mkdir -p "$artifacts"
  { kubectl -n $ns get iotrelay "$1" -o yaml; kubectl -n $ns get pods -o wide; events_for "$1" | jq -r '.items[] | "\(.reason): \(.message)"'; } \
    > "$artifacts/$1.txt" 2>&1
}

# ---------------------------------------------------------------------------------------------------------------
# Infrastructure

# The lab first: its relay host namespace is the node the control plane runs in.
t_lab_up() {
  rm -rf "$artifacts"
  "$here/cluster.sh" stop > /dev/null 2>&1   # leftovers of an interrupted run
  lab_down > /dev/null 2>&1
  { lab_up && lab_aws_start 1 "$psk1" && lab_aws_start 2 "$psk2"; } > "$LAB_DIR.up.log" 2>&1 \
    || { why="lab setup failed: $(tail -2 "$LAB_DIR.up.log" | tr '\n' ' ')"; return 1; }
  for i in 1 2; do
    lab_swanctl "$i" --list-conns 2>/dev/null | grep -q '^aws:' || { why="strongSwan aws$i did not load its config"; return 1; }
  done
  # The device also answers on 7001 (the forward added live below).
  lab_bg "$LAB_NS_VPC" "$LAB_DIR/echo7001.log" python3 "$repo/e2e/lab/udp.py" echo 0.0.0.0 7001 --log "$LAB_DIR/device.log"
}
tc lab-aws-peers-up t_lab_up

t_cluster_start() {
  [ -e "/run/netns/$K8S_NETNS" ] || { why="no lab: the node namespace $K8S_NETNS is missing"; return 1; }
  if "$here/cluster.sh" start > /tmp/k8s-cluster-start.log 2>&1; then have[cluster]=1; return 0; fi
  why="$(tail -3 /tmp/k8s-cluster-start.log | tr '\n' ' ')"
  return 1
}
tc cluster-start t_cluster_start

# The image the chart deploys by default (values image.repository : Chart appVersion), built from the release
# binaries in the Dockerfile's layout and imported into the node's containerd: `helm install` needs no --set.
image_ref=$(python3 -c 'import sys, yaml; v = yaml.safe_load(open(sys.argv[1])); c = yaml.safe_load(open(sys.argv[2]))
print(v["image"]["repository"] + ":" + (v["image"].get("tag") or c["appVersion"]))' "$chart/values.yaml" "$chart/Chart.yaml" 2>/dev/null)
t_image() {
  requires cluster || return 1
  [ -n "$image_ref" ] || { why="cannot read image.repository/appVersion from $chart"; return 1; }
  local b out
  for b in iotrelay-operator iotrelay-sidecar; do
    [ -x "$relbin/$b" ] || { why="not yet: $relbin/$b missing (make build)"; return 1; }
  done
  out=$(python3 "$here/image.py" --out "$K8S_STATE/images/iotrelay.tar" --name "$image_ref" \
    --dockerfile "$repo/Dockerfile" --bin-dir "$relbin" 2>&1) || { why="image.py: $out"; return 1; }
  out=$("$here/cluster.sh" load "$K8S_STATE/images/iotrelay.tar" 2>&1) || { why="import: $out"; return 1; }
  "$K8S_STATE/bin/ctr" images ls -q 2>/dev/null | grep -qxF "$image_ref" \
    || { why="$image_ref is not in the node's image store"; return 1; }
  have[image]=1
}
tc image-built-and-imported t_image


t_helm_install() {
  requires cluster image || return 1
  [ -f "$chart/Chart.yaml" ] || { why="${prereq_why[chart]}"; return 1; }
  local out
  # No --wait here: whether the operator comes up is the next case's question.
  if ! out=$(helm install iotrelay "$chart" -n $opns --create-namespace 2>&1); then
    why="helm install: $(echo "$out" | tail -2 | tr '\n' ' ')"
    return 1
  fi
  have[chart]=1
}
tc helm-install t_helm_install

t_crd() {
  requires cluster || return 1
  if [ -z "${have[chart]:-}" ]; then
    # Without a chart, the committed CRD alone still lets the validation cases run.
    ls "$crds"/*.yaml > /dev/null 2>&1 || { why="not yet: no chart and no crds/*.yaml"; return 1; }
    local out
    out=$(kubectl apply --server-side -f "$crds/" 2>&1) || { why="kubectl apply crds/ failed: $(echo "$out" | tail -2 | tr "\n" " ")"; return 1; }
  fi
  kubectl wait --for=condition=Established crd/iotrelays.iotrelay.dev --timeout=30s > /dev/null 2>&1 \
    || { why="crd/iotrelays.iotrelay.dev not Established"; return 1; }
  have[crd]=1
}
tc crd-established t_crd

t_operator_ready() {
  requires chart || return 1
  kubectl -n $opns wait --for=condition=Available deploy --all --timeout=90s > /dev/null 2>&1 \
    || { why="operator Deployment not Available"; return 1; }
  # It really runs with its own ServiceAccount's token (so the chart's RBAC is what is tested).
  local sa
  sa=$(kubectl -n $opns get pods -o jsonpath='{.items[0].spec.serviceAccountName}')
  [ -n "$sa" ] && [ "$sa" != default ] || { why="operator pod uses ServiceAccount '${sa:-default}', not the chart's"; return 1; }
  have[operator]=1
}
tc operator-running-with-chart-serviceaccount t_operator_ready

# ---------------------------------------------------------------------------------------------------------------
# API validation: each invalid IotRelay is rejected by the API server (OpenAPI schema or CEL rule).

cel_seen=""
t_reject() { # field-substring edits...
  requires crd || return 1
  local want=$1 out doc
  shift
  doc=$(relay "bad" "$ns" "$@") || { why="relay.py $*: cannot build the manifest"; return 1; }
  if out=$(kubectl apply --dry-run=server -f - <<< "$doc" 2>&1); then
    why="accepted: $*"
    return 1
  fi
  cel_seen+="$out"$'\n'
  echo "$out" | grep -qi "invalid" && echo "$out" | grep -qi -- "$want" \
    || { why="rejected, but the error does not name '$want': $(echo "$out" | head -c 300)"; return 1; }
}
t_valid() {
  requires crd || return 1
  local out
  kubectl create namespace $ns > /dev/null 2>&1
  out=$(relay plant-7 $ns | kubectl apply --dry-run=server -f - 2>&1) || { why="the API.md example is rejected: $out"; return 1; }
}
kubectl create namespace $ns > /dev/null 2>&1
tc valid-example-accepted t_valid
tc reject-no-tunnels t_reject tunnels 'spec.tunnels=[]'
tc reject-three-tunnels t_reject tunnels 'spec.tunnels.2={"name":"t3","peerAddress":"198.51.100.4","preSharedKeySecretRef":{"name":"aws-vpn","key":"t3"}}'
tc reject-duplicate-tunnel-names t_reject tunnel 'spec.tunnels.1.name=tunnel1'
tc reject-bad-inside-address t_reject insideAddress 'spec.insideAddress=not-an-ip'
tc reject-bad-remote-subnet t_reject remoteSubnets 'spec.remoteSubnets=["100.64.0.0/33"]'
tc reject-bad-peer-address t_reject peerAddress 'spec.tunnels.0.peerAddress=999.1.1.1'
tc reject-listen-port-zero t_reject listenPort 'spec.forwards.0.listenPort=0'
tc reject-listen-port-too-big t_reject listenPort 'spec.forwards.0.listenPort=70000'
tc reject-duplicate-listen-port t_reject listenPort \
  'spec.forwards.1={"name":"admin2","protocol":"UDP","listenPort":7000,"allowedSources":["203.0.113.10/32"],"target":{"address":"100.64.1.10","port":7001}}'
tc reject-duplicate-forward-names t_reject forward \
  'spec.forwards.1={"name":"admin","protocol":"UDP","listenPort":7001,"allowedSources":["203.0.113.10/32"],"target":{"address":"100.64.1.10","port":7001}}'
tc reject-protocol-tcp t_reject protocol 'spec.forwards.0.protocol=TCP'
tc reject-bad-allowed-source t_reject allowedSources 'spec.forwards.0.allowedSources=["203.0.113.10/40"]'
tc reject-target-port-zero t_reject port 'spec.forwards.0.target.port=0'
tc reject-bad-startup-action t_reject startupAction 'spec.ike.startupAction=Sometimes'
tc reject-bad-lifetime t_reject lifetime 'spec.ike.lifetime=eight hours'
tc reject-bad-ike-proposal-syntax t_reject proposals 'spec.ike.proposals=["AES128_SHA1"]'
tc reject-inside-address-ipv6 t_reject insideAddress 'spec.insideAddress=2001:db8::1'
tc reject-inside-address-in-remote-subnets t_reject insideAddress 'spec.insideAddress=100.64.5.5'
tc reject-cidr-with-host-bits t_reject remoteSubnets 'spec.remoteSubnets=["100.64.0.1/16"]'
tc reject-target-outside-remote-subnets t_reject target 'spec.forwards.0.target.address=192.0.2.99'
tc reject-listen-port-500 t_reject listenPort 'spec.forwards.0.listenPort=500'
tc reject-listen-port-4500 t_reject listenPort 'spec.forwards.0.listenPort=4500'
tc reject-listen-port-is-admin-port t_reject adminPort 'spec.adminPort=7000'
tc reject-duplicate-peer-address t_reject peerAddress 'spec.tunnels.1.peerAddress=198.51.100.2'
tc reject-ike-lifetime-over-8h t_reject lifetime 'spec.ike.lifetime=9h'
tc reject-esp-lifetime-over-1h t_reject lifetime 'spec.esp.lifetime=2h'
tc reject-esp-lifetime-not-shorter-than-ike t_reject lifetime 'spec.ike.lifetime=1h' 'spec.esp.lifetime=1h'
tc reject-dpd-interval-zero t_reject dpdInterval 'spec.ike.dpdInterval=0s'
tc reject-dpd-timeout-not-longer t_reject dpdTimeout 'spec.ike.dpdInterval=10s' 'spec.ike.dpdTimeout=10s'
tc reject-idle-timeout-over-24h t_reject idleTimeout 'spec.forwards.0.idleTimeout=48h'
tc reject-secret-ref-without-key t_reject key 'spec.tunnels.0.preSharedKeySecretRef={"name":"aws-vpn"}'
tc reject-gateway-route-outside-remote-subnets t_reject routes 'spec.gateway={"routes":["192.0.2.0/24"]}'
tc reject-bgp-without-inside-cidr t_reject insideCidr 'spec.bgp={"localAsn":65000}'
tc reject-bgp-local-asn-is-aws-asn t_reject localAsn 'spec.bgp={"localAsn":64512}' 'spec.tunnels.0.insideCidr=169.254.10.0/30' 'spec.tunnels.1.insideCidr=169.254.11.0/30'
tc reject-bgp-hold-time-2s t_reject holdTime 'spec.bgp={"localAsn":65000,"holdTime":"2s"}' 'spec.tunnels.0.insideCidr=169.254.10.0/30' 'spec.tunnels.1.insideCidr=169.254.11.0/30'
tc reject-bgp-as-trans t_reject 23456 'spec.bgp={"localAsn":65000,"awsAsn":23456}' 'spec.tunnels.0.insideCidr=169.254.10.0/30' 'spec.tunnels.1.insideCidr=169.254.11.0/30'
tc reject-bgp-local-as-trans t_reject 23456 'spec.bgp={"localAsn":23456}' 'spec.tunnels.0.insideCidr=169.254.10.0/30' 'spec.tunnels.1.insideCidr=169.254.11.0/30'
tc reject-duplicate-inside-cidr t_reject insideCidr 'spec.bgp={"localAsn":65000}' 'spec.tunnels.0.insideCidr=169.254.10.0/30' 'spec.tunnels.1.insideCidr=169.254.10.0/30'
tc reject-inside-cidr-not-30 t_reject insideCidr 'spec.tunnels.0.insideCidr=169.254.10.0/29'
tc reject-inside-cidr-outside-link-local t_reject insideCidr 'spec.tunnels.0.insideCidr=192.0.2.0/30'

# Every CEL rule in the CRD has a message, and each message was produced by at least one case above.
t_cel_coverage() {
  requires crd || return 1
  local msgs m missing=""
  msgs=$(kubectl get crd iotrelays.iotrelay.dev -o json \
    | jq -r '.. | objects | select(has("x-kubernetes-validations")) | ."x-kubernetes-validations"[] | (.message // "<no message: \(.rule)>")')
  [ -n "$msgs" ] || { why="the CRD has no x-kubernetes-validations (CEL) rules"; return 1; }
  while IFS= read -r m; do
    case "$m" in "<no message"*) missing+="$m; "; continue ;; esac
    grep -qF -- "$m" <<< "$cel_seen" || missing+="'$m'; "
  done <<< "$msgs"
  [ -z "$missing" ] || { why="CEL rules without a rejecting case here (or without message): $missing"; return 1; }
}
tc cel-every-rule-exercised t_cel_coverage

# ---------------------------------------------------------------------------------------------------------------
# The user's path: a Secret and an IotRelay with kubectl apply; the relay pod runs on the lab node.

t_relay_ready() {
  requires operator crd || return 1
  kubectl -n $ns create secret generic aws-vpn --from-literal=tunnel1=$psk1 --from-literal=tunnel2=$psk2 > /dev/null
  relay plant-7 $ns | kubectl apply -f - > /dev/null || { why="kubectl apply failed"; return 1; }
  kubectl -n $ns wait --for=condition=Ready iotrelay/plant-7 --timeout=120s > /dev/null 2>&1 \
    || { why="not Ready after 120 s: $(cond plant-7 Ready message)"; diag plant-7; return 1; }
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
# list or watch (before issue 9 both could, the relay even on its named Secret). Asked of the API server's
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
  # The relay's Ready condition says which generation it applied: the new one.
  local gen
  gen=$(status plant-7 .metadata.generation)
  wait_until 15 is "$gen" cond plant-7 Ready observedGeneration \
    || { why="Ready.observedGeneration $(cond plant-7 Ready observedGeneration), generation $gen"; return 1; }
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
  [ "$(pod_ready)" = True ] || { why="relay pod not Ready to begin with"; return 1; }
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
  if echo "$out" | grep -qF -e "$psk1" -e "$psk2"; then why="a pre-shared key is in the logs"; return 1; fi
  # (control: the kubelet's log API works at all, and the check would see the key: it is in the Secret)
  kubectl -n $ns get secret aws-vpn -o jsonpath='{.data.tunnel1}' | base64 -d | grep -qF "$psk1" \
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
  tr '\0' '\n' < "/proc/$pid/environ" | grep -qx "KUBERNETES_SERVICE_HOST=$svc" \
    || { why="operator env KUBERNETES_SERVICE_HOST is not the Service IP $svc"; return 1; }
  # /proc/<pid>/net/tcp is the pod's namespace: remote address hex little-endian, state 01 = ESTABLISHED.
  conn=$(printf '%02X%02X%02X%02X:01BB' $(echo "$svc" | awk -F. '{print $4, $3, $2, $1}'))
  awk -v r="$conn" '$3 == r && $4 == "01"' "/proc/$pid/net/tcp" | grep -q . \
    || { why="no established connection from the operator to $svc:443"; return 1; }
  ip netns exec "$K8S_NETNS" iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -q -- "-d $svc/32 .*dport 443" \
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
  if [ $ok = 1 ] && ! echo "$m" | grep -qiE 'port|schedul'; then why="not Ready, but the reason is not clear: '$m'"; ok=0; fi
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
    cond "$name" Stalled message | grep -qF "$value" || { why="$name: the message does not name $value: $(cond "$name" Stalled message)"; ok=0; break; }
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
    wait_until 60 eval "! kubectl -n $opns get pods -o jsonpath='{.items[*].metadata.uid}' | grep -q $u" \
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
  holder_is_a_pod() { local h; h=$(lease_holder); [ -n "$h" ] && printf '%s\n' "${pods[@]}" | grep -qx "$h"; }
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
    tail -n +"$((aws_log_mark[$k] + 1))" "$(lab_aws_dir $k)/charon.log" | grep -q 'received DELETE for IKE_SA' \
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
  cond k8s-late Stalled message | grep -q k8s-late-secret || { why="Stalled message does not name the Secret: '$(cond k8s-late Stalled message)'"; return 1; }
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
