# shellcheck shell=bash
# The iotrelay test lab (sourced by e2e/lab/selftest.sh, e2e/interop/run.sh, e2e/datapath/run.sh, e2e/demo.sh,
# e2e/k8s/run.sh with LAB_ID=k8s, whose relay host namespace is the Kubernetes node).
# Network namespaces only; every name starts with $LAB_ID (default `lab-<pid>`), so parallel runs do not collide.
#
#   $LAB_ID-iot            $LAB_ID-relay                          $LAB_ID-wan (br0)      $LAB_ID-aws1 / -aws2
#   IoT server             the relay host                         "the Internet"         AWS tunnel endpoints:
#   203.0.113.10/24 -veth- 203.0.113.1/24 (iot0)                                         strongSwan charon +
#                          198.51.100.1/24 (wan0) --------------- br0 ------------------ 198.51.100.2 / .3 (wan0)
#                          100.127.0.1/32 on lo (inside address)                         kernel-libipsec (ipsec0)
#                                                                                        100.64.1.2 / .3 (vpc0)
#   with LAB_NAT=1 the relay sits behind a NAT (RFC 3948 case):                            |
#                          192.0.2.2/24 (wan0) -- $LAB_ID-nat --- br0                    $LAB_ID-vpc (br0)
#                          default via 192.0.2.1  192.0.2.1 | 198.51.100.1 (MASQUERADE)  100.64.1.10 device,
#                                                                                        UDP echo on :7000
#
# With LAB_AWS_LOG_KEYS=1 the AWS side logs every derived key (ike/chd level 4) for e2e/lab/secrets.py.
# The AWS endpoints are configured like an AWS VPN tunnel (docs/aws.md): 0.0.0.0/0 <-> 0.0.0.0/0, AWS's whole
# proposal set, DPD every 10 s (action clear, ~30 s timeout), 8 h / 1 h lifetimes rekeyed inside a 270 s margin with
# 100 % fuzz, replay window 1024, UDP encapsulation forced, responder (start_action none) unless LAB_AWS_START=start.
# Like AWS with static routing they route the relay's inside prefix (100.127.0.0/16) into the tunnel (a static
# route into ipsec0; policy rules keep the VPC and the outside subnet off the 0/0 route libipsec installs).
# The device's route back to 100.127.0.0/16 points at aws1; lab_fail_over / lab_fail_back move it, as AWS does.
# Each charon is private: own strongswan.conf, vici socket, /run (tmpfs in a private mount namespace) and log.
#
# Use: `source e2e/lab/lib.sh; trap lab_down EXIT; lab_up; lab_aws_start 1 PSK; ...`.

LAB_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# grepq ARGS...: `grep -q` at the end of a pipeline, reading its whole input. Our scripts run with pipefail, and a
# plain `grep -q` exits at the first match: a writer still printing (ctr, kubectl, ip) then dies of SIGPIPE and
# the pipeline fails although the line was there (seen as a flaky "image is not in the node's image store").
grepq() {
  local rc=0
  grep -q "$@" || rc=$?
  cat > /dev/null
  return "$rc"
}
# lab_names ID: (re)name the lab (a script may build a second lab, e.g. behind a NAT, after tearing down the first).
lab_names() {
  LAB_ID=$1
  LAB_DIR=/tmp/$LAB_ID
  LAB_NS_IOT=$LAB_ID-iot
  LAB_NS_RELAY=$LAB_ID-relay
  LAB_NS_WAN=$LAB_ID-wan
  LAB_NS_VPC=$LAB_ID-vpc
  LAB_NS_NAT=$LAB_ID-nat
}
lab_names "${LAB_ID:-lab-$$}"
LAB_IOT_ADDR=203.0.113.10
LAB_RELAY_IOT_ADDR=203.0.113.1
LAB_RELAY_PUBLIC=198.51.100.1      # the relay's outside address, or the NAT's public address with LAB_NAT=1
LAB_RELAY_PRIVATE=192.0.2.2        # the relay's outside address behind the NAT
LAB_INSIDE=100.127.0.1             # the relay's address inside the tunnel
LAB_INSIDE_PREFIX=100.127.0.0/16   # the "static route" on the AWS VPN connection
LAB_VPC=100.64.0.0/16
LAB_DEVICE=100.64.1.10
LAB_DEVICE_PORT=7000
LAB_NAT=${LAB_NAT:-0}

