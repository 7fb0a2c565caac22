# shellcheck shell=bash
# Sourced by e2e/k8s/run.sh (not run alone): gateway mode on the real node. Cases register with `tc`;
# run.sh counts every `^tc ` line of itself and of cases/*.sh as the expected total.
# ---------------------------------------------------------------------------------------------------------------
# One IotRelay, k8s-gw, first without and then with `gateway: {}` (it needs the host ports plant-7 held, so this
# runs after plant-7 is deleted). The relay's container process: without gateway mode NET_ADMIN is in none of its
# capability sets, and NET_BIND_SERVICE is effective because the relay raised it (the image's file capability is
# permitted-only); with gateway mode the pod adds NET_ADMIN and mounts /dev/net/tun, and every thread of the
# process holds NET_BIND_SERVICE and NET_ADMIN effective, still as uid 65532 under no_new_privs. The node then has
# the TUN device and its route, the device answers ping through the tunnel (strongSwan as AWS), the relay's status
# counts the packets, and deleting the IotRelay removes device and route from the node.

gw_dev=iotrelay0
gw_ok=0
gw_relay() { relay k8s-gw $ns "$@" | kubectl apply -f - > /dev/null; }
gw_pod() { relay_pod k8s-gw; }
# gw_caps EFFECTIVE: every thread of the relay's process against its pod spec (procstatus.py), effective set
# exactly EFFECTIVE (capabilities belong to threads: the relay settles them before starting any).
gw_caps() {
  local pod pid j t out n=0
  pod=$(gw_pod) && [ -n "$pod" ] || { why="no relay pod for k8s-gw"; return 1; }
  pid=$(container_pid $ns "$pod")
  [ -n "$pid" ] && [ -d "/proc/$pid/task" ] || { why="no process for the k8s-gw relay container"; return 1; }
  j=$(kubectl -n $ns get pod "$pod" -o json) || { why="cannot read pod $pod"; return 1; }
  for t in /proc/"$pid"/task/*; do
    out=$(python3 "$here/procstatus.py" relay "$t/status" --effective "$1" <<< "$j" 2>&1) \
      || { why="thread ${t##*/}: $out"; return 1; }
    n=$((n + 1))
  done
  [ "$n" -ge 2 ] || { why="only $n thread(s): the check would not see the runtime's threads"; return 1; }
  echo "# k8s-gw relay, $n threads: $out" >&2
}
gw_node_dev() { ip -n "$K8S_NETNS" -4 addr show "$gw_dev" 2> /dev/null | grepq "inet $LAB_INSIDE/32"; }
gw_node_route() { ip -n "$K8S_NETNS" route show "$LAB_VPC" | grepq "dev $gw_dev"; }
gw_node_clean() { ! ip -n "$K8S_NETNS" link show "$gw_dev" > /dev/null 2>&1 && ! ip -n "$K8S_NETNS" route show "$LAB_VPC" | grepq .; }

# Without gateway mode: no NET_ADMIN in the pod spec or in any set of the process; NET_BIND_SERVICE effective.
t_gw_plain() {
  requires operator crd || return 1
  wait_until 60 gw_node_clean || { why="the node has $gw_dev or a $LAB_VPC route before any gateway relay"; return 1; }
  gw_relay || { why="kubectl apply k8s-gw failed"; return 1; }
  kubectl -n $ns wait --for=condition=Ready iotrelay/k8s-gw --timeout=120s > /dev/null 2>&1 \
    || { why="k8s-gw not Ready after 120 s: $(cond k8s-gw Ready message)"; diag k8s-gw; return 1; }
  local j
  j=$(kubectl -n $ns get pod "$(gw_pod)" -o json)
  if grep -q -e NET_ADMIN -e /dev/net/tun -e IOTRELAY_GATEWAY <<< "$j"; then
    why="the pod of a relay without gateway mode has NET_ADMIN, /dev/net/tun or IOTRELAY_GATEWAY"; return 1
  fi
  gw_caps NET_BIND_SERVICE || return 1
  gw_node_clean || { why="a relay without gateway mode created $gw_dev or a route"; return 1; }
}
tc gateway-off-pod-and-process-without-net-admin t_gw_plain

