#!/usr/bin/env bash
# Captures real strongSwan IKEv2 messages as golden test vectors for crates/ikev2/tests/wire_golden.rs.
#
#   wr-i (initiator charon) 198.51.100.1 --veth-- 198.51.100.2 (responder charon) wr-r
#                                               tcpdump udp 500/4500 in wr-r
#
# For each case, two private charons (own strongswan.conf, vici socket, tmpfs /run, kernel-libipsec) set up one
# IKE SA; the IKE datagrams are written (non-ESP marker stripped) as hex, one file per message:
#   <case>-<n>-<exchange>-<request|response>.hex
# Cases: aes128-sha1-modp1024, aes256gcm16-prfsha384-ecp384, and a fragmented IKE_AUTH (RFC 7383 SKF, forced by
# a tiny fragment_size). Nonces and keys are random, so each run yields different bytes; tests only rely on the
# structure. Needs root, strongSwan (charon, swanctl), tcpdump, python3. Usage: capture.sh [OUTDIR]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE}
WORK=$(mktemp -d /tmp/wr-golden.XXXXXX)
NS_I=wr-i NS_R=wr-r
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  ip netns del $NS_I 2>/dev/null || true
  ip netns del $NS_R 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add $NS_I
ip netns add $NS_R
ip link add wr-veth-i netns $NS_I type veth peer name wr-veth-r netns $NS_R
ip -n $NS_I addr add 198.51.100.1/24 dev wr-veth-i
ip -n $NS_R addr add 198.51.100.2/24 dev wr-veth-r
for ns in $NS_I $NS_R; do ip -n $ns link set lo up; done
ip -n $NS_I link set wr-veth-i up
ip -n $NS_R link set wr-veth-r up

# conf DIR EXTRA: a strongswan.conf for a private charon.
conf() {
  cat > "$1/strongswan.conf" <<CONF
charon {
  port = 500
  port_nat_t = 4500
  install_routes = no
  $2
  plugins {
    vici { socket = unix://$1/charon.vici }
    kernel-libipsec { load = yes }
    bypass-lan { load = no }
    dhcp { load = no }
    farp { load = no }
    forecast { load = no }
    tpm { load = no }
  }
  filelog { wr { path = $1/charon.log
                 default = 1
                 ike = 2
                 flush_line = yes } }
}
CONF
}

# swanctl_conf DIR LOCAL REMOTE PROPOSAL ESP FRAGMENTATION
swanctl_conf() {
  cat > "$1/swanctl.conf" <<CONF
connections {
  c {
    version = 2
    local_addrs = $2
    remote_addrs = $3
    proposals = $4
    fragmentation = $6
    local { auth = psk
            id = $2 }
    remote { auth = psk
             id = $3 }
    children { c { local_ts = 0.0.0.0/0
                   remote_ts = 0.0.0.0/0
                   esp_proposals = $5 } }
  }
}
secrets { ike-1 { id-1 = 198.51.100.1
                  id-2 = 198.51.100.2
                  secret = "golden-capture-psk" } }
CONF
}

# start NS DIR: a private charon in NS; loads DIR/swanctl.conf.
start() {
  STRONGSWAN_CONF="$2/strongswan.conf" ip netns exec "$1" unshare -m sh -c \
    'mount -t tmpfs tmpfs /run && exec /usr/lib/ipsec/charon' > "$2/charon.out" 2>&1 < /dev/null &
  PIDS+=($!)
  for _ in $(seq 1 50); do [ -S "$2/charon.vici" ] && break; sleep 0.1; done
  swanctl --load-all --uri "unix://$2/charon.vici" --noprompt --file "$2/swanctl.conf" > "$2/load.out" 2>&1
}

# run_case NAME PROPOSAL ESP_PROPOSAL FRAGMENTATION EXTRA_CHARON_CONF
run_case() {
  local name=$1 d=$WORK/$1
  mkdir -p "$d/i" "$d/r"
  conf "$d/i" "$5"
  conf "$d/r" "$5"
  swanctl_conf "$d/i" 198.51.100.1 198.51.100.2 "$2" "$3" "$4"
  swanctl_conf "$d/r" 198.51.100.2 198.51.100.1 "$2" "$3" "$4"
  ip netns exec $NS_R tcpdump -i wr-veth-r --immediate-mode -U -s 0 -w "$d/cap.pcap" 'udp port 500 or udp port 4500' \
    > "$d/tcpdump.out" 2>&1 &
  local tcpdump=$!
  PIDS+=($tcpdump)
  for _ in $(seq 1 50); do grep -q listening "$d/tcpdump.out" && break; sleep 0.1; done
  start $NS_R "$d/r"
  start $NS_I "$d/i"
  sleep 0.5
  swanctl --initiate --uri "unix://$d/i/charon.vici" --child c --timeout 10 > "$d/initiate.out" 2>&1 \
    || { echo "capture: $name: initiate failed"; cat "$d/initiate.out" "$d/i/charon.log" >&2; return 1; }
  sleep 1
  kill "$tcpdump"; wait "$tcpdump" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [ "$p" = "$tcpdump" ] || kill "$p" 2>/dev/null || true; done
  # The next case binds port 500 again: wait until both charons are gone.
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  python3 - "$d/cap.pcap" "$OUT" "$name" <<'PY'
import struct, sys
pcap, out, name = sys.argv[1:]
data = open(pcap, "rb").read()
magic = struct.unpack("<I", data[:4])[0]
e = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
linktype = struct.unpack(e + "I", data[20:24])[0]
pos, n = 24, 0
names = {34: "ike_sa_init", 35: "ike_auth", 36: "create_child_sa", 37: "informational"}
while pos + 16 <= len(data):
    incl = struct.unpack(e + "I", data[pos + 8:pos + 12])[0]
    frame = data[pos + 16:pos + 16 + incl]
    pos += 16 + incl
    off = 14 if linktype == 1 else 16  # Ethernet or Linux cooked
    ip = frame[off:]
    if ip[0] >> 4 != 4 or ip[9] != 17:
        continue
    udp = ip[(ip[0] & 15) * 4:]
    sport, dport = struct.unpack(">HH", udp[:4])
    ike = udp[8:]
    if 4500 in (sport, dport):
        if ike[:4] != b"\0\0\0\0":
            continue  # ESP, not IKE
        ike = ike[4:]
    if len(ike) < 28:
        continue
    n += 1
    kind = names.get(ike[18], "x%d" % ike[18])
    role = "response" if ike[19] & 0x20 else "request"
    with open("%s/%s-%d-%s-%s.hex" % (out, name, n, kind, role), "w") as f:
        h = ike.hex()
        f.write("\n".join(h[i:i + 64] for i in range(0, len(h), 64)) + "\n")
print("capture: %s: %d IKE messages" % (name, n))
PY
  PIDS=()
}

rm -f "$OUT"/*.hex
run_case aes128-sha1-modp1024 aes128-sha1-modp1024 aes128-sha1-modp1024 yes ""
run_case aes256gcm16-prfsha384-ecp384 aes256gcm16-prfsha384-ecp384 aes256gcm16-ecp384 yes ""
run_case skf aes128-sha256-modp2048 aes128-sha256 force "fragment_size = 300"
