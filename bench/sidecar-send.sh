#!/usr/bin/env bash
# Relay send path bench (sidecar/benches/relay_send.rs): N datagrams through Datapath::handle_forward and out of a
# UDP socket, one syscall each vs batched with UDP GSO, ratio measured in the same run. Runs in a network
# namespace of its own with 192.0.2.1 and 192.0.2.2 on its loopback; nothing leaves it. Needs root.
#   bench/sidecar-send.sh            BENCH_N=200000 BENCH_ROUNDS=7 BENCH_LEN=1400 bench/sidecar-send.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
NS=rl-bench-$$
nice cargo bench -q -p iotrelay-sidecar --bench relay_send --no-run
ip netns add "$NS"
trap 'ip netns del "$NS" 2>/dev/null || true' EXIT
ip -n "$NS" link set lo up
ip -n "$NS" addr add 192.0.2.1/32 dev lo
ip -n "$NS" addr add 192.0.2.2/32 dev lo
ip netns exec "$NS" nice cargo bench -q -p iotrelay-sidecar --bench relay_send
