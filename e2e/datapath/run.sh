#!/usr/bin/env bash
# The datapath: `iotrelay-sidecar standalone` in the relay namespace of e2e/lab/lib.sh, two AWS-like strongSwan
# tunnel endpoints, a device that echoes UDP:
#
#   IoT 203.0.113.10 --UDP :7000--> relay (iotrelay) ==ESP-in-UDP 4500==> aws1 198.51.100.2 --\
#   (203.0.113.11: not allowed)     198.51.100.1      ==================> aws2 198.51.100.3 ----> device 100.64.1.10
#                                   inside 100.127.0.1                                          (echo, :7000)
#
# Cases: round trip; source outside allowedSources dropped+counted; no tunnel -> noTunnel; wrong PSK ->
# Stalled/AuthenticationFailed with bounded retries; tunnel1's peer dies -> tunnel2 within the DPD timeout,
# Degraded True then False; relay crash+restart -> one IKE SA + one CHILD_SA per tunnel on the AWS side; traffic
# across >= 5 CHILD rekeys from each side with zero loss; malformed/replayed/unknown-SPI ESP and garbage on 4500
# counted without a crash; a forward-port flood from a disallowed source; the same relay behind a real NAT. Usage: e2e/datapath/run.sh [CASE-PREFIX...]
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=e2e/lab/lib.sh
source "$HERE/../lab/lib.sh"
# shellcheck source=e2e/lab/relay.sh
source "$HERE/../lab/relay.sh"
lab_need_root
trap 'lab_exit $? relay_stop lab_down' EXIT
lab_traps
lab_select "$@"

IOT_OTHER=203.0.113.11
alive() { relay_alive || { lab_fail_why "relay not running${RELAY_START_WHY:+ ($RELAY_START_WHY)}"; return 1; }; }
ask() { lab_ask "$LAB_NS_IOT" "$LAB_RELAY_IOT_ADDR" "$LAB_DEVICE_PORT" "$1" "${2:-6}"; }
fwd() { local v; v=$(relay_jq ".forwards[0].$1 // 0"); echo "${v:-0}"; }
dp() { local v; v=$(relay_jq ".datapath.drops.$1 // 0"); echo "${v:-0}"; }
# Re-evaluated on every poll (for lab_wait): a counter above N, a condition with that status [and reason].
fwd_gt() { [ "$(fwd "$1")" -gt "$2" ]; }
dp_gt() { [ "$(dp "$1")" -gt "$2" ]; }
cond_is() { [ "$(relay_condition "$1")" = "$2" ] || [ "$(relay_condition "$1" | cut -d' ' -f1)" = "$2" ]; }
both_up() { relay_tunnel_established tunnel1 && relay_tunnel_established tunnel2; }

# (re)start the relay with the current RELAY_* env; RELAY_START_WHY explains a failed start in later cases.
start_relay() {
  relay_yaml "$LAB_DIR/relay.yaml"
  RELAY_START_WHY=""
  relay_start "$LAB_DIR/relay.yaml" || RELAY_START_WHY=$LAB_WHY
}

no_tunnel() {
  alive || return 1
  local before after
  before=$(fwd drops.noTunnel)
  ask "no-tunnel-$RANDOM" 2 && { lab_fail_why "an echo came back with no AWS endpoint running"; return 1; }
  after=$(fwd drops.noTunnel)
  [ "$after" -gt "$before" ] || lab_fail_why "drops.noTunnel stayed $after"
}

round_trip() {
  alive || return 1
  lab_wait 30 both_up || { lab_fail_why "tunnels not both Established within 30 s"; return 1; }
  local tag=rt-$RANDOM in0
  in0=$(fwd packetsIn)
  ask "$tag" || { lab_fail_why "no echo"; return 1; }
  lab_device_seen "$tag" | grepq "^$LAB_INSIDE:" || { lab_fail_why "device did not see the packet from $LAB_INSIDE"; return 1; }
  lab_wait 12 fwd_gt packetsIn "$in0" || { lab_fail_why "forwards[0].packetsIn not counted"; return 1; }
  [ "$(fwd packetsOut)" -gt 0 ] || lab_fail_why "forwards[0].packetsOut is 0"
}

