#!/usr/bin/env bash
# `make demo`: iotrelay in two minutes, on this machine, in network namespaces (needs root; nothing leaves them).
#
#   IoT server            relay host (iotrelay)              two "AWS VPN tunnel" endpoints        VPC
#   203.0.113.10  --UDP-> 203.0.113.1:7000                   strongSwan, configured like AWS       device
#                         198.51.100.1 ==IPsec ESP-in-UDP==> 198.51.100.2 (tunnel1)  ----------->  100.64.1.10:7000
#                         inside address 100.127.0.1   ====> 198.51.100.3 (tunnel2)                (echoes)
#
# The user's path, end to end: it builds the relay, starts the lab, writes the document AWS would give for this VPN
# connection (the CustomerGatewayConfiguration XML of `aws ec2 describe-vpn-connections`, describing the lab's two
# strongSwan "AWS" endpoints), turns it into an IotRelay + Secret with `iotrelay-sidecar import-aws`, runs
# `iotrelay-sidecar standalone` with the result, sends one admin packet from the IoT server, checks that the device
# got it from the inside address and that the reply comes back unchanged, prints the relay's status, and removes
# everything it created. `make test` runs it too (stage demo), so the import is tested against a real IKE peer.
#
# Time: under a minute once the relay is built (8 s measured); the first run compiles it (about 12 CPU-minutes).
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

say "make demo: under a minute once the relay is built; the first run compiles it (about 12 CPU-minutes)"
if [ -z "${DEMO_NO_BUILD:-}" ]; then
  say "Building the relay (cargo build --release -p iotrelay-sidecar)"
  (cd "$ROOT" && nice cargo build --release -q -p iotrelay-sidecar) || die "build failed"
fi
[ -x "$IOTRELAY_SIDECAR" ] || die "no relay binary at $IOTRELAY_SIDECAR"

say "Creating the lab (namespaces $LAB_ID-*): IoT server, relay host, two AWS-like strongSwan endpoints, a VPC"
lab_up || die "could not create the lab"
lab_aws_start 1 demo_psk_tunnel1 && lab_aws_start 2 demo_psk_tunnel2 || die "strongSwan did not start"

# What AWS says about this VPN connection (AWS's XML format; the lab's addresses and keys).
aws_tunnel() { # AWS_OUTSIDE_ADDRESS PSK INSIDE_PREFIX
  cat <<XML
  <ipsec_tunnel>
    <customer_gateway>
      <tunnel_outside_address><ip_address>$LAB_RELAY_PUBLIC</ip_address></tunnel_outside_address>
      <tunnel_inside_address><ip_address>$3.2</ip_address><network_cidr>30</network_cidr></tunnel_inside_address>
    </customer_gateway>
    <vpn_gateway>
      <tunnel_outside_address><ip_address>$1</ip_address></tunnel_outside_address>
      <tunnel_inside_address><ip_address>$3.1</ip_address><network_cidr>30</network_cidr></tunnel_inside_address>
    </vpn_gateway>
    <ike>
      <authentication_protocol>sha1</authentication_protocol>
      <encryption_protocol>aes-128-cbc</encryption_protocol>
      <lifetime>28800</lifetime>
      <perfect_forward_secrecy>group2</perfect_forward_secrecy>
      <mode>main</mode>
      <pre_shared_key>$2</pre_shared_key>
    </ike>
    <ipsec>
      <protocol>esp</protocol>
      <authentication_protocol>hmac-sha1-96</authentication_protocol>
      <encryption_protocol>aes-128-cbc</encryption_protocol>
      <lifetime>3600</lifetime>
      <perfect_forward_secrecy>group2</perfect_forward_secrecy>
      <mode>tunnel</mode>
      <dead_peer_detection><delay>10</delay><retries>3</retries></dead_peer_detection>
    </ipsec>
  </ipsec_tunnel>
XML
}
{
  echo '<?xml version="1.0" encoding="UTF-8"?>'
  echo '<vpn_connection id="vpn-0demo0000000000">'
  echo '  <vpn_connection_type>ipsec.1</vpn_connection_type>'
  aws_tunnel "$(lab_aws_addr 1)" demo_psk_tunnel1 169.254.10
  aws_tunnel "$(lab_aws_addr 2)" demo_psk_tunnel2 169.254.20
  echo '</vpn_connection>'
} > "$LAB_DIR/vpn-connection.xml"
say "AWS's description of the VPN connection ($LAB_DIR/vpn-connection.xml, as describe-vpn-connections returns it)"
sed -E 's|(<pre_shared_key>)[^<]*|\1(tunnel key)|' "$LAB_DIR/vpn-connection.xml"

