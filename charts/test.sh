#!/usr/bin/env bash
# Chart stage of `make test`: helm lint, helm template (parses, only known kinds, no hooks), values schema
# rejects junk, the chart's CRD copy equals crds/ and renders unchanged (crds.enabled/keep), monitoring objects,
# aggregated roles, and the Argo CD health check test (lua).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
chart="$here/iotrelay"
: "${IOTRELAY_CACHE:=/var/cache/iotrelay}"
helm="${HELM:-$IOTRELAY_CACHE/bin/helm}"
[ -x "$helm" ] || helm=$(command -v helm) || { echo "FAIL: no helm (run e2e/tools/build.sh)"; exit 1; }
lua=$(command -v lua5.4 || command -v lua) || { echo "FAIL: no lua5.4"; exit 1; }
failed=0
ok() { echo "PASS $1"; }
ko() { echo "FAIL $1${2:+: $2}"; failed=$((failed + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if "$helm" lint --strict "$chart" --kube-version 1.34.0 > "$tmp/lint" 2>&1; then ok helm-lint; else ko helm-lint "$(tail -5 "$tmp/lint")"; fi

render() { "$helm" template iotrelay "$chart" -n iotrelay-system --kube-version 1.34.0 --include-crds "$@"; }
check_render() { # name, helm args...
  local name=$1
  shift
  if ! render "$@" > "$tmp/out.yaml" 2> "$tmp/err"; then ko "$name" "$(tail -3 "$tmp/err")"; return; fi
  python3 - "$tmp/out.yaml" "${want_env[@]}" <<'PY' > "$tmp/py" 2>&1 && ok "$name" || ko "$name" "$(cat "$tmp/py")"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
allowed = {"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
           "Deployment", "Service", "ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"}
for d in docs:
    assert d.get("apiVersion") and d.get("kind") in allowed, f"unexpected object {d.get('kind')}"
    ann = (d.get("metadata") or {}).get("annotations") or {}
    assert not any(k.startswith("helm.sh/hook") for k in ann), f"{d['kind']} has a Helm hook (Argo CD can't order it)"
kinds = [d["kind"] for d in docs]
for k in ["CustomResourceDefinition", "Deployment", "ClusterRole", "ServiceAccount"]:
    assert k in kinds, f"missing {k}"
dep = next(d for d in docs if d["kind"] == "Deployment")
c = dep["spec"]["template"]["spec"]["containers"][0]
assert c["command"] == ["iotrelay-operator"], c["command"]
assert dep["spec"]["template"]["spec"]["serviceAccountName"] not in ("", "default")
for cr in (d for d in docs if d["kind"] in ("ClusterRole", "Role")):
    for r in cr["rules"]:
        assert "*" not in r["verbs"] and "*" not in r["resources"], f"wildcard rule {r}"
        assert not {"escalate", "bind", "impersonate"} & set(r["verbs"]), f"dangerous verb in {r}"
        # Secrets: get only (checking referenced Secrets and granting get to relays); never list/watch cluster-wide.
        if "secrets" in r["resources"]:
            assert r["verbs"] == ["get"], f"the operator may only get Secrets, not {r['verbs']}"
env = {e["name"]: e.get("value") for e in c["env"]}
want = {k: v for k, v in (a.split("=", 1) for a in sys.argv[2:])}
for k, v in want.items():
    assert env.get(k) == v, f"operator env {k}={env.get(k)!r}, want {v!r}"
print(len(docs), "objects")
PY
}
# want_env: NAME=VALUE pairs the operator container's env must hold.
want_env=(IOTRELAY_ALLOW_IMAGE_OVERRIDE=false IOTRELAY_ALLOW_PRIVILEGED=false IOTRELAY_RELAY_METRICS_ADDR=0.0.0.0:9465)
check_render helm-template-defaults
check_render helm-template-monitoring --set relayMetrics.podMonitor.enabled=true --set relayMetrics.service.enabled=true \
  --set relayMetrics.serviceMonitor.enabled=true --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true \
  --set 'relayMetrics.namespaces={iot,plant}' --set serviceMonitor.enabled=true

# Monitoring objects: off by default; when on, the PodMonitor selects the relay pods' metrics port, the relay
# Services are not selected by the operator's ServiceMonitor, the rule has every documented alert, and the
# dashboard ConfigMap carries valid JSON. (Which metrics they query is checked against a running relay in
# sidecar/tests/monitoring.rs.)
if render > "$tmp/def.yaml" 2> "$tmp/err" && render --set relayMetrics.podMonitor.enabled=true --set relayMetrics.service.enabled=true \
  --set relayMetrics.serviceMonitor.enabled=true --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true \
  --set 'relayMetrics.namespaces={iot,plant}' --set serviceMonitor.enabled=true > "$tmp/mon.yaml" 2>> "$tmp/err"; then
  python3 - "$tmp/def.yaml" "$tmp/mon.yaml" <<'PY' > "$tmp/py" 2>&1 && ok monitoring-objects || ko monitoring-objects "$(cat "$tmp/py")"
import json, sys, yaml
load = lambda f: [d for d in yaml.safe_load_all(open(f)) if d]
default, mon = load(sys.argv[1]), load(sys.argv[2])
kinds = lambda docs: [d["kind"] for d in docs]
for k in ["PodMonitor", "PrometheusRule", "ConfigMap"]:
    assert k not in kinds(default), f"{k} rendered by default"
pm = next(d for d in mon if d["kind"] == "PodMonitor")
assert pm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "iotrelay-relay", pm["spec"]["selector"]
assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
assert pm["spec"]["namespaceSelector"] == {"matchNames": ["iot", "plant"]}, pm["spec"]["namespaceSelector"]
svcs = [d for d in mon if d["kind"] == "Service" and d["metadata"]["labels"].get("app.kubernetes.io/component") == "relay-metrics"]
assert sorted(s["metadata"]["namespace"] for s in svcs) == ["iot", "plant"], svcs
op_sm = next(d for d in mon if d["kind"] == "ServiceMonitor" and d["metadata"]["name"] == "iotrelay")
sel = op_sm["spec"]["selector"]["matchLabels"]
for s in svcs:
    assert s["spec"]["clusterIP"] == "None"
    assert s["spec"]["selector"]["app.kubernetes.io/name"] == "iotrelay-relay"
    assert not all(s["metadata"]["labels"].get(k) == v for k, v in sel.items()), "the operator's ServiceMonitor selects a relay Service"
rule = next(d for d in mon if d["kind"] == "PrometheusRule")
alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
want = {"IotRelayTunnelDown", "IotRelayNoTunnel", "IotRelayAuthenticationFailed", "IotRelayForwardDropsRising",
        "IotRelayEspDropsRising", "IotRelaySaExpiringWithoutRekey"}
assert alerts == want, alerts ^ want
cm = next(d for d in mon if d["kind"] == "ConfigMap")
assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
dash = json.loads(cm["data"]["iotrelay.json"])
assert all(t["expr"] for p in dash["panels"] for t in p["targets"]), "a panel without a query"
print(len(dash["panels"]), "panels,", len(alerts), "alerts")
PY
else ko monitoring-objects "$(tail -3 "$tmp/err")"; fi

# Aggregated roles: view reads IotRelays, edit manages them; they aggregate into the built-in roles.
if render > "$tmp/agg.yaml" 2> "$tmp/err"; then
  python3 - "$tmp/agg.yaml" <<'PY' > "$tmp/py" 2>&1 && ok aggregated-roles || ko aggregated-roles "$(cat "$tmp/py")"
import sys, yaml
roles = {d["metadata"]["name"]: d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ClusterRole"}
view, edit = roles["iotrelay-view"], roles["iotrelay-edit"]
agg = lambda r: {k.rsplit("-", 1)[-1] for k, v in r["metadata"]["labels"].items() if k.startswith("rbac.authorization.k8s.io/aggregate-to-") and v == "true"}
assert agg(view) == {"view", "edit", "admin"}, agg(view)
assert agg(edit) == {"edit", "admin"}, agg(edit)
verbs = lambda r: {v for rule in r["rules"] for v in rule["verbs"]}
assert verbs(view) == {"get", "list", "watch"}, verbs(view)
assert {"create", "update", "patch", "delete"} <= verbs(edit), verbs(edit)
assert not any("iotrelays/status" in rule["resources"] for rule in edit["rules"]), "users must not write status"
PY
else ko aggregated-roles "$(tail -3 "$tmp/err")"; fi
if render --set rbac.aggregateToDefaultRoles=false | grep -q 'aggregate-to-view'; then ko aggregated-roles-off "still rendered"; else ok aggregated-roles-off; fi
check_render helm-template-all-options --set serviceMonitor.enabled=true --set replicaCount=2 \
  --set imagePullSecrets[0]=regcred --set watchNamespace=iot --set podAnnotations.x=y --set logging.format=text
# One watched namespace: the operator's rules are a Role there, bound to its ServiceAccount; no ClusterRole(Binding)
# of the operator (the aggregated view/edit roles for users stay). All namespaces: a ClusterRole with the same rules.
if render --set watchNamespace=iot > "$tmp/ns.yaml" 2> "$tmp/err" && render > "$tmp/all.yaml" 2>> "$tmp/err"; then
  python3 - "$tmp/ns.yaml" "$tmp/all.yaml" <<'PY' > "$tmp/py" 2>&1 && ok namespaced-rbac || ko namespaced-rbac "$(cat "$tmp/py")"
import sys, yaml
ns, every = ([d for d in yaml.safe_load_all(open(f)) if d] for f in sys.argv[1:3])
mine = lambda docs, kind: [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == "iotrelay"]
assert not mine(ns, "ClusterRole") and not mine(ns, "ClusterRoleBinding"), "cluster-wide operator role with watchNamespace"
[role], [binding] = mine(ns, "Role"), mine(ns, "RoleBinding")
assert role["metadata"]["namespace"] == "iot" and binding["metadata"]["namespace"] == "iot"
assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "iotrelay"}, binding["roleRef"]
assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "iotrelay", "namespace": "iotrelay-system"}]
[cluster] = mine(every, "ClusterRole")
assert role["rules"] == cluster["rules"], "the Role's rules differ from the ClusterRole's"
assert not mine(every, "Role"), "a namespaced operator Role without watchNamespace"
PY
else ko namespaced-rbac "$(tail -3 "$tmp/err")"; fi

want_env=(IOTRELAY_ALLOW_IMAGE_OVERRIDE=true IOTRELAY_ALLOW_PRIVILEGED=true IOTRELAY_RELAY_METRICS_ADDR=127.0.0.1:9999)
check_render helm-template-relay-policy-reaches-operator --set relay.allowImageOverride=true \
  --set relay.allowPrivileged=true --set relay.metricsAddress=127.0.0.1:9999
if render --set relay.allowPrivileged=yes > /dev/null 2>&1; then ko values-schema-rejects-non-boolean-allow "allowPrivileged=yes accepted"; else ok values-schema-rejects-non-boolean-allow; fi
for bad in 9465 ""; do
  if render --set relay.metricsAddress="$bad" > /dev/null 2>&1; then ko values-schema-rejects-bad-metrics-address "metricsAddress='$bad' accepted"; else ok "values-schema-rejects-bad-metrics-address${bad:+-$bad}"; fi
done

# The CRD template: the generated CRD unchanged plus Helm's labels; keep annotation unless crds.keep=false; none
# with crds.enabled=false.
if render > "$tmp/crd.yaml" 2> "$tmp/err" && render --set crds.keep=false > "$tmp/nokeep.yaml" 2>> "$tmp/err" \
  && render --set crds.enabled=false > "$tmp/nocrd.yaml" 2>> "$tmp/err"; then
  python3 - "$repo/crds/iotrelay.dev_iotrelays.yaml" "$tmp/crd.yaml" "$tmp/nokeep.yaml" "$tmp/nocrd.yaml" <<'PY' > "$tmp/py" 2>&1 && ok crd-template || ko crd-template "$(cat "$tmp/py")"
import sys, yaml
crds = lambda f: [d for d in yaml.safe_load_all(open(f)) if d and d["kind"] == "CustomResourceDefinition"]
want = yaml.safe_load(open(sys.argv[1]))
[got], [nokeep], none = crds(sys.argv[2]), crds(sys.argv[3]), crds(sys.argv[4])
assert not none, "a CRD rendered with crds.enabled=false"
meta = got.pop("metadata")
want.pop("metadata")
assert got == want, "the rendered CRD differs from crds/iotrelay.dev_iotrelays.yaml"
assert meta["name"] == "iotrelays.iotrelay.dev"
assert meta["annotations"] == {"helm.sh/resource-policy": "keep"}, meta.get("annotations")
assert "helm.sh/resource-policy" not in (nokeep["metadata"].get("annotations") or {})
PY
else ko crd-template "$(tail -3 "$tmp/err")"; fi

if render --set replicaCount=bad > /dev/null 2>&1; then ko values-schema-rejects-junk "replicaCount=bad accepted"; else ok values-schema-rejects-junk; fi
if render --set unknownKey=1 > /dev/null 2>&1; then ko values-schema-rejects-unknown "unknownKey accepted"; else ok values-schema-rejects-unknown; fi

if cmp -s "$repo/crds/iotrelay.dev_iotrelays.yaml" "$chart/files/crds/iotrelay.dev_iotrelays.yaml"; then ok chart-crd-matches-crds
else ko chart-crd-matches-crds "run: cargo run -p iotrelay-operator --bin crdgen -- --write"; fi

if "$lua" "$repo/docs/argocd/health_test.lua" > "$tmp/lua" 2>&1; then ok argocd-health-lua; else ko argocd-health-lua "$(grep FAIL "$tmp/lua" | head -5)"; fi
# The README shows the same Lua as the tested file.
if python3 - "$repo/docs/argocd/health.lua" "$chart/README.md" <<'PY'
import sys
lua = "\n".join(("    " + l) if l else "" for l in open(sys.argv[1]).read().strip().splitlines())
readme = open(sys.argv[2]).read()
sys.exit(0 if lua in readme else 1)
PY
then ok readme-shows-tested-lua; else ko readme-shows-tested-lua "charts/iotrelay/README.md differs from docs/argocd/health.lua"; fi

echo "chart: $failed failed"
[ "$failed" -eq 0 ]