# AWS's proposal set (all encryption x integrity x DH groups it accepts, docs/aws.md).
LAB_AWS_DH_IKE="modp1024-modp2048-modp3072-modp4096-modp6144-modp8192-ecp256-ecp384-ecp521-modp1024s160-modp2048s224-modp2048s256"
LAB_AWS_DH_ESP="modp1024-modp1536-modp2048-modp3072-modp4096-modp6144-modp8192-ecp256-ecp384-ecp521-modp1024s160-modp2048s224-modp2048s256"
LAB_AWS_IKE_PROPOSALS=${LAB_AWS_IKE_PROPOSALS:-"aes128-aes256-sha1-sha256-sha384-sha512-$LAB_AWS_DH_IKE,aes128gcm16-aes256gcm16-prfsha1-prfsha256-prfsha384-prfsha512-$LAB_AWS_DH_IKE"}
LAB_AWS_ESP_PROPOSALS=${LAB_AWS_ESP_PROPOSALS:-"aes128-aes256-sha1-sha256-sha384-sha512-$LAB_AWS_DH_ESP,aes128gcm16-aes256gcm16-$LAB_AWS_DH_ESP"}
# Lifetimes (seconds): AWS defaults; tests may shorten them.
LAB_AWS_IKE_LIFETIME=${LAB_AWS_IKE_LIFETIME:-28800}
LAB_AWS_CHILD_LIFETIME=${LAB_AWS_CHILD_LIFETIME:-3600}
LAB_AWS_REKEY_MARGIN=${LAB_AWS_REKEY_MARGIN:-270}
LAB_AWS_START=${LAB_AWS_START:-none}   # none: AWS "startup action add" (responder); start: AWS initiates
LAB_AWS_DPD=${LAB_AWS_DPD:-10}

lab_log() { echo "# $*" >&2; }

# lab_up: create every namespace, link and route, and start the device's UDP echo server.
lab_up() {
  mkdir -p "$LAB_DIR"
  : > "$LAB_DIR/pids"
  local ns i
  for ns in "$LAB_NS_IOT" "$LAB_NS_RELAY" "$LAB_NS_WAN" "$LAB_NS_VPC" "$LAB_ID-aws1" "$LAB_ID-aws2"; do
    ip netns add "$ns" || return 1
    ip -n "$ns" link set lo up
  done
  # IoT server <-> relay host
  ip link add iot0 netns "$LAB_NS_IOT" type veth peer name iot0 netns "$LAB_NS_RELAY"
  ip -n "$LAB_NS_IOT" addr add "$LAB_IOT_ADDR/24" dev iot0
  ip -n "$LAB_NS_IOT" link set iot0 up
  ip -n "$LAB_NS_IOT" route add default via "$LAB_RELAY_IOT_ADDR"
  ip -n "$LAB_NS_RELAY" addr add "$LAB_RELAY_IOT_ADDR/24" dev iot0
  ip -n "$LAB_NS_RELAY" link set iot0 up
  # "Internet" bridge
  ip -n "$LAB_NS_WAN" link add br0 type bridge
  ip -n "$LAB_NS_WAN" link set br0 up
  if [ "$LAB_NAT" = 1 ]; then
    ip netns add "$LAB_NS_NAT" || return 1
    ip -n "$LAB_NS_NAT" link set lo up
    ip link add wan0 netns "$LAB_NS_RELAY" type veth peer name lan0 netns "$LAB_NS_NAT"
    ip -n "$LAB_NS_RELAY" addr add "$LAB_RELAY_PRIVATE/24" dev wan0
    ip -n "$LAB_NS_RELAY" link set wan0 up
    ip -n "$LAB_NS_RELAY" route add default via 192.0.2.1
    ip -n "$LAB_NS_NAT" addr add 192.0.2.1/24 dev lan0
    ip -n "$LAB_NS_NAT" link set lan0 up
    ip link add wan0 netns "$LAB_NS_NAT" type veth peer name p-nat netns "$LAB_NS_WAN"
    ip -n "$LAB_NS_NAT" addr add "$LAB_RELAY_PUBLIC/24" dev wan0
    ip -n "$LAB_NS_NAT" link set wan0 up
    ip -n "$LAB_NS_WAN" link set p-nat master br0 up
    ip netns exec "$LAB_NS_NAT" sysctl -qw net.ipv4.ip_forward=1
    # Real source NAT with port translation (an ordinary home/office router).
    ip netns exec "$LAB_NS_NAT" iptables -t nat -A POSTROUTING -o wan0 -j MASQUERADE --random
  else
    ip link add wan0 netns "$LAB_NS_RELAY" type veth peer name p-relay netns "$LAB_NS_WAN"
    ip -n "$LAB_NS_RELAY" addr add "$LAB_RELAY_PUBLIC/24" dev wan0
    ip -n "$LAB_NS_RELAY" link set wan0 up
    ip -n "$LAB_NS_WAN" link set p-relay master br0 up
  fi
  ip -n "$LAB_NS_RELAY" addr add "$LAB_INSIDE/32" dev lo
  # VPC bridge with the device
  ip -n "$LAB_NS_VPC" link add br0 type bridge
  ip -n "$LAB_NS_VPC" link set br0 up
  ip -n "$LAB_NS_VPC" addr add "$LAB_DEVICE/24" dev br0
  for i in 1 2; do
    ns=$LAB_ID-aws$i
    ip link add wan0 netns "$ns" type veth peer name "p-aws$i" netns "$LAB_NS_WAN"
    ip -n "$ns" addr add "$(lab_aws_addr "$i")/24" dev wan0
    ip -n "$ns" link set wan0 up
    ip -n "$LAB_NS_WAN" link set "p-aws$i" master br0 up
    ip link add vpc0 netns "$ns" type veth peer name "p-aws$i" netns "$LAB_NS_VPC"
    ip -n "$ns" addr add "100.64.1.$((i + 1))/24" dev vpc0
    ip -n "$ns" link set vpc0 up
    ip -n "$LAB_NS_VPC" link set "p-aws$i" master br0 up
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
    # kernel-libipsec routes every policy's remote TS into ipsec0 (table 220, whatever install_routes says); with
    # 0.0.0.0/0 that would send decrypted VPC traffic straight back into the tunnel. The VPC and the "Internet"
    # subnet stay on their interfaces, as in AWS.
    ip -n "$ns" rule add to "$LAB_VPC" lookup main pref 100
    ip -n "$ns" rule add to 198.51.100.0/24 lookup main pref 101
  done
  ip -n "$LAB_NS_VPC" route add "$LAB_INSIDE_PREFIX" via 100.64.1.2
  # The kernel brings a new link's carrier up (and a bridge port into forwarding) asynchronously, batching such
  # events up to a second apart: a datagram sent before that waits for an ARP retry (1 s). Wait for every link.
  lab_wait 5 lab_links_ready || lab_log "lab links not all up: $(lab_links_down)"
  lab_bg "$LAB_NS_VPC" "$LAB_DIR/echo.log" python3 "$LAB_HERE/udp.py" echo 0.0.0.0 "$LAB_DEVICE_PORT" \
    --log "$LAB_DIR/device.log"
  # The echo server is up when it has bound its port.
  lab_wait 5 lab_device_listening
}

