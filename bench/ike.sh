# shellcheck shell=bash
# IKE responder under traffic (sourced by bench/run.sh after bench/lab.sh): how many IKE SAs per second the AWS-side
# iotrelay (a responder, `startupAction: Add`) completes, what each costs it in CPU, and what that does to the
# established tunnel's traffic. The lab is (d) with an extra tunnel on the AWS side (ike-SUITE: bench_up, peers
# $BENCH_IKE_PEERS) and a namespace $LAB_ID-ikegen on the "Internet" bridge holding those peers' addresses, where
# bench/ikeload (initiators of our own engine, one handshake in flight per source address: IKE_SA_INIT, IKE_AUTH
# with the first CHILD_SA, DELETE, again) runs flat out. Four phases of BENCH_IKE_SECS each:
#   idle    nothing: the responder's own CPU per second (timers, status), subtracted in the report;
#   alone   established traffic only: udpload send -> recv (64 B at BENCH_IKE_RATE/s) through tunnel1 and udpload
#           ping (1000/s) to the device's echo and back;
#   ike     handshakes only: SAs/s and the responder's CPU per SA, undisturbed;
#   during  both at once: SAs/s, and the traffic's delivered rate, loss and latency beside them.
# Each phase is one `what=ike` record (keys t_* traffic, lat_* latency, ike_* the generator's line, aws_cpu_secs:
# the responder's CPU time over the phase, all threads; counters of the AWS side's ingress lanes, cookies and
# refused half-open SAs over the phase). A generator that completes no handshake is recorded `ok=0` with its line
# and the responder's last log lines (`note=`), and said on stderr.
# The AWS side accepts one extra tunnel: an IotRelay has at most two (`spec.tunnels`), the relay's and one more,
# so one handshake is in flight at a time; and the engine admits at most a burst of 8 Diffie-Hellman computations
# per tunnel, then one per 500 ms (the rest get a COOKIE demand, then no answer: the initiator retransmits). So
# the wall rate here is that budget, by design, not the responder's CPU; what the CPU figure gives is the
# responder's cost per IKE SA in the real process (an upper bound: its idle work in the phase counts too).
# BENCH_IKE_GEN_PSK (default the AWS side's): the generator's PSK; a wrong one shows the failure record.

BENCH_IKE_PEERS=${BENCH_IKE_PEERS:-198.51.100.101}
BENCH_IKE_PSK=bench_psk_ikeload_0123
IKE_NS_SUFFIX=ikegen

# bench_ikegen_ns: the generator's namespace, on the lab's "Internet" bridge with every address of BENCH_IKE_PEERS.
bench_ikegen_ns() {
  local ns=$LAB_ID-$IKE_NS_SUFFIX a
  ip netns add "$ns" || return 1
  ip -n "$ns" link set lo up
  ip link add wan0 netns "$ns" type veth peer name p-ikegen netns "$LAB_NS_WAN" || return 1
  for a in $BENCH_IKE_PEERS; do ip -n "$ns" addr add "$a/24" dev wan0 || return 1; done
  ip -n "$ns" link set wan0 up
  ip -n "$LAB_NS_WAN" link set p-ikegen master br0 up
  (umask 077 && echo "${BENCH_IKE_GEN_PSK:-$BENCH_IKE_PSK}" > "$LAB_DIR/ikegen.psk")
}
bench_ikegen_down() { ip netns del "$LAB_ID-$IKE_NS_SUFFIX" 2> /dev/null || true; }