import=(import-aws --xml "$LAB_DIR/vpn-connection.xml" --name demo --inside-address "$LAB_INSIDE"
        --remote-subnet "$LAB_VPC" --forward "admin:$LAB_DEVICE_PORT:$LAB_DEVICE:$LAB_DEVICE_PORT:$LAB_IOT_ADDR/32")
say "Importing it: iotrelay-sidecar ${import[*]} > relay.yaml"
(umask 077 && "$IOTRELAY_SIDECAR" "${import[@]}" > "$LAB_DIR/relay.yaml") || die "import-aws failed"
# Shown without the keys (the file has them: it is what kubectl apply or standalone mode takes).
sed -E 's/^(  tunnel[0-9]+: ).*/\1"<pre-shared key>"/' "$LAB_DIR/relay.yaml"
python3 - "$LAB_DIR/relay.yaml" <<'PY' || die "the imported IotRelay does not say what AWS's document says"
import sys, yaml
relay, secret = list(yaml.safe_load_all(open(sys.argv[1])))
s = relay["spec"]
want = {"peers": ["198.51.100.2", "198.51.100.3"], "ike": ["aes128-sha1-modp1024"], "esp": ["aes128-sha1-modp1024"],
        "lifetimes": ["8h", "1h"], "dpd": ["10s", "30s"], "identity": "198.51.100.1",
        "keys": {"tunnel1": "demo_psk_tunnel1", "tunnel2": "demo_psk_tunnel2"}}
got = {"peers": [t["peerAddress"] for t in s["tunnels"]], "ike": s["ike"]["proposals"], "esp": s["esp"]["proposals"],
       "lifetimes": [s["ike"]["lifetime"], s["esp"]["lifetime"]], "dpd": [s["ike"]["dpdInterval"], s["ike"]["dpdTimeout"]],
       "identity": s.get("localIdentity"), "keys": secret["stringData"]}
bad = [k for k in want if want[k] != got[k]]
if bad:
    sys.exit("mismatch in " + ", ".join(bad))
PY

say "Starting: iotrelay-sidecar standalone --file relay.yaml --admin-addr $RELAY_ADMIN (in $LAB_NS_RELAY)"
relay_start "$LAB_DIR/relay.yaml" || die "$LAB_WHY"
lab_wait 30 relay_tunnel_established tunnel1 || { tail -20 "$LAB_DIR/relay.log"; die "tunnel1 not up within 30 s"; }
echo "tunnel1 is up: $(relay_jq '.tunnels[0] | "IKE SA \(.ikeSa.localSpi)/\(.ikeSa.remoteSpi) \(.ikeSa.proposal), CHILD_SA in \(.childSa.inboundSpi) out \(.childSa.outboundSpi)"')"
echo "strongSwan (the AWS side) agrees:"
lab_swanctl 1 --list-sas | sed 's/^/  /'

MSG="reboot-please-$(date +%s)"
say "The IoT server (203.0.113.10) sends one UDP admin packet to the relay: 203.0.113.1:7000 '$MSG'"
# lab_ask succeeds only when exactly 'echo:<what it sent>' comes back.
if lab_ask "$LAB_NS_IOT" "$LAB_RELAY_IOT_ADDR" "$LAB_DEVICE_PORT" "$MSG" 6; then
  echo "the device (100.64.1.10:7000) received, through the tunnel:"
  lab_device_seen "$MSG" | sed 's/^/  from /'
  lab_device_seen "$MSG" | grepq "^$LAB_INSIDE:" || die "the device did not see the packet from $LAB_INSIDE"
  echo "and the IoT server got the device's reply back unchanged: 'echo:$MSG'"
else
  die "no reply came back (relay log: $LAB_DIR/relay.log)"
fi

say "The relay's status (GET http://$RELAY_ADMIN/status; the same JSON the operator writes into the IotRelay)"
sleep 1
relay_status | jq . || die "no status"

say "Cleaning up (stopping the relay: it sends DELETE for its SAs; removing the namespaces)"
relay_stop
echo "Done. Next: README.md (standalone on a plain Linux host, Kubernetes), make test."
