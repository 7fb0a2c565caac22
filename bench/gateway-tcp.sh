#!/usr/bin/env bash
# TCP throughput through gateway mode with iotrelay on both ends, in one lab of e2e/lab/lib.sh:
#
#   relay host (iperf3 client) -> TUN iotrelay0 -> relay ==ESP-in-UDP==> aws1: iotrelay, TUN awsgw0 -> device
#
# For each configuration (LABEL=BINARY[:OFFLOAD], OFFLOAD on|off for IOTRELAY_TUN_OFFLOAD, default on) both ends
# run that binary; iperf3 measures BENCH_SECONDS (default 10) of TCP from the relay host to the device and back
# (-R), BENCH_ROUNDS times (default 2), alternating the configurations so that load on the machine spreads over
# all of them. Prints one line per measurement and the median per configuration and direction; the ESP suite is
# the lab relay's (aes128-sha1 unless RELAY_ESP says otherwise).
#
#   flock /tmp/iotrelay-lab.lock bench/gateway-tcp.sh before=/tmp/old-sidecar after-plain=target/release/iotrelay-sidecar:off \
#       after=target/release/iotrelay-sidecar
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=e2e/lab/lib.sh
source "$HERE/../e2e/lab/lib.sh"
# shellcheck source=e2e/lab/relay.sh
source "$HERE/../e2e/lab/relay.sh"
# shellcheck source=e2e/lab/iotrelay_aws.sh
source "$HERE/../e2e/lab/iotrelay_aws.sh"
lab_need_root
command -v iperf3 > /dev/null || { echo "iperf3 missing" >&2; exit 2; }
[ $# -gt 0 ] || { sed -n '2,13p' "$0" >&2; exit 2; }
SECS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-2}
aws_stop() { iotrelay_aws_stop 1; }
iperf_stop() { [ -n "${IPERF_PID:-}" ] && kill "$IPERF_PID" 2> /dev/null; true; }
trap 'lab_exit $? iperf_stop relay_stop aws_stop lab_down' EXIT
lab_traps
lab_expect 1
lab_case lab-up lab_up || exit 1
export RELAY_TUNNELS=1 RELAY_STARTUP=Start
RESULTS=$LAB_DIR/gateway-tcp.txt
: > "$RESULTS"

ip netns exec "$LAB_NS_VPC" iperf3 -s -B "$LAB_DEVICE" > "$LAB_DIR/iperf3.log" 2>&1 &
IPERF_PID=$!

# start_pair BINARY OFFLOAD: both ends on BINARY, the tunnel up.
start_pair() {
  IOTRELAY_SIDECAR=$1
  export IOTRELAY_TUN_OFFLOAD=$2
  relay_stop
  iotrelay_aws_stop 1
  iotrelay_aws_start 1 "$RELAY_PSK1" || return 1
  relay_yaml "$LAB_DIR/relay.yaml"
  sed -i "/^  remoteSubnets:/a\\  gateway: {}" "$LAB_DIR/relay.yaml"
  relay_start "$LAB_DIR/relay.yaml" || return 1
  lab_wait 30 relay_tunnel_established tunnel1 || { echo "# tunnel not established: $(tail -3 "$LAB_DIR/relay.log")" >&2; return 1; }
  lab_wait 10 iotrelay_aws_established 1 || return 1
  # The first packets may meet the device before it has the suite's MTU: a ping settles it.
  ip netns exec "$LAB_NS_RELAY" ping -c 2 -i 0.3 -W 3 "$LAB_DEVICE" > /dev/null
  grep -o 'gateway device up.*offload=[a-z]*' "$LAB_DIR/relay.log" | grep -o 'offload=[a-z]*' | head -1 >&2 || true
}

# measure LABEL DIRECTION [-R]: one iperf3 run; appends "LABEL DIRECTION Mbit/s" to the results.
measure() {
  local label=$1 dir=$2 mbps
  shift 2
  mbps=$(ip netns exec "$LAB_NS_RELAY" timeout $((SECS + 20)) iperf3 -c "$LAB_DEVICE" -t "$SECS" -J "$@" 2> /dev/null \
    | jq -r '.end.sum_received.bits_per_second / 1e6 | floor' 2> /dev/null)
  echo "$label $dir ${mbps:-failed}" | tee -a "$RESULTS"
}

for round in $(seq 1 "$ROUNDS"); do
  for cfg in "$@"; do
    label=${cfg%%=*} spec=${cfg#*=}
    bin=${spec%%:*} off=on
    [[ $spec == *:* ]] && off=${spec##*:}
    echo "# round $round: $label ($bin, offload $off)" >&2
    start_pair "$bin" "$off" || { echo "$label start failed" | tee -a "$RESULTS"; continue; }
    measure "$label" to-device
    measure "$label" from-device -R
    ip netns exec "$LAB_NS_RELAY" curl -fsS --max-time 3 "http://$RELAY_ADMIN/metrics" \
      | grep -E '^iotrelay_gateway_tun' | sed "s/^/# $label relay: /" >&2 || true
  done
done
echo "# median Mbit/s over $ROUNDS rounds of $SECS s:"
awk '$3 != "failed"' "$RESULTS" | sort -k1,1 -k2,2 -k3,3n \
  | awk '{k = $1 " " $2; v[k] = v[k] " " $3; n[k]++} END {for (k in v) {split(v[k], a, " "); print k, a[int((n[k] + 1) / 2)]}}' \
  | sort
