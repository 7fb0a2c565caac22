# shellcheck shell=bash
# The configurations of the network bench (sourced by bench/run.sh after e2e/lab/lib.sh, relay.sh, iotrelay_aws.sh).
# Every configuration gets a lab of its own (e2e/lab/lib.sh's topology, LAB_ID $BENCH_ID-<cfg>): all are built
# first and stay idle while another one is measured, so the rounds can alternate between them cheaply.
#
#   IoT 203.0.113.10 --UDP :9000--> relay host 203.0.113.1 ----> AWS side 198.51.100.2 ----> device 100.64.1.10
#   (iotrelay-udpload send)         (DNAT+SNAT, or iotrelay)     (forwarding, strongSwan,     (udpload recv :9000,
#                                                                 or iotrelay gateway)         echo :9001)
#
#   ceiling      kernel forwarding with iptables DNAT+SNAT on the relay host, plain routing on the AWS side
#   orig-SUITE   the original setup: strongSwan (kernel-libipsec) + iptables DNAT/SNAT on the relay host,
#                strongSwan (kernel-libipsec) configured like an AWS tunnel on the AWS side
#   relay-SUITE  iotrelay on the relay host, strongSwan as the AWS side
#   both-SUITE   iotrelay on both ends: the AWS side is iotrelay in gateway mode as a responder (TUN into the VPC,
#                e2e/lab/iotrelay_aws.sh)
#   base-SUITE   both-SUITE with another build of iotrelay on both ends ($BENCH_BASE_SIDECAR, e.g. main's before a
#                datapath change), so a change is measured against what it replaces in the same alternating rounds
# SUITE: gcm (AES-GCM-128, ecp256) or cbc (AES-CBC-128 + HMAC-SHA1-96, modp1024: AWS's default, the original's).
#   ike-SUITE    both-SUITE whose AWS side has one more tunnel, to the peers of bench/ike.sh's IKE load generator
#   load-SUITE   memory under load, not alternated: iotrelay with two tunnels (strongSwan on aws1 and aws2) and
#                BENCH_FORWARDS forwards (ports 9100.., all to the device's echo), for bench/run.sh's rss_load

BENCH_PORT=9000        # the counting receiver on the device
BENCH_ECHO_PORT=9001   # the echo on the device (latency, bring-up)
BENCH_PSK=bench_psk_tunnel1_0123

suite_ike() { case $1 in gcm) echo aes128gcm16-prfsha256-ecp256 ;; cbc) echo aes128-sha1-modp1024 ;; esac; }
suite_esp() { case $1 in gcm) echo aes128gcm16-ecp256 ;; cbc) echo aes128-sha1-modp1024 ;; esac; }

# bench_lab CFG: make CFG's lab the current one (lib.sh's LAB_* names).
bench_lab() { lab_names "$BENCH_ID-$1"; }

# bench_kernel_nat: the original's iptables rules on the relay host (DNAT to the device, SNAT to the inside
# address the xfrm policy / the routes expect).
bench_kernel_nat() {
  ip netns exec "$LAB_NS_RELAY" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$LAB_NS_RELAY" iptables -t nat -A PREROUTING -i iot0 -p udp -s "$LAB_IOT_ADDR" \
    --dport "$BENCH_PORT:$BENCH_ECHO_PORT" -j DNAT --to-destination "$LAB_DEVICE"
  ip netns exec "$LAB_NS_RELAY" iptables -t nat -A POSTROUTING -p udp -d "$LAB_VPC" -j SNAT --to-source "$LAB_INSIDE"
  ip netns exec "$LAB_NS_RELAY" iptables -A FORWARD -j ACCEPT
}

# bench_cgw_conf SUITE: the original's strongSwan on the relay host (ORIGIN: ike/esp one suite, encap, auto=start).
bench_cgw_conf() {
  local d=$LAB_DIR/cgw p_ike p_esp
  p_ike=$(suite_ike "$1")
  p_esp=$(suite_esp "$1")
  mkdir -p "$d"
  lab_charon_conf "$d" yes
  cat > "$d/swanctl.conf" <<EOF
connections {
  tunnel1 {
    version = 2
    local_addrs = $LAB_RELAY_PUBLIC
    remote_addrs = $(lab_aws_addr 1)
    proposals = $p_ike
    encap = yes
    mobike = no
    dpd_delay = 10s
    local { auth = psk
            id = $LAB_RELAY_PUBLIC }
    remote { auth = psk
             id = $(lab_aws_addr 1) }
    children {
      tunnel1 {
        local_ts = $LAB_INSIDE/32
        remote_ts = $LAB_VPC
        esp_proposals = $p_esp
        start_action = start
      }
    }
  }
}
secrets {
  ike-1 { id = $(lab_aws_addr 1)
          secret = "$BENCH_PSK" }
}
EOF
}

