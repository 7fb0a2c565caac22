#!/usr/bin/env bash
# The examples that need a tool beyond cargo (run by `make chart`; sidecar/tests/examples.rs checks the rest):
#   `helm template` of charts/iotrelay with the values of the Argo CD Application and of the Flux HelmRelease;
#   `systemd-analyze verify` of the systemd unit (when systemd-analyze exists; else the cargo test's parse only).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
: "${IOTRELAY_CACHE:=/var/cache/iotrelay}"
helm="${HELM:-$IOTRELAY_CACHE/bin/helm}"
[ -x "$helm" ] || helm=$(command -v helm) || { echo "FAIL: no helm (run e2e/tools/build.sh helm)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
ok() { echo "PASS $1"; }
ko() { echo "FAIL $1${2:+: $2}"; failed=$((failed + 1)); }

# values FILE KIND PATH: the Helm values inside an example object, as a values file.
values() {
  python3 - "$1" "$2" "$3" > "$tmp/values.yaml" <<'PY'
import sys, yaml
path, kind, keys = sys.argv[1], sys.argv[2], sys.argv[3].split(".")
for d in yaml.safe_load_all(open(path)):
    if d and d.get("kind") == kind:
        v = d
        if kind == "Application":
            v = next(s for s in d["spec"]["sources"] if "helm" in s)
        for k in keys:
            v = v[k]
        print(yaml.safe_dump(v))
        break
else:
    sys.exit("no " + kind)
PY
}
for ex in "argocd-application.yaml Application helm.valuesObject" "flux-helmrelease.yaml HelmRelease spec.values"; do
  set -- $ex
  if values "$here/$1" "$2" "$3" 2> "$tmp/err" \
    && "$helm" template iotrelay "$repo/charts/iotrelay" -n iotrelay-system --kube-version 1.34.0 \
         -f "$tmp/values.yaml" > "$tmp/out.yaml" 2> "$tmp/err" \
    && grep -q "^kind: Deployment" "$tmp/out.yaml"; then
    ok "helm-template-$1"
  else
    ko "helm-template-$1" "$(tail -3 "$tmp/err")"
  fi
done

if command -v systemd-analyze > /dev/null; then
  # verify needs the ExecStart binary to exist: point it at a stand-in executable.
  mkdir -p "$tmp/unit"
  sed "s|^ExecStart=/usr/local/bin/iotrelay-sidecar|ExecStart=/bin/true|" "$here/iotrelay.service" \
    > "$tmp/unit/iotrelay.service"
  if systemd-analyze verify "$tmp/unit/iotrelay.service" > "$tmp/err" 2>&1 && ! grep -qi "unknown\|invalid" "$tmp/err"; then
    ok systemd-analyze-verify
  else
    ko systemd-analyze-verify "$(tail -3 "$tmp/err")"
  fi
fi
[ "$failed" -eq 0 ] && echo "examples: ok" || { echo "examples: $failed failed"; exit 1; }
