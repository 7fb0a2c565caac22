#!/usr/bin/env bash
# Dynamic routing, in the lab of e2e/lab/lib.sh: strongSwan (kernel-libipsec) as the two AWS tunnel
# endpoints and bird2 next to each, configured like AWS's side of a dynamic VPN connection (ASN 64512, hold time
# 30 s, announcing the VPC 100.64.0.0/16, inside /30s 169.254.11.0/30 and 169.254.12.0/30 with AWS on .1):
#
#   relay namespace: iotrelay-sidecar standalone, spec.bgp {localAsn 65000}, no TUN, no kernel route:
#                    BGP runs over the relay's userspace TCP inside ESP  ==ESP-in-UDP==>  awsN: charon, ipsec0
#                    carries AWS's inside address 169.254.1N.1/30 (so .2, the relay, is bird's direct neighbour),
#                    bird2 listens there on TCP 179.
#
#   VPC namespace:   one more bird, the VPC router, peering over internal BGP (AS 64512) with the birds on aws1 and
#                    aws2: it picks the shortest AS path to the relay, as AWS's VPN gateway chooses a tunnel.
#
# Cases: sessions Established on both tunnels (bird and the relay's status); the relay's 100.127.0.1/32 in bird's
# table, plain on tunnel1 and prepended on tunnel2, and the VPC router's best path via aws1; the device unreachable
# (noRoute counted) until bird announces the VPC, reachable after; a withdrawal stops the forward again (noRoute);
# failover: tunnel1's peer killed, bird on aws2 now has our prefix without prepends and the VPC router's best path is
# via aws2; failback: aws1 back, tunnel1 stays prepended (status failbackAt) until it has been up for failbackDelay,
# then aws1 has the plain path and aws2 the prepended one, and the VPC router's best path is via aws1 again; a
# BGP-only loss (bird on aws1 shuts its session, the tunnel stays up) moves the plain path to aws2 at once, Degraded
# BgpSessionDown, the flap in the metrics (iotrelay_bgp_session_established 0, iotrelay_bgp_sessions_established_total
# +1), and the session that comes back waits again; a broken peer's bad header answered with NOTIFICATION Message
# Header Error / Connection Not Synchronized, then a reconnect. Then gateway mode with BGP (a relay with `gateway:
# {localSubnets: [203.0.113.0/24]}`, no gateway.routes): no route to the VPC before bird announces it; once announced,
# 100.64.0.0/16 dev iotrelay0 src 100.127.0.1 in the relay namespace and the device answers a ping through the TUN;
# the site network 203.0.113.0/24 in bird's table next to 100.127.0.1/32 (plain on tunnel1, prepended on tunnel2) and
# the IoT server in it pings the device through the relay host; a withdrawal removes the route. Then iotrelay on both
# ends: each AWS endpoint's strongSwan and bird replaced by `iotrelay-sidecar standalone --bgp-aws-side` in gateway
# mode (e2e/lab/iotrelay_aws.sh: AS 64512, hold 30 s, passive, announcing the VPC): sessions Established on both ends,
# the relay learns the VPC and each AWS side 100.127.0.1/32 (in its device's routes), and the forward reaches the
# device through it. The AWS side's data plane keeps the lab's static routes (what we test is BGP, not bird's kernel
# routes).
# Usage: e2e/bgp/run.sh [CASE-PREFIX...]
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=e2e/lab/lib.sh
source "$HERE/../lab/lib.sh"
# shellcheck source=e2e/lab/relay.sh
source "$HERE/../lab/relay.sh"
# shellcheck source=e2e/lab/iotrelay_aws.sh
source "$HERE/../lab/iotrelay_aws.sh"
# shellcheck source=e2e/bgp/bird.sh
source "$HERE/bird.sh"
lab_need_root
command -v bird > /dev/null || { echo "bird2 missing: run scripts/deps.sh" >&2; exit 2; }
trap 'lab_exit $? relay_stop bird_stop_all vpc_bird_stop lab_down' EXIT
lab_traps
lab_select "$@"

