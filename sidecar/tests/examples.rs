//! Every file in examples/ is loaded here: the IotRelay examples with the standalone loader and the relay's own
//! validation (the CRD's rules, every referenced key present); the kubectl Secret, the External Secrets Operator
//! objects, the Argo CD Application and the Flux HelmRelease by their fields and how they fit the IotRelay examples
//! and the chart; the systemd unit's command line against the relay's CLI; the Terraform files with an HCL parser.
//! (`helm template` with the Argo CD and Flux values and `systemd-analyze verify` run in examples/test.sh.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use iotrelay_api::standalone::load_yaml;
use iotrelay_sidecar::config::{tunnel_psks, validate_spec};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn docs(rel: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    get(v, path).as_str().unwrap_or_else(|| panic!("{path} is not a string in {v:?}"))
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| v.get(k).unwrap_or_else(|| panic!("missing {path} (at {k})")))
}

/// The (Secret name, key) pairs an IotRelay example references, and its namespace.
fn refs(rel: &str) -> (String, BTreeSet<(String, String)>) {
    let (relay, _) = load_yaml(&read(rel)).unwrap();
    let ns = relay.metadata.namespace.clone().unwrap_or_default();
    let r = relay.spec.tunnels.iter().map(|t| {
        let r = &t.pre_shared_key_secret_ref;
        (r.name.clone(), r.key.clone())
    });
    (ns, r.collect())
}

