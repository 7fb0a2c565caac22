//! The committed CRD YAML must match the Rust types (run `crdgen --write` after changing crates/api/).

use std::path::Path;

#[test]
fn committed_crd_matches_types() {
    let want = iotrelay_operator::crdgen::crd_yaml().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for p in iotrelay_operator::crdgen::CRD_PATHS {
        let have = std::fs::read_to_string(root.join(p)).unwrap_or_default();
        assert!(
            have == want,
            "{p} drifted from crates/api/src: run `cargo run -p iotrelay-operator --bin crdgen -- --write` and commit"
        );
    }
}

#[test]
fn crd_names_and_columns() {
    use kube::CustomResourceExt;
    let crd = iotrelay_api::IotRelay::crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("iotrelays.iotrelay.dev"));
    assert_eq!(crd.spec.names.short_names, Some(vec!["ir".to_string()]));
    let v = &crd.spec.versions[0];
    assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "status subresource");
    let cols: Vec<_> = v.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(cols, ["Ready", "Tunnels", "Active", "Forwards", "Age", "Node", "Reason"]);
    // Node and Reason only in `kubectl get -o wide`.
    let wide: Vec<_> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .filter(|c| c.priority == Some(1))
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(wide, [("Node", ".status.nodeName"), ("Reason", ".status.conditions[?(@.type==\"Ready\")].reason")]);
}

/// Every spec field carries a description (what `kubectl explain` shows).
#[test]
fn every_spec_field_is_described() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(iotrelay_api::IotRelay::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut missing = vec![];
    walk(spec, "spec", &mut missing);
    assert!(missing.is_empty(), "fields without description: {missing:?}");

    fn walk(s: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = s["properties"].as_object() {
            for (k, v) in props {
                let p = format!("{path}.{k}");
                // Pod-placement passthrough types come from k8s-openapi and are described by Kubernetes itself.
                if ["spec.tolerations", "spec.affinity", "spec.resources"].iter().any(|x| p.starts_with(x)) {
                    continue;
                }
                if v["description"].as_str().is_none_or(str::is_empty) {
                    missing.push(p.clone());
                }
                walk(v, &p, missing);
                walk(&v["items"], &format!("{p}[]"), missing);
            }
        }
    }
}