# ike_cpu_ns PID: the CPU time of PID's threads so far, in ns (the scheduler's account: /proc/PID/task/*/schedstat;
# utime + stime of /proc/PID/stat count in 10 ms ticks, too coarse for a few handshakes).
ike_cpu_ns() { cat /proc/"$1"/task/*/schedstat 2> /dev/null | awk '{ s += $1 } END { printf "%.0f", s }'; }

# ike_counters: the AWS side's handshake-related counters, as `key=value ...`.
ike_counters() {
  local m
  m=$(iotrelay_aws_curl 1 /metrics 2> /dev/null)
  printf 'aws_hs_lane_drops=%s aws_hs_queued=%s aws_est_lane_drops=%s aws_cookies=%s aws_half_open_refused=%s ' \
    "$(metric_sum 'iotrelay_ingress_drops_total{lane="handshake"}' <<< "$m")" \
    "$(metric_sum 'iotrelay_ingress_queued_total{lane="handshake"}' <<< "$m")" \
    "$(metric_sum 'iotrelay_ingress_drops_total{lane="established"}' <<< "$m")" \
    "$(metric_sum 'iotrelay_ike_cookies_sent_total' <<< "$m")" \
    "$(metric_sum 'iotrelay_ike_half_open_refused_total' <<< "$m")"
  m=$(relay_curl "http://$RELAY_ADMIN/metrics" 2> /dev/null)
  printf 'relay_lane_drops=%s ' "$(metric_sum 'iotrelay_ingress_drops_total' <<< "$m")"
}

# ike_phase CFG PHASE TRAFFIC(0|1) IKE(0|1): one phase; appends its record.
ike_phase() {
  local cfg=$1 phase=$2 traffic=$3 ike=$4 secs=$BENCH_IKE_SECS pid c0 c1 before after gen="" gp="" rp lp s r l rec
  pid=$(cat "$(lab_aws_dir 1)/iotrelay.pid")
  RUN=$((RUN + 1))
  if [ "$traffic" = 1 ]; then
    rm -f "$LAB_DIR/ready.$RUN"
    ip netns exec "$LAB_NS_VPC" "$UDPLOAD" recv --bind "$LAB_DEVICE:$BENCH_PORT" --run "$RUN" \
      --ready "$LAB_DIR/ready.$RUN" --wait-secs $((secs + 12)) > "$LAB_DIR/ike-recv.out" 2>&1 &
    rp=$!
    lab_wait 5 test -e "$LAB_DIR/ready.$RUN" || { kill "$rp" 2> /dev/null; record "cfg=$cfg what=ike phase=$phase ok=0 note=no-receiver"; return 1; }
  fi
  before=$(ike_counters)
  c0=$(ike_cpu_ns "$pid")
  if [ "$ike" = 1 ]; then
    ip netns exec "$LAB_ID-$IKE_NS_SUFFIX" "$IKELOAD" --dst "$(lab_aws_addr 1)" --src "${BENCH_IKE_PEERS%% *}" \
      --peers "$(wc -w <<< "$BENCH_IKE_PEERS")" --psk-file "$LAB_DIR/ikegen.psk" --secs "$secs" \
      > "$LAB_DIR/ikegen.out" 2>&1 &
    gp=$!
  fi
  if [ "$traffic" = 1 ]; then
    # The generator's first handshakes are under way before the traffic's interval starts.
    [ -n "$gp" ] && sleep 0.3
    ip netns exec "$LAB_NS_IOT" "$UDPLOAD" ping --dst "$LAB_RELAY_IOT_ADDR:$BENCH_ECHO_PORT" --size 64 \
      --rate 1000 --secs "$secs" --run $((RUN + 100000)) > "$LAB_DIR/ike-ping.out" 2>&1 &
    lp=$!
    s=$(ip netns exec "$LAB_NS_IOT" "$UDPLOAD" send --dst "$LAB_RELAY_IOT_ADDR:$BENCH_PORT" --size 64 \
      --rate "$BENCH_IKE_RATE" --secs "$secs" --run "$RUN" --threads 1 2>&1)
    wait "$lp" "$rp"
    r=$(cat "$LAB_DIR/ike-recv.out")
    l=$(cat "$LAB_DIR/ike-ping.out")
  fi
  [ -n "$gp" ] && { wait "$gp"; gen=$(cat "$LAB_DIR/ikegen.out"); }
  c1=$(ike_cpu_ns "$pid")
  sleep 1.1 # the AWS side publishes its counters once a second
  after=$(ike_counters)
  rec="cfg=$cfg what=ike phase=$phase secs=$secs aws_cpu_secs=$(awk -v a="${c0:-0}" -v b="${c1:-0}" \
    'BEGIN { printf "%.4f", (b - a) / 1e9 }') $(delta "$before" "$after")"
  if [ "$traffic" = 1 ]; then
    local sent recv tsecs
    sent=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' <<< "$s")
    recv=$(sed -n 's/.*received=\([0-9]*\).*/\1/p' <<< "$r")
    tsecs=$(sed -n 's/.*secs=\([0-9.]*\).*/\1/p' <<< "$s")
    rec+=" t_rate=$BENCH_IKE_RATE t_sent=${sent:-0} t_received=${recv:-0}"
    [ -n "$sent" ] && [ -n "$recv" ] && [ -n "$tsecs" ] \
      && rec+=" t_delivered=$(awk -v n="$recv" -v t="$tsecs" 'BEGIN { printf "%d", n / t }')"
    rec+=" $(sed 's/\([a-z_0-9]*\)=/lat_\1=/g' <<< "$l" | tr '\n' ' ')"
  fi
  if [ "$ike" = 1 ]; then
    rec+=" $(sed 's/\([a-z_0-9]*\)=/ike_\1=/g' <<< "$gen" | tr '\n' ' ')"
    if grep -q '^handshakes=[1-9]' <<< "$gen"; then
      rec+=" ok=1"
    else
      rec+=" ok=0 note=no-handshake:$(tail -2 "$(lab_aws_dir 1)/iotrelay.log" | tr -s ' \n' '__' | cut -c1-300)"
      echo "# $cfg $phase: the generator completed no IKE handshake: $gen" >&2
    fi
  fi
  record "$rec"
}

# ike_bench CFG: bring CFG (ike-SUITE) up, run the three phases, take it down.
ike_bench() {
  local cfg=$1 out
  echo "# up: $cfg (IKE responder under traffic)" >&2
  if ! out=$(bench_up "$cfg") || ! bench_lab "$cfg" || ! bench_ikegen_ns; then
    record "cfg=$cfg what=ike phase=up ok=0 note=lab-down"
    echo "# $cfg did not come up: no IKE responder figures" >&2
    bench_down "$cfg" > /dev/null 2>&1
    return
  fi
  record "cfg=$cfg what=ike phase=up ok=1 ${out//$'\n'/ }"
  ike_phase "$cfg" idle 0 0
  ike_phase "$cfg" alone 1 0
  ike_phase "$cfg" ike 0 1
  sleep 4 # the extra tunnel's DH budget refills its burst (8 x 500 ms), as the alone phase let it before ike
  ike_phase "$cfg" during 1 1
  echo "# $cfg: $(grep "cfg=$cfg what=ike phase=during" "$RESULTS" | grep -o 'ike_rate=[0-9.]*\|t_delivered=[0-9]*\|lat_p99_us=[0-9]*' | tr '\n' ' ')" >&2
  bench_down "$cfg" > /dev/null 2>&1
}
