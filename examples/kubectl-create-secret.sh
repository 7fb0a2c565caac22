#!/bin/sh
# The pre-shared keys as a Secret made with kubectl, so they never sit in a YAML file in git. The keys come from
# the VPN connection (console "Download configuration", or the Terraform outputs in terraform/); the Secret's name
# and keys are what the IotRelay's tunnels[].preSharedKeySecretRef point at (here: two-tunnels.yaml without its
# Secret document).
set -eu
kubectl create secret generic plant-7-psk --namespace iot \
  --from-literal=tunnel1="$TUNNEL1_PSK" \
  --from-literal=tunnel2="$TUNNEL2_PSK"