source_not_allowed() {
  alive || return 1
  local before tag=denied-$RANDOM
  before=$(fwd drops.sourceNotAllowed)
  UDP_FROM=$IOT_OTHER ask "$tag" 2 && { lab_fail_why "a source outside allowedSources got an echo"; return 1; }
  lab_device_seen "$tag" > /dev/null && { lab_fail_why "the device received it"; return 1; }
  lab_wait 12 fwd_gt drops.sourceNotAllowed "$before" \
    || lab_fail_why "drops.sourceNotAllowed stayed $before"
}

wrong_psk() {
  alive || return 1
  local log c t1 t2 gap
  log="$(lab_aws_dir 1)/charon.log"
  lab_wait 30 cond_is Stalled "True AuthenticationFailed" \
    || { lab_fail_why "Stalled is '$(relay_condition Stalled)', want 'True AuthenticationFailed'"; return 1; }
  # The backoff (30 s doubling to 5 min; pinned on a virtual clock in crates/ikev2/tests/failure_table.rs): the refused
  # attempt is followed by exactly one retry about 30 s later. Zero retries or a hot loop fail here.
  c=$(grep -c 'parsed IKE_SA_INIT request' "$log")
  attempts_gt() { [ "$(grep -c 'parsed IKE_SA_INIT request' "$log")" -gt "$1" ]; }
  lab_wait 45 attempts_gt "$c" || { lab_fail_why "no retry within 45 s of a refused attempt (want one after 30 s)"; return 1; }
  alive || return 1
  # The gap between the last refused attempt and its retry, from charon's own timestamps (HH:MM:SS).
  t1=$(grep 'parsed IKE_SA_INIT request' "$log" | sed -n "${c}p" | cut -c1-8)
  t2=$(grep 'parsed IKE_SA_INIT request' "$log" | sed -n "$((c + 1))p" | cut -c1-8)
  gap=$(( ($(date -d "$t2" +%s) - $(date -d "$t1" +%s) + 86400) % 86400 ))
  [ "$gap" -ge 28 ] && [ "$gap" -le 40 ] || { lab_fail_why "retry $gap s after the refused attempt (want 30 s, 28..40)"; return 1; }
  # ... and the next retry waits 60 s: none within 40 s of this one.
  lab_wait 40 attempts_gt "$((c + 1))" && { lab_fail_why "a second retry within 40 s of the first (want 60 s)"; return 1; }
  echo "# retry $gap s after the refused attempt, none in the 40 s after it" >&2
  return 0
}

