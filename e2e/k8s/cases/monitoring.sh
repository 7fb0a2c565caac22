# shellcheck shell=bash
# Sourced by e2e/k8s/run.sh (not run alone), after user-path.sh (plant-7 is Ready and has carried traffic): the
# chart's monitoring objects. Cases register with `tc`; run.sh counts every `^tc ` line of itself and of
# cases/*.sh as the expected total.
# ---------------------------------------------------------------------------------------------------------------
# The chart renders a PodMonitor, a relay-metrics Service + ServiceMonitor, the operator's ServiceMonitor, a
# PrometheusRule and the Grafana dashboard ConfigMap; they are applied to this API server (with stand-in
# monitoring.coreos.com CRDs, monitoring-crds.yaml, when the cluster has none) and read back. A Prometheus would
# scrape what they select, so the cases check what they select against the live relay: the PodMonitor's and the
# ServiceMonitor's selectors and port names lead to plant-7's pod, its metrics answer there, and every metric the
# rule and the dashboard query is among them.

mon_values=(--set relayMetrics.podMonitor.enabled=true --set relayMetrics.service.enabled=true
  --set relayMetrics.serviceMonitor.enabled=true --set "relayMetrics.namespaces={$ns}"
  --set serviceMonitor.enabled=true --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true)
mon_templates=(relay-metrics servicemonitor prometheusrule grafana-dashboard)
# mon_get KIND NAME [NAMESPACE]: the object as the API server stores it (JSON).
mon_get() { kubectl -n "${3:-$opns}" get "$1" "$2" -o json; }

t_monitoring_applied() {
  requires relay chart || return 1
  local out t kv show=()
  if ! kubectl get crd podmonitors.monitoring.coreos.com > /dev/null 2>&1; then
    out=$(kubectl apply -f "$here/monitoring-crds.yaml" 2>&1) || { why="stand-in CRDs: $out"; return 1; }
    kubectl wait --for=condition=Established crd/podmonitors.monitoring.coreos.com \
      crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com --timeout=30s > /dev/null \
      || { why="stand-in monitoring CRDs not Established"; return 1; }
  fi
  for t in "${mon_templates[@]}"; do show+=(--show-only "templates/$t.yaml"); done
  # Offline rendering assumes an old Kubernetes unless told: the chart's kubeVersion needs the server's.
  kv=$(kubectl version -o json 2>/dev/null | jq -r '.serverVersion.gitVersion // empty')
  out=$(helm template iotrelay "$chart" -n $opns --kube-version "${kv:-unknown}" "${mon_values[@]}" "${show[@]}" \
    2>&1 > "$K8S_STATE/monitoring.yaml") || { why="helm template: $(echo "$out" | head -2 | tr '\n' ' ')"; return 1; }
  out=$(kubectl apply --server-side -f "$K8S_STATE/monitoring.yaml" 2>&1) || { why="kubectl apply: $(echo "$out" | tail -2 | tr '\n' ' ')"; return 1; }
  for t in podmonitor/iotrelay-relays servicemonitor/iotrelay-relays servicemonitor/iotrelay \
           prometheusrule/iotrelay configmap/iotrelay-dashboard; do
    mon_get "${t%/*}" "${t#*/}" > /dev/null 2>&1 || { why="$t not stored in $opns"; return 1; }
  done
  mon_get service iotrelay-relay-metrics $ns > /dev/null 2>&1 || { why="service/iotrelay-relay-metrics not stored in $ns"; return 1; }
  have[monitoring]=1
}
tc monitoring-objects-applied t_monitoring_applied

# The PodMonitor selects plant-7's pod (namespace and labels), its port name is a container port of that pod, and
# /metrics there answers with the relay's build info.
t_podmonitor_reaches_relay() {
  requires monitoring || return 1
  local pm pod sel port path number ip
  pm=$(mon_get podmonitor iotrelay-relays)
  pod=$(relay_pod plant-7) || { why="no relay pod"; return 1; }
  jq -e --arg ns "$ns" '.spec.namespaceSelector.any == true or (.spec.namespaceSelector.matchNames | index($ns))' \
    <<< "$pm" > /dev/null || { why="the PodMonitor's namespaceSelector leaves out $ns"; return 1; }
  sel=$(jq -r '.spec.selector.matchLabels | to_entries | map("\(.key)=\(.value)") | join(",")' <<< "$pm")
  kubectl -n $ns get pods -l "$sel" -o name | grepq -x "pod/$pod" || { why="selector $sel does not select $pod"; return 1; }
  port=$(jq -r '.spec.podMetricsEndpoints[0].port' <<< "$pm")
  path=$(jq -r '.spec.podMetricsEndpoints[0].path' <<< "$pm")
  number=$(kubectl -n $ns get pod "$pod" -o json | jq -r --arg p "$port" \
    '[.spec.containers[].ports[]? | select(.name == $p) | .containerPort][0] // empty')
  [ -n "$number" ] || { why="$pod has no container port named $port"; return 1; }
  ip=$(kubectl -n $ns get pod "$pod" -o jsonpath='{.status.podIP}')
  ip netns exec "$K8S_NETNS" curl -sf --max-time 5 "http://$ip:$number$path" > "$K8S_STATE/relay-metrics.txt" \
    || { why="GET http://$ip:$number$path failed"; return 1; }
  grep -q '^iotrelay_build_info{' "$K8S_STATE/relay-metrics.txt" || { why="no iotrelay_build_info at $ip:$number$path"; return 1; }
}
tc podmonitor-selects-relay-metrics-port t_podmonitor_reaches_relay

