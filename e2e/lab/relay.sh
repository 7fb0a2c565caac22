# shellcheck shell=bash
# Our relay in the lab (sourced after lib.sh): write an IotRelay YAML, run `iotrelay-sidecar standalone` in the relay
# namespace, read its admin endpoints. The binary is $IOTRELAY_SIDECAR, default the release build.

LAB_ROOT=$(cd "$LAB_HERE/../.." && pwd)
IOTRELAY_SIDECAR=${IOTRELAY_SIDECAR:-${CARGO_TARGET_DIR:-$LAB_ROOT/target}/release/iotrelay-sidecar}
RELAY_ADMIN=127.0.0.1:9464
RELAY_PSK1=${RELAY_PSK1:-lab_psk_tunnel1_0123}
RELAY_PSK2=${RELAY_PSK2:-lab_psk_tunnel2_4567}

# relay_yaml FILE: an IotRelay + Secret for this lab. Env (all optional):
#   RELAY_TUNNELS (1|2, default 2), RELAY_IKE / RELAY_ESP (one proposal each, default aes128-sha1-modp1024;
#   `default`: no proposals in the YAML, so the relay's own defaults apply),
#   RELAY_STARTUP (Start|Add), RELAY_IKE_LIFETIME (8h), RELAY_ESP_LIFETIME (1h), RELAY_DPD_TIMEOUT (30s),
#   RELAY_PSK_SENT1 (the PSK the relay uses for tunnel1; default $RELAY_PSK1).
relay_yaml() {
  local f=$1 n=${RELAY_TUNNELS:-2} local_lines=""
  [ "$LAB_NAT" = 1 ] && local_lines="  localAddress: $LAB_RELAY_PRIVATE
  localIdentity: $LAB_RELAY_PUBLIC"
  {
    cat <<EOT
apiVersion: iotrelay.dev/v1alpha1
kind: IotRelay
metadata:
  name: lab
  namespace: default
spec:
  insideAddress: $LAB_INSIDE
  remoteSubnets: ["$LAB_VPC"]
$local_lines
  tunnels:
  - name: tunnel1
    peerAddress: $(lab_aws_addr 1)
    preSharedKeySecretRef: {name: aws-vpn, key: tunnel1}
EOT
    [ "$n" = 2 ] && cat <<EOT
  - name: tunnel2
    peerAddress: $(lab_aws_addr 2)
    preSharedKeySecretRef: {name: aws-vpn, key: tunnel2}
EOT
    cat <<EOT
  ike:
$([ "${RELAY_IKE:-}" = default ] || echo "    proposals: [\"${RELAY_IKE:-aes128-sha1-modp1024}\"]")
    lifetime: ${RELAY_IKE_LIFETIME:-8h}
    dpdInterval: 10s
    dpdTimeout: ${RELAY_DPD_TIMEOUT:-30s}
    startupAction: ${RELAY_STARTUP:-Start}
  esp:
$([ "${RELAY_ESP:-}" = default ] || echo "    proposals: [\"${RELAY_ESP:-aes128-sha1-modp1024}\"]")
    lifetime: ${RELAY_ESP_LIFETIME:-1h}
    replayWindow: 1024
  forwards:
  - name: admin
    protocol: UDP
    listenPort: $LAB_DEVICE_PORT
    allowedSources: ["$LAB_IOT_ADDR/32"]
    target: {address: $LAB_DEVICE, port: $LAB_DEVICE_PORT}
    idleTimeout: 60s
---
apiVersion: v1
kind: Secret
metadata: {name: aws-vpn, namespace: default}
stringData:
  tunnel1: "${RELAY_PSK_SENT1:-$RELAY_PSK1}"
  tunnel2: "$RELAY_PSK2"
EOT
  } > "$f"
}

# relay_start YAML: start the sidecar in the relay namespace; wait (bounded) until /status answers.
relay_start() {
  local yaml=$1
  [ -x "$IOTRELAY_SIDECAR" ] || { lab_fail_why "no sidecar binary at $IOTRELAY_SIDECAR"; return 1; }
  relay_stop
  # Keep every run's log: relay.log is the current one, relay.log.N the earlier ones.
  if [ -f "$LAB_DIR/relay.log" ]; then
    local n=1
    while [ -e "$LAB_DIR/relay.log.$n" ]; do n=$((n + 1)); done
    mv "$LAB_DIR/relay.log" "$LAB_DIR/relay.log.$n"
  fi
  # POST /rekey needs a bearer token from a file: one per lab, readable by root only.
  [ -s "$LAB_DIR/rekey.token" ] || (umask 077 && head -c 24 /dev/urandom | base64 > "$LAB_DIR/rekey.token")
  lab_bg "$LAB_NS_RELAY" "$LAB_DIR/relay.log" env RUST_LOG="${RUST_LOG:-info}" \
    IOTRELAY_UNSAFE_SHORT_LIFETIMES="${IOTRELAY_UNSAFE_SHORT_LIFETIMES:-0}" \
    "$IOTRELAY_SIDECAR" standalone --file "$yaml" --admin-addr "$RELAY_ADMIN" \
    --rekey-token-file "$LAB_DIR/rekey.token"
  echo "$LAB_PID" > "$LAB_DIR/relay.pid"
  lab_wait 15 relay_status_ok || {
    lab_fail_why "sidecar /status did not answer within 15 s: $(tail -3 "$LAB_DIR/relay.log" 2>/dev/null | tr '\n' ' ')"
    return 1
  }
}
relay_status_ok() { relay_alive && relay_status > /dev/null 2>&1; }
relay_alive() { [ -f "$LAB_DIR/relay.pid" ] && kill -0 "$(cat "$LAB_DIR/relay.pid")" 2>/dev/null; }