# tun I FIELD: a field of tunnel I's status (0 when absent; `false` stays false, unlike jq's `//`).
tun() { local v; v=$(relay_jq ".tunnels[$1].$2 | if . == null then 0 else . end"); echo "${v:-0}"; }
failover() {
  alive || return 1
  lab_wait 30 both_up || { lab_fail_why "tunnels not both Established"; return 1; }
  # Before the outage tunnel1 is the active tunnel and carries the traffic.
  [ "$(tun 0 active)" = true ] && [ "$(tun 1 active)" = false ] \
    || { lab_fail_why "active before the outage: tunnel1 $(tun 0 active), tunnel2 $(tun 1 active)"; return 1; }
  local out1 out2 t0 ok=0 dead=""
  out1=$(tun 0 childSa.packetsOut)
  ask "pre-failover-$RANDOM" || { lab_fail_why "no echo before the outage"; return 1; }
  lab_wait 12 eval '[ "$(tun 0 childSa.packetsOut)" -gt "$out1" ]' \
    || { lab_fail_why "the pre-outage packet did not leave on tunnel1"; return 1; }
  out2=$(tun 1 childSa.packetsOut)
  lab_aws_stop 1 KILL   # the peer vanishes silently: only DPD can tell
  lab_fail_over         # AWS sends return traffic over its remaining tunnel
  t0=$SECONDS
  # DPD every 10 s, dead after 30 s: tunnel1 leaves Established 30..40 s after its peer died; 25..45 s with slack
  # (measured: 32 s).
  while [ $((SECONDS - t0)) -lt 45 ]; do
    [ -z "$dead" ] && [ "$(tun 0 state)" != Established ] && dead=$((SECONDS - t0))
    if [ -n "$dead" ] && ask "failover-$RANDOM" 1; then ok=1; break; fi
    [ -n "$dead" ] || sleep 0.5
  done
  [ -n "$dead" ] || { lab_fail_why "tunnel1 still Established 45 s after its peer died"; return 1; }
  [ "$dead" -ge 25 ] || { lab_fail_why "tunnel1 declared dead after $dead s (DPD timeout 30 s: too early)"; return 1; }
  [ "$ok" = 1 ] || { lab_fail_why "no echo within 45 s (DPD timeout 30 s) after tunnel1's peer died"; return 1; }
  # The status is republished once a second: wait for the echo's packet to show in tunnel2's counter.
  [ "$(tun 1 active)" = true ] && lab_wait 5 eval '[ "$(tun 1 childSa.packetsOut)" -gt "$out2" ]' \
    || { lab_fail_why "tunnel2 did not carry the traffic (active $(tun 1 active), packetsOut $out2 -> $(tun 1 childSa.packetsOut))"; return 1; }
  [ "$(tun 0 state)" = Connecting ] && [ "$(tun 0 lastError)" = "peer did not answer (dead peer detection)" ] \
    || { lab_fail_why "tunnel1: state '$(tun 0 state)', lastError '$(tun 0 lastError)'"; return 1; }
  lab_wait 15 cond_is Degraded True \
    || { lab_fail_why "Degraded is '$(relay_condition Degraded)' with tunnel1 down"; return 1; }
  echo "# tunnel1 dead after $dead s, traffic on tunnel2 after $((SECONDS - t0)) s" >&2
}

failback() {
  alive || return 1
  lab_aws_start 1 "$RELAY_PSK1" || { lab_fail_why "aws1 did not restart"; return 1; }
  lab_wait 90 relay_tunnel_established tunnel1 || { lab_fail_why "tunnel1 not re-established within 90 s"; return 1; }
  lab_wait 15 cond_is Degraded False \
    || { lab_fail_why "Degraded is '$(relay_condition Degraded)' with both tunnels up"; return 1; }
  lab_fail_back
  ask "failback-$RANDOM" || lab_fail_why "no echo after fail-back"
}

restart() {
  alive || return 1
  lab_wait 30 both_up || { lab_fail_why "tunnels not both Established before the restart"; return 1; }
  relay_stop KILL   # a crash: AWS still holds the old SAs; INITIAL_CONTACT must clear them
  start_relay
  alive || return 1
  lab_wait 30 both_up || { lab_fail_why "tunnels not re-established within 30 s"; return 1; }
  lab_wait 10 relay_matches_aws 1 || { lab_fail_why "tunnel1: $LAB_WHY"; return 1; }
  lab_wait 10 relay_matches_aws 2 || { lab_fail_why "tunnel2: $LAB_WHY"; return 1; }
  ask "restart-$RANDOM" || lab_fail_why "no echo after restart"
}

