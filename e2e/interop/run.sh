#!/usr/bin/env bash
# Interop: our IKEv2 engine (inside `iotrelay-sidecar standalone`) against strongSwan configured like an
# AWS tunnel (e2e/lab/lib.sh), in network namespaces:
#
#   lab-*-relay (iotrelay, 198.51.100.1)  ==IKE/ESP-in-UDP==>  lab-*-aws1 (charon + kernel-libipsec, 198.51.100.2)
#   IoT 203.0.113.10 -> relay :7000 ...................................................> device 100.64.1.10 (echo)
#
# For each suite, both directions: our initiator vs the AWS-like responder (AWS offers its whole proposal set), and
# strongSwan initiating ("startup action start", offering only that suite) to our responder (startupAction Add).
# After establishment and after a CHILD rekey and an IKE rekey initiated from each side, `swanctl --list-sas` must
# show exactly one IKE SA and one installed CHILD_SA whose SPIs equal the relay's /status, and a UDP round trip
# through the tunnel must work. Then both ends rekey at once (a CHILD and an IKE rekey collision), same checks.
# Usage: e2e/interop/run.sh [SUITE...]
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=e2e/lab/lib.sh
source "$HERE/../lab/lib.sh"
# shellcheck source=e2e/lab/relay.sh
source "$HERE/../lab/relay.sh"
lab_need_root
# strongSwan logs the derived keys: the last case scans everything the relay printed for them.
export LAB_AWS_LOG_KEYS=1
trap 'lab_exit $? relay_stop lab_down' EXIT
lab_traps

SUITES=("$@")
[ ${#SUITES[@]} -eq 0 ] && SUITES=(aes128-sha1-modp1024 aes256-sha256-modp2048 aes128gcm16-prfsha256-ecp256
  aes256gcm16-prfsha384-ecp384)

# The suite as strongSwan reports the negotiated IKE SA (and the relay's status proposal format).
ike_name() {
  case $1 in
    aes128-sha1-modp1024) echo AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024 ;;
    aes256-sha256-modp2048) echo AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048 ;;
    aes128gcm16-prfsha256-ecp256) echo AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256 ;;
    aes256gcm16-prfsha384-ecp384) echo AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384 ;;
    *) echo "?" ;;
  esac
}
# ESP proposal for a suite: AEAD suites have no PRF in ESP.
esp_of() { echo "$1" | sed 's/-prfsha[0-9]*//'; }

alive() { relay_alive || { lab_fail_why "relay not running${RELAY_START_WHY:+ ($RELAY_START_WHY)}"; return 1; }; }

round_trip() {
  local tag=$1-$RANDOM
  lab_ask "$LAB_NS_IOT" "$LAB_RELAY_IOT_ADDR" "$LAB_DEVICE_PORT" "$tag" 6 || { lab_fail_why "no echo for $tag"; return 1; }
}

established() {
  local suite=$1 got
  alive || return 1
  lab_wait 20 relay_tunnel_established tunnel1 || { lab_fail_why "relay tunnel1 not Established within 20 s"; return 1; }
  lab_wait 5 relay_matches_aws 1 || return 1
  got=$(lab_sas_json 1 | jq -r '.[0].proposal')
  [ "$got" = "$(ike_name "$suite")" ] || { lab_fail_why "AWS side negotiated $got"; return 1; }
  round_trip established
}