alive() { relay_alive || { lab_fail_why "relay not running: $(tail -2 "$LAB_DIR/relay.log" 2>/dev/null | tr '\n' ' ')"; return 1; }; }
metric() { relay_curl "http://$RELAY_ADMIN/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
metric_ge() { local v; v=$(metric "$1"); [ "${v:-0}" -ge "$2" ]; }
metric_is() { [ "$(metric "$1")" = "$2" ]; }

relay_bgp() { relay_jq --arg t "tunnel$1" ".tunnels[]? | select(.name == \$t) | .bgp.$2 // empty"; }
relay_bgp_is() { [ "$(relay_bgp "$1" "$2")" = "$3" ]; }
noroute() { metric 'iotrelay_forward_drops_total{forward="admin",reason="noRoute"}'; }
ask() { lab_ask "$LAB_NS_IOT" "$LAB_RELAY_IOT_ADDR" "$LAB_DEVICE_PORT" "$1" 3; }

# start_bgp_relay [SPEC-LINE...]: the relay with spec.bgp (and each SPEC-LINE added to its spec, e.g. gateway).
start_bgp_relay() {
  local line
  relay_yaml "$LAB_DIR/relay.yaml"
  # Dynamic routing: an inside /30 per tunnel and spec.bgp (AWS's defaults otherwise).
  sed -i -e "/peerAddress: $(lab_aws_addr 1)/a\\    insideCidr: 169.254.11.0/30" \
    -e "/peerAddress: $(lab_aws_addr 2)/a\\    insideCidr: 169.254.12.0/30" \
    -e "/^  remoteSubnets:/a\\  bgp: {localAsn: 65000, failbackDelay: $FAILBACK_DELAY}" "$LAB_DIR/relay.yaml"
  for line in "$@"; do sed -i "/^  remoteSubnets:/a\\  $line" "$LAB_DIR/relay.yaml"; done
  relay_start "$LAB_DIR/relay.yaml" || return 1
  lab_wait 30 relay_tunnel_established tunnel1 || { lab_fail_why "tunnel1 not Established within 30 s"; return 1; }
  lab_wait 30 relay_tunnel_established tunnel2 || { lab_fail_why "tunnel2 not Established within 30 s"; return 1; }
}

# both_sessions_up AWS_UP AWS_WHY: on both tunnels the AWS side's session (`AWS_UP i`; `AWS_WHY i` says what it
# is instead) and the relay's are Established, and the relay's status is not degraded.
both_sessions_up() {
  local i
  for i in 1 2; do
    lab_wait 40 "$1" "$i" || { lab_fail_why "$("$2" "$i")"; return 1; }
    lab_wait 10 relay_bgp_is "$i" state Established \
      || { lab_fail_why "relay tunnel$i bgp: $(relay_jq -c ".tunnels[$((i - 1))].bgp")"; return 1; }
  done
  [ "$(relay_condition Degraded)" = "False AllTunnelsEstablished" ] \
    || lab_fail_why "Degraded: $(relay_condition Degraded)"
}
bird_why() { echo "bird on aws$1: $(birdc_n "$1" show protocols relay 2>&1 | tail -1)"; }
sessions_established() {
  alive || return 1
  both_sessions_up bird_established bird_why
}

inside_address_in_bird() {
  alive || return 1
  lab_wait 10 bird_path_is 1 "65000" || { lab_fail_why "aws1: path to $LAB_INSIDE/32 is '$(bird_path 1)'"; return 1; }
  lab_wait 10 bird_path_is 2 "65000 65000 65000" \
    || lab_fail_why "aws2 (standby): path to $LAB_INSIDE/32 is '$(bird_path 2)', want 3 x 65000"
}

# The VPC router has both endpoints' routes to the relay (aws1's plain, aws2's prepended) and chooses aws1's.
vpc_routes_are() { [ "$(vpc_routes | sort | tr '\n' ';')" = "$1" ]; }
vpc_router_prefers_tunnel1() {
  alive || return 1
  local i
  for i in 1 2; do
    lab_wait 30 vpc_established "$i" \
      || { lab_fail_why "VPC router - aws$i: $(birdc_vpc show protocols "aws$i" 2>&1 | tail -1)"; return 1; }
  done
  lab_wait 15 vpc_routes_are "aws1 * 65000;aws2 - 65000,65000,65000;" \
    || lab_fail_why "$(vpc_why), want the best via aws1 (65000) and aws2's prepended"
}

reachable_only_after_learned() {
  alive || return 1
  local before
  # Nothing announced yet: the relay has no route to the device and counts the datagram.
  relay_bgp_is 1 prefixesReceived 0 || { lab_fail_why "relay learned routes before any announcement"; return 1; }
  ask before-announce && { lab_fail_why "the device answered before the VPC was announced"; return 1; }
  lab_wait 5 metric_ge 'iotrelay_forward_drops_total{forward="admin",reason="noRoute"}' 1 \
    || { lab_fail_why "noRoute not counted: $(noroute)"; return 1; }
  lab_device_seen before-announce && { lab_fail_why "the device saw the datagram"; return 1; }
  before=$(noroute)
  birdc_n 1 enable vpc > /dev/null && birdc_n 2 enable vpc > /dev/null
  lab_wait 15 relay_bgp_is 1 prefixesReceived 1 || { lab_fail_why "relay did not learn $LAB_VPC on tunnel1"; return 1; }
  [ "$(relay_jq '.tunnels[0].bgp.received[0]')" = "$LAB_VPC" ] \
    || { lab_fail_why "learned $(relay_jq '.tunnels[0].bgp.received')"; return 1; }
  ask after-announce || { lab_fail_why "no echo from the device after the announcement"; return 1; }
  [ "$(noroute)" = "$before" ] || lab_fail_why "noRoute grew after the announcement"
}

withdrawal_stops_forward() {
  alive || return 1
  local before
  before=$(noroute)
  birdc_n 1 disable vpc > /dev/null && birdc_n 2 disable vpc > /dev/null
  lab_wait 15 relay_bgp_is 1 prefixesReceived 0 || { lab_fail_why "tunnel1 still has the VPC prefix"; return 1; }
  lab_wait 15 relay_bgp_is 2 prefixesReceived 0 || { lab_fail_why "tunnel2 still has the VPC prefix"; return 1; }
  ask after-withdraw && { lab_fail_why "the device answered after the withdrawal"; return 1; }
  lab_wait 5 metric_ge 'iotrelay_forward_drops_total{forward="admin",reason="noRoute"}' $((before + 1)) \
    || { lab_fail_why "noRoute did not grow: $(noroute)"; return 1; }
  birdc_n 1 enable vpc > /dev/null && birdc_n 2 enable vpc > /dev/null
  lab_wait 15 relay_bgp_is 1 prefixesReceived 1 || lab_fail_why "the VPC prefix did not come back"
}

failover_announcements() {
  alive || return 1
  # tunnel1's AWS endpoint vanishes (no DELETE): the relay's DPD gives up after ~30 s, tunnel2 becomes active
  # and is announced without prepends; AWS (bird on aws2) then prefers it.
  lab_aws_stop 1 KILL
  # The VPC's data plane follows (the lab's VPC router is static: lib.sh's lab_fail_over, as in e2e/datapath).
  lab_fail_over
  lab_wait 60 bird_path_is 2 "65000" \
    || { lab_fail_why "aws2 still has path '$(bird_path 2)'; relay: $(relay_jq -c '[.tunnels[] | {name, state, active, bgp: .bgp.state}]')"; return 1; }
  [ "$(relay_bgp 1 state)" != Established ] || { lab_fail_why "tunnel1's session still Established"; return 1; }
  relay_bgp_is 2 prepend 0 || { lab_fail_why "tunnel2 prepend $(relay_bgp 2 prepend)"; return 1; }
  # One daemon choosing between the two paths: the VPC router's best path is now via aws2 (aws1's is gone).
  lab_wait 40 vpc_routes_are "aws2 * 65000;" || { lab_fail_why "$(vpc_why), want only aws2's, plain"; return 1; }
  ask after-failover || lab_fail_why "no echo over tunnel2 after the failover"
}

# to_secs TIME: seconds since the epoch of an RFC 3339 time.
to_secs() { date -u -d "$1" +%s; }

# failback_waits: tunnel1's session is Established again while tunnel2 is preferred. tunnel1 stays prepended, with
# a failbackAt, until that time; then the plain path and the traffic move back to it.
failback_waits() {
  local fb
  lab_wait 30 bird_path_is 1 "65000 65000 65000" \
    || { lab_fail_why "aws1: path '$(bird_path 1)' while tunnel1 waits, want 3 x 65000"; return 1; }
  bird_path_is 2 "65000" || { lab_fail_why "aws2 lost the plain path: '$(bird_path 2)'"; return 1; }
  fb=$(relay_bgp 1 failbackAt)
  [ -n "$fb" ] || { lab_fail_why "tunnel1 has no failbackAt: $(relay_jq -c '.tunnels[0].bgp')"; return 1; }
  [ "$(relay_jq '.tunnels[1].active')" = true ] || { lab_fail_why "tunnel2 not active while tunnel1 waits"; return 1; }
  lab_wait 5 vpc_best_is aws2 || { lab_fail_why "$(vpc_why) while tunnel1 waits, want the best via aws2"; return 1; }
  lab_wait $((FAILBACK_SECS + 15)) bird_path_is 1 "65000" \
    || { lab_fail_why "aws1 path still '$(bird_path 1)' after failbackAt $fb"; return 1; }
  [ "$(date -u +%s)" -ge "$(to_secs "$fb")" ] || { lab_fail_why "failback before failbackAt $fb"; return 1; }
  lab_wait 10 bird_path_is 2 "65000 65000 65000" || { lab_fail_why "aws2 path '$(bird_path 2)' after failback"; return 1; }
  [ "$(relay_jq '.tunnels[0].active')" = true ] || { lab_fail_why "tunnel1 not active after failback"; return 1; }
  [ -z "$(relay_bgp 1 failbackAt)" ] || { lab_fail_why "failbackAt still set after failback"; return 1; }
  # The VPC router's best path is back on aws1 (its session to a restarted aws1 may take a connect retry).
  lab_wait 30 vpc_routes_are "aws1 * 65000;aws2 - 65000,65000,65000;" \
    || lab_fail_why "$(vpc_why) after failback, want the best via aws1 again"
}

failback_after_delay() {
  alive || return 1
  # aws1 comes back (charon, then bird on its new ipsec0): the relay re-establishes tunnel1 and its session.
  bird_stop 1
  lab_aws_start 1 "$RELAY_PSK1" || { lab_fail_why "aws1 did not restart"; return 1; }
  bird_start 1 || return 1
  lab_wait 120 relay_tunnel_established tunnel1 || { lab_fail_why "tunnel1 not re-established"; return 1; }
  lab_wait 60 bird_established 1 || { lab_fail_why "bird on aws1: $(birdc_n 1 show protocols relay 2>&1 | tail -1)"; return 1; }
  failback_waits || return 1
  lab_fail_back
  ask after-failback || lab_fail_why "no echo over tunnel1 after the failback"
}

bgp_loss_fails_over() {
  alive || return 1
  local before flaps up='iotrelay_bgp_session_established{tunnel="tunnel1"}'
  local total='iotrelay_bgp_sessions_established_total{tunnel="tunnel1"}'
  before=$(relay_bgp 1 sessionsEstablished)
  flaps=$(metric "$total")
  metric_is "$up" 1 || { lab_fail_why "$up is '$(metric "$up")' before the loss"; return 1; }
  # bird on aws1 shuts the session down (NOTIFICATION Cease); tunnel1's IKE and CHILD_SA stay up.
  birdc_n 1 disable relay > /dev/null
  lab_wait 10 bird_path_is 2 "65000" || { lab_fail_why "aws2 path '$(bird_path 2)' after tunnel1's session ended"; return 1; }
  lab_wait 10 vpc_routes_are "aws2 * 65000;" || { lab_fail_why "$(vpc_why) after tunnel1's session ended"; return 1; }
  relay_tunnel_established tunnel1 || { lab_fail_why "tunnel1's CHILD_SA went down too"; return 1; }
  [ "$(relay_jq '.tunnels[1].active')" = true ] || { lab_fail_why "tunnel2 not active"; return 1; }
  [ "$(relay_condition Degraded)" = "True BgpSessionDown" ] \
    || { lab_fail_why "Degraded: $(relay_condition Degraded)"; return 1; }
  # The flap in the metrics: the session gauge at 0 while it is down, the counter one up once it is back.
  lab_wait 5 metric_is "$up" 0 || { lab_fail_why "$up is '$(metric "$up")' while the session is down"; return 1; }
  birdc_n 1 enable relay > /dev/null
  lab_wait 60 relay_bgp_is 1 sessionsEstablished $((before + 1)) \
    || { lab_fail_why "tunnel1's session did not come back: $(relay_jq -c '.tunnels[0].bgp')"; return 1; }
  lab_wait 5 metric_is "$total" $((flaps + 1)) \
    || { lab_fail_why "$total is '$(metric "$total")', was $flaps before the flap"; return 1; }
  failback_waits
}

malformed_answered_with_notification() {
  alive || return 1
  # bird on aws2 steps aside; a broken peer takes its address and port and sends a bad header for the relay's
  # OPEN, twice (the relay reconnects after its backoff).
  bird_stop 2
  lab_wait 10 sh -c "! ip netns exec $LAB_ID-aws2 ss -Hltn 'sport = :179' | grep -q ." \
    || { lab_fail_why "bird still listens on 179"; return 1; }
  local log=$LAB_DIR/badpeer.log
  : > "$log"
  lab_bg "$LAB_ID-aws2" "$LAB_DIR/badpeer.out" python3 "$HERE/badpeer.py" "$(aws_inside 2)" 2 90 "$log"
  lab_wait 90 sh -c "grep -c '^conn' '$log' | grep -qx 2" \
    || { lab_fail_why "broken peer saw: $(tr '\n' ';' < "$log") $(cat "$LAB_DIR/badpeer.out")"; return 1; }
  grep -q '^conn 1 open=yes notification=1/1 closed=yes' "$log" \
    || { lab_fail_why "first connection: $(grep '^conn 1' "$log")"; return 1; }
  grep -q '^conn 2 open=yes' "$log" || { lab_fail_why "no reconnect: $(grep '^conn 2' "$log")"; return 1; }
  alive || return 1
  [ "$(relay_jq '.tunnels[1].bgp.lastError')" != "" ] || lab_fail_why "tunnel2 bgp lastError empty"
}

# --- gateway mode with BGP: the prefixes bird announces are the TUN device's routes --------------------------------

DEV=iotrelay0
# The IoT server's network stands in for a site network behind the relay host (gateway.localSubnets).
SITE=203.0.113.0/24
vpc_route() { ip -n "$LAB_NS_RELAY" route show "$LAB_VPC"; }
vpc_routed() { vpc_route | grepq "dev $DEV .*src $LAB_INSIDE"; }
vpc_unrouted() { [ -z "$(vpc_route)" ]; }
gw_status() { relay_jq ".gateway.$1 // 0"; }
gw_status_is() { [ "$(gw_status "$1")" = "$2" ]; }
ping_device() { ip netns exec "$LAB_NS_RELAY" ping -c 3 -i 0.3 -W 2 "$LAB_DEVICE" > "$LAB_DIR/$1.out" 2>&1; }

# A relay with `gateway: {}` and spec.bgp (no gateway.routes): both sessions up, nothing announced yet, so no route
# to the VPC exists, through the device or otherwise, and the device cannot be reached.
gateway_no_route_before_announce() {
  relay_stop
  bird_restart 1 && bird_restart 2 || return 1
  start_bgp_relay "gateway: {localSubnets: [\"$SITE\"]}" || return 1
  lab_wait 10 sh -c "ip -n $LAB_NS_RELAY link show $DEV > /dev/null 2>&1" || { lab_fail_why "no $DEV"; return 1; }
  # The condition under which a learned route would appear: both sessions Established.
  sessions_established || return 1
  relay_bgp_is 1 prefixesReceived 0 && relay_bgp_is 2 prefixesReceived 0 \
    || { lab_fail_why "the relay learned routes before any announcement"; return 1; }
  vpc_unrouted || { lab_fail_why "a route to $LAB_VPC before the announcement: $(vpc_route)"; return 1; }
  [ "$(gw_status bgpRoutes)" = 0 ] || { lab_fail_why "status.gateway.bgpRoutes $(gw_status bgpRoutes)"; return 1; }
  if ping_device gw-ping-before; then lab_fail_why "the device answered a ping before the announcement"; fi
}

# bird announces the VPC on both tunnels: the relay adds 100.64.0.0/16 dev iotrelay0 src 100.127.0.1, and a ping
# from the relay host goes through the device and the tunnel and is answered.
gateway_route_when_announced() {
  alive || return 1
  local out0 in0
  out0=$(metric 'iotrelay_gateway_packets_total{direction="toTunnel"}')
  in0=$(metric 'iotrelay_gateway_packets_total{direction="toDevice"}')
  birdc_n 1 enable vpc > /dev/null && birdc_n 2 enable vpc > /dev/null
  lab_wait 15 vpc_routed || { lab_fail_why "no route $LAB_VPC dev $DEV: '$(vpc_route)'; $(grep -i 'route' "$LAB_DIR/relay.log" | tail -2)"; return 1; }
  lab_wait 5 gw_status_is bgpRoutes 1 \
    || { lab_fail_why "status.gateway.bgpRoutes $(gw_status bgpRoutes), want 1"; return 1; }
  ping_device gw-ping-after || { lab_fail_why "no answer through $DEV: $(tail -2 "$LAB_DIR/gw-ping-after.out" | tr '\n' ' ')"; return 1; }
  lab_wait 5 metric_ge 'iotrelay_gateway_packets_total{direction="toTunnel"}' $((${out0:-0} + 3)) \
    || { lab_fail_why "the pings did not go through the device into the tunnel"; return 1; }
  lab_wait 5 metric_ge 'iotrelay_gateway_packets_total{direction="toDevice"}' $((${in0:-0} + 3)) \
    || lab_fail_why "the answers did not come out of the device"
}

# bird_site_path N: the AS path of bird N's route to the site network (empty if none).
bird_site_path() { birdc_n "$1" show route "$SITE" all 2>/dev/null | awk '/BGP.as_path:/ {$1=""; print substr($0, 2)}'; }
bird_site_path_is() { [ "$(bird_site_path "$1")" = "$2" ]; }

# gateway.localSubnets is announced with insideAddress/32 (plain on tunnel1, prepended on tunnel2), so AWS routes
# the site's answers into the tunnel: the IoT server (in the site network, its default route the relay host) pings
# the device through the device and the tunnel. The AWS side's data plane is static, as elsewhere in this lab: the
# VPC routes the site to aws1, aws1 into its tunnel.
gateway_local_subnet_announced() {
  alive || return 1
  lab_wait 10 bird_site_path_is 1 "65000" || { lab_fail_why "aws1: path to $SITE is '$(bird_site_path 1)'"; return 1; }
  lab_wait 10 bird_site_path_is 2 "65000 65000 65000" \
    || { lab_fail_why "aws2: path to $SITE is '$(bird_site_path 2)', want 3 x 65000"; return 1; }
  bird_path_is 1 "65000" || { lab_fail_why "aws1 lost $LAB_INSIDE/32: '$(bird_path 1)'"; return 1; }
  ip netns exec "$LAB_NS_RELAY" sysctl -qw net.ipv4.ip_forward=1
  ip -n "$LAB_NS_VPC" route replace "$SITE" via 100.64.1.2
  ip -n "$LAB_ID-aws1" route replace "$SITE" dev ipsec0
  ip netns exec "$LAB_NS_IOT" ping -c 3 -i 0.3 -W 2 "$LAB_DEVICE" > "$LAB_DIR/gw-ping-site.out" 2>&1 \
    || lab_fail_why "IoT server -> device through $DEV: $(tail -2 "$LAB_DIR/gw-ping-site.out" | tr '\n' ' ')"
}

# bird withdraws the VPC on both tunnels: the route goes, and the device is unreachable again.
gateway_route_withdrawn() {
  alive || return 1
  birdc_n 1 disable vpc > /dev/null && birdc_n 2 disable vpc > /dev/null
  lab_wait 15 vpc_unrouted || { lab_fail_why "route still there after the withdrawal: $(vpc_route)"; return 1; }
  lab_wait 5 gw_status_is bgpRoutes 0 \
    || { lab_fail_why "status.gateway.bgpRoutes $(gw_status bgpRoutes), want 0"; return 1; }
  ip -n "$LAB_NS_RELAY" link show "$DEV" > /dev/null 2>&1 || { lab_fail_why "$DEV went away"; return 1; }
  if ping_device gw-ping-withdrawn; then lab_fail_why "the device answered after the withdrawal"; fi
}

# --- iotrelay on both ends: iotrelay standing in for AWS (`standalone --bgp-aws-side`) ------------------------------

# Each AWS endpoint's strongSwan and bird make way for iotrelay (e2e/lab/iotrelay_aws.sh) in gateway mode with the
# same spec.bgp as the relay's plus the VPC announced: AWS's end of the session (169.254.1N.1, AS 64512, hold 30 s,
# passive), the prefixes the relay announces routed into its device.
AWS_SIDE_BGP="{localAsn: 65000, announce: [\"$LAB_VPC\"]}"
aws_bgp() { iotrelay_aws_jq "$1" ".tunnels[0].bgp.$2 // empty"; }
aws_bgp_is() { [ "$(aws_bgp "$1" "$2")" = "$3" ]; }
aws_routes_inside() { ip -n "$LAB_ID-aws$1" route show "$LAB_INSIDE" | grepq "dev $IOTRELAY_AWS_DEV"; }
# aws_to_device_above N COUNT: AWS side N has written more than COUNT packets into its device.
aws_to_device_above() {
  local v
  v=$(iotrelay_aws_metric "$1" 'iotrelay_gateway_packets_total{direction="toDevice"}')
  [ "${v:-0}" -gt "$2" ]
}
aws_why() { echo "AWS side $1: $(iotrelay_aws_jq "$1" -c '.tunnels[0] | {state, bgp}' 2>&1)"; }
aws_established() { aws_bgp_is "$1" state Established; }

# Both ends' sessions Established, the relay's status not degraded.
iotrelay_aws_sessions_established() {
  relay_stop
  bird_stop_all
  vpc_bird_stop
  local i
  for i in 1 2; do
    AWS_IOTRELAY_BGP=$AWS_SIDE_BGP iotrelay_aws_start "$i" "$([ "$i" = 1 ] && echo "$RELAY_PSK1" || echo "$RELAY_PSK2")" \
      || return 1
  done
  lab_fail_back
  start_bgp_relay || return 1
  both_sessions_up aws_established aws_why
}

# The relay learns the VPC on both tunnels; each AWS side learns the relay's inside address and routes it into
# its device.
iotrelay_aws_routes_exchanged() {
  alive || return 1
  local i
  for i in 1 2; do
    lab_wait 15 relay_bgp_is "$i" prefixesReceived 1 \
      || { lab_fail_why "relay tunnel$i: $(relay_jq -c ".tunnels[$((i - 1))].bgp")"; return 1; }
    [ "$(relay_jq -c ".tunnels[$((i - 1))].bgp.received")" = "[\"$LAB_VPC\"]" ] \
      || { lab_fail_why "relay tunnel$i learned $(relay_jq -c ".tunnels[$((i - 1))].bgp.received")"; return 1; }
    lab_wait 15 aws_bgp_is "$i" prefixesReceived 1 || { lab_fail_why "$(aws_why "$i")"; return 1; }
    [ "$(iotrelay_aws_jq "$i" -c '.tunnels[0].bgp.received')" = "[\"$LAB_INSIDE/32\"]" ] \
      || { lab_fail_why "$(aws_why "$i")"; return 1; }
    lab_wait 10 aws_routes_inside "$i" \
      || { lab_fail_why "aws$i: no route to $LAB_INSIDE into $IOTRELAY_AWS_DEV: $(ip -n "$LAB_ID-aws$i" route)"; return 1; }
  done
  relay_bgp_is 1 prepend 0 && relay_bgp_is 2 prepend 2 \
    || lab_fail_why "relay prepends tunnel1 $(relay_bgp 1 prepend), tunnel2 $(relay_bgp 2 prepend); want 0 and 2"
}

# The IoT server's datagram through the relay's forward, tunnel1 and the AWS side's device to the device, and the
# echo back the same way (the VPC routes the relay's inside prefix to aws1).
iotrelay_aws_forward_reaches_device() {
  alive || return 1
  local in0
  in0=$(iotrelay_aws_metric 1 'iotrelay_gateway_packets_total{direction="toDevice"}')
  ask via-iotrelay-aws || { lab_fail_why "no echo from the device through the iotrelay AWS side"; return 1; }
  lab_device_seen via-iotrelay-aws | grepq "^$LAB_INSIDE:" \
    || { lab_fail_why "the device saw: '$(lab_device_seen via-iotrelay-aws)', want it from $LAB_INSIDE"; return 1; }
  lab_wait 5 aws_to_device_above 1 "${in0:-0}" || lab_fail_why "AWS side 1 did not decrypt the datagram into its device"
}

lab_expect $(($(grep -c '^ *lab_run [a-z]' "$0") + 1))
lab_case lab-up lab_up || exit 1
lab_aws_start 1 "$RELAY_PSK1"
lab_aws_start 2 "$RELAY_PSK2"
bird_start 1
bird_start 2
vpc_bird_start
export RELAY_TUNNELS=2 RELAY_STARTUP=Start
# spec.bgp.failbackDelay: short, so the failback cases take seconds (IOTRELAY_BGP_FAILBACK overrides it).
FAILBACK_SECS=${IOTRELAY_BGP_FAILBACK:-20}
FAILBACK_DELAY=${FAILBACK_SECS}s
start_bgp_relay
lab_run bgp-sessions-established sessions_established
lab_run bgp-inside-address-in-bird inside_address_in_bird
lab_run bgp-vpc-router-prefers-tunnel1 vpc_router_prefers_tunnel1
lab_run bgp-reachable-only-after-learned reachable_only_after_learned
lab_run bgp-withdrawal-stops-forward withdrawal_stops_forward
lab_run bgp-failover-announcements failover_announcements
lab_run bgp-failback-after-delay failback_after_delay
lab_run bgp-session-loss-fails-over bgp_loss_fails_over
lab_run bgp-malformed-notification malformed_answered_with_notification
lab_run bgp-gateway-no-route-before-announce gateway_no_route_before_announce
lab_run bgp-gateway-route-when-announced gateway_route_when_announced
lab_run bgp-gateway-local-subnet-announced gateway_local_subnet_announced
lab_run bgp-gateway-route-withdrawn gateway_route_withdrawn
lab_run bgp-iotrelay-aws-sessions-established iotrelay_aws_sessions_established
lab_run bgp-iotrelay-aws-routes-exchanged iotrelay_aws_routes_exchanged
lab_run bgp-iotrelay-aws-forward-reaches-device iotrelay_aws_forward_reaches_device
relay_stop
lab_summary
