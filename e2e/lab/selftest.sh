#!/usr/bin/env bash
# Proves the lab itself, before any iotrelay code is involved: a strongSwan charon in the relay namespace plays the
# customer gateway (kernel-libipsec, plus iptables DNAT/SNAT standing in for the relay -- only in this test) against
# the two AWS-like endpoints of e2e/lab/lib.sh. If this fails, the lab is broken, not iotrelay.
#
#   IoT 203.0.113.10 --> relay 203.0.113.1:7000 --DNAT/SNAT(100.127.0.1)--> ipsec0 ==ESP-in-UDP==> aws1|aws2
#        ^                                                                                        |
#        '------------------------------- echo from device 100.64.1.10:7000 <---------------------'
#
# Cases: tunnel1 up (one IKE SA + one installed CHILD_SA, SPIs equal on both ends), UDP round trip, CHILD and IKE
# rekeys from either side, tunnel2 + fail-over of the VPC route, AWS initiating (startup action start), DPD clear
# on the AWS side when the customer gateway vanishes, and the whole path through a real NAT (RFC 3948).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=e2e/lab/lib.sh
source "$HERE/lib.sh"
lab_need_root
trap 'lab_exit $? lab_down' EXIT
lab_traps

PSK1=lab_psk_tunnel1_0123
PSK2=lab_psk_tunnel2_4567
CGW_PROPOSAL=${CGW_PROPOSAL:-aes128-sha1-modp1024}
# Short DPD for the DPD-clear case; everything else AWS-like.
export LAB_AWS_DPD=${LAB_AWS_DPD:-5}

# cgw_start [START_ACTION1] [START_ACTION2]: the customer gateway charon in the relay namespace.
cgw_start() {
  local d=$LAB_DIR/cgw a1=${1:-none} a2=${2:-none} local_addr=$LAB_RELAY_PUBLIC
  [ "$LAB_NAT" = 1 ] && local_addr=$LAB_RELAY_PRIVATE
  lab_charon_stop "$d"
  mkdir -p "$d"
  lab_charon_conf "$d" yes
  {
    echo "connections {"
    local i
    for i in 1 2; do
      cat <<EOT
  tunnel$i {
    version = 2
    local_addrs = $local_addr
    remote_addrs = $(lab_aws_addr "$i")
    proposals = $CGW_PROPOSAL
    encap = yes
    mobike = no
    dpd_delay = 10s
    local { auth = psk
            id = $LAB_RELAY_PUBLIC }
    remote { auth = psk
             id = $(lab_aws_addr "$i") }
    children {
      tunnel$i {
        local_ts = $LAB_INSIDE/32
        remote_ts = $LAB_VPC
        esp_proposals = $CGW_PROPOSAL
        start_action = $([ "$i" = 1 ] && echo "$a1" || echo "$a2")
      }
    }
  }
EOT
    done
    echo "}"
    cat <<EOT
secrets {
  ike-1 { id = $(lab_aws_addr 1)
          secret = "$PSK1" }
  ike-2 { id = $(lab_aws_addr 2)
          secret = "$PSK2" }
}
EOT
  } > "$d/swanctl.conf"
  lab_charon_start "$LAB_NS_RELAY" "$d"
}
cgw() { lab_swanctl_dir "$LAB_DIR/cgw" "$@"; }

# The relay's job, done with iptables for this proof only.
relay_nat() {
  ip netns exec "$LAB_NS_RELAY" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$LAB_NS_RELAY" iptables -t nat -A PREROUTING -i iot0 -p udp --dport "$LAB_DEVICE_PORT" \
    -j DNAT --to-destination "$LAB_DEVICE:$LAB_DEVICE_PORT"
  ip netns exec "$LAB_NS_RELAY" iptables -t nat -A POSTROUTING -d "$LAB_VPC" -j SNAT --to-source "$LAB_INSIDE"
}

# one_sa_pair N: AWS endpoint N and the customer gateway each hold exactly one IKE SA and one installed CHILD_SA,
# and the SPIs agree (ours in == theirs out).
one_sa_pair() {
  local i=$1 aws cg
  aws=$(lab_sas_json "$i")
  cg=$(lab_sas_json "$LAB_DIR/cgw" | jq -c --arg n "tunnel$i" '[.[] | select(.name == $n)]')
  python3 - "$aws" "$cg" <<'PY' || return 1
import json, sys
aws, cg = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def one(sas, who):
    est = [s for s in sas if s["state"] == "ESTABLISHED"]
    if len(est) != 1:
        sys.exit("%s: %d established IKE SAs: %s" % (who, len(est), sas))
    ch = [c for c in est[0]["children"] if c["installed"]]
    if len(ch) != 1:
        sys.exit("%s: %d installed CHILD_SAs" % (who, len(ch)))
    return est[0], ch[0]
a, ac = one(aws, "aws")
c, cc = one(cg, "cgw")
if (a["initiator_spi"], a["responder_spi"]) != (c["initiator_spi"], c["responder_spi"]):
    sys.exit("IKE SPIs differ: aws %s/%s cgw %s/%s" % (a["initiator_spi"], a["responder_spi"], c["initiator_spi"], c["responder_spi"]))
if (ac["spi_in"], ac["spi_out"]) != (cc["spi_out"], cc["spi_in"]):
    sys.exit("CHILD SPIs differ: aws in/out %s/%s cgw in/out %s/%s" % (ac["spi_in"], ac["spi_out"], cc["spi_in"], cc["spi_out"]))
if not ac["encap"]:
    sys.exit("ESP not UDP-encapsulated")
PY
}
check_pair() { local e; e=$(one_sa_pair "$1" 2>&1) || lab_fail_why "$e"; }

