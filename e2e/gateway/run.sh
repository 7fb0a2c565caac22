#!/usr/bin/env bash
# Gateway mode, in the lab of e2e/lab/lib.sh with strongSwan as the AWS side (kernel-libipsec routes
# the relay's inside prefix 100.127.0.0/16 into the tunnel, the VPC routes it to aws1):
#
#   relay namespace: iotrelay-sidecar standalone, spec.gateway {mtu: 1446} -> TUN iotrelay0 (100.127.0.1/32),
#                    route 100.64.0.0/16 dev iotrelay0 src 100.127.0.1  ==ESP-in-UDP==> aws1 --> device 100.64.1.10
#
# Cases: the device and its route appear; ping the device from the relay host and the relay host from the VPC;
# a 4 MiB TCP transfer (socat) with its SHA-256 compared, its SYN's MSS clamped to the suite's MTU - 40; a
# 1446-octet packet (the device's MTU) without DF passes (fragmented before encryption: UDP-encapsulated
# aes128-sha1 leaves 1422), with DF it gets ICMP "fragmentation needed" from the relay (the host learns 1422);
# SIGTERM removes the device and its route; a leftover
# device of the same name is replaced on start, and SIGKILL leaves nothing behind.
#
# Then iotrelay on both ends: aws1's strongSwan is replaced by iotrelay in gateway mode as the AWS side
# (e2e/lab/iotrelay_aws.sh: responder, `startupAction: Add`, TUN awsgw0 routing the relay's 100.127.0.0/16 back),
# the relay in gateway mode with short lifetimes (ESP 20 s, IKE 30 s; the AWS side's are 40 s and 100 s, so as
# with AWS the relay's timers come first):
#
#   IoT server -> relay: forward :7000 / TUN iotrelay0 ==ESP-in-UDP==> aws1: iotrelay, TUN awsgw0 -> device
#
# Cases: both ends hold the same SA pair; a UDP forward from the IoT server reaches the device and its answer
# returns; the AWS side narrows the relay's selectors to its routes (100.127.0.0/16 <-> 0/0), so a packet the relay
# host sends from another source is dropped and counted by the relay (outsideSelectors), never sent; a 4 MiB TCP transfer each way (relay host -> device, device -> relay host) with SHA-256 compared, carried by the
# relay's TUN offloads (super-packets read whole, segments coalesced into fewer writes); two
# steady UDP streams (IoT server through the forward, relay host through the TUN; 50/s each for 45 s) counted
# exactly at the device and back while the relay rekeys by lifetime and the AWS side rekeys its CHILD_SA twice and
# its IKE SA once: nothing lost, and both ends' rekey counters show the rekeys.
# Usage: e2e/gateway/run.sh [CASE-PREFIX...]
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=e2e/lab/lib.sh
source "$HERE/../lab/lib.sh"
# shellcheck source=e2e/lab/relay.sh
source "$HERE/../lab/relay.sh"
# shellcheck source=e2e/lab/iotrelay_aws.sh
source "$HERE/../lab/iotrelay_aws.sh"
lab_need_root
aws_stop() { iotrelay_aws_stop 1; }
trap 'lab_exit $? relay_stop aws_stop lab_down' EXIT
lab_traps
lab_select "$@"

