# shellcheck shell=bash
# The BGP daemons of e2e/bgp/run.sh (sourced after e2e/lab/lib.sh): bird2 next to each AWS endpoint's strongSwan,
# configured like AWS's side of a dynamic VPN connection, and the VPC router, one more bird in the VPC namespace
# that peers with both and chooses between the tunnels by AS-path length. Read with birdc.

aws_inside() { echo "169.254.1$1.1"; }
relay_inside() { echo "169.254.1$1.2"; }
bird_dir() { echo "$(lab_aws_dir "$1")/bird"; }
birdc_n() { local i=$1; shift; birdc -s "$(bird_dir "$i")/bird.ctl" "$@"; }

# bird_start N: bird2 in awsN, on the AWS inside address carried by ipsec0, configured like AWS.
bird_start() {
  local i=$1 d
  d=$(bird_dir "$i")
  mkdir -p "$d"
  ip -n "$LAB_ID-aws$i" addr replace "$(aws_inside "$i")/30" dev ipsec0
  cat > "$d/bird.conf" <<EOF
router id $(aws_inside "$i");
log "$d/bird.log" all;
protocol device { scan time 2; }
# The VPC (the "VPC CIDR" AWS announces); disabled until a case enables it.
protocol static vpc {
  disabled;
  ipv4;
  route $LAB_VPC blackhole;
}
protocol bgp relay {
  local $(aws_inside "$i") as 64512;
  neighbor $(relay_inside "$i") as 65000;
  hold time 30;
  keepalive time 10;
  connect retry time 5;
  ipv4 {
    import all;
    export where proto = "vpc";
    next hop self;
  };
}
# The VPC router (vpc_bird_start): what this endpoint learned from the relay, with its AS path, over internal BGP.
protocol bgp vpcrouter {
  local 100.64.1.$((i + 1)) as 64512;
  neighbor $VPC_ROUTER as 64512;
  direct;
  hold time 30;
  keepalive time 10;
  connect retry time 5;
  ipv4 {
    import none;
    export where proto = "relay";
    next hop self;
  };
}
EOF
  lab_bg "$LAB_ID-aws$i" "$d/bird.out" bird -f -c "$d/bird.conf" -s "$d/bird.ctl" -P "$d/bird.pid"
  lab_wait 10 test -S "$d/bird.ctl" || { lab_fail_why "bird in aws$i did not start: $(cat "$d/bird.out")"; return 1; }
}
bird_stop() { [ -S "$(bird_dir "$1")/bird.ctl" ] && birdc_n "$1" down > /dev/null 2>&1; true; }
bird_stop_all() { bird_stop 1; bird_stop 2; }
bird_established() { birdc_n "$1" show protocols relay 2>/dev/null | grepq Established; }
# bird_path N: the AS path of bird N's route to the relay's inside address (empty if none).
bird_path() { birdc_n "$1" show route "$LAB_INSIDE/32" all 2>/dev/null | awk '/BGP.as_path:/ {$1=""; print substr($0, 2)}'; }
bird_path_is() { [ "$(bird_path "$1")" = "$2" ]; }

# The VPC router: one bird in the VPC namespace, peering over internal BGP (AS 64512) with the birds on aws1 and
# aws2, as AWS's VPN gateway chooses between the connection's tunnels: the shortest AS path to the relay wins.
# (The lab's data plane stays static: lab_fail_over / lab_fail_back move the VPC's route, as in e2e/datapath.)
VPC_ROUTER=$LAB_DEVICE
vpc_bird_dir() { echo "$LAB_DIR/vpc-bird"; }
birdc_vpc() { birdc -s "$(vpc_bird_dir)/bird.ctl" "$@"; }
vpc_bird_start() {
  local d i
  d=$(vpc_bird_dir)
  mkdir -p "$d"
  {
    echo "router id $VPC_ROUTER;"
    echo "log \"$d/bird.log\" all;"
    echo "protocol device { scan time 2; }"
    for i in 1 2; do
      cat <<EOF
protocol bgp aws$i {
  local $VPC_ROUTER as 64512;
  neighbor 100.64.1.$((i + 1)) as 64512;
  direct;
  hold time 30;
  keepalive time 10;
  connect retry time 5;
  ipv4 { import all; export none; };
}
EOF
    done
  } > "$d/bird.conf"
  lab_bg "$LAB_NS_VPC" "$d/bird.out" bird -f -c "$d/bird.conf" -s "$d/bird.ctl" -P "$d/bird.pid"
  lab_wait 10 test -S "$d/bird.ctl" || { lab_fail_why "the VPC router's bird did not start: $(cat "$d/bird.out")"; return 1; }
}
vpc_bird_stop() { [ -S "$(vpc_bird_dir)/bird.ctl" ] && birdc_vpc down > /dev/null 2>&1; true; }
vpc_established() { birdc_vpc show protocols "aws$1" 2>/dev/null | grepq Established; }
# vpc_routes: the VPC router's routes to the relay's inside address, one line each: PROTOCOL BEST(*|-) AS-PATH
# (the path's AS numbers joined by commas).
vpc_routes() {
  birdc_vpc show route for "$LAB_INSIDE" all 2>/dev/null | awk '
    /unicast \[/ { if (p != "") print p, b, a; b = ($0 ~ /\] \* \(/) ? "*" : "-"; sub(/^.*unicast \[/, ""); p = $1; a = "" }
    /BGP.as_path:/ { $1 = ""; a = substr($0, 2); gsub(/ /, ",", a) }
    END { if (p != "") print p, b, a }'
}
# vpc_best: the protocol (aws1 or aws2) of the VPC router's best route to the relay's inside address.
vpc_best() { vpc_routes | awk '$2 == "*" {print $1}'; }
vpc_best_is() { [ "$(vpc_best)" = "$1" ]; }
vpc_why() { echo "the VPC router's routes to $LAB_INSIDE: $(vpc_routes | tr '\n' ';')"; }

# bird_restart N: bird N afresh (its config: the VPC not announced), once its old process has left port 179.
bird_restart() {
  bird_stop "$1"
  lab_wait 15 sh -c "! ip netns exec $LAB_ID-aws$1 ss -Hltn 'sport = :179' | grep -q ." \
    || { lab_fail_why "port 179 in aws$1 still taken"; return 1; }
  rm -f "$(bird_dir "$1")/bird.ctl"
  bird_start "$1"
}