# bench_relay_yaml FILE SUITE: iotrelay on the relay host, one tunnel, the load and echo forwards.
bench_relay_yaml() {
  cat > "$1" <<EOF
apiVersion: iotrelay.dev/v1alpha1
kind: IotRelay
metadata: {name: bench, namespace: default}
spec:
  insideAddress: $LAB_INSIDE
  remoteSubnets: ["$LAB_VPC"]
  tunnels:
  - {name: tunnel1, peerAddress: $(lab_aws_addr 1), preSharedKeySecretRef: {name: aws-vpn, key: tunnel1}}
  ike: {proposals: ["$(suite_ike "$2")"], startupAction: Start}
  esp: {proposals: ["$(suite_esp "$2")"], replayWindow: 1024}
  forwards:
  - {name: load, protocol: UDP, listenPort: $BENCH_PORT, allowedSources: ["$LAB_IOT_ADDR/32"],
     target: {address: $LAB_DEVICE, port: $BENCH_PORT}, idleTimeout: 60s}
  - {name: echo, protocol: UDP, listenPort: $BENCH_ECHO_PORT, allowedSources: ["$LAB_IOT_ADDR/32"],
     target: {address: $LAB_DEVICE, port: $BENCH_ECHO_PORT}, idleTimeout: 60s}
---
apiVersion: v1
kind: Secret
metadata: {name: aws-vpn, namespace: default}
stringData: {tunnel1: "$BENCH_PSK"}
EOF
}

BENCH_FORWARDS=10
# bench_load_yaml FILE SUITE: iotrelay with two tunnels and BENCH_FORWARDS forwards to the device's echo; one
# sender may hold the whole session table.
bench_load_yaml() {
  local i
  cat > "$1" <<EOF
apiVersion: iotrelay.dev/v1alpha1
kind: IotRelay
metadata: {name: bench-load, namespace: default}
spec:
  insideAddress: $LAB_INSIDE
  remoteSubnets: ["$LAB_VPC"]
  maxSessionsPerSource: 4096
  tunnels:
  - {name: tunnel1, peerAddress: $(lab_aws_addr 1), preSharedKeySecretRef: {name: aws-vpn, key: tunnel1}}
  - {name: tunnel2, peerAddress: $(lab_aws_addr 2), preSharedKeySecretRef: {name: aws-vpn, key: tunnel1}}
  ike: {proposals: ["$(suite_ike "$2")"], startupAction: Start}
  esp: {proposals: ["$(suite_esp "$2")"], replayWindow: 1024}
  forwards:
EOF
  for ((i = 0; i < BENCH_FORWARDS; i++)); do
    cat >> "$1" <<EOF
  - {name: f$i, protocol: UDP, listenPort: $((9100 + i)), allowedSources: ["$LAB_IOT_ADDR/32"],
     target: {address: $LAB_DEVICE, port: $BENCH_ECHO_PORT}, idleTimeout: 300s}
EOF
  done
  cat >> "$1" <<EOF
---
apiVersion: v1
kind: Secret
metadata: {name: aws-vpn, namespace: default}
stringData: {tunnel1: "$BENCH_PSK"}
EOF
}

# bench_first_echo: from the IoT server, one datagram every 5 ms through the relay to the device's echo, until the
# first answer (at most 30 s); prints the udpload ping line (first_ms: from its start to the first answer).
bench_first_echo() {
  ip netns exec "$LAB_NS_IOT" "$UDPLOAD" ping --dst "$LAB_RELAY_IOT_ADDR:$BENCH_ECHO_PORT" --rate 200 --secs 30 \
    --until-first
}

