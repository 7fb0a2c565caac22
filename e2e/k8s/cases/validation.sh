# shellcheck shell=bash
# Sourced by e2e/k8s/run.sh (not run alone): API validation cases. Cases register with `tc`; run.sh counts every `^tc ` line
# of itself and of cases/*.sh as the expected total.
# ---------------------------------------------------------------------------------------------------------------
# API validation: each invalid IotRelay is rejected by the API server (OpenAPI schema or CEL rule).

cel_seen=""
t_reject() { # field-substring edits...
  requires crd || return 1
  local want=$1 out doc
  shift
  doc=$(relay "bad" "$ns" "$@") || { why="relay.py $*: cannot build the manifest"; return 1; }
  if out=$(kubectl apply --dry-run=server -f - <<< "$doc" 2>&1); then
    why="accepted: $*"
    return 1
  fi
  cel_seen+="$out"$'\n'
  echo "$out" | grepq -i "invalid" && echo "$out" | grepq -i -- "$want" \
    || { why="rejected, but the error does not name '$want': $(echo "$out" | head -c 300)"; return 1; }
}
t_valid() {
  requires crd || return 1
  local out
  kubectl create namespace $ns > /dev/null 2>&1
  out=$(relay plant-7 $ns | kubectl apply --dry-run=server -f - 2>&1) || { why="the API.md example is rejected: $out"; return 1; }
}
kubectl create namespace $ns > /dev/null 2>&1
tc valid-example-accepted t_valid
tc reject-no-tunnels t_reject tunnels 'spec.tunnels=[]'
tc reject-three-tunnels t_reject tunnels 'spec.tunnels.2={"name":"t3","peerAddress":"198.51.100.4","preSharedKeySecretRef":{"name":"aws-vpn","key":"t3"}}'
tc reject-duplicate-tunnel-names t_reject tunnel 'spec.tunnels.1.name=tunnel1'
tc reject-bad-inside-address t_reject insideAddress 'spec.insideAddress=not-an-ip'
tc reject-bad-remote-subnet t_reject remoteSubnets 'spec.remoteSubnets=["100.64.0.0/33"]'
tc reject-bad-peer-address t_reject peerAddress 'spec.tunnels.0.peerAddress=999.1.1.1'
tc reject-listen-port-zero t_reject listenPort 'spec.forwards.0.listenPort=0'
tc reject-listen-port-too-big t_reject listenPort 'spec.forwards.0.listenPort=70000'
tc reject-duplicate-listen-port t_reject listenPort \
  'spec.forwards.1={"name":"admin2","protocol":"UDP","listenPort":7000,"allowedSources":["203.0.113.10/32"],"target":{"address":"100.64.1.10","port":7001}}'
tc reject-duplicate-forward-names t_reject forward \
  'spec.forwards.1={"name":"admin","protocol":"UDP","listenPort":7001,"allowedSources":["203.0.113.10/32"],"target":{"address":"100.64.1.10","port":7001}}'
