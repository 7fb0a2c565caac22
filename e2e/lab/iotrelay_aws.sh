# shellcheck shell=bash
# iotrelay standing in for AWS (sourced after lib.sh and relay.sh): `iotrelay-sidecar standalone` in gateway mode as
# the responder of AWS endpoint N's namespace ($LAB_ID-awsN, 198.51.100.(N+1), vpc0 100.64.1.(N+1)), in place of
# its strongSwan. It answers the relay's IKE_SA_INIT (`startupAction: Add`), decrypts into its TUN device `awsgw0`
# (100.64.255.N/32) and the namespace forwards into the VPC; the relay's inside prefix 100.127.0.0/16 is routed
# back into the device (the VPC already routes that prefix to aws1, as lab_up sets it up). So the whole path is
#
#   IoT server -> relay (forward or gateway) ==ESP==> aws N: iotrelay, TUN awsgw0 -> vpc0 -> device 100.64.1.10
#
# and our own datapath is on both ends (e2e/gateway; reusable by bench/). The relay side is relay_yaml/relay_start as
# usual: its tunnel1 peer is 198.51.100.2, whoever answers there.
#
#   lab_up; iotrelay_aws_start 1 "$RELAY_PSK1"; relay_yaml F; relay_start F; iotrelay_aws_established 1
#
# Env (all optional): AWS_IOTRELAY_IKE / AWS_IOTRELAY_ESP (comma-separated proposals; default AWS's whole set as
# $LAB_AWS_*_PROPOSALS, so it accepts whatever the relay offers), AWS_IOTRELAY_IKE_LIFETIME (8h),
# AWS_IOTRELAY_ESP_LIFETIME (1h) (below 15m also set IOTRELAY_UNSAFE_SHORT_LIFETIMES=1),
# AWS_IOTRELAY_MTU (gateway.mtu; default from the negotiated suite), AWS_IOTRELAY_ROUTES (the relay's inside
# subnets it routes back; default $LAB_INSIDE_PREFIX), RUST_LOG.
# AWS_IOTRELAY_BGP (a spec.bgp flow mapping, e.g. `{localAsn: 65000, announce: ["100.64.0.0/16"]}`): dynamic
# routing as AWS does it: the tunnel's insideCidr is 169.254.1N.0/30 (as in e2e/bgp), the relay runs with
# `--bgp-aws-side` (AWS's end of the session: 169.254.1N.1, AS awsAsn, waiting for the relay to connect), and the
# prefixes the relay announces are the device's routes (no static route back).
# AWS_IOTRELAY_EXTRA_PEERS (space-separated addresses): one more tunnel per address after the relay's (`extra1`..,
# PSK AWS_IOTRELAY_EXTRA_PSK, default the relay's), for other initiators (bench/ike.sh); an IotRelay takes at most
# two tunnels, so one address.
# Its admin server is 127.0.0.1:9464 inside that namespace (iotrelay_aws_curl N PATH); logs in $LAB_DIR/awsN/.

IOTRELAY_AWS_DEV=awsgw0

iotrelay_aws_inside() { echo "100.64.255.$1"; }
# iotrelay_aws_inside_cidr N: tunnel N's inside /30 with AWS_IOTRELAY_BGP (AWS on .1, the relay on .2).
iotrelay_aws_inside_cidr() { echo "169.254.1$1.0/30"; }

