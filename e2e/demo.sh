#!/usr/bin/env bash
# `make demo`: iotrelay in two minutes, on this machine, in network namespaces (needs root; nothing leaves them).
#
#   IoT server            relay host (iotrelay)              two "AWS VPN tunnel" endpoints        VPC
#   203.0.113.10  --UDP-> 203.0.113.1:7000                   strongSwan, configured like AWS       device
#                         198.51.100.1 ==IPsec ESP-in-UDP==> 198.51.100.2 (tunnel1)  ----------->  100.64.1.10:7000
#                         inside address 100.127.0.1   ====> 198.51.100.3 (tunnel2)                (echoes)
#
# It builds the relay, starts the lab, runs `iotrelay-sidecar standalone` with the IotRelay below, sends one admin
# packet from the IoT server, shows it arriving at the device and the reply coming back, prints the relay's status,
# and removes everything it created.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=e2e/lab/lib.sh
source "$HERE/lab/lib.sh"
# shellcheck source=e2e/lab/relay.sh
source "$HERE/lab/relay.sh"
lab_need_root
trap 'relay_stop; lab_down' EXIT
trap 'exit 130' INT TERM

if [ -t 1 ]; then B=$'\033[1m' R=$'\033[31m' N=$'\033[0m'; else B="" R="" N=""; fi
say() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
die() { printf '\n%sdemo failed: %s%s\n' "$R" "$*" "$N"; LAB_FAILED=1; exit 1; }

if [ -z "${DEMO_NO_BUILD:-}" ]; then
  say "Building the relay (cargo build --release -p iotrelay-sidecar)"
  (cd "$ROOT" && nice cargo build --release -q -p iotrelay-sidecar) || die "build failed"
fi
[ -x "$IOTRELAY_SIDECAR" ] || die "no relay binary at $IOTRELAY_SIDECAR"

say "Creating the lab (namespaces $LAB_ID-*): IoT server, relay host, two AWS-like strongSwan endpoints, a VPC"
lab_up || die "could not create the lab"
lab_aws_start 1 demo_psk_tunnel1 && lab_aws_start 2 demo_psk_tunnel2 || die "strongSwan did not start"

cat > "$LAB_DIR/relay.yaml" <<YAML
# The same YAML works with kubectl apply (operator) and with the sidecar's standalone mode.
apiVersion: iotrelay.dev/v1alpha1
kind: IotRelay
metadata:
  name: demo
  namespace: default
spec:
  insideAddress: 100.127.0.1          # the relay's address inside the tunnel (an AWS static route covers it)
  remoteSubnets: ["100.64.0.0/16"]    # the VPC
  tunnels:                            # AWS gives two per VPN connection
  - name: tunnel1
    peerAddress: 198.51.100.2
    preSharedKeySecretRef: {name: aws-vpn, key: tunnel1}
  - name: tunnel2
    peerAddress: 198.51.100.3
    preSharedKeySecretRef: {name: aws-vpn, key: tunnel2}
  forwards:
  - name: admin
    protocol: UDP
    listenPort: 7000
    allowedSources: ["203.0.113.10/32"]
    target: {address: 100.64.1.10, port: 7000}
---
apiVersion: v1
kind: Secret
metadata: {name: aws-vpn, namespace: default}
stringData: {tunnel1: demo_psk_tunnel1, tunnel2: demo_psk_tunnel2}
YAML
say "The relay's configuration ($LAB_DIR/relay.yaml)"
cat "$LAB_DIR/relay.yaml"

say "Starting: iotrelay-sidecar standalone --file relay.yaml --admin-addr $RELAY_ADMIN (in $LAB_NS_RELAY)"
relay_start "$LAB_DIR/relay.yaml" || die "$LAB_WHY"
lab_wait 30 relay_tunnel_established tunnel1 || { tail -20 "$LAB_DIR/relay.log"; die "tunnel1 not up within 30 s"; }
echo "tunnel1 is up: $(relay_jq '.tunnels[0] | "IKE SA \(.ikeSa.localSpi)/\(.ikeSa.remoteSpi) \(.ikeSa.proposal), CHILD_SA in \(.childSa.inboundSpi) out \(.childSa.outboundSpi)"')"
echo "strongSwan (the AWS side) agrees:"
lab_swanctl 1 --list-sas | sed 's/^/  /'

MSG="reboot-please-$(date +%s)"
say "The IoT server (203.0.113.10) sends one UDP admin packet to the relay: 203.0.113.1:7000 '$MSG'"
if lab_ask "$LAB_NS_IOT" "$LAB_RELAY_IOT_ADDR" "$LAB_DEVICE_PORT" "$MSG" 6; then
  echo "the device (100.64.1.10:7000) received, through the tunnel:"
  lab_device_seen "$MSG" | sed 's/^/  from /'
  echo "and the IoT server got the reply back: 'echo:$MSG'"
else
  die "no reply came back (relay log: $LAB_DIR/relay.log)"
fi

say "The relay's status (GET http://$RELAY_ADMIN/status; the same JSON the operator writes into the IotRelay)"
sleep 1
relay_status | jq . || die "no status"

say "Cleaning up (stopping the relay: it sends DELETE for its SAs; removing the namespaces)"
relay_stop
echo "Done. Next: README.md (standalone on a plain Linux host, Kubernetes), make test."