tc reject-protocol-tcp t_reject protocol 'spec.forwards.0.protocol=TCP'
tc reject-bad-allowed-source t_reject allowedSources 'spec.forwards.0.allowedSources=["203.0.113.10/40"]'
tc reject-target-port-zero t_reject port 'spec.forwards.0.target.port=0'
tc reject-bad-startup-action t_reject startupAction 'spec.ike.startupAction=Sometimes'
tc reject-bad-lifetime t_reject lifetime 'spec.ike.lifetime=eight hours'
tc reject-bad-ike-proposal-syntax t_reject proposals 'spec.ike.proposals=["AES128_SHA1"]'
tc reject-inside-address-ipv6 t_reject insideAddress 'spec.insideAddress=2001:db8::1'
tc reject-inside-address-in-remote-subnets t_reject insideAddress 'spec.insideAddress=100.64.5.5'
tc reject-cidr-with-host-bits t_reject remoteSubnets 'spec.remoteSubnets=["100.64.0.1/16"]'
tc reject-target-outside-remote-subnets t_reject target 'spec.forwards.0.target.address=192.0.2.99'
tc reject-listen-port-500 t_reject listenPort 'spec.forwards.0.listenPort=500'
tc reject-listen-port-4500 t_reject listenPort 'spec.forwards.0.listenPort=4500'
tc reject-listen-port-is-admin-port t_reject adminPort 'spec.adminPort=7000'
tc reject-duplicate-peer-address t_reject peerAddress 'spec.tunnels.1.peerAddress=198.51.100.2'
tc reject-ike-lifetime-over-8h t_reject lifetime 'spec.ike.lifetime=9h'
tc reject-esp-lifetime-over-1h t_reject lifetime 'spec.esp.lifetime=2h'
tc reject-esp-lifetime-not-shorter-than-ike t_reject lifetime 'spec.ike.lifetime=1h' 'spec.esp.lifetime=1h'
tc reject-dpd-interval-zero t_reject dpdInterval 'spec.ike.dpdInterval=0s'
tc reject-dpd-timeout-not-longer t_reject dpdTimeout 'spec.ike.dpdInterval=10s' 'spec.ike.dpdTimeout=10s'
tc reject-idle-timeout-over-24h t_reject idleTimeout 'spec.forwards.0.idleTimeout=48h'
tc reject-secret-ref-without-key t_reject key 'spec.tunnels.0.preSharedKeySecretRef={"name":"aws-vpn"}'
tc reject-gateway-route-outside-remote-subnets t_reject routes 'spec.gateway={"routes":["192.0.2.0/24"]}'
tc reject-gateway-local-subnet-bad-cidr t_reject localSubnets 'spec.gateway={"localSubnets":["192.0.2.1/24"]}'
tc reject-gateway-local-subnet-in-remote-subnets t_reject localSubnets 'spec.gateway={"localSubnets":["100.64.1.0/24"]}'
tc reject-gateway-local-subnet-not-announced t_reject localSubnets 'spec.gateway={"localSubnets":["192.0.2.0/24"]}' 'spec.bgp={"localAsn":65000,"announce":["100.127.0.1/32"]}' 'spec.tunnels.0.insideCidr=169.254.10.0/30' 'spec.tunnels.1.insideCidr=169.254.11.0/30'
tc reject-bgp-without-inside-cidr t_reject insideCidr 'spec.bgp={"localAsn":65000}'
tc reject-bgp-local-asn-is-aws-asn t_reject localAsn 'spec.bgp={"localAsn":64512}' 'spec.tunnels.0.insideCidr=169.254.10.0/30' 'spec.tunnels.1.insideCidr=169.254.11.0/30'
tc reject-bgp-hold-time-2s t_reject holdTime 'spec.bgp={"localAsn":65000,"holdTime":"2s"}' 'spec.tunnels.0.insideCidr=169.254.10.0/30' 'spec.tunnels.1.insideCidr=169.254.11.0/30'
tc reject-bgp-failback-delay-over-1h t_reject failbackDelay 'spec.bgp={"localAsn":65000,"failbackDelay":"2h"}' 'spec.tunnels.0.insideCidr=169.254.10.0/30' 'spec.tunnels.1.insideCidr=169.254.11.0/30'
tc reject-bgp-as-trans t_reject 23456 'spec.bgp={"localAsn":65000,"awsAsn":23456}' 'spec.tunnels.0.insideCidr=169.254.10.0/30' 'spec.tunnels.1.insideCidr=169.254.11.0/30'
tc reject-bgp-local-as-trans t_reject 23456 'spec.bgp={"localAsn":23456}' 'spec.tunnels.0.insideCidr=169.254.10.0/30' 'spec.tunnels.1.insideCidr=169.254.11.0/30'
tc reject-duplicate-inside-cidr t_reject insideCidr 'spec.bgp={"localAsn":65000}' 'spec.tunnels.0.insideCidr=169.254.10.0/30' 'spec.tunnels.1.insideCidr=169.254.10.0/30'
tc reject-inside-cidr-not-30 t_reject insideCidr 'spec.tunnels.0.insideCidr=169.254.10.0/29'
tc reject-inside-cidr-outside-link-local t_reject insideCidr 'spec.tunnels.0.insideCidr=192.0.2.0/30'

# Every CEL rule in the CRD has a message, and each message was produced by at least one case above.
t_cel_coverage() {
  requires crd || return 1
  local msgs m missing=""
  msgs=$(kubectl get crd iotrelays.iotrelay.dev -o json \
    | jq -r '.. | objects | select(has("x-kubernetes-validations")) | ."x-kubernetes-validations"[] | (.message // "<no message: \(.rule)>")')
  [ -n "$msgs" ] || { why="the CRD has no x-kubernetes-validations (CEL) rules"; return 1; }
  while IFS= read -r m; do
    case "$m" in "<no message"*) missing+="$m; "; continue ;; esac
    grep -qF -- "$m" <<< "$cel_seen" || missing+="'$m'; "
  done <<< "$msgs"
  [ -z "$missing" ] || { why="CEL rules without a rejecting case here (or without message): $missing"; return 1; }
}
tc cel-every-rule-exercised t_cel_coverage