# relay_stop [SIGNAL]: TERM (default; the relay must send DELETEs and exit within 5 s) or KILL (a crash).
relay_stop() {
  [ -f "$LAB_DIR/relay.pid" ] || return 0
  local pid
  pid=$(cat "$LAB_DIR/relay.pid")
  kill "-${1:-TERM}" "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$LAB_DIR/relay.pid"
}

relay_curl() { ip netns exec "$LAB_NS_RELAY" curl -fsS --max-time 3 "$@"; }
relay_status() { relay_curl "http://$RELAY_ADMIN/status"; }
# relay_rekey TUNNEL child|ike: ask the relay to rekey from its side.
relay_rekey() {
  relay_curl -X POST -H "Authorization: Bearer $(cat "$LAB_DIR/rekey.token")" \
    "http://$RELAY_ADMIN/rekey?tunnel=$1&sa=$2" > /dev/null
}
# relay_jq FILTER: a value from /status.
relay_jq() { relay_status 2>/dev/null | jq -r "$@"; }

relay_tunnel_established() {
  [ "$(relay_jq --arg t "$1" '.tunnels[]? | select(.name == $t) | .state')" = Established ] \
    && [ -n "$(relay_jq --arg t "$1" '.tunnels[]? | select(.name == $t) | .childSa.inboundSpi // empty')" ]
}
relay_condition() { relay_jq --arg c "$1" '.conditions[]? | select(.type == $c) | "\(.status) \(.reason)"'; }

# relay_matches_aws N: AWS endpoint N holds exactly one IKE SA and one installed CHILD_SA, and their SPIs equal the
# relay's (its IKE SPIs; its CHILD inbound = AWS outbound and the other way round). Sets LAB_WHY on mismatch.
relay_matches_aws() {
  local i=$1 aws st e
  aws=$(lab_sas_json "$i")
  st=$(relay_status 2>/dev/null) || { lab_fail_why "no /status"; return 1; }
  e=$(python3 - "$aws" "$st" "tunnel$i" <<'PY' 2>&1
import json, sys
aws, st, name = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
est = [s for s in aws if s["state"] == "ESTABLISHED"]
if len(est) != 1:
    sys.exit("AWS side has %d established IKE SAs (%d total)" % (len(est), len(aws)))
# Exactly one installed CHILD_SA; right after a rekey the old one may linger a few seconds as REKEYED/DELETING
# (not installed for outbound), which is how the old inbound SA keeps accepting packets in flight.
kids = [c for c in est[0]["children"] if c["installed"]]
if len(kids) != 1:
    sys.exit("AWS side has %d installed CHILD_SAs (%d in all: %s)" % (len(kids), len(est[0]["children"]),
             " ".join(c["state"] for c in est[0]["children"])))
t = [t for t in st.get("tunnels", []) if t.get("name") == name]
if not t or not t[0].get("ikeSa") or not t[0].get("childSa"):
    sys.exit("relay status has no SAs for %s" % name)
ike, child = t[0]["ikeSa"], t[0]["childSa"]
a, c = est[0], kids[0]
if (ike.get("localSpi"), ike.get("remoteSpi")) != (a["ike_spi_remote"], a["ike_spi_local"]):
    sys.exit("IKE SPIs: relay %s/%s, AWS %s/%s" % (ike.get("localSpi"), ike.get("remoteSpi"), a["ike_spi_remote"], a["ike_spi_local"]))
if (child.get("inboundSpi"), child.get("outboundSpi")) != (c["spi_out"], c["spi_in"]):
    sys.exit("CHILD SPIs: relay in/out %s/%s, AWS out/in %s/%s" % (child.get("inboundSpi"), child.get("outboundSpi"), c["spi_out"], c["spi_in"]))
PY
) || { lab_fail_why "$e"; return 1; }
}
