# shellcheck shell=bash
# Sourced by e2e/k8s/run.sh (not run alone): dynamic routing in the cluster. Cases register with `tc`; run.sh counts
# every `^tc ` line of itself and of cases/*.sh as the expected total.
# ---------------------------------------------------------------------------------------------------------------
# One IotRelay, k8s-bgp, with `spec.bgp` and an inside /30 per tunnel (after k8s-gw is gone: it needs the same host
# ports). bird2 next to each AWS endpoint's strongSwan plays AWS's side of a dynamic VPN connection (e2e/bgp/bird.sh:
# AS 64512, the AWS inside address on ipsec0). What the relay's own lab (make bgp) cannot show: the operator renders
# spec.bgp into a relay pod with no more privilege than without it, the sessions reach the API server's status, the
# operator's Ready follows them, and a session lost while its tunnel stays up is `Degraded BgpSessionDown` on the
# IotRelay.
# shellcheck source=e2e/bgp/bird.sh
source "$repo/e2e/bgp/bird.sh"

bgp_ok=0
bgp_relay() {
  relay k8s-bgp $ns 'spec.bgp={"localAsn":65000,"failbackDelay":"5s"}' \
    'spec.tunnels.0.insideCidr=169.254.11.0/30' 'spec.tunnels.1.insideCidr=169.254.12.0/30' | kubectl apply -f - > /dev/null
}
bgp_state() { status k8s-bgp ".status.tunnels[$(($1 - 1))].bgp.$2"; }
bgp_degraded() { echo "$(cond k8s-bgp Degraded status) $(cond k8s-bgp Degraded reason)"; }
bgp_why() { echo "bgp status: $(kubectl -n $ns get iotrelay k8s-bgp -o json 2>/dev/null | jq -c '[.status.tunnels[]?.bgp]')"; }
bgp_birds_stop() {
  bird_stop_all
  local i
  for i in 1 2; do ip -n "$LAB_ID-aws$i" addr del "$(aws_inside "$i")/30" dev ipsec0 2> /dev/null; done
  true
}

# Both sessions Established in bird and in the IotRelay's status, written by the relay in its pod; Ready True with
# Degraded False AllTunnelsEstablished; the pod has the capabilities of a relay without BGP (BGP runs over the
# relay's userspace TCP inside ESP: no TUN, no NET_ADMIN).
t_bgp_sessions() {
  requires operator crd || return 1
  local i j
  for i in 1 2; do bird_start "$i" || { why="$LAB_WHY"; return 1; }; done
  bgp_relay || { why="kubectl apply k8s-bgp failed"; return 1; }
  for i in 1 2; do
    wait_until 90 is Established bgp_state "$i" state || { why="tunnel$i: $(bgp_why)"; diag k8s-bgp; return 1; }
    wait_until 10 bird_established "$i" || { why="bird on aws$i: $(birdc_n "$i" show protocols relay | tail -1)"; return 1; }
  done
  wait_until 30 is "False AllTunnelsEstablished" bgp_degraded || { why="Degraded is '$(bgp_degraded)'"; return 1; }
  wait_until 30 cond_is k8s-bgp Ready True || { why="Ready: $(cond k8s-bgp Ready reason) $(cond k8s-bgp Ready message)"; return 1; }
  j=$(kubectl -n $ns get pod "$(relay_pod k8s-bgp)" -o json)
  if grep -q -e NET_ADMIN -e /dev/net/tun -e IOTRELAY_GATEWAY <<< "$j"; then
    why="the pod of a relay with spec.bgp (no gateway) has NET_ADMIN, /dev/net/tun or IOTRELAY_GATEWAY"; return 1
  fi
  bgp_ok=1
}
tc bgp-sessions-established-in-status-no-extra-privilege t_bgp_sessions

# bird announces the VPC on both sessions: the status counts one prefix received on each tunnel, bird has the
# relay's inside address (plain on tunnel1, prepended twice more on the standby tunnel2), and the forward reaches the
# device (its target is inside a learned prefix).
t_bgp_routes() {
  requires operator crd || return 1
  [ $bgp_ok = 1 ] || { why="not yet: k8s-bgp has no sessions"; return 1; }
  local i
  for i in 1 2; do birdc_n "$i" enable vpc > /dev/null || { why="birdc enable vpc on aws$i failed"; return 1; }; done
  for i in 1 2; do
    wait_until 30 is 1 bgp_state "$i" prefixesReceived || { why="tunnel$i: $(bgp_why)"; return 1; }
  done
  wait_until 15 bird_path_is 1 "65000" || { why="aws1: path to $LAB_INSIDE/32 is '$(bird_path 1)'"; return 1; }
  wait_until 15 bird_path_is 2 "65000 65000 65000" || { why="aws2: path to $LAB_INSIDE/32 is '$(bird_path 2)'"; return 1; }
  ask 7000 "bgp-$RANDOM" || { why="no echo from the device through the relay with learned routes"; return 1; }
}
tc bgp-routes-learned-and-forward-reaches-device t_bgp_routes

# bird on aws1 shuts its session while the tunnel stays up: the IotRelay says Degraded BgpSessionDown (tunnel1's
# session not Established) and stays Ready (tunnel2 carries traffic); the session comes back and Degraded clears.
t_bgp_session_loss() {
  requires operator crd || return 1
  [ $bgp_ok = 1 ] || { why="not yet: k8s-bgp has no sessions"; return 1; }
  birdc_n 1 disable relay > /dev/null || { why="birdc disable relay failed"; return 1; }
  wait_until 60 is "True BgpSessionDown" bgp_degraded \
    || { why="Degraded is '$(bgp_degraded)' after the loss: $(bgp_why)"; return 1; }
  cond_is k8s-bgp Ready True || { why="Ready '$(cond k8s-bgp Ready status)' while tunnel2 carries traffic"; return 1; }
  [ "$(status k8s-bgp '.status.tunnels[0].state')" = Established ] || { why="tunnel1 not Established during a BGP-only loss"; return 1; }
  birdc_n 1 enable relay > /dev/null || { why="birdc enable relay failed"; return 1; }
  wait_until 90 is Established bgp_state 1 state || { why="tunnel1's session did not come back: $(bgp_why)"; return 1; }
  wait_until 30 is "False AllTunnelsEstablished" bgp_degraded \
    || { why="Degraded is '$(bgp_degraded)' after the session came back"; return 1; }
}
tc bgp-session-loss-degraded-then-recovers t_bgp_session_loss
# Gone before the next cases, which count the API server's writes: the relay's children, deleted by garbage
# collection after the IotRelay, and the relay process.
bgp_children() { kubectl -n $ns get deploy,sa,role,rolebinding,pod -o name 2> /dev/null | grep k8s-bgp; }
if [ -n "${have[crd]:-}" ]; then
  kubectl -n $ns delete iotrelay k8s-bgp --timeout=60s > /dev/null 2>&1
  wait_until 60 eval '! bgp_children' || echo "# k8s-bgp's children still there 60 s after its delete: $(bgp_children | tr '\n' ' ')" >&2
fi
bgp_birds_stop
