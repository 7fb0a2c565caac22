#!/usr/bin/env bash
# make bench, the network part: the whole path IoT server -> relay -> AWS side -> device in network
# namespaces (bench/lab.sh: one lab per configuration, e2e/lab/lib.sh's topology), for each configuration and
# payload size, alternating configurations round by round in one run:
#   - saturation: the load generator (bench/udpload, batched sendmmsg) flat out for BENCH_SECS; where every lost
#     datagram went: sender's count, the relay's counters, each namespace's UDP RcvbufErrors, the kernel's
#     backlog drops, the receiver's exact count;
#   - the delivered rate at <= 1 % loss: paced probes between the saturation's delivered and offered rates;
#   - latency through the whole path and back at a moderate rate (p50, p99), per round;
#   - bring-up (process start -> first echo through the tunnel) when the labs are built; relay RSS;
#   - with perf installed, the relay's profile at saturation in (d) (BENCH_PROFILE=0: skip);
#   - the relay's memory with two tunnels, 10 forwards and 4000 sessions (BENCH_LOAD_CONFIGS="": skip);
#   - IKE SAs per second of the AWS-side iotrelay (a responder) while tunnel1's traffic flows, and what each costs
#     it in CPU (bench/ike.sh; BENCH_IKE_CONFIGS="": skip; BENCH_IKE_SECS, BENCH_IKE_RATE).
# Then bench/report.py writes BENCHMARKS.md: medians, spread, ratios iotrelay/ceiling and iotrelay/original.
# Benchmarks report, they never fail a build: a configuration that does not come up is reported as missing.
#
#   flock /tmp/iotrelay-lab.lock bench/run.sh           (root; release builds of iotrelay-sidecar, udpload, ikeload)
#   BENCH_QUICK=1 ...   one round, 1 s probes, one search probe (a smoke run, ~3 min)
#   BENCH_ROUNDS=3 BENCH_SECS=2 BENCH_PROBES=3 BENCH_SIZES="64 1400" BENCH_CONFIGS="ceiling orig-gcm ..."
#   BENCH_OUT=BENCHMARKS.md (where the report goes), BENCH_RESULTS=FILE (keep the raw records)
#   BENCH_BASE_SIDECAR=PATH BENCH_CONFIGS="ceiling base-gcm both-gcm ..."   a datapath change against the build it
#     replaces (base-SUITE: (d) with that binary on both ends), alternating in the same rounds
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=e2e/lab/lib.sh
source "$REPO/e2e/lab/lib.sh"
# shellcheck source=e2e/lab/relay.sh
source "$REPO/e2e/lab/relay.sh"
# shellcheck source=e2e/lab/iotrelay_aws.sh
source "$REPO/e2e/lab/iotrelay_aws.sh"
# shellcheck source=bench/lab.sh
source "$HERE/lab.sh"
# shellcheck source=bench/ike.sh
source "$HERE/ike.sh"
lab_need_root

UDPLOAD=${UDPLOAD:-${CARGO_TARGET_DIR:-$REPO/target}/release/iotrelay-udpload}
IKELOAD=${IKELOAD:-${CARGO_TARGET_DIR:-$REPO/target}/release/iotrelay-ikeload}
for b in "$UDPLOAD" "$IOTRELAY_SIDECAR"; do
  [ -x "$b" ] || { echo "bench: no $b (cargo build --release -p iotrelay-udpload -p iotrelay-sidecar)" >&2; exit 2; }
done
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then d_rounds=1 d_secs=1 d_probes=2 d_lat=1 d_ike=3; else d_rounds=3 d_secs=2 d_probes=3 d_lat=3 d_ike=5; fi
ROUNDS=${BENCH_ROUNDS:-$d_rounds}
SECS=${BENCH_SECS:-$d_secs}
PROBES=${BENCH_PROBES:-$d_probes}
LAT_SECS=${BENCH_LAT_SECS:-$d_lat}
LAT_RATE=${BENCH_LAT_RATE:-1000}
# Two sender threads: one alone cannot outrun plain kernel forwarding (it pays for the forwarding in its syscalls).
THREADS=${BENCH_THREADS:-2}
SIZES=${BENCH_SIZES:-64 1400}
CONFIGS=${BENCH_CONFIGS:-ceiling orig-gcm orig-cbc relay-gcm relay-cbc both-gcm both-cbc}
LOAD_CONFIGS=${BENCH_LOAD_CONFIGS-load-gcm}
IKE_CONFIGS=${BENCH_IKE_CONFIGS-ike-gcm}
BENCH_IKE_SECS=${BENCH_IKE_SECS:-$d_ike}
BENCH_IKE_RATE=${BENCH_IKE_RATE:-20000}
OUT=${BENCH_OUT:-$REPO/BENCHMARKS.md}
BENCH_ID=bn$$
RESULTS=${BENCH_RESULTS:-/tmp/$BENCH_ID.results}
: > "$RESULTS"
RUN=0
UP=()