# Continuous traffic (50 packets/s) while 5 CHILD rekeys come from AWS and 5 from the relay: nothing may be lost.
rekeys_no_loss() {
  alive || return 1
  lab_wait 30 relay_tunnel_established tunnel1 || { lab_fail_why "tunnel1 not Established"; return 1; }
  local out=$LAB_DIR/stream.json k spis=() s in0 sp r
  in0=$(fwd packetsIn)
  ip netns exec "$LAB_NS_IOT" python3 "$LAB_HERE/udp.py" stream "$LAB_RELAY_IOT_ADDR" "$LAB_DEVICE_PORT" 45 50 \
    > "$out" 2>&1 &
  sp=$!
  lab_wait 10 fwd_gt packetsIn "$in0" || { lab_fail_why "the stream did not start"; kill "$sp"; return 1; }
  # rekey_done SIDE: rekey tunnel1's CHILD_SA from SIDE, wait until both ends agree on the new SA pair.
  rekey_done() {
    local before now
    before=$(relay_jq '.tunnels[0].childSa.inboundSpi')
    if [ "$1" = aws ]; then lab_swanctl 1 --rekey --child aws > /dev/null 2>&1 || { lab_fail_why "swanctl --rekey failed"; return 1; }
    else relay_rekey tunnel1 child || { lab_fail_why "POST /rekey failed"; return 1; }; fi
    new_pair() { now=$(relay_jq '.tunnels[0].childSa.inboundSpi'); [ -n "$now" ] && [ "$now" != null ] \
      && [ "$now" != "$before" ] && relay_matches_aws 1; }
    lab_wait 15 new_pair || { lab_fail_why "rekey by $1: ${LAB_WHY:-no new SA pair in 15 s}"; return 1; }
    spis+=("$now")
  }
  for k in 1 2 3 4 5; do
    rekey_done aws || break
    rekey_done relay || break
  done
  # All ten happened under traffic.
  kill -0 "$sp" 2>/dev/null || [ -n "$LAB_WHY" ] || lab_fail_why "the stream ended before the 10 rekeys (${#spis[@]} done)"
  wait "$sp"
  r=$(cat "$out")
  [ -n "$LAB_WHY" ] && return 1
  s=$(printf '%s\n' "${spis[@]}" | sort -u | grep -vc '^null$\|^$')
  [ "$s" -ge 10 ] || { lab_fail_why "only $s distinct inbound SPIs over 10 rekeys"; return 1; }
  relay_matches_aws 1 || return 1
  [ "$(echo "$r" | jq -r .lost 2>/dev/null)" = 0 ] || lab_fail_why "stream: $r"
}

# The relay's ESP lifetime is 20 s, AWS's 1 h (its earliest rekey is 51 min away), under 60 s of continuous
# traffic: every rekey here is one the relay started because of its lifetime, and nothing is lost.
rekeys_by_lifetime() {
  alive || return 1
  lab_wait 30 relay_tunnel_established tunnel1 || { lab_fail_why "tunnel1 not Established"; return 1; }
  local out=$LAB_DIR/stream2.json sp n log aws0 aws1
  log="$(lab_aws_dir 1)/charon.log"
  aws0=$(grep -c 'generating CREATE_CHILD_SA request' "$log")
  : > "$LAB_DIR/spis"
  ip netns exec "$LAB_NS_IOT" python3 "$LAB_HERE/udp.py" stream "$LAB_RELAY_IOT_ADDR" "$LAB_DEVICE_PORT" 60 50 \
    > "$out" 2>&1 &
  sp=$!
  # Sampled every second (each CHILD_SA lives at least 12 s) while the stream runs.
  while kill -0 "$sp" 2>/dev/null; do relay_jq '.tunnels[0].childSa.inboundSpi' >> "$LAB_DIR/spis"; sleep 1; done
  wait "$sp"
  n=$(grep -v '^null$' "$LAB_DIR/spis" | grep . | uniq | wc -l)
  aws1=$(grep -c 'generating CREATE_CHILD_SA request' "$log")
  [ "$aws1" = "$aws0" ] || { lab_fail_why "the AWS side started $((aws1 - aws0)) CREATE_CHILD_SA exchanges"; return 1; }
  # The relay rekeys 12-14 s after each new CHILD_SA (20 s lifetime, 30% margin, up to 2 s jitter): at least 4
  # rekeys (5 SPIs) in 60 s.
  [ "$n" -ge 5 ] || { lab_fail_why "only $((n - 1)) rekeys in 60 s (want at least 4)"; return 1; }
  echo "# $((n - 1)) rekeys started by the relay in 60 s, none by the AWS side" >&2
  [ "$(jq -r .lost "$out" 2>/dev/null)" = 0 ] || { lab_fail_why "stream: $(cat "$out")"; return 1; }
  lab_wait 10 relay_matches_aws 1
}