# `gateway: {}` applied to the same IotRelay: a new pod (the template differs) with NET_ADMIN and the TUN device
# node; its process holds NET_ADMIN effective in every thread; the node has the device and the route.
t_gw_on() {
  requires operator crd || return 1
  local before j bad
  before=$(kubectl -n $ns get pod "$(gw_pod)" -o jsonpath='{.metadata.uid}' 2> /dev/null)
  gw_relay 'spec.gateway={}' || { why="kubectl apply k8s-gw with gateway {} failed"; return 1; }
  new_pod_ready() {
    local p
    p=$(gw_pod) && [ -n "$p" ] && [ "$(kubectl -n $ns get pod "$p" -o jsonpath='{.metadata.uid}')" != "$before" ] \
      && [ "$(kubectl -n $ns get pod "$p" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
  }
  wait_until 120 new_pod_ready || { why="no new Ready relay pod 120 s after gateway {} was applied"; diag k8s-gw; return 1; }
  kubectl -n $ns wait --for=condition=Ready iotrelay/k8s-gw --timeout=60s > /dev/null 2>&1 \
    || { why="k8s-gw not Ready in gateway mode: $(cond k8s-gw Ready message)"; diag k8s-gw; return 1; }
  j=$(kubectl -n $ns get pod "$(gw_pod)" -o json)
  bad=$(jq -r '.spec as $s | $s.containers[] | select(.name == "relay") | [
      (if (.securityContext.capabilities.add | sort) != ["NET_ADMIN", "NET_BIND_SERVICE"] then "capabilities.add \(.securityContext.capabilities.add)" else empty end),
      (if .securityContext.allowPrivilegeEscalation != false then "allowPrivilegeEscalation is not false" else empty end),
      (if .securityContext.privileged == true then "privileged" else empty end),
      (if [$s.volumes[]? | select(.hostPath.path == "/dev/net/tun" and .hostPath.type == "CharDevice")] == [] then "no /dev/net/tun CharDevice volume" else empty end),
      (if [.env[]? | select(.name == "IOTRELAY_GATEWAY" and .value == "true")] == [] then "no IOTRELAY_GATEWAY=true" else empty end)
    ] | join("; ")' <<< "$j")
  [ -z "$bad" ] || { why="gateway pod: $bad"; return 1; }
  gw_caps NET_BIND_SERVICE,NET_ADMIN || return 1
  wait_until 30 gw_node_dev || { why="no $gw_dev with $LAB_INSIDE/32 on the node: $(ip -n "$K8S_NETNS" -br addr)"; diag k8s-gw; return 1; }
  gw_node_route || { why="no route $LAB_VPC dev $gw_dev on the node: $(ip -n "$K8S_NETNS" route)"; return 1; }
  gw_ok=1
}
tc gateway-on-pod-net-admin-tun-device-and-route t_gw_on

# The device answers ping from the node through the relay's tunnel (ICMP: not something a UDP forward carries),
# and the relay's status counts the packets both ways.
gw_counter() { status k8s-gw ".status.gateway.$1"; }
t_gw_ping() {
  requires operator crd || return 1
  [ $gw_ok = 1 ] || { why="not yet: k8s-gw is not running in gateway mode"; return 1; }
  local out
  out=$(ip netns exec "$K8S_NETNS" ping -c 3 -i 0.3 -W 3 "$LAB_DEVICE" 2>&1) \
    || { why="ping $LAB_DEVICE from the node: $(tail -2 <<< "$out" | tr '\n' ' ')"; diag k8s-gw; return 1; }
  # (the status is written at most every 10 s when only counters change)
  wait_until 30 eval '[ "$(gw_counter packetsToTunnel)" -ge 3 ] && [ "$(gw_counter packetsToDevice)" -ge 3 ]' \
    || { why="status.gateway after 3 pings: packetsToTunnel '$(gw_counter packetsToTunnel)', packetsToDevice '$(gw_counter packetsToDevice)'"; return 1; }
}
tc gateway-ping-device-through-tunnel t_gw_ping

# Deleting the IotRelay stops the relay (SIGTERM): the device and its route leave the node.
t_gw_delete() {
  requires operator crd || return 1
  [ $gw_ok = 1 ] || { why="not yet: k8s-gw never ran in gateway mode"; return 1; }
  kubectl -n $ns delete iotrelay k8s-gw --timeout=60s > /dev/null 2>&1 || { why="delete did not finish in 60 s"; return 1; }
  wait_until 60 gw_node_clean || { why="60 s after the delete the node still has $gw_dev or its route: $(ip -n "$K8S_NETNS" route show "$LAB_VPC")"; return 1; }
}
tc gateway-delete-removes-device-and-route t_gw_delete
[ -n "${have[crd]:-}" ] && kubectl -n $ns delete iotrelay k8s-gw --timeout=60s > /dev/null 2>&1