round_trip() {
  local tag=$1-$RANDOM
  lab_ask "$LAB_NS_IOT" "$LAB_RELAY_IOT_ADDR" "$LAB_DEVICE_PORT" "$tag" 6 || { lab_fail_why "no echo for $tag"; return 1; }
  lab_device_seen "$tag" | grepq "^$LAB_INSIDE:" || lab_fail_why "device did not see $tag from $LAB_INSIDE"
}

child_spi_in() { lab_sas_json "$1" | jq -r '[.[].children[] | select(.installed)][0].spi_in'; }
ike_spi() { lab_sas_json "$1" | jq -r '.[0].ike_spi_local'; }

rekey_case() { # rekey_case N SIDE(aws|cgw) KIND(child|ike)
  local i=$1 side=$2 kind=$3 before after
  if [ "$kind" = child ]; then before=$(child_spi_in "$i"); else before=$(ike_spi "$i"); fi
  if [ "$side" = aws ]; then
    lab_swanctl "$i" --rekey "--$kind" aws > /dev/null 2>&1 || { lab_fail_why "swanctl --rekey failed"; return 1; }
  else
    cgw --rekey "--$kind" "tunnel$i" > /dev/null 2>&1 || { lab_fail_why "swanctl --rekey failed"; return 1; }
  fi
  spi_changed() {
    if [ "$kind" = child ]; then after=$(child_spi_in "$i"); else after=$(ike_spi "$i"); fi
    [ -n "$after" ] && [ "$after" != null ] && [ "$after" != "$before" ] && one_sa_pair "$i" 2> /dev/null
  }
  lab_wait 10 spi_changed || { check_pair "$i" || true; lab_fail_why "after $side $kind rekey: ${LAB_WHY:-SPI still $before}"; return 1; }
  round_trip "rekey-$side-$kind"
}

tunnel1_up() {
  cgw --initiate --child tunnel1 --timeout 15 > "$LAB_DIR/initiate1.out" 2>&1 \
    || { lab_fail_why "initiate failed: $(tail -3 "$LAB_DIR/initiate1.out")"; return 1; }
  check_pair 1
}

tunnel2_failover() {
  cgw --terminate --ike tunnel1 --timeout 10 > /dev/null 2>&1
  cgw --initiate --child tunnel2 --timeout 15 > "$LAB_DIR/initiate2.out" 2>&1 \
    || { lab_fail_why "initiate failed: $(tail -3 "$LAB_DIR/initiate2.out")"; return 1; }
  check_pair 2 || return 1
  lab_fail_over
  round_trip tunnel2
}

aws_initiates() {
  cgw --terminate --ike tunnel2 --timeout 10 > /dev/null 2>&1
  LAB_AWS_START=start lab_aws_start 2 "$PSK2" || { lab_fail_why "aws2 restart failed"; return 1; }
  lab_wait 15 one_sa_pair 2 2> /dev/null || { check_pair 2; return 1; }
  [ "$(lab_sas_json 2 | jq -r '.[0].initiator')" = true ] || { lab_fail_why "aws2 is not the initiator"; return 1; }
  round_trip aws-initiated
}

dpd_clear() {
  # The customer gateway vanishes: the AWS side must notice by DPD (5 s here, ~26 s of retransmissions) and clear.
  lab_charon_stop "$LAB_DIR/cgw" KILL
  no_sas() { [ "$(lab_sas_json 2 | jq 'length')" = 0 ]; }
  lab_wait 45 no_sas || lab_fail_why "aws2 still holds SAs 45 s after the peer died"
}

# Every `lab_case` line of this file is one case.
lab_expect "$(grep -c '^lab_case ' "$0")"
lab_case lab-up lab_up || exit 1
charons_up() { lab_aws_start 1 "$PSK1" && lab_aws_start 2 "$PSK2" && cgw_start && relay_nat \
  || lab_fail_why "see $LAB_DIR"; }
lab_case charon-start charons_up || exit 1

lab_case tunnel1-established tunnel1_up
lab_case tunnel1-round-trip round_trip tunnel1
lab_case child-rekey-by-aws rekey_case 1 aws child
lab_case child-rekey-by-cgw rekey_case 1 cgw child
lab_case ike-rekey-by-aws rekey_case 1 aws ike
lab_case ike-rekey-by-cgw rekey_case 1 cgw ike
lab_case tunnel2-failover tunnel2_failover
lab_case aws-initiates aws_initiates
lab_case aws-dpd-clear dpd_clear

# The same path through a real NAT (MASQUERADE with random ports): RFC 3948, nat-remote on the AWS side.
nat_setup() {
  lab_down
  LAB_NAT=1
  lab_names "$LAB_ID-n"
  lab_up && lab_aws_start 1 "$PSK1" && cgw_start && relay_nat || { lab_fail_why "NAT lab did not start"; return 1; }
  tunnel1_up || return 1
  [ "$(lab_sas_json 1 | jq -r '.[0].nat_remote')" = true ] || lab_fail_why "aws1 does not see the NAT"
}
lab_case nat-tunnel-established nat_setup
lab_case nat-round-trip round_trip nat
lab_case nat-child-rekey-by-aws rekey_case 1 aws child
lab_summary
