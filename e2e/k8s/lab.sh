# shellcheck shell=bash
# The network around the Kubernetes node for e2e/k8s/run.sh (sourced). The node namespace ($K8S_NETNS) is the
# relay's host (hostNetwork pods run there); everything else is created here with the `k8s-` prefix.
#
#   k8s-iot                    k8s-node ($K8S_NETNS)               k8s-wan (bridge)        k8s-aws1 / k8s-aws2
#   203.0.113.10/24 --veth-- 203.0.113.1/24                                                 strongSwan responders
#   (IoT server)               198.51.100.1/24 ------------------- br0 -------------------- 198.51.100.2 / .3
#                              (relay: IKE/ESP-in-UDP, UDP :7000)                           kernel-libipsec (ipsec0)
#                                                                                           100.64.1.2 / .3
#                                                                                             |  k8s-vpc (bridge)
#                                                                                           100.64.1.10 (device)
#
# The device's route back to the relay's inside address (100.127.0.0/16) points at aws1; k8s_lab_fail_over
# moves it to aws2, as the AWS VPN gateway withdraws a dead tunnel's route.
# Each charon is private: own strongswan.conf, vici socket, /run (tmpfs in a private mount ns) and log.

K8S_LAB_DIR=${K8S_LAB_DIR:-/tmp/k8s-iotrelay-lab}
K8S_LAB_NS=(k8s-iot k8s-wan k8s-aws1 k8s-aws2 k8s-vpc)
K8S_AWS_PROPOSAL=${K8S_AWS_PROPOSAL:-aes128-sha1-modp1024}

k8s_lab_up() {
  local node=$1 psk1=$2 psk2=$3
  mkdir -p "$K8S_LAB_DIR"
  echo "$node" > "$K8S_LAB_DIR/node"
  for ns in "${K8S_LAB_NS[@]}"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
  done
  # IoT server <-> node
  ip link add k8s-iot0 netns k8s-iot type veth peer name k8s-iot1 netns "$node"
  ip -n k8s-iot addr add 203.0.113.10/24 dev k8s-iot0
  ip -n k8s-iot link set k8s-iot0 up
  ip -n "$node" addr add 203.0.113.1/24 dev k8s-iot1
  ip -n "$node" link set k8s-iot1 up
  # "Internet": node and both AWS endpoints on one bridge
  ip -n k8s-wan link add br0 type bridge
  ip -n k8s-wan link set br0 up
  local i
  ip link add k8s-wan0 netns "$node" type veth peer name p-node netns k8s-wan
  ip -n "$node" addr add 198.51.100.1/24 dev k8s-wan0
  ip -n "$node" link set k8s-wan0 up
  ip -n k8s-wan link set p-node master br0 up
  # VPC bridge
  ip -n k8s-vpc link add br0 type bridge
  ip -n k8s-vpc link set br0 up
  ip -n k8s-vpc addr add 100.64.1.10/24 dev br0
  for i in 1 2; do
    ip link add wan0 netns "k8s-aws$i" type veth peer name "p-aws$i" netns k8s-wan
    ip -n "k8s-aws$i" addr add "198.51.100.$((i + 1))/24" dev wan0
    ip -n "k8s-aws$i" link set wan0 up
    ip -n k8s-wan link set "p-aws$i" master br0 up
    ip link add vpc0 netns "k8s-aws$i" type veth peer name "p-aws$i" netns k8s-vpc
    ip -n "k8s-aws$i" addr add "100.64.1.$((i + 1))/24" dev vpc0
    ip -n "k8s-aws$i" link set vpc0 up
    ip -n k8s-vpc link set "p-aws$i" master br0 up
    ip netns exec "k8s-aws$i" sysctl -qw net.ipv4.ip_forward=1
  done
  ip -n k8s-vpc route add 100.127.0.0/16 via 100.64.1.2
  k8s_aws_start 1 "$psk1"
  k8s_aws_start 2 "$psk2"
}