# rekey SIDE(aws|relay) KIND(child|ike): trigger, then wait for new SPIs on both ends that still match.
rekey() {
  local side=$1 kind=$2 before
  alive || return 1
  before=$(spi "$kind")
  if [ "$side" = aws ]; then
    lab_swanctl 1 --rekey "--$kind" aws > /dev/null 2>&1 || { lab_fail_why "swanctl --rekey --$kind failed"; return 1; }
  else
    relay_rekey tunnel1 "$kind" || { lab_fail_why "POST /rekey?sa=$kind failed"; return 1; }
  fi
  changed() { local now; now=$(spi "$kind"); [ -n "$now" ] && [ "$now" != null ] && [ "$now" != "$before" ] \
    && relay_matches_aws 1; }
  lab_wait 15 changed || { lab_fail_why "after $kind rekey by $side: ${LAB_WHY:-SPI unchanged ($before)}"; return 1; }
  round_trip "rekey-$side-$kind"
}
# collide KIND(child|ike): both ends rekey the same SA at once (RFC 7296 §2.8.1/§2.8.2). Their first requests are
# dropped in the relay's namespace; then both processes are frozen and the drop lifted. Once both retransmission
# timers are overdue, strongSwan is thawed first: its retransmitted request waits in the frozen relay's socket, so
# the relay, thawed a second later, reads the peer's rekey while its own is in flight, and its own retransmission
# reaches strongSwan while strongSwan's exchange is still open. Afterwards: exactly one IKE SA and one CHILD_SA
# pair, equal on both ends, the relay's collision counter moved, and traffic flows.
collide() {
  local kind=$1 attempt
  # Whether both requests really cross depends on scheduling (a DPD in flight on either side delays a rekey):
  # up to three attempts to produce one. Every attempt must end consistent and carry traffic.
  for attempt in 1 2 3; do
    collide_once "$kind" || return 1
    [ "$COLLIDED" = 1 ] && return 0
    echo "# attempt $attempt: the rekeys did not cross; again" >&2
  done
  lab_fail_why "no collision happened in 3 attempts"
  return 1
}
collide_once() {
  local kind=$1 before n0 n1 relay_pid aws_pids c0 c1 log
  COLLIDED=0
  alive || return 1
  # Start from a quiet tunnel: the SAs replaced by the previous step deleted, no exchange in flight.
  quiet() { [ "$(lab_sas_json 1 | jq '[length, ([.[].children[]] | length)] == [1, 1]')" = true ]; }
  lab_wait 15 quiet || { lab_fail_why "AWS side still holds replaced SAs: $(lab_sas_json 1 | jq -c .)"; return 1; }
  before=$(spi "$kind")
  n0=$(relay_collisions)
  log="$(lab_aws_dir 1)/charon.log"
  c0=$(grep -ci collision "$log")
  ip netns exec "$LAB_NS_RELAY" nft -f - <<'NFT' || { lab_fail_why "nft failed"; return 1; }
table inet lab_hold {
  chain in { type filter hook input priority 0; udp sport { 500, 4500 } drop; }
  chain out { type filter hook output priority 0; udp dport { 500, 4500 } drop; }
}
NFT
  lab_swanctl 1 --rekey "--$kind" aws > /dev/null 2>&1 || true
  relay_rekey tunnel1 "$kind" || { lab_fail_why "POST /rekey?sa=$kind failed"; }
  sleep 0.5
  relay_pid=$(cat "$LAB_DIR/relay.pid")
  aws_pids=$(ip netns pids "$LAB_ID-aws1" | tr '\n' ' ')
  # shellcheck disable=SC2086
  kill -STOP "$relay_pid" $aws_pids
  ip netns exec "$LAB_NS_RELAY" nft delete table inet lab_hold
  sleep 2.5
  # shellcheck disable=SC2086
  kill -CONT $aws_pids
  sleep 1
  kill -CONT "$relay_pid"
  changed() { local now; now=$(spi "$kind"); [ -n "$now" ] && [ "$now" != null ] && [ "$now" != "$before" ] \
    && relay_matches_aws 1; }
  lab_wait 20 changed || { lab_fail_why "after a $kind rekey collision: ${LAB_WHY:-SPI unchanged ($before)}"; return 1; }
  round_trip "collide-$kind" || return 1
  # A collision counts when the relay's own metric (iotrelay_ike_rekey_collisions_total) says so. The relay counts
  # it when its own exchange completes, which may be the last thing that happens, and republishes counters once a
  # second: give the metric a few seconds to move.
  counted() { [ "$(relay_collisions)" -gt "$n0" ]; }
  lab_wait 3 counted && COLLIDED=1
  n1=$(relay_collisions)
  c1=$(grep -ci collision "$log")
  echo "# $kind collision seen by: relay $((n1 - n0)), strongSwan $((c1 - c0))" >&2
}
relay_collisions() { relay_metric iotrelay_ike_rekey_collisions_total; }
spi() {
  if [ "$1" = child ]; then lab_sas_json 1 | jq -r '[.[].children[] | select(.installed)][0].spi_in'
  else lab_sas_json 1 | jq -r '.[0].ike_spi_local'; fi
}

