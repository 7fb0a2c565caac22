#!/usr/bin/env bash
# Issue 12, gateway mode, in the lab of e2e/lab/lib.sh with strongSwan as the AWS side (kernel-libipsec routes
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
# Usage: e2e/gateway/run.sh [CASE-PREFIX...]
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=e2e/lab/lib.sh
source "$HERE/../lab/lib.sh"
# shellcheck source=e2e/lab/relay.sh
source "$HERE/../lab/relay.sh"
lab_need_root
trap 'lab_exit $? relay_stop lab_down' EXIT
lab_traps
ONLY=("$@")

want() {
  [ ${#ONLY[@]} -eq 0 ] && return 0
  local p
  for p in "${ONLY[@]}"; do [[ $1 == "$p"* || $p == "$1"* ]] && return 0; done
  return 1
}
run() { if want "$1"; then lab_case "$@"; else lab_skip "$1"; fi; }

DEV=iotrelay0
# aes128-sha1 (the lab relay's ESP proposal) in UDP-encapsulated ESP leaves 1422 octets of a 1500 outside MTU.
SUITE_MTU=1422
in_relay() { ip netns exec "$LAB_NS_RELAY" "$@"; }
in_vpc() { ip netns exec "$LAB_NS_VPC" "$@"; }
dev_present() { ip -n "$LAB_NS_RELAY" link show "$DEV" > /dev/null 2>&1; }
dev_absent() { ! dev_present; }
route_present() { ip -n "$LAB_NS_RELAY" route show "$LAB_VPC" | grep -q "dev $DEV"; }
route_absent() { ! ip -n "$LAB_NS_RELAY" route show "$LAB_VPC" | grep -q .; }
metric() { in_relay curl -fsS --max-time 3 "http://$RELAY_ADMIN/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
metric_ge() { local v; v=$(metric "$1"); [ "${v:-0}" -ge "$2" ]; }
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
  ip -n "$LAB_NS_RELAY" -4 addr show "$DEV" | grep -q "inet $LAB_INSIDE/32" \
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
  in_relay ip route get "$LAB_DEVICE" | grep -q "mtu $SUITE_MTU" \
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

lab_expect $(($(grep -c '^ *run [a-z]' "$0") + 1))
lab_case lab-up lab_up || exit 1
lab_aws_start 1 "$RELAY_PSK1"
export RELAY_TUNNELS=1 RELAY_STARTUP=Start
if want gateway; then start_gateway_relay; fi
run gateway-device-and-route device_and_route
run gateway-ping-device ping_device
run gateway-ping-from-vpc ping_from_vpc
run gateway-tcp-4mib-mss tcp_transfer
run gateway-mtu-1446-passes mtu_1446_passes
run gateway-df-1446-icmp-frag-needed df_too_big
run gateway-teardown-term teardown_term
run gateway-leftover-and-kill leftover_and_kill
relay_stop
lab_summary