# k8s_aws_start N PSK: (re)start the strongSwan responder of tunnel N with that pre-shared key.
k8s_aws_start() {
  local i=$1 psk=$2 d="$K8S_LAB_DIR/aws$1" addr="198.51.100.$(($1 + 1))"
  k8s_aws_stop "$i"
  mkdir -p "$d"
  cat > "$d/strongswan.conf" <<EOF
charon {
  port = 500
  port_nat_t = 4500
  install_routes = yes
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
    aws {
      path = $d/charon.log
      default = 1
      ike = 2
      flush_line = yes
      time_format = %H:%M:%S
    }
  }
}
EOF
  cat > "$d/swanctl.conf" <<EOF
connections {
  aws {
    version = 2
    local_addrs = $addr
    proposals = $K8S_AWS_PROPOSAL
    encap = yes
    dpd_delay = 10s
    rekey_time = 8h
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
        local_ts = 0.0.0.0/0
        remote_ts = 0.0.0.0/0
        esp_proposals = $K8S_AWS_PROPOSAL
        rekey_time = 1h
        dpd_action = clear
      }
    }
  }
}
secrets {
  # No owner ids: as a responder charon looks the key up before it has picked its own id (it is still %any
  # unless the initiator sent IDr, which AWS does not require), so an id-bound key would not be found.
  ike-aws {
    secret = "$psk"
  }
}
EOF
  STRONGSWAN_CONF="$d/strongswan.conf" setsid ip netns exec "k8s-aws$i" unshare -m sh -c \
    'mount -t tmpfs tmpfs /run && exec /usr/lib/ipsec/charon' > "$d/charon.out" 2>&1 < /dev/null &
  echo $! > "$d/charon.pid"
  disown $! 2>/dev/null || true   # no "Killed" job notices from the calling script
  local n
  for n in $(seq 1 50); do [ -S "$d/charon.vici" ] && break; sleep 0.1; done
  k8s_swanctl "$i" --load-all --noprompt --file "$d/swanctl.conf" > "$d/load.out" 2>&1
}

# k8s_aws_stop N [SIGNAL]: TERM (default) lets charon send DELETEs; KILL makes the peer vanish silently (an outage,
# noticed only by DPD).
k8s_aws_stop() {
  local d="$K8S_LAB_DIR/aws$1" pid
  [ -f "$d/charon.pid" ] || return 0
  pid=$(cat "$d/charon.pid")
  kill "-${2:-TERM}" "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$d/charon.pid" "$d/charon.vici"
}

# k8s_swanctl N COMMAND [ARGS]: swanctl against charon N (the --uri option must follow the command).
k8s_swanctl() { local i=$1 c=$2; shift 2; swanctl "$c" --uri "unix://$K8S_LAB_DIR/aws$i/charon.vici" "$@"; }

# k8s_aws_child_spis N: "<in> <out>" SPIs of the installed CHILD_SAs as the AWS side sees them (one line per SA).
k8s_aws_child_spis() {
  k8s_swanctl "$1" --list-sas --raw 2>/dev/null | grep -o 'spi-in=[0-9a-f]* spi-out=[0-9a-f]*' \
    | sed 's/spi-in=//; s/spi-out=//'
}

k8s_aws_ike_count() { k8s_swanctl "$1" --list-sas --raw 2>/dev/null | grep -c 'state=ESTABLISHED' || true; }

k8s_lab_fail_over() { ip -n k8s-vpc route replace 100.127.0.0/16 via 100.64.1.3; }
k8s_lab_fail_back() { ip -n k8s-vpc route replace 100.127.0.0/16 via 100.64.1.2; }

k8s_lab_down() {
  k8s_aws_stop 1
  k8s_aws_stop 2
  local ns node
  node=$(cat "$K8S_LAB_DIR/node" 2>/dev/null || true)
  if [ -n "$node" ]; then
    ip -n "$node" link del k8s-iot1 2>/dev/null || true
    ip -n "$node" link del k8s-wan0 2>/dev/null || true
  fi
  for ns in "${K8S_LAB_NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