#[test]
fn iotrelay_examples_load_and_validate() {
    let mut seen = 0;
    for rel in [
        "one-tunnel.yaml",
        "two-tunnels.yaml",
        "nat-node.yaml",
        "several-forwards.yaml",
        "gateway-aws-side.yaml",
        "gateway-bgp-site.yaml",
    ] {
        let text = read(&format!("examples/{rel}"));
        let (relay, secrets) = load_yaml(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let v = validate_spec(&relay.spec, false).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let psks = tunnel_psks(&v, &secrets).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(psks.len(), v.tunnels.len(), "{rel}");
        seen += 1;
        match rel {
            "one-tunnel.yaml" => assert_eq!(v.tunnels.len(), 1),
            "two-tunnels.yaml" => assert_eq!(v.tunnels.len(), 2),
            "nat-node.yaml" => {
                assert_ne!(relay.spec.local_address, relay.spec.local_identity);
                assert!(relay.spec.local_address.is_some() && relay.spec.local_identity.is_some());
            }
            "several-forwards.yaml" => assert!(v.forwards.len() >= 3),
            "gateway-aws-side.yaml" => {
                assert!(v.gateway.is_some() && v.forwards.is_empty());
                assert_eq!(v.ike.startup_action, iotrelay_api::StartupAction::Add);
            }
            "gateway-bgp-site.yaml" => {
                let announced: Vec<String> = v.bgp.as_ref().unwrap().announce.iter().map(|c| c.to_string()).collect();
                assert_eq!(announced, ["100.127.0.1/32", "192.0.2.0/24"]);
                assert_eq!(v.gateway_local().map(|l| l.len()), Some(2));
            }
            _ => unreachable!(),
        }
    }
    assert_eq!(seen, 6);
}

#[test]
fn kubectl_secret_covers_the_two_tunnel_example() {
    let sh = read("examples/kubectl-create-secret.sh");
    let cmd: String = sh.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join(" ");
    let cmd = cmd.replace('\\', " ");
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let at = words.windows(3).position(|w| w == ["kubectl", "create", "secret"]).expect("kubectl create secret");
    assert_eq!(words[at + 3], "generic");
    let name = words[at + 4].to_string();
    let ns = words.windows(2).find(|w| w[0] == "--namespace").map(|w| w[1].to_string()).expect("--namespace");
    let keys: BTreeSet<(String, String)> = words
        .iter()
        .filter_map(|w| w.strip_prefix("--from-literal="))
        .map(|kv| (name.clone(), kv.split('=').next().unwrap().to_string()))
        .collect();
    let (relay_ns, want) = refs("examples/two-tunnels.yaml");
    assert_eq!(ns, relay_ns);
    assert_eq!(keys, want);
}

#[test]
fn external_secret_writes_the_referenced_secret() {
    let d = docs("examples/external-secret.yaml");
    let store = d.iter().find(|v| s(v, "kind") == "SecretStore").expect("SecretStore");
    let es = d.iter().find(|v| s(v, "kind") == "ExternalSecret").expect("ExternalSecret");
    for v in [store, es] {
        assert_eq!(s(v, "apiVersion"), "external-secrets.io/v1");
    }
    assert_eq!(s(store, "spec.provider.aws.service"), "SecretsManager");
    assert!(!s(store, "spec.provider.aws.region").is_empty());
    assert_eq!(s(es, "spec.secretStoreRef.name"), s(store, "metadata.name"));
    assert_eq!(s(es, "spec.secretStoreRef.kind"), "SecretStore");
    assert!(!s(es, "spec.refreshInterval").is_empty());
    let target = s(es, "spec.target.name").to_string();
    let data = get(es, "spec.data").as_array().expect("spec.data list");
    let keys: BTreeSet<(String, String)> = data
        .iter()
        .map(|d| {
            assert!(!s(d, "remoteRef.key").is_empty() && !s(d, "remoteRef.property").is_empty());
            (target.clone(), s(d, "secretKey").to_string())
        })
        .collect();
    let (ns, want) = refs("examples/two-tunnels.yaml");
    assert_eq!(s(es, "metadata.namespace"), ns);
    assert_eq!(keys, want);
}

/// Top-level keys of the chart's values.yaml.
fn chart_values() -> BTreeSet<String> {
    let v: Value = serde_saphyr::from_str(&read("charts/iotrelay/values.yaml")).unwrap();
    v.as_object().unwrap().keys().cloned().collect()
}

fn assert_known_values(v: &Value, what: &str) {
    let known = chart_values();
    for k in v.as_object().expect("values map").keys() {
        assert!(known.contains(k), "{what}: {k:?} is not a value of charts/iotrelay");
    }
}

#[test]
fn argocd_application_points_at_the_chart() {
    let d = docs("examples/argocd-application.yaml");
    assert_eq!(d.len(), 1);
    let app = &d[0];
    assert_eq!(s(app, "apiVersion"), "argoproj.io/v1alpha1");
    assert_eq!(s(app, "kind"), "Application");
    assert!(!s(app, "spec.project").is_empty());
    assert!(!s(app, "spec.destination.server").is_empty());
    assert!(!s(app, "spec.destination.namespace").is_empty());
    let sources = get(app, "spec.sources").as_array().expect("spec.sources");
    for src in sources {
        assert!(!s(src, "repoURL").is_empty() && !s(src, "targetRevision").is_empty() && !s(src, "path").is_empty());
    }
    let chart = sources.iter().find(|src| src.get("helm").is_some()).expect("a Helm source");
    assert!(repo().join(s(chart, "path")).join("Chart.yaml").is_file(), "the chart path is charts/iotrelay");
    assert_known_values(get(chart, "helm.valuesObject"), "argocd-application.yaml");
}

#[test]
fn flux_helmrelease_points_at_the_chart() {
    let d = docs("examples/flux-helmrelease.yaml");
    let git = d.iter().find(|v| s(v, "kind") == "GitRepository").expect("GitRepository");
    let hr = d.iter().find(|v| s(v, "kind") == "HelmRelease").expect("HelmRelease");
    assert_eq!(s(git, "apiVersion"), "source.toolkit.fluxcd.io/v1");
    assert_eq!(s(hr, "apiVersion"), "helm.toolkit.fluxcd.io/v2");
    assert!(!s(git, "spec.url").is_empty() && !s(git, "spec.interval").is_empty());
    assert!(!s(hr, "spec.interval").is_empty());
    assert_eq!(s(hr, "spec.chart.spec.sourceRef.kind"), "GitRepository");
    assert_eq!(s(hr, "spec.chart.spec.sourceRef.name"), s(git, "metadata.name"));
    assert_eq!(s(hr, "spec.chart.spec.sourceRef.namespace"), s(git, "metadata.namespace"));
    assert!(repo().join(s(hr, "spec.chart.spec.chart")).join("Chart.yaml").is_file());
    assert_known_values(get(hr, "spec.values"), "flux-helmrelease.yaml");
}

#[test]
fn systemd_unit_runs_standalone_with_existing_flags() {
    let unit = read("examples/iotrelay.service");
    let mut section = String::new();
    let mut sections = BTreeSet::new();
    let mut exec = None;
    for line in unit.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_string();
            sections.insert(section.clone());
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
        if section == "Service" && k == "ExecStart" {
            exec = Some(v.to_string());
        }
    }
    assert_eq!(sections, ["Install", "Service", "Unit"].map(String::from).into());
    let exec = exec.expect("ExecStart");
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert!(words[0].starts_with('/') && words[0].ends_with("/iotrelay-sidecar"), "{exec}");
    // Every flag the unit passes is one the relay knows: run it with --help appended.
    let sub = words.iter().position(|w| *w == "standalone").expect("standalone subcommand");
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_iotrelay-sidecar"))
        .args(["standalone", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for w in words[1..].iter().filter(|w| w.starts_with("--")) {
        let known = if words.iter().position(|x| x == w).unwrap() < sub {
            ["--log-format"].contains(w)
        } else {
            help.contains(&format!("{w} "))
        };
        assert!(known, "unknown flag {w} in ExecStart");
    }
}

#[test]
fn terraform_parses_and_has_the_aws_side() {
    let mut resources = BTreeSet::new();
    let mut outputs = BTreeSet::new();
    for f in ["main.tf", "variables.tf", "outputs.tf"] {
        let body = hcl::parse(&read(&format!("examples/terraform/{f}"))).unwrap_or_else(|e| panic!("{f}: {e}"));
        for b in body.blocks() {
            let labels: Vec<&str> = b.labels().iter().map(|l| l.as_str()).collect();
            match b.identifier() {
                "resource" => drop(resources.insert(labels[0].to_string())),
                "output" => drop(outputs.insert(labels[0].to_string())),
                _ => {}
            }
        }
    }
    for r in ["aws_customer_gateway", "aws_vpn_connection", "aws_vpn_connection_route"] {
        assert!(resources.contains(r), "no {r} resource");
    }
    assert!(outputs.contains("customer_gateway_configuration"), "no output for import-aws");
    // The output feeds import-aws --xml -: it is the VPN connection's XML attribute.
    assert!(read("examples/terraform/outputs.tf").contains("aws_vpn_connection.relay.customer_gateway_configuration"));
}