# lab_links_down: the lab's links (but loopbacks) whose operational state is not UP, and bridge ports that are
# not forwarding, as `ns/link` words.
lab_links_down() {
  local ns nss=("$LAB_NS_IOT" "$LAB_NS_RELAY" "$LAB_NS_WAN" "$LAB_NS_VPC" "$LAB_ID-aws1" "$LAB_ID-aws2")
  [ "$LAB_NAT" = 1 ] && nss+=("$LAB_NS_NAT")
  for ns in "${nss[@]}"; do
    ip -n "$ns" -o link show 2> /dev/null | awk -v ns="$ns" '!/LOOPBACK/ && !/state UP/ { sub(/@.*/, "", $2); printf "%s/%s ", ns, $2 }'
    bridge -n "$ns" link show 2> /dev/null | awk -v ns="$ns" '!/state forwarding/ { sub(/@.*/, "", $2); printf "%s/%s ", ns, $2 }'
  done
}
lab_links_ready() { [ -z "$(lab_links_down)" ]; }

lab_device_listening() { ip netns exec "$LAB_NS_VPC" ss -Hlun "sport = :$LAB_DEVICE_PORT" | grepq .; }

# lab_bg NS LOG CMD...: run CMD in the background inside NS; its pid is recorded for lab_down and printed in $LAB_PID.
lab_bg() {
  local ns=$1 log=$2
  shift 2
  ip netns exec "$ns" "$@" > "$log" 2>&1 < /dev/null &
  LAB_PID=$!
  disown "$LAB_PID"
  echo "$LAB_PID" >> "$LAB_DIR/pids"
}

# lab_wait SECONDS CMD...: poll CMD every 0.2 s until it succeeds (0) or the time is up (1).
lab_wait() {
  local deadline=$((SECONDS + $1))
  shift
  while :; do
    "$@" && return 0
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.2
  done
}

