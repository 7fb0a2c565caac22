#!/usr/bin/env bash
# Issue 2 interop: our IKEv2 engine (inside `iotrelay-sidecar standalone`) against strongSwan configured like an
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
# dropped in the relay's namespace; then both processes are frozen, the drop lifted, and both thawed together once
# their retransmission timers are overdue, so each request reaches the other side while that side's own is in
# flight. Afterwards: exactly one IKE SA and one CHILD_SA pair, equal on both ends, a collision was seen (by the
# relay's counter or strongSwan's log), and traffic flows.
collide() {
  local kind=$1 attempt
  # Whether both requests really cross depends on scheduling (a DPD in flight delays ours; charon handles messages
  # on several threads): up to three attempts to produce one. Every attempt must end consistent and carry traffic.
  for attempt in 1 2 3; do
    collide_once "$kind" || return 1
    [ "$COLLIDED" = 1 ] && return 0
    echo "# attempt $attempt: the rekeys did not cross; again" >&2
  done
  lab_fail_why "no collision happened in 3 attempts"
  return 1
}
collide_once() {
  local kind=$1 before n0 n1 pids c0 c1 log
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
  pids="$(cat "$LAB_DIR/relay.pid") $(ip netns pids "$LAB_ID-aws1" | tr '\n' ' ')"
  # shellcheck disable=SC2086
  kill -STOP $pids
  ip netns exec "$LAB_NS_RELAY" nft delete table inet lab_hold
  sleep 2.5
  # shellcheck disable=SC2086
  kill -CONT $pids
  changed() { local now; now=$(spi "$kind"); [ -n "$now" ] && [ "$now" != null ] && [ "$now" != "$before" ] \
    && relay_matches_aws 1; }
  lab_wait 20 changed || { lab_fail_why "after a $kind rekey collision: ${LAB_WHY:-SPI unchanged ($before)}"; return 1; }
  round_trip "collide-$kind" || return 1
  n1=$(relay_collisions)
  c1=$(grep -ci collision "$log")
  echo "# $kind collision seen by: relay $((n1 - n0)), strongSwan $((c1 - c0))" >&2
  if [ "$n1" -gt "$n0" ] || [ "$c1" -gt "$c0" ]; then COLLIDED=1; fi
}
relay_collisions() {
  relay_curl "http://$RELAY_ADMIN/metrics" | awk '/^iotrelay_ike_rekey_collisions_total\{.*tunnel1/ { print $2; f=1 } END { if (!f) print 0 }'
}
spi() {
  if [ "$1" = child ]; then lab_sas_json 1 | jq -r '[.[].children[] | select(.installed)][0].spi_in'
  else lab_sas_json 1 | jq -r '.[0].ike_spi_local'; fi
}

# Issue 9: IKE_SA_INIT requests spoofed from the AWS endpoint's address (a raw socket in aws1's namespace, a random
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

# Cases: lab-up, 7 per suite and direction, the spoofed-INIT case in both directions of aes128-sha1-modp1024,
# then the fragmentation case.
spoofed_cases=0
for s in "${SUITES[@]}"; do [ "$s" = aes128-sha1-modp1024 ] && spoofed_cases=2; done
lab_expect $((1 + ${#SUITES[@]} * 2 * 7 + spoofed_cases + 1))
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
relay_stop
lab_summary