# Hostile input on UDP 4500 from the AWS side's address: counted, never a crash, tunnel still works.
hostile_esp() {
  alive || return 1
  lab_wait 30 relay_tunnel_established tunnel1 || { lab_fail_why "tunnel1 not Established"; return 1; }
  local aws=$LAB_ID-aws1 src spi pkt m0 u0 r0 i0
  src=$(lab_aws_addr 1)
  spi=$(relay_jq '.tunnels[0].childSa.inboundSpi')
  # Capture genuine inbound ESP for the replay case.
  ip netns exec "$LAB_NS_RELAY" timeout 20 tcpdump -i wan0 -U -c 1 -w "$LAB_DIR/esp.pcap" \
    "udp and src host $src and src port 4500 and greater 90 and udp[8:4] != 0" > "$LAB_DIR/tcpdump.log" 2>&1 &
  local tp=$!
  lab_wait 10 grep -q 'listening on' "$LAB_DIR/tcpdump.log" || { lab_fail_why "tcpdump did not start"; return 1; }
  ask "capture-$RANDOM" || { lab_fail_why "no echo"; return 1; }
  wait "$tp" 2>/dev/null   # -c 1: ends once it has written the echo's ESP packet
  pkt=$(python3 "$LAB_HERE/udp.py" pcap-esp "$LAB_DIR/esp.pcap" 1) || { lab_fail_why "no ESP captured"; return 1; }
  m0=$(dp malformed); u0=$(dp unknownSpi); r0=$(dp replay); i0=$(dp integrity)
  sp() { ip netns exec "$aws" python3 "$LAB_HERE/udp.py" spoof "$src" 4500 "$LAB_RELAY_PUBLIC" 4500 "$1"; }
  sp "$pkt"; sp "$pkt"                                              # replayed ESP
  sp "deadbeef00000001$(head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \n')"   # unknown SPI
  # our SPI, a well-formed length for AES-CBC + HMAC-SHA1-96 (IV 16 + 2 blocks + ICV 12), random ICV
  sp "${spi}00000fff$(head -c 60 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  sp "${spi}00"                                                     # truncated ESP
  sp "00000000$(head -c 40 /dev/urandom | od -An -tx1 | tr -d ' \n')"           # garbage "IKE" on 4500
  sp "0102"                                                         # garbage too short for anything
  lab_wait 12 dp_gt replay "$r0" || { lab_fail_why "replay stayed $r0"; return 1; }
  lab_wait 12 dp_gt unknownSpi "$u0" || { lab_fail_why "unknownSpi stayed $u0"; return 1; }
  lab_wait 12 dp_gt integrity "$i0" || { lab_fail_why "integrity stayed $i0"; return 1; }
  lab_wait 12 dp_gt malformed "$m0" || { lab_fail_why "malformed stayed $m0"; return 1; }
  alive || { lab_fail_why "the relay died"; return 1; }
  ask "after-garbage-$RANDOM" || lab_fail_why "no echo after the garbage"
}

# An 8 s flood of 1400-octet datagrams to the forward port from a source outside allowedSources.
# The readers drop it before it is queued: 10 of 10 admin round trips (one try each) succeed meanwhile, the relay's
# peak RSS stays under FLOOD_RSS_MAX_KB (before the ingress lanes: 42 MiB peak, admin 5-8 of 10), and the flood is
# counted as sourceNotAllowed.
FLOOD_RSS_MAX_KB=${FLOOD_RSS_MAX_KB:-32768}
relay_rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$(cat "$LAB_DIR/relay.pid")/status" 2>/dev/null || echo 0; }
forward_flood() {
  alive || return 1
  lab_wait 30 both_up || { lab_fail_why "tunnels not both Established within 30 s"; return 1; }
  ask "pre-flood-$RANDOM" || { lab_fail_why "no echo before the flood"; return 1; }
  local na0 fp ok=0 rss peak=0 i
  na0=$(fwd drops.sourceNotAllowed)
  ip netns exec "$LAB_NS_IOT" env UDP_FROM="$IOT_OTHER" python3 "$LAB_HERE/udp.py" flood \
    "$LAB_RELAY_IOT_ADDR" "$LAB_DEVICE_PORT" 8 1400 > "$LAB_DIR/flood.json" 2>&1 &
  fp=$!
  sleep 1
  for i in $(seq 1 10); do
    UDP_TRIES=1 ask "flood-admin-$i-$RANDOM" 2 && ok=$((ok + 1))
    rss=$(relay_rss_kb); [ "$rss" -gt "$peak" ] && peak=$rss
    sleep 0.3
  done
  while kill -0 "$fp" 2>/dev/null; do
    rss=$(relay_rss_kb); [ "$rss" -gt "$peak" ] && peak=$rss
    sleep 0.2
  done
  wait "$fp"
  echo "# flood: $(cat "$LAB_DIR/flood.json"); admin $ok/10; relay peak RSS ${peak} kB" >&2
  alive || { lab_fail_why "the relay died under the flood"; return 1; }
  [ "$ok" = 10 ] || { lab_fail_why "only $ok of 10 admin round trips during the flood"; return 1; }
  [ "$peak" -gt 0 ] && [ "$peak" -lt "$FLOOD_RSS_MAX_KB" ] \
    || { lab_fail_why "relay peak RSS ${peak} kB (bound ${FLOOD_RSS_MAX_KB} kB)"; return 1; }
  lab_wait 12 fwd_gt drops.sourceNotAllowed $((na0 + 1000)) \
    || lab_fail_why "sourceNotAllowed grew only from $na0 to $(fwd drops.sourceNotAllowed)"
}