# IKE_SA_INIT requests spoofed from the AWS endpoint's address (a raw socket in aws1's namespace, a random
# source port and SPI each): one offering only 3DES (before: the relay dropped its SAs within 3 s), then a burst of
# 200 acceptable ones. The relay answers statelessly or with cookies; both ends keep the same SAs, which are waited
# on for 40 s (they would change within seconds if the INITs reached them), and traffic still flows.
relay_metric() {
  relay_curl "http://$RELAY_ADMIN/metrics" | awk -v m="$1" '$1 ~ "^"m"\\{.*tunnel1" { print $2; f=1 } END { if (!f) print 0 }'
}
sas_of_both() {
  relay_jq '.tunnels[] | select(.name == "tunnel1") | "\(.ikeSa.localSpi) \(.childSa.inboundSpi) \(.childSa.outboundSpi)"'
  lab_sas_json 1 | jq -r '[.[] | .ike_spi_local, (.children[] | select(.installed) | .spi_in, .spi_out)] | join(" ")'
}
sas_differ() { [ "$(sas_of_both)" != "$1" ]; }
spoofed_inits() {
  local before cookies
  established aes128-sha1-modp1024 || return 1
  before=$(sas_of_both)
  spoof() { ip netns exec "$LAB_ID-aws1" python3 "$LAB_HERE/udp.py" ike-init "$(lab_aws_addr 1)" "$LAB_RELAY_PUBLIC" "$@"; }
  spoof 3des 1 || { lab_fail_why "could not send the spoofed INIT"; return 1; }
  spoof ok 200 || { lab_fail_why "could not send the INIT burst"; return 1; }
  if lab_wait 40 sas_differ "$before"; then
    lab_fail_why "SAs changed after spoofed INITs: before '$before', now '$(sas_of_both)'"
    return 1
  fi
  cookies=$(relay_metric iotrelay_ike_cookies_sent_total)
  [ "${cookies%.*}" -ge 150 ] || { lab_fail_why "cookies were not demanded ($cookies sent for 200 INITs)"; return 1; }
  lab_wait 5 relay_matches_aws 1 || return 1
  round_trip spoofed-inits
}

# A sustained flood, as a spoofer with some bandwidth would send it: 300 acceptable IKE_SA_INITs per
# second for 10 s from the AWS endpoint's address (random source ports and SPIs), while the IoT server keeps a
# stream of UDP round trips through the tunnel going (20/s for 12 s, covering the flood). The stream must lose
# (almost) nothing (at most 1 %: a lost datagram on a loaded lab machine is not the relay's doing), both ends keep
# their SAs (waited on for 10 s after the flood), and cookies answer (nearly) every INIT: at most 2 half-open SAs
# are created relay-wide, the rest costs the relay an HMAC each.
init_flood() {
  local before c0 c1 spid flood lost sent
  alive || return 1
  lab_wait 20 relay_tunnel_established tunnel1 || { lab_fail_why "relay tunnel1 not Established within 20 s"; return 1; }
  lab_wait 5 relay_matches_aws 1 || return 1
  before=$(sas_of_both)
  c0=$(relay_metric iotrelay_ike_cookies_sent_total)
  ip netns exec "$LAB_NS_IOT" python3 "$LAB_HERE/udp.py" stream "$LAB_RELAY_IOT_ADDR" "$LAB_DEVICE_PORT" 12 20 \
    > "$LAB_DIR/flood-stream.json" 2>&1 &
  spid=$!
  flood=$(ip netns exec "$LAB_ID-aws1" python3 "$LAB_HERE/udp.py" ike-flood "$(lab_aws_addr 1)" "$LAB_RELAY_PUBLIC" \
    300 10) || { lab_fail_why "could not send the INIT flood"; wait "$spid"; return 1; }
  wait "$spid"
  echo "# flood: $flood; round trips during it: $(cat "$LAB_DIR/flood-stream.json")" >&2
  sent=$(echo "$flood" | jq -r .sent)
  lost=$(jq -r .lost "$LAB_DIR/flood-stream.json" 2>/dev/null)
  [ -n "$lost" ] && [ "$lost" != null ] || { lab_fail_why "the round-trip stream failed: $(cat "$LAB_DIR/flood-stream.json")"; return 1; }
  [ "$lost" -le 2 ] || { lab_fail_why "$lost of 240 round trips lost during the INIT flood"; return 1; }
  if lab_wait 10 sas_differ "$before"; then
    lab_fail_why "SAs changed during the INIT flood: before '$before', now '$(sas_of_both)'"
    return 1
  fi
  c1=$(relay_metric iotrelay_ike_cookies_sent_total)
  [ $(( ${c1%.*} - ${c0%.*} )) -ge $(( sent * 9 / 10 )) ] \
    || { lab_fail_why "cookies did not engage: $(( ${c1%.*} - ${c0%.*} )) cookies for $sent INITs"; return 1; }
  echo "# cookies sent during the flood: $(( ${c1%.*} - ${c0%.*} )) for $sent INITs" >&2
  lab_wait 5 relay_matches_aws 1 || return 1
  round_trip init-flood
}