lab_aws_addr() { echo "198.51.100.$(($1 + 1))"; }
lab_aws_dir() { echo "$LAB_DIR/aws$1"; }

# lab_charon_conf DIR: a strongswan.conf for a private charon with kernel-libipsec in DIR. $2: install_routes.
lab_charon_conf() {
  local d=$1 routes=${2:-no}
  cat > "$d/strongswan.conf" <<EOF
charon {
  port = 500
  port_nat_t = 4500
  install_routes = $routes
  # IKEv2 DPD gives up after these retransmissions: 2 * (1 + 1.5 + 1.5^2 + 1.5^3 + 1.5^4) = ~26 s (AWS: 30 s).
  retransmit_timeout = 2.0
  retransmit_base = 1.5
  retransmit_tries = 4
  # IKE fragments (RFC 7383) above this IP packet size; the interop lowers it to make charon fragment.
  fragment_size = ${LAB_AWS_FRAGMENT_SIZE:-1280}
  plugins {
    vici { socket = unix://$d/charon.vici }
    kernel-libipsec { load = yes }
    bypass-lan { load = no }
    dhcp { load = no }
    farp { load = no }
    forecast { load = no }
    tpm { load = no }
  }
  filelog {
    lab {
      path = $d/charon.log
      default = 1
      ike = $([ "${LAB_AWS_LOG_KEYS:-0}" = 1 ] && echo 4 || echo 2)
      chd = $([ "${LAB_AWS_LOG_KEYS:-0}" = 1 ] && echo 4 || echo 1)
      knl = 2
      flush_line = yes
      time_format = %H:%M:%S
    }
  }
}
EOF
}

# lab_charon_start NS DIR: start a charon in NS with DIR/strongswan.conf, load DIR/swanctl.conf.
lab_charon_start() {
  local ns=$1 d=$2
  rm -f "$d/charon.vici"
  STRONGSWAN_CONF="$d/strongswan.conf" setsid ip netns exec "$ns" unshare -m sh -c \
    'mount -t tmpfs tmpfs /run && exec /usr/lib/ipsec/charon' > "$d/charon.out" 2>&1 < /dev/null &
  echo $! > "$d/charon.pid"
  disown $!
  echo $! >> "$LAB_DIR/pids"
  lab_wait 10 test -S "$d/charon.vici" || { lab_log "charon in $ns did not start"; return 1; }
  lab_swanctl_dir "$d" --load-all --noprompt --file "$d/swanctl.conf" > "$d/load.out" 2>&1 \
    || { lab_log "swanctl --load-all failed in $ns: $(cat "$d/load.out")"; return 1; }
}

# lab_charon_stop DIR [SIGNAL]: TERM (default) lets charon send DELETEs; KILL makes the peer vanish silently.
lab_charon_stop() {
  local d=$1 pid
  [ -f "$d/charon.pid" ] || return 0
  pid=$(cat "$d/charon.pid")
  kill "-${2:-TERM}" "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$d/charon.pid" "$d/charon.vici"
}

lab_swanctl_dir() { local d=$1 c=$2; shift 2; swanctl "$c" --uri "unix://$d/charon.vici" "$@"; }
# lab_swanctl N COMMAND [ARGS]: swanctl against AWS endpoint N (1 or 2).
lab_swanctl() { local i=$1; shift; lab_swanctl_dir "$(lab_aws_dir "$i")" "$@"; }

# lab_aws_start N PSK: (re)start AWS tunnel endpoint N. Env: LAB_AWS_* above (proposals, lifetimes, start action),
# LAB_AWS_LOCAL_TS / LAB_AWS_REMOTE_TS (the CHILD_SA's traffic selectors, default 0.0.0.0/0 each).
lab_aws_start() {
  local i=$1 psk=$2 d addr
  d=$(lab_aws_dir "$i")
  addr=$(lab_aws_addr "$i")
  lab_charon_stop "$d"
  mkdir -p "$d"
  lab_charon_conf "$d" no
  local m=$LAB_AWS_REKEY_MARGIN
  cat > "$d/swanctl.conf" <<EOF
connections {
  aws {
    version = 2
    local_addrs = $addr
    remote_addrs = $LAB_RELAY_PUBLIC
    proposals = $LAB_AWS_IKE_PROPOSALS
    encap = yes
    mobike = no
    dpd_delay = ${LAB_AWS_DPD}s
    rekey_time = $((LAB_AWS_IKE_LIFETIME - m))s
    rand_time = ${m}s
    over_time = ${m}s
    reauth_time = 0
    local {
      auth = psk
      id = $addr
    }
    remote {
      auth = psk
      id = %any
    }
    children {
      aws {
        local_ts = ${LAB_AWS_LOCAL_TS:-0.0.0.0/0}
        remote_ts = ${LAB_AWS_REMOTE_TS:-0.0.0.0/0}
        esp_proposals = $LAB_AWS_ESP_PROPOSALS
        rekey_time = $((LAB_AWS_CHILD_LIFETIME - m))s
        rand_time = ${m}s
        life_time = ${LAB_AWS_CHILD_LIFETIME}s
        replay_window = 1024
        dpd_action = clear
        start_action = $LAB_AWS_START
      }
    }
  }
}
secrets {
  # No owner ids: as a responder charon looks the key up before it has picked its own id (my id is still %any
  # unless the initiator sent IDr, which AWS does not require), so an id-bound key would not be found.
  ike-aws {
    secret = "$psk"
  }
}
EOF
  lab_charon_start "$LAB_ID-aws$i" "$d" || return 1
  # AWS routes the VPN connection's static routes into the tunnel.
  lab_wait 5 ip -n "$LAB_ID-aws$i" link show ipsec0 > /dev/null 2>&1 || { lab_log "no ipsec0 in aws$i"; return 1; }
  ip -n "$LAB_ID-aws$i" link set ipsec0 up 2>/dev/null || true
  ip -n "$LAB_ID-aws$i" route replace "$LAB_INSIDE_PREFIX" dev ipsec0
}

lab_aws_stop() { lab_charon_stop "$(lab_aws_dir "$1")" "${2:-TERM}"; }

# lab_fail_over / lab_fail_back: AWS sends VPC->relay traffic over tunnel2 / tunnel1.
lab_fail_over() { ip -n "$LAB_NS_VPC" route replace "$LAB_INSIDE_PREFIX" via 100.64.1.3; }
lab_fail_back() { ip -n "$LAB_NS_VPC" route replace "$LAB_INSIDE_PREFIX" via 100.64.1.2; }

# lab_sas_json N|DIR: the SAs charon holds, as JSON:
#   [{"name","state","initiator","local","remote","nat_remote","ike_spi_local","ike_spi_remote","initiator_spi",
#     "responder_spi","children":[{"name","state","spi_in","spi_out","installed"}...]}...]
# ike_spi_local/remote are from the charon's point of view (so they equal the relay's remote/local SPIs).
lab_sas_json() {
  local d=$1
  [ -d "$d" ] || d=$(lab_aws_dir "$1")
  lab_swanctl_dir "$d" --list-sas --raw 2>/dev/null | python3 "$LAB_HERE/sas.py"
}

# lab_ask NS DST PORT PAYLOAD [TIMEOUT]: send one UDP datagram from NS, succeed iff the device's echo comes back.
lab_ask() { ip netns exec "$1" python3 "$LAB_HERE/udp.py" ask "$2" "$3" "$4" "${5:-6}"; }

# lab_device_seen PAYLOAD: did the device receive PAYLOAD (and from which source)? Prints "src payload" lines.
lab_device_seen() { grep -F " $1" "$LAB_DIR/device.log" 2>/dev/null; }

# lab_down: stop every process and namespace this lab created (safe to call twice).
lab_down() {
  local d pid ns
  for d in "$LAB_DIR"/*/; do [ -f "$d/charon.pid" ] && lab_charon_stop "$d"; done
  if [ -f "$LAB_DIR/pids" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$LAB_DIR/pids"
  fi
  for ns in "$LAB_NS_IOT" "$LAB_NS_RELAY" "$LAB_NS_WAN" "$LAB_NS_VPC" "$LAB_NS_NAT" "$LAB_ID-aws1" "$LAB_ID-aws2"; do
    [ -e "/run/netns/$ns" ] || continue
    # Anything still running in our namespaces was started by this lab.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  # Logs stay only when something failed (or LAB_KEEP_LOGS=1).
  if [ "${LAB_FAILED:-0}" -gt 0 ] || [ "${LAB_KEEP_LOGS:-0}" = 1 ]; then
    [ -d "$LAB_DIR" ] && echo "# lab logs: $LAB_DIR" >&2
  else
    rm -rf "$LAB_DIR"
  fi
}

# Test-case bookkeeping shared by every suite. A suite declares how many cases it runs (`lab_expect N`), runs each
# with `lab_case NAME CMD...` (PASS/FAIL) or counts it with `lab_skip NAME` when a selection leaves it out, and
# installs `trap 'lab_exit $? CLEANUP...' EXIT` plus `lab_traps`: whatever ends the run (the last line, `exit 1`
# half way, an unbound variable, SIGINT/SIGTERM) it prints the counts and exits non-zero unless every expected
# case ran (or was skipped on purpose) and none failed.
LAB_PASSED=0
LAB_FAILED=0
LAB_SKIPPED=0
LAB_EXPECTED=""
LAB_WHY=""
lab_fail_why() { LAB_WHY=$*; return 1; }
lab_expect() { LAB_EXPECTED=$1; }
lab_case() {
  local name=$1
  shift
  LAB_WHY=""
  if "$@"; then
    echo "PASS $name"
    LAB_PASSED=$((LAB_PASSED + 1))
  else
    echo "FAIL $name: ${LAB_WHY:-command failed}"
    LAB_FAILED=$((LAB_FAILED + 1))
    return 1
  fi
}
lab_skip() { echo "SKIP $1 (not selected)"; LAB_SKIPPED=$((LAB_SKIPPED + 1)); }
# Selecting cases: `lab_select "$@"` with the script's arguments (name prefixes; none = every case), then
# `lab_run NAME CMD...` runs a selected case and counts the others as skipped; `lab_wanted NAME` asks the selection.
LAB_ONLY=()
lab_select() { LAB_ONLY=("$@"); }
lab_wanted() {
  [ ${#LAB_ONLY[@]} -eq 0 ] && return 0
  local p
  for p in "${LAB_ONLY[@]}"; do [[ $1 == "$p"* || $p == "$1"* ]] && return 0; done
  return 1
}
lab_run() { if lab_wanted "$1"; then lab_case "$@"; else lab_skip "$1"; fi; }
# lab_report PASSED FAILED SKIPPED EXPECTED RC: the summary of a suite (also used by e2e/k8s/run.sh). Prints
#   cases: expected E, ran R, skipped S
#   P passed, F failed
# (also into $IOTRELAY_SUMMARY when set: scripts/test.sh reads it) and returns the suite's real status: RC when
# the script itself failed or was aborted, 1 when a case failed or ran + skipped is not E, else 0.
lab_report() {
  local p=$1 f=$2 s=$3 e=$4 rc=$5 ran=$(($1 + $2)) line
  line="cases: expected ${e:-?}, ran $ran, skipped $s"
  if [ "$rc" -ne 0 ]; then
    line+=" (aborted: exit status $rc)"
  elif [ -z "$e" ] || [ $((ran + s)) -ne "$e" ]; then
    line+=" (MISMATCH: $((ran + s)) of ${e:-an undeclared number} cases accounted for)"
    rc=1
  elif [ "$f" -gt 0 ]; then
    rc=1
  fi
  echo "$line"
  echo "$p passed, $f failed"
  [ -n "${IOTRELAY_SUMMARY:-}" ] && printf '%s\n%s passed, %s failed\n' "$line" "$p" "$f" > "$IOTRELAY_SUMMARY"
  return "$rc"
}
# lab_exit RC [CLEANUP...]: the EXIT trap of a suite: run CLEANUP (e.g. relay_stop lab_down), report, exit.
lab_exit() {
  local rc=$1 c
  shift
  trap - EXIT
  [ "$rc" -ne 0 ] && LAB_KEEP_LOGS=1
  for c in "$@"; do "$c"; done
  lab_report "$LAB_PASSED" "$LAB_FAILED" "$LAB_SKIPPED" "$LAB_EXPECTED" "$rc"
  exit $?
}
# lab_traps: SIGINT and SIGTERM end the run through the EXIT trap with the conventional status (red).
lab_traps() {
  trap 'echo "# interrupted (SIGINT)" >&2; exit 130' INT
  trap 'echo "# terminated (SIGTERM)" >&2; exit 143' TERM
}
# lab_summary: the end of a suite's script; lab_exit reports.
lab_summary() { exit 0; }

# lab_need_root: the lab needs root (namespaces); say so plainly.
lab_need_root() {
  [ "$(id -u)" = 0 ] || { echo "the lab needs root (network namespaces)" >&2; exit 2; }
  command -v swanctl > /dev/null && [ -x /usr/lib/ipsec/charon ] \
    || { echo "strongSwan missing: run scripts/deps.sh" >&2; exit 2; }
}