DEV=iotrelay0
# aes128-sha1 (the lab relay's ESP proposal) in UDP-encapsulated ESP leaves 1422 octets of a 1500 outside MTU.
SUITE_MTU=1422
in_relay() { ip netns exec "$LAB_NS_RELAY" "$@"; }
in_vpc() { ip netns exec "$LAB_NS_VPC" "$@"; }
dev_present() { ip -n "$LAB_NS_RELAY" link show "$DEV" > /dev/null 2>&1; }
dev_absent() { ! dev_present; }
route_present() { ip -n "$LAB_NS_RELAY" route show "$LAB_VPC" | grepq "dev $DEV"; }
route_absent() { ! ip -n "$LAB_NS_RELAY" route show "$LAB_VPC" | grepq .; }
metric() { in_relay curl -fsS --max-time 3 "http://$RELAY_ADMIN/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
metric_ge() { local v; v=$(metric "$1"); [ "${v:-0}" -ge "$2" ]; }
aws_alive() {
  iotrelay_aws_alive 1 || { lab_fail_why "AWS side not running: $(tail -2 "$(lab_aws_dir 1)/iotrelay.log" 2>/dev/null | tr '\n' ' ')"; return 1; }
}
alive() { relay_alive || { lab_fail_why "relay not running: $(tail -2 "$LAB_DIR/relay.log" 2>/dev/null | tr '\n' ' ')"; return 1; }; }

start_gateway_relay() {
  relay_yaml "$LAB_DIR/relay.yaml"
  sed -i "/^  remoteSubnets:/a\\  gateway: {mtu: 1446}" "$LAB_DIR/relay.yaml"
  relay_start "$LAB_DIR/relay.yaml" || return 1
  lab_wait 30 relay_tunnel_established tunnel1 || { lab_fail_why "tunnel1 not Established within 30 s"; return 1; }
}

device_and_route() {
  alive || return 1
  dev_present || { lab_fail_why "no $DEV in the relay namespace"; return 1; }
  route_present || { lab_fail_why "no route $LAB_VPC dev $DEV: $(ip -n "$LAB_NS_RELAY" route)"; return 1; }
  ip -n "$LAB_NS_RELAY" -4 addr show "$DEV" | grepq "inet $LAB_INSIDE/32" \
    || lab_fail_why "$DEV does not carry $LAB_INSIDE/32"
}

ping_device() {
  alive || return 1
  in_relay ping -c 3 -i 0.3 -W 3 "$LAB_DEVICE" > "$LAB_DIR/ping1.out" 2>&1 \
    || { lab_fail_why "relay host -> device: $(tail -2 "$LAB_DIR/ping1.out" | tr '\n' ' ')"; return 1; }
}

ping_from_vpc() {
  alive || return 1
  in_vpc ping -c 3 -i 0.3 -W 3 "$LAB_INSIDE" > "$LAB_DIR/ping2.out" 2>&1 \
    || lab_fail_why "device -> relay host: $(tail -2 "$LAB_DIR/ping2.out" | tr '\n' ' ')"
}

tcp_transfer() {
  alive || return 1
  local sent=$LAB_DIR/sent.bin got=$LAB_DIR/got.bin syn=$LAB_DIR/syn.txt mss listener dump
  head -c $((4 << 20)) /dev/urandom > "$sent"
  rm -f "$got"
  in_vpc tcpdump -l -nn -v -c 1 -i br0 "tcp dst port 5001 and tcp[tcpflags] & tcp-syn != 0" > "$syn" 2>&1 &
  dump=$!
  in_vpc socat -u "TCP-LISTEN:5001,bind=$LAB_DEVICE,reuseaddr" "OPEN:$got,creat,trunc" &
  listener=$!
  sleep 1
  in_relay timeout 120 socat -u "OPEN:$sent" "TCP:$LAB_DEVICE:5001" \
    || { kill "$listener" "$dump" 2>/dev/null; lab_fail_why "socat client failed"; return 1; }
  wait "$listener"
  timeout 5 tail --pid="$dump" -f /dev/null 2>/dev/null || kill "$dump" 2>/dev/null
  [ "$(sha256sum < "$sent")" = "$(sha256sum < "$got")" ] \
    || { lab_fail_why "checksum differs (got $(stat -c %s "$got") of $(stat -c %s "$sent") octets)"; return 1; }
  mss=$(grep -o 'mss [0-9]*' "$syn" | head -1 | cut -d' ' -f2)
  # The relay host offers 1446 - 40 = 1406 (the device's MTU); the gateway lowers it to the suite's.
  [ "${mss:-0}" = $((SUITE_MTU - 40)) ] || lab_fail_why "SYN's MSS at the device is '${mss:-none}', want $((SUITE_MTU - 40))"
}

mtu_1446_passes() {
  alive || return 1
  in_relay ping -c 2 -i 0.5 -W 4 -M dont -s $((1446 - 28)) "$LAB_DEVICE" > "$LAB_DIR/ping3.out" 2>&1 \
    || { lab_fail_why "1446-octet ping without DF: $(tail -2 "$LAB_DIR/ping3.out" | tr '\n' ' ')"; return 1; }
  # Counters reach /metrics within a second (the relay publishes them once a second).
  lab_wait 10 metric_ge iotrelay_gateway_fragmented_total 1 || lab_fail_why "gateway_fragmented_total stayed 0"
}

df_too_big() {
  alive || return 1
  local before
  before=$(metric 'iotrelay_gateway_drops_total{reason="tooBig"}')
  # 1446 octets fit the device (gateway.mtu 1446) but not the suite: the relay answers, not the local kernel.
  in_relay ping -c 2 -i 0.5 -W 2 -M "do" -s $((1446 - 28)) "$LAB_DEVICE" > "$LAB_DIR/ping4.out" 2>&1 \
    && { lab_fail_why "a 1446-octet DF ping got an answer"; return 1; }
  grep -qE "mtu ?= ?$SUITE_MTU" "$LAB_DIR/ping4.out" \
    || { lab_fail_why "no fragmentation-needed with mtu $SUITE_MTU: $(tr '\n' ' ' < "$LAB_DIR/ping4.out")"; return 1; }
  in_relay ip route get "$LAB_DEVICE" | grepq "mtu $SUITE_MTU" \
    || { lab_fail_why "the host did not learn the path MTU: $(in_relay ip route get "$LAB_DEVICE")"; return 1; }
  lab_wait 10 metric_ge 'iotrelay_gateway_drops_total{reason="tooBig"}' $((${before:-0} + 1)) \
    || lab_fail_why "gateway_drops_total{reason=tooBig} did not grow"
}

teardown_term() {
  alive || return 1
  relay_stop TERM
  lab_wait 10 dev_absent || { lab_fail_why "$DEV still there after SIGTERM"; return 1; }
  lab_wait 5 route_absent || lab_fail_why "route to $LAB_VPC still there: $(ip -n "$LAB_NS_RELAY" route show "$LAB_VPC")"
}

leftover_and_kill() {
  # A persistent device of that name, as a relay killed while it held one would leave.
  ip -n "$LAB_NS_RELAY" tuntap add "$DEV" mode tun || { lab_fail_why "cannot create the leftover"; return 1; }
  start_gateway_relay || return 1
  grep -q "removing a leftover TUN device" "$LAB_DIR/relay.log" || { lab_fail_why "leftover not noticed"; return 1; }
  ping_device || return 1
  relay_stop KILL
  lab_wait 10 dev_absent || { lab_fail_why "$DEV still there after SIGKILL"; return 1; }
  lab_wait 5 route_absent || lab_fail_why "route still there after SIGKILL"
}

# --- iotrelay on both ends -------------------------------------------------------------------------------------

start_pair() {
  IOTRELAY_UNSAFE_SHORT_LIFETIMES=1 AWS_IOTRELAY_ESP_LIFETIME=40s AWS_IOTRELAY_IKE_LIFETIME=100s \
    iotrelay_aws_start 1 "$RELAY_PSK1" || return 1
  RELAY_ESP_LIFETIME=20s RELAY_IKE_LIFETIME=30s relay_yaml "$LAB_DIR/relay.yaml"
  sed -i "/^  remoteSubnets:/a\\  gateway: {}" "$LAB_DIR/relay.yaml"
  IOTRELAY_UNSAFE_SHORT_LIFETIMES=1 relay_start "$LAB_DIR/relay.yaml" || return 1
}

pair_established() {
  alive && aws_alive || return 1
  lab_wait 30 relay_tunnel_established tunnel1 || { lab_fail_why "relay: tunnel1 not Established within 30 s"; return 1; }
  lab_wait 10 iotrelay_aws_established 1 || { lab_fail_why "AWS side: no CHILD_SA"; return 1; }
  # The status is republished once a second: both ends agree within a few.
  lab_wait 5 iotrelay_aws_matches_relay 1 tunnel1
}

pair_udp_forward() {
  alive && aws_alive || return 1
  local p=pair-fwd-$RANDOM
  lab_ask "$LAB_NS_IOT" "$LAB_RELAY_IOT_ADDR" "$LAB_DEVICE_PORT" "$p" || { lab_fail_why "no echo through the forward"; return 1; }
  lab_device_seen "$p" | grepq "^$LAB_INSIDE:" || lab_fail_why "the device saw '$(lab_device_seen "$p")', want it from $LAB_INSIDE"
}

# The AWS side narrows the relay's selectors to its routes (100.127.0.0/16 <-> 0.0.0.0/0): what the relay host
# sends into the device from another source is outside them, dropped and counted by the relay, never sent.
pair_selectors() {
  alive && aws_alive || return 1
  local m='iotrelay_gateway_drops_total{reason="outsideSelectors"}' before spoofed0 out0
  grep "CHILD_SA installed" "$LAB_DIR/relay.log" | tail -1 | grepq "local_ts=$LAB_INSIDE_PREFIX remote_ts=0.0.0.0/0" \
    || { lab_fail_why "the relay's CHILD_SA: $(grep -o 'local_ts=.*' "$LAB_DIR/relay.log" | tail -1)"; return 1; }
  before=$(metric "$m")
  out0=$(metric 'iotrelay_gateway_packets_total{direction="toTunnel"}')
  spoofed0=$(iotrelay_aws_metric 1 'iotrelay_gateway_drops_total{reason="spoofedSource"}')
  # From the relay host's outside address (bound, so the route's preferred source does not apply).
  in_relay ping -c 3 -i 0.3 -W 1 -I "$LAB_RELAY_IOT_ADDR" "$LAB_DEVICE" > "$LAB_DIR/ping-sel.out" 2>&1 \
    && { lab_fail_why "a ping from $LAB_RELAY_IOT_ADDR got through"; return 1; }
  lab_wait 5 metric_ge "$m" $((${before:-0} + 3)) || { lab_fail_why "$m did not grow by 3 (was ${before:-0}, now $(metric "$m"))"; return 1; }
  [ "$(metric 'iotrelay_gateway_packets_total{direction="toTunnel"}')" = "$out0" ] || { lab_fail_why "packets went into the tunnel"; return 1; }
  [ "$(iotrelay_aws_metric 1 'iotrelay_gateway_drops_total{reason="spoofedSource"}')" = "$spoofed0" ] \
    || { lab_fail_why "the AWS side saw spoofed packets: the relay sent them"; return 1; }
  # From inside the selectors it works.
  in_relay ping -c 2 -i 0.3 -W 3 "$LAB_DEVICE" > "$LAB_DIR/ping-sel2.out" 2>&1 || lab_fail_why "a ping from $LAB_INSIDE failed"
}

# tcp_copy FROM_NS TO_NS TO_ADDR NAME: 4 MiB over TCP from FROM_NS to a socat listener on TO_ADDR:5002 in TO_NS,
# SHA-256 compared.
tcp_copy() {
  local from=$1 to=$2 addr=$3 sent=$LAB_DIR/$4.sent got=$LAB_DIR/$4.got listener
  head -c $((4 << 20)) /dev/urandom > "$sent"
  rm -f "$got"
  ip netns exec "$to" socat -u "TCP-LISTEN:5002,bind=$addr,reuseaddr" "OPEN:$got,creat,trunc" &
  listener=$!
  lab_wait 5 eval "ip netns exec $to ss -Hltn 'sport = :5002' | grepq ." || { kill "$listener"; lab_fail_why "$4: no listener"; return 1; }
  ip netns exec "$from" timeout 120 socat -u "OPEN:$sent" "TCP:$addr:5002" \
    || { kill "$listener" 2>/dev/null; lab_fail_why "$4: socat client failed"; return 1; }
  wait "$listener"
  [ "$(sha256sum < "$sent")" = "$(sha256sum < "$got")" ] \
    || { lab_fail_why "$4: checksum differs (got $(stat -c %s "$got") of $(stat -c %s "$sent") octets)"; return 1; }
}

# The relay's TUN offloads carry the transfers: its device is open with them, the host's TCP super-packets are
# read whole (more packets than reads) and the decrypted segments are coalesced (more packets than writes).
offload_used() {
  local r w pr pw
  [ "$(metric iotrelay_gateway_tun_offload)" -ge 1 ] || { lab_fail_why "the relay's TUN has no offloads"; return 1; }
  r=$(metric 'iotrelay_gateway_tun_syscalls_total{op="read"}') pr=$(metric 'iotrelay_gateway_tun_packets_total{op="read"}')
  w=$(metric 'iotrelay_gateway_tun_syscalls_total{op="write"}') pw=$(metric 'iotrelay_gateway_tun_packets_total{op="write"}')
  [ "${pr:-0}" -gt "${r:-0}" ] && [ "${pw:-0}" -gt "${w:-0}" ] \
    || { lab_fail_why "no batching on the device: read $pr packets in $r reads, wrote $pw in $w writes"; return 1; }
}

pair_tcp() {
  alive && aws_alive || return 1
  tcp_copy "$LAB_NS_RELAY" "$LAB_NS_VPC" "$LAB_DEVICE" to-device || return 1
  tcp_copy "$LAB_NS_VPC" "$LAB_NS_RELAY" "$LAB_INSIDE" from-device || return 1
  # Published once a second.
  sleep 1.5
  offload_used
}

# The device's log: how many distinct datagrams of stream TAG it received.
device_count() { grep -oE " $1[0-9]+\$" "$LAB_DIR/device.log" | sort -u | wc -l; }
rekeys() { local v; v=$(metric "iotrelay_$1_sa_rekeys_total{tunnel=\"tunnel1\"}"); echo "${v:-0}"; }
aws_rekeys() { local v; v=$(iotrelay_aws_metric 1 "iotrelay_$1_sa_rekeys_total{tunnel=\"relay\"}"); echo "${v:-0}"; }

pair_rekeys_no_loss() {
  alive && aws_alive || return 1
  lab_wait 10 iotrelay_aws_matches_relay 1 tunnel1 || return 1
  local f=$LAB_DIR/pair-fwd.json g=$LAB_DIR/pair-gw.json fp gp c0 i0 ac0 ai0 c i ac ai s tag n
  c0=$(rekeys child) i0=$(rekeys ike) ac0=$(aws_rekeys child) ai0=$(aws_rekeys ike)
  ip netns exec "$LAB_NS_IOT" python3 "$LAB_HERE/udp.py" stream "$LAB_RELAY_IOT_ADDR" "$LAB_DEVICE_PORT" 45 50 > "$f" 2>&1 &
  fp=$!
  sleep 0.3
  ip netns exec "$LAB_NS_RELAY" python3 "$LAB_HERE/udp.py" stream "$LAB_DEVICE" "$LAB_DEVICE_PORT" 45 50 > "$g" 2>&1 &
  gp=$!
  # The relay rekeys its CHILD_SA 12-14 s after the last CHILD rekey and its IKE SA 19-21 s after the last IKE
  # rekey (lifetimes); the AWS side rekeys from its end at 9, 18 and 27 s (pacing, not waiting for a condition).
  # Expected in 45 s: CHILD_SA 2 by the AWS side + at least 1 by the relay, IKE SA 1 + at least 1.
  for s in child ike child; do
    sleep 9
    iotrelay_aws_rekey 1 "$s" || { lab_fail_why "POST /rekey $s on the AWS side failed"; break; }
  done
  kill -0 "$fp" 2>/dev/null && kill -0 "$gp" 2>/dev/null || [ -n "$LAB_WHY" ] \
    || lab_fail_why "a stream ended before the AWS side's rekeys"
  wait "$fp" "$gp"
  [ -n "$LAB_WHY" ] && return 1
  for s in "$f" "$g"; do
    [ "$(jq -r .lost "$s" 2>/dev/null)" = 0 ] || { lab_fail_why "$(basename "$s"): $(cat "$s")"; return 1; }
    tag=$(jq -r .tag "$s") n=$(jq -r .sent "$s")
    [ "$(device_count "$tag")" = "$n" ] || { lab_fail_why "the device counted $(device_count "$tag") of $n ($(basename "$s"))"; return 1; }
  done
  # The counters are republished once a second.
  sleep 1.5
  c=$(($(rekeys child) - c0)) i=$(($(rekeys ike) - i0)) ac=$(($(aws_rekeys child) - ac0)) ai=$(($(aws_rekeys ike) - ai0))
  echo "# rekeys during the streams: relay CHILD $c IKE $i, AWS side CHILD $ac IKE $ai" >&2
  [ "$c" -ge 3 ] && [ "$i" -ge 2 ] && [ "$ac" -ge 3 ] && [ "$ai" -ge 2 ] \
    || { lab_fail_why "too few rekeys: relay CHILD $c IKE $i, AWS side CHILD $ac IKE $ai (want >= 3 and >= 2 each)"; return 1; }
  lab_wait 10 iotrelay_aws_matches_relay 1 tunnel1
}

lab_expect $(($(grep -c '^ *lab_run [a-z]' "$0") + 1))
lab_case lab-up lab_up || exit 1
lab_aws_start 1 "$RELAY_PSK1"
export RELAY_TUNNELS=1 RELAY_STARTUP=Start
if lab_wanted gateway-d || lab_wanted gateway-p || lab_wanted gateway-t || lab_wanted gateway-m || lab_wanted gateway-l; then start_gateway_relay; fi
lab_run gateway-device-and-route device_and_route
lab_run gateway-ping-device ping_device
lab_run gateway-ping-from-vpc ping_from_vpc
lab_run gateway-tcp-4mib-mss tcp_transfer
lab_run gateway-mtu-1446-passes mtu_1446_passes
lab_run gateway-df-1446-icmp-frag-needed df_too_big
lab_run gateway-teardown-term teardown_term
lab_run gateway-leftover-and-kill leftover_and_kill
relay_stop
if lab_wanted gateway-iotrelay; then start_pair; fi
lab_run gateway-iotrelay-aws-established pair_established
lab_run gateway-iotrelay-aws-udp-forward pair_udp_forward
lab_run gateway-iotrelay-aws-selectors-per-route pair_selectors
lab_run gateway-iotrelay-aws-tcp-4mib-both-ways pair_tcp
lab_run gateway-iotrelay-aws-rekeys-no-loss pair_rekeys_no_loss
relay_stop
aws_stop
lab_summary