# The ServiceMonitor selects the relay-metrics Service, names its port, and the Service's endpoints are plant-7's
# pod on the metrics port.
t_servicemonitor_reaches_relay() {
  requires monitoring || return 1
  local sm svc sel pod ip port eps
  sm=$(mon_get servicemonitor iotrelay-relays)
  svc=$(mon_get service iotrelay-relay-metrics $ns)
  jq -e --arg ns "$ns" '.spec.namespaceSelector.matchNames | index($ns)' <<< "$sm" > /dev/null \
    || { why="the ServiceMonitor's namespaceSelector leaves out $ns"; return 1; }
  sel=$(jq -r '.spec.selector.matchLabels | to_entries | map("\(.key)=\(.value)") | join(",")' <<< "$sm")
  kubectl -n $ns get service -l "$sel" -o name | grepq -x service/iotrelay-relay-metrics \
    || { why="ServiceMonitor selector $sel does not select the relay-metrics Service"; return 1; }
  port=$(jq -r '.spec.endpoints[0].port' <<< "$sm")
  jq -e --arg p "$port" '.spec.ports | map(.name) | index($p)' <<< "$svc" > /dev/null \
    || { why="the Service has no port named $port"; return 1; }
  pod=$(relay_pod plant-7) || { why="no relay pod"; return 1; }
  ip=$(kubectl -n $ns get pod "$pod" -o jsonpath='{.status.podIP}')
  # The endpoints controller fills the slice shortly after the Service appears.
  mon_eps() { kubectl -n $ns get endpointslices -l kubernetes.io/service-name=iotrelay-relay-metrics -o json \
    | jq -r --arg p "$port" '.items[] | .ports[]? as $q | select($q.name == $p) | .endpoints[] | select(.targetRef.kind == "Pod")
      | "\(.targetRef.name) \(.addresses[0]):\($q.port)"'; }
  mon_has_ep() { mon_eps | grepq "^$pod "; }
  wait_until 30 mon_has_ep || { why="the Service's endpoints are '$(mon_eps | tr '\n' ' ')', not $pod"; return 1; }
  ip netns exec "$K8S_NETNS" curl -sf --max-time 5 "http://$(mon_eps | awk -v p="$pod" '$1 == p {print $2; exit}')/metrics" \
    | grepq '^iotrelay_tunnel_up{' || { why="no iotrelay_tunnel_up from the Service's endpoint ($ip)"; return 1; }
}
tc servicemonitor-selects-relay-metrics-service t_servicemonitor_reaches_relay

# Every iotrelay_* metric an alert expression or a dashboard panel of the applied objects queries has a sample (or
# at least its metric family) in the live relay's /metrics.
t_rules_and_panels_query_live_metrics() {
  requires monitoring || return 1
  local names missing="" n m
  [ -s "$K8S_STATE/relay-metrics.txt" ] || { why="not yet: no /metrics of the relay (podmonitor case)"; return 1; }
  names=$( { mon_get prometheusrule iotrelay | jq -r '.spec.groups[].rules[].expr'
             mon_get configmap iotrelay-dashboard | jq -r '.data[]' | jq -r '.. | .expr? // empty'; } \
    | grep -o 'iotrelay_[a-z0-9_]*' | sort -u)
  n=$(wc -w <<< "$names")
  [ "$n" -ge 10 ] || { why="only $n metric names found in the rule and the dashboard (parse error?)"; return 1; }
  for m in $names; do
    # A counter is queried as name_total, a histogram as name_bucket/_sum/_count; the family line names the base.
    grep -Eq "^$m[{ ]|^# TYPE ${m%_total} |^# TYPE ${m%_bucket} " "$K8S_STATE/relay-metrics.txt" || missing+=" $m"
  done
  [ -z "$missing" ] || { why="queried but not exported by the running relay:$missing"; return 1; }
  echo "# monitoring: $n metric names queried by the rule and the dashboard, all exported by plant-7" >&2
}
tc rules-and-panels-query-live-relay-metrics t_rules_and_panels_query_live_metrics
