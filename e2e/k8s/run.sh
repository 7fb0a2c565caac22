#!/usr/bin/env bash
# End to end on a real Kubernetes control plane: Helm install, kubectl apply, status from live SAs.
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
# Every assertion is a separate case printing `PASS name` or `FAIL name: why`; the last line is
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
expected=$(cat "$0" "$here"/cases/*.sh | grep -c '^tc ')
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
  [monitoring]="the chart's monitoring objects were not applied"
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
diag() { # NAME: dump a relay's status and pod, the operator's pods and the node's taints into the artifacts
  mkdir -p "$artifacts"
  { kubectl -n $ns get iotrelay "$1" -o yaml; kubectl -n $ns get pods -o wide; events_for "$1" | jq -r '.items[] | "\(.reason): \(.message)"'
    kubectl -n $opns get pods -o wide; echo "node taints:$(node_taints)"; } > "$artifacts/$1.txt" 2>&1
}
# node_taints: " key:effect ..." of the node's taints (empty when none). A full disk shows here first: the kubelet
# taints its node disk-pressure and nothing new is scheduled, which would otherwise look like an operator fault.
node_taints() { kubectl get node "$node" -o jsonpath='{range .spec.taints[*]} {.key}:{.effect}{end}' 2>/dev/null; }

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
    lab_swanctl "$i" --list-conns 2>/dev/null | grepq '^aws:' || { why="strongSwan aws$i did not load its config"; return 1; }
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
  "$K8S_STATE/bin/ctr" images ls -q 2>/dev/null | grepq -xF "$image_ref" \
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

# The cases, in run order (each file's `tc` lines run as they are read).
for case_file in validation user-path monitoring real-node gateway bgp operations; do
  # shellcheck source=/dev/null
  source "$here/cases/$case_file.sh"
done