# iotrelay_aws_yaml N PSK FILE: the IotRelay + Secret of AWS endpoint N.
iotrelay_aws_yaml() {
  local i=$1 psk=$2 f=$3 ike esp routes mtu="" inside="" bgp="" extra="" a n=0
  ike=$(echo "${AWS_IOTRELAY_IKE:-$LAB_AWS_IKE_PROPOSALS}" | sed 's/[^,][^,]*/"&"/g; s/,/, /g')
  esp=$(echo "${AWS_IOTRELAY_ESP:-$LAB_AWS_ESP_PROPOSALS}" | sed 's/[^,][^,]*/"&"/g; s/,/, /g')
  routes=$(echo "${AWS_IOTRELAY_ROUTES:-$LAB_INSIDE_PREFIX}" | sed 's/[^,][^,]*/"&"/g; s/,/, /g')
  [ -n "${AWS_IOTRELAY_MTU:-}" ] && mtu=", mtu: $AWS_IOTRELAY_MTU"
  if [ -n "${AWS_IOTRELAY_BGP:-}" ]; then
    inside="
    insideCidr: $(iotrelay_aws_inside_cidr "$i")"
    bgp="
  bgp: $AWS_IOTRELAY_BGP"
  fi
  for a in ${AWS_IOTRELAY_EXTRA_PEERS:-}; do
    n=$((n + 1))
    extra+="
  - {name: extra$n, peerAddress: $a, preSharedKeySecretRef: {name: aws-side, key: extra}}"
  done
  cat > "$f" <<EOT
apiVersion: iotrelay.dev/v1alpha1
kind: IotRelay
metadata: {name: aws$i, namespace: default}
spec:
  insideAddress: $(iotrelay_aws_inside "$i")
  remoteSubnets: [$routes]
  tunnels:
  - name: relay
    peerAddress: $LAB_RELAY_PUBLIC$inside
    preSharedKeySecretRef: {name: aws-side, key: psk}$extra
  ike:
    proposals: [$ike]
    lifetime: ${AWS_IOTRELAY_IKE_LIFETIME:-8h}
    dpdInterval: 10s
    dpdTimeout: 30s
    startupAction: Add
  esp:
    proposals: [$esp]
    lifetime: ${AWS_IOTRELAY_ESP_LIFETIME:-1h}
    replayWindow: 1024
  gateway: {interface: $IOTRELAY_AWS_DEV$mtu}$bgp
---
apiVersion: v1
kind: Secret
metadata: {name: aws-side, namespace: default}
stringData: {psk: "$psk", extra: "${AWS_IOTRELAY_EXTRA_PSK:-$psk}"}
EOT
}

# iotrelay_aws_start N PSK: stop endpoint N's strongSwan (if any) and start iotrelay there; wait until its /status
# answers and its device exists.
iotrelay_aws_start() {
  local i=$1 psk=$2 d ns
  d=$(lab_aws_dir "$i")
  ns=$LAB_ID-aws$i
  [ -x "$IOTRELAY_SIDECAR" ] || { lab_fail_why "no sidecar binary at $IOTRELAY_SIDECAR"; return 1; }
  lab_aws_stop "$i"
  iotrelay_aws_stop "$i"
  mkdir -p "$d"
  # charon's ipsec0 and its routes go with charon; nothing of it may catch the VPC's traffic to the relay.
  ip -n "$ns" route del "$LAB_INSIDE_PREFIX" dev ipsec0 2> /dev/null || true
  [ -s "$d/rekey.token" ] || (umask 077 && head -c 24 /dev/urandom | base64 > "$d/rekey.token")
  iotrelay_aws_yaml "$i" "$psk" "$d/iotrelay.yaml"
  if [ -f "$d/iotrelay.log" ]; then
    local n=1
    while [ -e "$d/iotrelay.log.$n" ]; do n=$((n + 1)); done
    mv "$d/iotrelay.log" "$d/iotrelay.log.$n"
  fi
  lab_bg "$ns" "$d/iotrelay.log" env RUST_LOG="${RUST_LOG:-info}" \
    IOTRELAY_UNSAFE_SHORT_LIFETIMES="${IOTRELAY_UNSAFE_SHORT_LIFETIMES:-0}" \
    "$IOTRELAY_SIDECAR" standalone --file "$d/iotrelay.yaml" --admin-addr "$RELAY_ADMIN" \
    --rekey-token-file "$d/rekey.token" ${AWS_IOTRELAY_BGP:+--bgp-aws-side}
  echo "$LAB_PID" > "$d/iotrelay.pid"
  lab_wait 15 iotrelay_aws_up "$i" || {
    lab_fail_why "AWS side $i (iotrelay) did not come up: $(tail -3 "$d/iotrelay.log" 2> /dev/null | tr '\n' ' ')"
    return 1
  }
}
iotrelay_aws_alive() {
  local p
  p="$(lab_aws_dir "$1")/iotrelay.pid"
  [ -f "$p" ] && kill -0 "$(cat "$p")" 2> /dev/null
}
# Up: its admin server answers (it starts first), its device exists, and UDP 500 and 4500 are bound (a relay
# started before that would have its first IKE_SA_INIT refused and wait a retransmission).
iotrelay_aws_up() {
  iotrelay_aws_alive "$1" && iotrelay_aws_curl "$1" /status > /dev/null 2>&1 \
    && ip -n "$LAB_ID-aws$1" link show "$IOTRELAY_AWS_DEV" > /dev/null 2>&1 \
    && [ "$(ip netns exec "$LAB_ID-aws$1" ss -Hlun '( sport = :500 or sport = :4500 )' | wc -l)" -ge 2 ]
}