nat() {
  relay_stop
  lab_down
  LAB_NAT=1
  lab_names "$LAB_ID-nat"
  lab_up && lab_aws_start 1 "$RELAY_PSK1" && lab_aws_start 2 "$RELAY_PSK2" \
    || { lab_fail_why "NAT lab did not start"; return 1; }
  start_relay
  alive || return 1
  lab_wait 30 both_up || { lab_fail_why "tunnels not Established through the NAT within 30 s"; return 1; }
  [ "$(lab_sas_json 1 | jq -r '.[0].nat_remote')" = true ] || { lab_fail_why "aws1 does not see the NAT"; return 1; }
  relay_matches_aws 1 || return 1
  ask "nat-$RANDOM" || lab_fail_why "no echo through the NAT"
}

# Every `run` line below is one case (selected or skipped); lab-up is one more.
lab_expect $(($(grep -c '^ *lab_run [a-z]' "$0") + 1))
lab_case lab-up lab_up || exit 1
ip -n "$LAB_NS_IOT" addr add "$IOT_OTHER/24" dev iot0
export RELAY_TUNNELS=2 RELAY_STARTUP=Start

# 1. No AWS endpoint yet: packets are dropped as noTunnel.
if lab_wanted no-tunnel; then start_relay; fi
lab_run no-tunnel no_tunnel

# 2. Wrong PSK on tunnel1 (one tunnel only).
if lab_wanted wrong-psk; then
  lab_aws_start 1 "$RELAY_PSK1"
  RELAY_TUNNELS=1 RELAY_PSK_SENT1=wrong_psk_9876 start_relay
fi
lab_run wrong-psk wrong_psk

# 3. The normal relay with both tunnels.
lab_aws_start 1 "$RELAY_PSK1"; lab_aws_start 2 "$RELAY_PSK2"
start_relay
lab_run round-trip round_trip
lab_run source-not-allowed source_not_allowed
lab_run hostile-esp hostile_esp
lab_run forward-flood forward_flood
lab_run relay-restart restart
lab_run failover-dpd failover
lab_run failover-degraded-clears failback

# 4. Rekeys under traffic (short lifetimes allowed, rekeys triggered from both sides).
if lab_wanted rekeys-10; then IOTRELAY_UNSAFE_SHORT_LIFETIMES=1 start_relay; fi
lab_run rekeys-10-no-loss rekeys_no_loss
# Only the relay's lifetime is short: the AWS side keeps its 1 h CHILD_SA lifetime, so every rekey in this case
# is one the relay started by itself.
if lab_wanted rekeys-by; then
  lab_aws_stop 2
  RELAY_TUNNELS=1 RELAY_ESP_LIFETIME=20s IOTRELAY_UNSAFE_SHORT_LIFETIMES=1 start_relay
fi
lab_run rekeys-by-lifetime-no-loss rekeys_by_lifetime
if lab_wanted rekeys-by; then lab_aws_start 2 "$RELAY_PSK2"; fi

# 5. Behind a NAT (last: it rebuilds the lab).
lab_run nat nat
relay_stop
lab_summary
