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
# through the tunnel must work. Usage: e2e/interop/run.sh [SUITE...]
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=e2e/lab/lib.sh
source "$HERE/../lab/lib.sh"
# shellcheck source=e2e/lab/relay.sh
source "$HERE/../lab/relay.sh"
lab_need_root
trap 'relay_stop; lab_down' EXIT
trap 'exit 130' INT TERM

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
spi() {
  if [ "$1" = child ]; then lab_sas_json 1 | jq -r '[.[].children[] | select(.installed)][0].spi_in'
  else lab_sas_json 1 | jq -r '.[0].ike_spi_local'; fi
}

lab_up || { echo "FAIL lab-up: could not build the topology"; echo "0 passed, 1 failed"; exit 1; }

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
    lab_case "$c-child-rekey-by-aws" rekey aws child
    lab_case "$c-child-rekey-by-relay" rekey relay child
    lab_case "$c-ike-rekey-by-aws" rekey aws ike
    lab_case "$c-ike-rekey-by-relay" rekey relay ike
    [ "$LAB_FAILED" -gt 0 ] && LAB_KEEP_LOGS=1 && cp "$LAB_DIR/relay.log" "$LAB_DIR/relay-$c.log" 2>/dev/null
  done
done
relay_stop
lab_summary