# Cases: lab-up, 7 per suite and direction, the spoofed-INIT case in both directions of aes128-sha1-modp1024 and
# the INIT flood once (relay as initiator),
# then the two fragmentation cases, the 7 failure-table cases and the secrets scan (after the suites: one lab_case
# line each).
spoofed_cases=0
for s in "${SUITES[@]}"; do [ "$s" = aes128-sha1-modp1024 ] && spoofed_cases=3; done
lab_expect $((1 + ${#SUITES[@]} * 2 * 7 + spoofed_cases + $(sed -n '/^# IKE fragmentation (RFC 7383) both ways/,$p' "$0" | grep -c '^lab_case ')))
lab_case lab-up lab_up || exit 1

for suite in "${SUITES[@]}"; do
  for dir in initiator responder; do
    relay_stop
    lab_aws_stop 1
    export RELAY_TUNNELS=1 RELAY_IKE=$suite RELAY_ESP=$(esp_of "$suite")
    relay_yaml "$LAB_DIR/relay.yaml"
    RELAY_START_WHY=""
    if [ "$dir" = initiator ]; then
      # AWS "startup action add": strongSwan waits with AWS's whole proposal set; we initiate.
      LAB_AWS_START=none lab_aws_start 1 "$RELAY_PSK1" || echo "# aws1 failed to start" >&2
      RELAY_STARTUP=Start relay_yaml "$LAB_DIR/relay.yaml"
      relay_start "$LAB_DIR/relay.yaml" || RELAY_START_WHY=$LAB_WHY
    else
      # AWS "startup action start", offering only this suite; we respond (startupAction Add).
      RELAY_STARTUP=Add relay_yaml "$LAB_DIR/relay.yaml"
      relay_start "$LAB_DIR/relay.yaml" || RELAY_START_WHY=$LAB_WHY
      LAB_AWS_START=start LAB_AWS_IKE_PROPOSALS=$suite LAB_AWS_ESP_PROPOSALS=$(esp_of "$suite") \
        lab_aws_start 1 "$RELAY_PSK1" || echo "# aws1 failed to start" >&2
    fi
    c="$suite-our-$dir"
    lab_case "$c-established" established "$suite"
    [ "$suite" = aes128-sha1-modp1024 ] && lab_case "$c-spoofed-inits-change-nothing" spoofed_inits
    [ "$suite" = aes128-sha1-modp1024 ] && [ "$dir" = initiator ] && lab_case "$c-init-flood-keeps-traffic-flowing" init_flood
    lab_case "$c-child-rekey-by-aws" rekey aws child
    lab_case "$c-child-rekey-by-relay" rekey relay child
    lab_case "$c-ike-rekey-by-aws" rekey aws ike
    lab_case "$c-ike-rekey-by-relay" rekey relay ike
    lab_case "$c-child-rekey-collision" collide child
    lab_case "$c-ike-rekey-collision" collide ike
    [ "$LAB_FAILED" -gt 0 ] && LAB_KEEP_LOGS=1 && cp "$LAB_DIR/relay.log" "$LAB_DIR/relay-$c.log" 2>/dev/null
  done
done
# IKE fragmentation (RFC 7383) both ways: charon fragments IKE messages above 300-octet packets, the relay above
# 300 octets, so every CREATE_CHILD_SA (with a 256-octet MODP-2048 KE) crosses as fragments in both directions
# (PSK IKE_AUTH messages stay smaller); strongSwan's log shows it sent fragments (EF payloads) and reassembled ours.
fragmented() {
  local log
  log="$(lab_aws_dir 1)/charon.log"
  established aes256-sha256-modp2048 || return 1
  rekey relay child || return 1
  rekey aws ike || return 1
  grep -q "generating CREATE_CHILD_SA request .* EF(" "$log" \
    || { lab_fail_why "strongSwan did not fragment its CREATE_CHILD_SA"; return 1; }
  grep -q "reassembled fragmented IKE message" "$log" || { lab_fail_why "strongSwan got no fragments from us"; return 1; }
}
relay_stop
lab_aws_stop 1
export RELAY_TUNNELS=1 RELAY_IKE=aes256-sha256-modp2048 RELAY_ESP=aes256-sha256-modp2048
LAB_AWS_START=none LAB_AWS_FRAGMENT_SIZE=300 lab_aws_start 1 "$RELAY_PSK1" || echo "# aws1 failed to start" >&2
RELAY_STARTUP=Start relay_yaml "$LAB_DIR/relay.yaml"
RELAY_START_WHY=""
IOTRELAY_IKE_FRAGMENT_SIZE=300 relay_start "$LAB_DIR/relay.yaml" || RELAY_START_WHY=$LAB_WHY
lab_case "ike-fragmentation-both-ways" fragmented

# At the default sizes (the relay: 1248 octets, no override; charon: 1280): AWS initiates with 80 traffic
# selectors for the relay's side (TSr: 80 disjoint /24s of the relay's inside prefix 100.127.0.0/16, which the
# relay's inside address is in; strongSwan drops selectors contained in another one, and it routes each remote
# selector into ipsec0, so they must be disjoint and routable), so its IKE_AUTH request (~1.6 kB) arrives in
# fragments, and the relay's answer, which echoes all 80 selectors (narrowed against its 0.0.0.0/0), is larger than
# 1248 octets and leaves in fragments.
fragmented_default() {
  local log
  log="$(lab_aws_dir 1)/charon.log"
  alive || return 1
  lab_wait 20 relay_tunnel_established tunnel1 || { lab_fail_why "relay tunnel1 not Established within 20 s"; return 1; }
  lab_wait 5 relay_matches_aws 1 || return 1
  grep -q "generating IKE_AUTH request .* EF(" "$log" || { lab_fail_why "strongSwan did not fragment its IKE_AUTH"; return 1; }
  grep -q "received fragment #" "$log" && grep -q "reassembled fragmented IKE message" "$log" \
    || { lab_fail_why "strongSwan got no fragments from the relay at its default size"; return 1; }
  round_trip fragmented-default
}
# aws1_fresh_log: start AWS endpoint 1's log empty, so a case sees only its own lines (what it held is kept for the
# secrets scan at the end).
aws1_fresh_log() {
  cat "$(lab_aws_dir 1)/charon.log" >> "$LAB_DIR/aws1-earlier.log" 2>/dev/null
  : > "$(lab_aws_dir 1)/charon.log"
}
relay_stop
lab_aws_stop 1
aws1_fresh_log
many_ts=$(seq -s, -f '100.127.%g.0/24' 0 79)
export RELAY_TUNNELS=1 RELAY_IKE=aes256-sha256-modp2048 RELAY_ESP=aes256-sha256-modp2048
RELAY_STARTUP=Add relay_yaml "$LAB_DIR/relay.yaml"
RELAY_START_WHY=""
relay_start "$LAB_DIR/relay.yaml" || RELAY_START_WHY=$LAB_WHY
LAB_AWS_START=start LAB_AWS_REMOTE_TS=$many_ts lab_aws_start 1 "$RELAY_PSK1" || echo "# aws1 failed to start" >&2
lab_case "ike-fragmentation-default-size" fragmented_default

# The failure table against strongSwan. failure_setup WHO RELAY_IKE [VAR=VALUE...]: WHO=relay: the relay initiates
# (startupAction Start) and strongSwan responds; WHO=aws: strongSwan initiates (start_action start) and the relay
# responds (startupAction Add), so the refusal is the relay's own. The relay offers RELAY_IKE (and ESP $FAIL_ESP,
# default aes128-sha1); the AWS side runs with the given LAB_AWS_* settings.
failure_setup() {
  local who=$1 ike=$2 startup=Start aws_start=none
  shift 2
  [ "$who" = aws ] && startup=Add aws_start=start
  relay_stop
  lab_aws_stop 1
  aws1_fresh_log
  RELAY_IKE=$ike RELAY_ESP=${FAIL_ESP:-aes128-sha1} RELAY_STARTUP=$startup relay_yaml "$LAB_DIR/relay.yaml"
  RELAY_START_WHY=""
  relay_start "$LAB_DIR/relay.yaml" || RELAY_START_WHY=$LAB_WHY
  # shellcheck disable=SC2163 # "$@" holds VAR=VALUE words
  (export LAB_AWS_START=$aws_start "$@"; lab_aws_start 1 "$RELAY_PSK1") || echo "# aws1 failed to start" >&2
}
# stalled_with REASON LINE: Stalled=True with REASON, and strongSwan's log has a line matching LINE (an extended
# regex: which message carried which notify, in strongSwan's abbreviation, e.g. "generating IKE_SA_INIT response
# 0 \[ N\(NO_PROP\) \]"), and no CHILD_SA came up.
stalled_with() {
  alive || return 1
  stalled_is() { [ "$(relay_condition Stalled)" = "True $1" ]; }
  lab_wait 30 stalled_is "$1" \
    || { lab_fail_why "Stalled is '$(relay_condition Stalled)', want 'True $1'"; return 1; }
  grep -qE "$2" "$(lab_aws_dir 1)/charon.log" || { lab_fail_why "strongSwan's log has no '$2'"; return 1; }
  [ "$(relay_jq '.tunnels[0].state')" != Established ] || { lab_fail_why "tunnel1 Established"; return 1; }
  [ "$(lab_sas_json 1 | jq '[.[].children[]] | length')" = 0 ] || { lab_fail_why "strongSwan has a CHILD_SA"; return 1; }
}
# The relay's first KE is MODP-1024; strongSwan allows only MODP-2048, which the relay also offers.
invalid_ke_retried() {
  alive || return 1
  lab_wait 20 relay_tunnel_established tunnel1 || { lab_fail_why "tunnel1 not Established within 20 s"; return 1; }
  grep -qE "generating IKE_SA_INIT response 0 \[ N\(INVAL_KE\) \]" "$(lab_aws_dir 1)/charon.log" \
    || { lab_fail_why "strongSwan never sent INVALID_KE_PAYLOAD"; return 1; }
  [ "$(lab_sas_json 1 | jq -r '.[0].proposal')" = AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_2048 ] \
    || { lab_fail_why "negotiated $(lab_sas_json 1 | jq -r '.[0].proposal')"; return 1; }
  lab_wait 5 relay_matches_aws 1 || return 1
  round_trip invalid-ke
}
# strongSwan deletes the IKE SA, or only the CHILD_SA (swanctl --terminate --ike / --child): the relay answers,
# says DeletedByPeer, and starts a fresh IKE SA at once (not after DPD or a backoff).
peer_delete() { # ike|child
  local kind=${1:-ike}
  alive || return 1
  lab_wait 20 relay_tunnel_established tunnel1 || { lab_fail_why "tunnel1 not Established within 20 s"; return 1; }
  lab_wait 5 relay_matches_aws 1 || return 1
  local old t0
  old=$(relay_jq '.tunnels[0].ikeSa.localSpi')
  lab_swanctl 1 --terminate "--$kind" aws > /dev/null 2>&1 || { lab_fail_why "swanctl --terminate --$kind failed"; return 1; }
  t0=$SECONDS
  fresh() { local s; s=$(relay_jq '.tunnels[0].ikeSa.localSpi'); [ -n "$s" ] && [ "$s" != null ] && [ "$s" != "$old" ] \
    && relay_tunnel_established tunnel1 && relay_matches_aws 1; }
  lab_wait 10 fresh || { lab_fail_why "no fresh IKE SA within 10 s of the peer's DELETE: ${LAB_WHY:-}"; return 1; }
  local said="peer deleted the IKE SA"
  [ "$kind" = child ] && said="peer deleted the CHILD_SA"
  grep 'DeletedByPeer' "$LAB_DIR/relay.log" | grepq "$said" \
    || { lab_fail_why "the relay's log does not say DeletedByPeer: $said"; return 1; }
  echo "# re-established $((SECONDS - t0)) s after the peer's $kind DELETE" >&2
  round_trip "peer-delete-$kind"
}
export RELAY_TUNNELS=1
failure_setup relay aes128-sha1-modp1024-modp2048 LAB_AWS_IKE_PROPOSALS=aes128-sha1-modp2048
lab_case "invalid-ke-retried-with-offered-group" invalid_ke_retried
# No common IKE proposal, refused by strongSwan (the relay offers MODP-1024/2048, strongSwan only ECP-384) and by the
# relay (strongSwan offers only ECP-384).
failure_setup relay aes128-sha1-modp1024-modp2048 LAB_AWS_IKE_PROPOSALS=aes128-sha1-ecp384
lab_case "no-proposal-chosen-by-aws-stalled" stalled_with NoProposalChosen \
  'generating IKE_SA_INIT response 0 \[ N\(NO_PROP\) \]'
failure_setup aws aes128-sha1-modp1024-modp2048 LAB_AWS_IKE_PROPOSALS=aes128-sha1-ecp384
lab_case "no-proposal-chosen-by-relay-stalled" stalled_with NoProposalChosen \
  'parsed IKE_SA_INIT response 0 \[ N\(NO_PROP\) \]'
# Traffic selectors that do not overlap. The relay's selectors are 0.0.0.0/0 on both sides (as AWS's), IPv4 only,
# so what cannot overlap them is IPv6: strongSwan configured with ::/0 <-> ::/0 (as an AWS VPN connection for IPv6
# inside traffic) refuses the relay's IPv4 selectors as responder, and the relay as responder refuses strongSwan's
# (the engine keeps only the IPv4 part of each selector list and answers TS_UNACCEPTABLE when nothing is left).
failure_setup relay aes128-sha1-modp1024 LAB_AWS_LOCAL_TS=::/0 LAB_AWS_REMOTE_TS=::/0
lab_case "ts-unacceptable-by-aws-stalled" stalled_with TsUnacceptable \
  'generating IKE_AUTH response 1 \[ .*N\(TS_UNACCEPT\)'
failure_setup aws aes128-sha1-modp1024 LAB_AWS_LOCAL_TS=::/0 LAB_AWS_REMOTE_TS=::/0
lab_case "ts-unacceptable-by-relay-stalled" stalled_with TsUnacceptable \
  'parsed IKE_AUTH response 1 \[ .*N\(TS_UNACCEPT\)'
failure_setup relay aes128-sha1-modp1024
lab_case "peer-delete-restarts-at-once" peer_delete ike
failure_setup relay aes128-sha1-modp1024
lab_case "peer-child-delete-restarts-at-once" peer_delete child
# The relay's default proposals (none in the YAML) against AWS's default proposal set.
defaults_accepted() {
  alive || return 1
  lab_wait 20 relay_tunnel_established tunnel1 || { lab_fail_why "tunnel1 not Established within 20 s"; return 1; }
  lab_wait 5 relay_matches_aws 1 || return 1
  echo "# defaults negotiated $(lab_sas_json 1 | jq -r '.[0].proposal')" >&2
  round_trip defaults
}
FAIL_ESP=default failure_setup relay default
lab_case "defaults-accepted-by-aws" defaults_accepted

# Secrets never appear in what the relay prints: every relay log of this run, its /status and /metrics, scanned
# for both PSKs and every key the AWS side derived (IKE SA keys and ESP keys of every SA of the whole run).
no_secrets() {
  mkdir -p "$LAB_DIR/scan"
  relay_curl "http://$RELAY_ADMIN/status" > "$LAB_DIR/scan/status.json" || { lab_fail_why "no /status"; return 1; }
  relay_curl "http://$RELAY_ADMIN/metrics" > "$LAB_DIR/scan/metrics.txt" || { lab_fail_why "no /metrics"; return 1; }
  cp "$LAB_DIR"/relay.log* "$LAB_DIR/scan/"
  local out
  # The /rekey bearer token is a secret too: scanned like the PSKs.
  out=$(python3 "$LAB_HERE/secrets.py" --psk "$RELAY_PSK1" --psk "$RELAY_PSK2" --psk "$(cat "$LAB_DIR/rekey.token")" --keys-from "$LAB_DIR/aws1-earlier.log" \
    --keys-from "$(lab_aws_dir 1)/charon.log" "$LAB_DIR/scan") || { lab_fail_why "$(echo "$out" | tr '\n' ' ')"; return 1; }
  echo "# $out" >&2
}
lab_case "no-secrets-in-relay-logs-status-metrics" no_secrets
relay_stop
lab_summary