# bench_up CFG: build CFG's lab and bring its datapath up; prints `bringup_ms=N` (process start -> first echo
# through the tunnel) for the configurations that have a tunnel.
bench_up() {
  local cfg=$1 kind=${1%-*} suite=${1#*-} first="" n ns
  if [ "$kind" = base ]; then
    [ -x "${BENCH_BASE_SIDECAR:-}" ] || { lab_log "base: BENCH_BASE_SIDECAR is not an executable"; return 1; }
    # relay_start and iotrelay_aws_start (called below) start $IOTRELAY_SIDECAR: the base build, for this lab.
    # shellcheck disable=SC2034 # read by relay_start and iotrelay_aws_start
    local IOTRELAY_SIDECAR=$BENCH_BASE_SIDECAR
    kind=both
  fi
  bench_lab "$cfg"
  lab_up || return 1
  lab_bg "$LAB_NS_VPC" "$LAB_DIR/echo-bench.log" "$UDPLOAD" echo --bind "$LAB_DEVICE:$BENCH_ECHO_PORT"
  # One idle process per namespace: bench/run.sh reads each namespace's counters through its /proc/PID/net.
  for n in iot relay aws1 vpc; do
    case $n in iot) ns=$LAB_NS_IOT ;; relay) ns=$LAB_NS_RELAY ;; vpc) ns=$LAB_NS_VPC ;; *) ns=$LAB_ID-$n ;; esac
    lab_bg "$ns" /dev/null sleep 1000000
    echo "$LAB_PID" > "$LAB_DIR/anchor.$n"
  done
  case $kind in
    ceiling)
      bench_kernel_nat
      ip -n "$LAB_NS_RELAY" route add "$LAB_VPC" via "$(lab_aws_addr 1)"
      ip -n "$LAB_ID-aws1" route add "$LAB_INSIDE_PREFIX" via "$LAB_RELAY_PUBLIC"
      ;;
    orig)
      lab_aws_start 1 "$BENCH_PSK" || return 1
      bench_kernel_nat
      bench_cgw_conf "$suite"
      bench_first_echo > "$LAB_DIR/first.out" &
      first=$!
      lab_charon_start "$LAB_NS_RELAY" "$LAB_DIR/cgw" || return 1
      ;;
    load)
      { lab_aws_start 1 "$BENCH_PSK" && lab_aws_start 2 "$BENCH_PSK"; } || return 1
      bench_load_yaml "$LAB_DIR/relay.yaml" "$suite"
      relay_start "$LAB_DIR/relay.yaml" || { lab_log "relay: $LAB_WHY"; return 1; }
      { lab_wait 30 relay_tunnel_established tunnel1 && lab_wait 30 relay_tunnel_established tunnel2; } \
        || { lab_log "load: the two tunnels are not both established"; return 1; }
      ;;
    relay | both | ike)
      if [ "$kind" = relay ]; then
        lab_aws_start 1 "$BENCH_PSK" || return 1
      else
        [ "$kind" = ike ] && local AWS_IOTRELAY_EXTRA_PEERS=$BENCH_IKE_PEERS AWS_IOTRELAY_EXTRA_PSK=$BENCH_IKE_PSK
        AWS_IOTRELAY_IKE=$(suite_ike "$suite") AWS_IOTRELAY_ESP=$(suite_esp "$suite") \
          iotrelay_aws_start 1 "$BENCH_PSK" || { lab_log "AWS side: $LAB_WHY"; return 1; }
      fi
      bench_relay_yaml "$LAB_DIR/relay.yaml" "$suite"
      bench_first_echo > "$LAB_DIR/first.out" &
      first=$!
      relay_start "$LAB_DIR/relay.yaml" || { lab_log "relay: $LAB_WHY"; return 1; }
      ;;
    *) lab_log "unknown configuration $cfg"; return 1 ;;
  esac
  if [ -n "$first" ]; then
    wait "$first"
    local ms
    ms=$(sed -n 's/.*first_ms=\([0-9.]*\).*/\1/p' "$LAB_DIR/first.out")
    [ -n "$ms" ] || { lab_log "$cfg: no echo through the tunnel within 30 s: $(cat "$LAB_DIR/first.out")"; return 1; }
    # The ping starts a few ms before the process it waits for.
    echo "bringup_ms=$ms"
  fi
  # iotrelay's own account: its first log line (configuration loaded) to "CHILD_SA installed".
  if [ "$kind" = relay ] || [ "$kind" = both ] || [ "$kind" = load ] || [ "$kind" = ike ]; then
    local a b
    a=$(head -1 "$LAB_DIR/relay.log" | cut -d' ' -f1)
    b=$(grep -m1 'CHILD_SA installed' "$LAB_DIR/relay.log" | cut -d' ' -f1)
    [ -n "$a" ] && [ -n "$b" ] && echo "child_ms=$((($(date -d "$b" +%s%N) - $(date -d "$a" +%s%N)) / 1000000))"
  fi
}

# bench_down CFG: stop CFG's lab (relay, charons, namespaces).
bench_down() {
  bench_lab "$1"
  relay_stop
  iotrelay_aws_stop 1
  ip netns del "$LAB_ID-ikegen" 2> /dev/null || true # bench/ike.sh's generator, when there is one
  lab_down
}