# iotrelay_aws_stop N [SIGNAL]: TERM (default: DELETEs, device and routes removed) or KILL.
iotrelay_aws_stop() {
  local p pid
  p="$(lab_aws_dir "$1")/iotrelay.pid"
  [ -f "$p" ] || return 0
  pid=$(cat "$p")
  kill "-${2:-TERM}" "$pid" 2> /dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2> /dev/null || true
  rm -f "$p"
}

iotrelay_aws_curl() { local i=$1; shift; ip netns exec "$LAB_ID-aws$i" curl -fsS --max-time 3 "http://$RELAY_ADMIN$1" "${@:2}"; }
# iotrelay_aws_jq N FILTER: a value from endpoint N's /status.
iotrelay_aws_jq() { iotrelay_aws_curl "$1" /status 2> /dev/null | jq -r "${@:2}"; }
# iotrelay_aws_metric N NAME: one sample of endpoint N's /metrics (NAME with its labels, e.g. x{tunnel="relay"}).
iotrelay_aws_metric() { iotrelay_aws_curl "$1" /metrics | awk -v m="$2" '$1 == m {print $2}'; }
# iotrelay_aws_rekey N child|ike: endpoint N rekeys from its side.
iotrelay_aws_rekey() {
  iotrelay_aws_curl "$1" "/rekey?tunnel=relay&sa=$2" -X POST \
    -H "Authorization: Bearer $(cat "$(lab_aws_dir "$1")/rekey.token")" > /dev/null
}
# iotrelay_aws_established N: endpoint N has an IKE SA and a CHILD_SA with the relay.
iotrelay_aws_established() {
  [ "$(iotrelay_aws_jq "$1" '.tunnels[0].state')" = Established ] \
    && [ -n "$(iotrelay_aws_jq "$1" '.tunnels[0].childSa.inboundSpi // empty')" ]
}
# iotrelay_aws_matches_relay N TUNNEL: both ends hold the same IKE SA and CHILD_SA (relay inbound = AWS outbound).
iotrelay_aws_matches_relay() {
  local a r
  a=$(iotrelay_aws_jq "$1" '.tunnels[0] | "\(.ikeSa.localSpi) \(.ikeSa.remoteSpi) \(.childSa.inboundSpi) \(.childSa.outboundSpi)"')
  r=$(relay_jq --arg t "$2" '.tunnels[] | select(.name == $t) | "\(.ikeSa.remoteSpi) \(.ikeSa.localSpi) \(.childSa.outboundSpi) \(.childSa.inboundSpi)"')
  [ -n "$a" ] && [ "$a" = "$r" ] || { lab_fail_why "SAs differ: AWS side '$a', relay (mirrored) '$r'"; return 1; }
}