cleanup() {
  local c
  for c in $CONFIGS $LOAD_CONFIGS $IKE_CONFIGS; do bench_down "$c" > /dev/null 2>&1; done
}
trap cleanup EXIT
trap 'echo "# interrupted" >&2; exit 130' INT
trap 'echo "# terminated" >&2; exit 143' TERM

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
record() { echo "$*" >> "$RESULTS"; }

# metric NAME-AND-LABELS: a value from the Prometheus text on stdin (sum over lines starting with the pattern).
metric_sum() { awk -v p="$1" 'index($0, p) == 1 { s += $NF } END { printf "%d", s }'; }

# snap KIND: the counters that say where datagrams went, as `key=value ...`. Read through /proc/PID/net of a
# process in each namespace (bench_up's anchors): no process per namespace and probe.
snap() {
  local kind=${1/#base/both} n a b rest m s=0
  for n in iot relay aws1 vpc; do
    # shellcheck disable=SC2016 # awk's own variables
    awk -v n="$n" '/^Udp:/ { if (!h) { for (i = 2; i <= NF; i++) k[i] = $i; h = 1 } else {
      for (i = 2; i <= NF; i++) if (k[i] == "InDatagrams" || k[i] == "RcvbufErrors" || k[i] == "SndbufErrors")
        printf "%s_%s=%s ", k[i], n, $i } }' "/proc/$(cat "$LAB_DIR/anchor.$n")/net/snmp"
  done
  # kernel-libipsec's TUN device: datagrams dropped because charon did not read them fast enough (TX drop).
  for n in relay aws1; do
    awk -v n="$n" '$1 == "ipsec0:" { d = $13 } END { printf "tun_drops_%s=%d ", n, d }' \
      "/proc/$(cat "$LAB_DIR/anchor.$n")/net/dev"
  done
  # CPU: the whole machine's busy and total time (/proc/stat, clock ticks summed over all cores), and the CPU time
  # of the processes in the relay's and the AWS side's namespace (iotrelay or charon; utime + stime, all threads).
  # shellcheck disable=SC2016 # awk's own variables
  awk '$1 == "cpu" { printf "cpu_busy=%d cpu_total=%d ", $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
  for n in relay aws1; do printf 'cpu_%s=%d ' "$n" "$(ns_cpu "$LAB_ID-$n")"; done
  # Per-CPU backlog drops (netdev_max_backlog), not per namespace: the veth pairs hand packets over through it.
  while read -r a b rest; do s=$((s + 16#$b)); done < /proc/net/softnet_stat
  printf 'backlog_drops=%s ' "$s"
  : "$a" "$rest"
  if [ "$kind" = relay ] || [ "$kind" = both ]; then
    m=$(relay_curl "http://$RELAY_ADMIN/metrics" 2>/dev/null)
    printf 'relay_fwd_in=%s relay_fwd_drops=%s relay_lane_drops=%s relay_esp_out=%s ' \
      "$(metric_sum 'iotrelay_forward_packets_total{forward="load",direction="in"}' <<< "$m")" \
      "$(metric_sum 'iotrelay_forward_drops_total{forward="load"' <<< "$m")" \
      "$(metric_sum 'iotrelay_ingress_drops_total' <<< "$m")" \
      "$(metric_sum 'iotrelay_esp_packets_total{tunnel="tunnel1",direction="out"}' <<< "$m")"
  fi
  if [ "$kind" = both ]; then
    m=$(ip netns exec "$LAB_ID-aws1" curl -fsS --max-time 3 "http://$RELAY_ADMIN/metrics" 2>/dev/null)
    printf 'aws_esp_in=%s aws_esp_drops=%s aws_lane_drops=%s aws_to_device=%s aws_gw_drops=%s ' \
      "$(metric_sum 'iotrelay_esp_packets_total{tunnel="relay",direction="in"}' <<< "$m")" \
      "$(metric_sum 'iotrelay_esp_drops_total' <<< "$m")" \
      "$(metric_sum 'iotrelay_ingress_drops_total' <<< "$m")" \
      "$(metric_sum 'iotrelay_gateway_packets_total{direction="toDevice"}' <<< "$m")" \
      "$(metric_sum 'iotrelay_gateway_drops_total' <<< "$m")"
  fi
}

# ns_cpu NS: clock ticks of CPU (user + system, every thread) used so far by the processes now in namespace NS.
ns_cpu() {
  local p t s=0
  for p in $(ip netns pids "$1" 2> /dev/null); do
    # Fields after the command name's ')': state is the 1st, utime the 12th, stime the 13th.
    t=$(sed 's/.*) //' "/proc/$p/stat" 2> /dev/null | awk '{ print $12 + $13 }')
    s=$((s + ${t:-0}))
  done
  echo "$s"
}

# delta BEFORE AFTER: after - before for every key of AFTER.
delta() {
  local -A b
  local kv k
  for kv in $1; do b[${kv%%=*}]=${kv#*=}; done
  for kv in $2; do
    k=${kv%%=*}
    printf '%s=%s ' "$k" $((${kv#*=} - ${b[$k]:-0}))
  done
}

# probe CFG SIZE RATE WHAT [ACCOUNT]: one measurement (RATE 0: flat out). Sets P_SENT, P_RECV, P_DELIV (delivered
# datagrams/s over the sender's time), P_OFFERED (sent/s), P_OK (loss <= 1 %), and appends a record.
probe() {
  local cfg=$1 size=$2 rate=$3 what=$4 account=${5:-0} kind=${1%-*} run ready rpid s r before="" after="" acct=""
  RUN=$((RUN + 1))
  run=$RUN
  ready=$LAB_DIR/ready.$run
  ip netns exec "$LAB_NS_VPC" "$UDPLOAD" recv --bind "$LAB_DEVICE:$BENCH_PORT" --run "$run" --ready "$ready" \
    --wait-secs $((SECS + 10)) > "$LAB_DIR/recv.out" 2>&1 &
  rpid=$!
  lab_wait 5 test -e "$ready" || { kill "$rpid" 2>/dev/null; P_OK=0 P_DELIV=0; return 1; }
  [ "$account" = 1 ] && before=$(snap "$kind")
  s=$(ip netns exec "$LAB_NS_IOT" "$UDPLOAD" send --dst "$LAB_RELAY_IOT_ADDR:$BENCH_PORT" --size "$size" \
    --rate "$rate" --secs "$SECS" --run "$run" --threads "$THREADS" 2>&1)
  wait "$rpid"
  r=$(cat "$LAB_DIR/recv.out")
  if [ "$account" = 1 ]; then
    sleep 0.5 # the relays publish their counters once a second; the receiver waited 0.7 s for stragglers
    after=$(snap "$kind")
    acct=$(delta "$before" "$after")
  fi
  P_SENT=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' <<< "$s")
  P_RECV=$(sed -n 's/.*received=\([0-9]*\).*/\1/p' <<< "$r")
  local secs
  secs=$(sed -n 's/.*secs=\([0-9.]*\).*/\1/p' <<< "$s")
  if [ -z "$P_SENT" ] || [ -z "$P_RECV" ] || [ -z "$secs" ]; then
    lab_log "$cfg $size: probe failed: send: $s recv: $r"
    P_OK=0 P_DELIV=0
    return 1
  fi
  P_DELIV=$(awk -v n="$P_RECV" -v t="$secs" 'BEGIN { printf "%d", n / t }')
  P_OFFERED=$(awk -v n="$P_SENT" -v t="$secs" 'BEGIN { printf "%d", n / t }')
  if [ $((P_RECV * 100)) -ge $((P_SENT * 99)) ]; then P_OK=1; else P_OK=0; fi
  record "cfg=$cfg size=$size round=$ROUND what=$what target=$rate offered=$P_OFFERED delivered=$P_DELIV ok=$P_OK" \
    "sent=$P_SENT received=$P_RECV secs=$secs $acct"
}

# measure CFG SIZE: saturation, then a search for the highest delivered rate at <= 1 % loss: from what got
# through at saturation, up by 1.3x after a probe that met it (at most half way to what was offered flat out),
# down by 0.7x after one that did not, bisecting once both are known. Records the best rate that met it and the
# most delivered by any probe.
measure() {
  local cfg=$1 size=$2 best=0 peak lo=0 hi r i
  probe "$cfg" "$size" 0 saturation 1 || { record "cfg=$cfg size=$size round=$ROUND what=best pps=0 note=failed"; return; }
  peak=$P_DELIV
  if [ "$P_OK" = 1 ]; then
    record "cfg=$cfg size=$size round=$ROUND what=best pps=$P_DELIV peak=$peak note=sender-limited"
    return
  fi
  hi=$P_OFFERED
  r=$P_DELIV
  for i in $(seq "$PROBES"); do
    [ "$r" -gt 0 ] || break
    probe "$cfg" "$size" "$r" "search$i" 1 || break
    [ "$P_DELIV" -gt "$peak" ] && peak=$P_DELIV
    if [ "$P_OK" = 1 ]; then
      [ "$P_DELIV" -gt "$best" ] && best=$P_DELIV
      lo=$r
      r=$((r * 13 / 10))
      [ "$r" -gt $(((lo + hi) / 2)) ] && r=$(((lo + hi) / 2))
    else
      hi=$r
      if [ "$lo" -gt 0 ]; then r=$(((lo + r) / 2)); else r=$((r * 7 / 10)); fi
    fi
  done
  record "cfg=$cfg size=$size round=$ROUND what=best pps=$best peak=$peak"
}

latency() {
  local cfg=$1 out
  RUN=$((RUN + 1))
  out=$(ip netns exec "$LAB_NS_IOT" "$UDPLOAD" ping --dst "$LAB_RELAY_IOT_ADDR:$BENCH_ECHO_PORT" --size 64 \
    --rate "$LAT_RATE" --secs "$LAT_SECS" --run "$RUN" 2>&1)
  record "cfg=$cfg round=$ROUND what=latency rate=$LAT_RATE $out"
}

# profile CFG SIZE: CPU profiles at saturation (perf, when installed) of the relay and, in (d), of the AWS side's
# iotrelay, recorded at the same time: self time by symbol (the top lines into $RESULTS.perf.CFG.SIZE, and
# .aws.CFG.SIZE for the AWS side) and by binary (`.dso` files: the kernel, our binary, libc) for the report.
profile() {
  local cfg=$1 size=$2 pid apid f rp sp w
  command -v perf > /dev/null || return 0
  bench_lab "$cfg"
  pid=$(cat "$LAB_DIR/relay.pid" 2>/dev/null) || return 0
  apid=$(cat "$(lab_aws_dir 1)/iotrelay.pid" 2>/dev/null)
  f=$RESULTS.perf.$cfg.$size
  RUN=$((RUN + 1))
  ip netns exec "$LAB_NS_VPC" "$UDPLOAD" recv --bind "$LAB_DEVICE:$BENCH_PORT" --run "$RUN" --wait-secs 8 \
    > /dev/null 2>&1 &
  rp=$!
  sleep 0.3
  ip netns exec "$LAB_NS_IOT" "$UDPLOAD" send --dst "$LAB_RELAY_IOT_ADDR:$BENCH_PORT" --size "$size" --rate 0 \
    --secs 3 --run "$RUN" --threads "$THREADS" > /dev/null 2>&1 &
  sp=$!
  sleep 0.5
  [ -n "$apid" ] && perf record -q -F 999 -p "$apid" -o "$f.aws.data" -- sleep 2 > /dev/null 2>&1 &
  perf record -q -F 999 -p "$pid" -o "$f.data" -- sleep 2 > /dev/null 2>&1
  wait "$sp" "$rp"
  wait
  for w in "" .aws; do
    [ -s "$f$w.data" ] || continue
    perf report -i "$f$w.data" --stdio --no-children --sort comm,dso,symbol --percent-limit 0.8 2> /dev/null \
      | grep -v '^#' | grep -v '^ *$' | head -20 > "${f/.perf./.perf$w.}"
    perf report -i "$f$w.data" --stdio --no-children --sort dso --percent-limit 0.5 2> /dev/null \
      | grep -v '^#' | grep -v '^ *$' | head -8 > "${f/.perf./.dso$w.}"
    rm -f "$f$w.data"
  done
}

# rss_load CFG: the relay of a load-SUITE lab (two tunnels, BENCH_FORWARDS forwards) under BENCH_SESSIONS sessions
# (one source port each, spread over the forwards) at BENCH_LOAD_RATE datagrams/s for BENCH_LOAD_SECS: its RSS
# now and at peak, and the sessions it holds.
rss_load() {
  local cfg=$1 pid out m
  bench_lab "$cfg"
  pid=$(cat "$LAB_DIR/relay.pid" 2>/dev/null) || return 0
  RUN=$((RUN + 1))
  out=$(ip netns exec "$LAB_NS_IOT" "$UDPLOAD" send --dst "$LAB_RELAY_IOT_ADDR:9100" --size 64 \
    --rate "${BENCH_LOAD_RATE:-10000}" --secs "${BENCH_LOAD_SECS:-6}" --run "$RUN" --threads 2 \
    --sockets $((${BENCH_SESSIONS:-4000} / 2)) --dst-ports "$BENCH_FORWARDS" 2>&1)
  sleep 1.5 # the status is published once a second
  m=$(relay_curl "http://$RELAY_ADMIN/metrics" 2>/dev/null)
  record "cfg=$cfg what=rss when=load rss_kib=$(rss_kib "$pid" VmRSS) hwm_kib=$(rss_kib "$pid" VmHWM)" \
    "anon_kib=$(rss_kib "$pid" RssAnon) file_kib=$(rss_kib "$pid" RssFile)" \
    "sessions=$(metric_sum 'iotrelay_forward_sessions{' <<< "$m")" \
    "tunnels_up=$(metric_sum 'iotrelay_tunnel_up{' <<< "$m") forwards=$BENCH_FORWARDS $out"
}

rss_kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status" 2>/dev/null; }
relay_rss() { # CFG WHEN: the relay's (and the AWS-side iotrelay's) resident memory now and at peak
  local cfg=$1 kind=${1%-*} pid
  bench_lab "$cfg"
  [ "$kind" = relay ] || [ "$kind" = both ] || [ "$kind" = base ] || [ "$kind" = load ] || return 0
  pid=$(cat "$LAB_DIR/relay.pid" 2>/dev/null) || return 0
  record "cfg=$cfg what=rss when=$2 rss_kib=$(rss_kib "$pid" VmRSS) hwm_kib=$(rss_kib "$pid" VmHWM)"
}

START_LOAD=$(loadavg)
START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
T0=$SECONDS
echo "# bench: $BENCH_ID, configurations: $CONFIGS; sizes: $SIZES; rounds $ROUNDS x ${SECS}s; load $START_LOAD" >&2
ROUND=0
for cfg in $CONFIGS; do
  echo "# up: $cfg" >&2
  if out=$(bench_up "$cfg"); then
    UP+=("$cfg")
    record "cfg=$cfg what=up ${out//$'\n'/ }"
    relay_rss "$cfg" idle
  else
    record "cfg=$cfg what=down"
    echo "# $cfg did not come up; it is reported as missing" >&2
    bench_down "$cfg" > /dev/null 2>&1
  fi
done
echo "# labs up in $((SECONDS - T0)) s: ${UP[*]}" >&2

for ROUND in $(seq "$ROUNDS"); do
  # Rotate the order every round, so no configuration always follows the same one.
  n=${#UP[@]}
  for ((j = 0; j < n; j++)); do
    cfg=${UP[$(((j + ROUND - 1) % n))]}
    bench_lab "$cfg"
    for size in $SIZES; do
      measure "$cfg" "$size"
      echo "# round $ROUND $cfg ${size} B: $(tail -1 "$RESULTS" | cut -d' ' -f5-)" >&2
    done
    latency "$cfg"
  done
  record "what=load round=$ROUND loadavg=$(loadavg | tr ' ' ,)"
done
for cfg in "${UP[@]}"; do relay_rss "$cfg" loaded; done
for cfg in $LOAD_CONFIGS; do
  echo "# up: $cfg (memory under load)" >&2
  if out=$(bench_up "$cfg"); then
    relay_rss "$cfg" idle
    rss_load "$cfg"
  else
    record "cfg=$cfg what=down"
  fi
  bench_down "$cfg" > /dev/null 2>&1
done
for cfg in $IKE_CONFIGS; do
  if [ -x "$IKELOAD" ]; then
    ike_bench "$cfg"
  else
    record "cfg=$cfg what=ike phase=up ok=0 note=no-generator-binary"
    echo "# $cfg: no $IKELOAD (cargo build --release -p iotrelay-ikeload): no IKE responder figures" >&2
  fi
done
if [ "${BENCH_PROFILE:-1}" = 1 ]; then
  for cfg in "${UP[@]}"; do
    case $cfg in both-* | base-*) for size in $SIZES; do profile "$cfg" "$size"; done ;; esac
  done
fi

END_LOAD=$(loadavg)
python3 "$HERE/report.py" "$RESULTS" \
  --date "$START_DATE" --load-start "$START_LOAD" --load-end "$END_LOAD" --secs $((SECONDS - T0)) \
  --rounds "$ROUNDS" --probe-secs "$SECS" --quick "$QUICK" --commit "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)" \
  --out "$OUT" > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
echo "# bench: $((SECONDS - T0)) s, report in $OUT, raw records in $RESULTS" >&2
