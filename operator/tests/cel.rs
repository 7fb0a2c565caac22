//! The CRD's CEL rules (`x-kubernetes-validations`) evaluated locally with kube-cel (which implements the
//! Kubernetes CEL libraries: isIP/ip/cidr, duration). A real API server runs them in e2e/k8s.

use kube::CustomResourceExt;
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = serde_json::to_value(iotrelay_api::IotRelay::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn example() -> Value {
    let text = include_str!("golden/plant-7.input.yaml");
    let doc = text.split("\n---\n").next().unwrap();
    serde_saphyr::from_str(doc).unwrap()
}

fn errors(obj: &Value) -> Vec<String> {
    match kube::core::cel::Validator::new().validate(&schema(), obj, None) {
        Ok(()) => vec![],
        Err(e) => e.into_vec().into_iter().map(|e| format!("{}: {}", e.field_path, e.message)).collect(),
    }
}

#[test]
fn accepts_the_api_md_example_and_a_minimal_relay() {
    assert_eq!(errors(&example()), Vec::<String>::new());
    let minimal = json!({
        "apiVersion": "iotrelay.dev/v1alpha1", "kind": "IotRelay", "metadata": {"name": "m", "namespace": "x"},
        "spec": {
            "insideAddress": "100.127.0.1", "remoteSubnets": ["100.64.0.0/16"],
            "tunnels": [{"name": "tunnel1", "peerAddress": "198.51.100.2", "preSharedKeySecretRef": {"name": "s", "key": "k"}}]
        }
    });
    assert_eq!(errors(&minimal), Vec::<String>::new());
    let mut gateway = minimal.clone();
    gateway["spec"]["gateway"] = json!({"routes": ["100.64.1.0/24", "100.64.0.0/16"], "mtu": 1400});
    assert_eq!(errors(&gateway), Vec::<String>::new());
    for v in [example(), minimal, gateway] {
        let spec: iotrelay_api::IotRelaySpec = serde_json::from_value(v["spec"].clone()).unwrap();
        assert!(iotrelay_api::validate(&spec).is_ok(), "CEL accepts but validate() rejects");
    }
}

#[test]
fn rejects_each_rule() {
    type Edit = fn(&mut Value);
    let cases: &[(&str, Edit)] = &[
        ("must be an IPv4 address", |v| v["spec"]["insideAddress"] = json!("100.127.0")),
        ("must be an IPv4 address", |v| v["spec"]["tunnels"][0]["peerAddress"] = json!("2001:db8::1")),
        ("must be an IPv4 address", |v| v["spec"]["forwards"][0]["target"]["address"] = json!("device.local")),
        ("host bits zero", |v| v["spec"]["remoteSubnets"][0] = json!("100.64.0.1/16")),
        ("host bits zero", |v| v["spec"]["forwards"][0]["allowedSources"][0] = json!("203.0.113.10/40")),
        ("insideAddress must not be inside remoteSubnets", |v| v["spec"]["insideAddress"] = json!("100.64.3.3")),
        ("esp.lifetime must be shorter than ike.lifetime", |v| v["spec"]["ike"]["lifetime"] = json!("30m")),
        ("between 900s and 8h", |v| v["spec"]["ike"]["lifetime"] = json!("9h")),
        ("between 900s and 8h", |v| v["spec"]["ike"]["lifetime"] = json!("10m")),
        ("between 900s and 1h", |v| v["spec"]["esp"]["lifetime"] = json!("2h")),
        ("dpdTimeout must be longer than dpdInterval", |v| v["spec"]["ike"]["dpdTimeout"] = json!("5s")),
        ("dpdInterval must be between 1s and 1h", |v| v["spec"]["ike"]["dpdInterval"] = json!("2h")),
        ("tunnel peerAddress values must be unique", |v| {
            v["spec"]["tunnels"][1]["peerAddress"] = json!("198.51.100.2")
        }),
        ("forward listenPort values must be unique", |v| {
            let mut f = v["spec"]["forwards"][0].clone();
            f["name"] = json!("other");
            v["spec"]["forwards"].as_array_mut().unwrap().push(f);
        }),
        ("must not be 500 or 4500", |v| v["spec"]["forwards"][0]["listenPort"] = json!(4500)),
        ("must differ from adminPort", |v| v["spec"]["forwards"][0]["listenPort"] = json!(9464)),
        ("target.address must be inside remoteSubnets", |v| {
            v["spec"]["forwards"][0]["target"]["address"] = json!("192.0.2.7")
        }),
        ("must be between 1s and 24h", |v| v["spec"]["forwards"][0]["idleTimeout"] = json!("48h")),
        ("gateway.routes[] must be inside remoteSubnets", |v| {
            v["spec"]["gateway"] = json!({"routes": ["100.64.1.0/24", "100.0.0.0/8"]})
        }),
        ("gateway.routes[] must be inside remoteSubnets", |v| v["spec"]["gateway"] = json!({"routes": ["10.0.0.0/8"]})),
        ("gateway.localSubnets[] must not overlap remoteSubnets", |v| {
            v["spec"]["gateway"] = json!({"localSubnets": ["100.64.5.0/24"]})
        }),
        ("gateway.localSubnets[] must be inside bgp.announce", |v| {
            dynamic(v)["bgp"]["announce"] = json!(["100.127.0.1/32"]);
            v["spec"]["gateway"] = json!({"localSubnets": ["203.0.113.0/24"]})
        }),
        ("23456 (AS_TRANS) is not a real AS number", |v| dynamic(v)["bgp"]["localAsn"] = json!(23456)),
        ("23456 (AS_TRANS) is not a real AS number", |v| dynamic(v)["bgp"]["awsAsn"] = json!(23456)),
        ("localAsn must differ from awsAsn", |v| dynamic(v)["bgp"]["localAsn"] = json!(64512)),
        ("localAsn must differ from awsAsn", |v| dynamic(v)["bgp"] = json!({"localAsn": 65001, "awsAsn": 65001})),
        ("holdTime must be 0s or between 3s and 65535s", |v| dynamic(v)["bgp"]["holdTime"] = json!("2s")),
        ("holdTime must be 0s or between 3s and 65535s", |v| dynamic(v)["bgp"]["holdTime"] = json!("19h")),
        ("failbackDelay must be between 0s and 3600s", |v| dynamic(v)["bgp"]["failbackDelay"] = json!("61m")),
        ("host bits zero", |v| dynamic(v)["bgp"]["announce"] = json!(["100.127.0.1/24"])),
        ("must be a /30 inside 169.254.0.0/16", |v| dynamic(v)["tunnels"][0]["insideCidr"] = json!("169.254.10.40/29")),
        ("must be a /30 inside 169.254.0.0/16", |v| dynamic(v)["tunnels"][0]["insideCidr"] = json!("10.0.0.0/30")),
        ("host bits zero", |v| dynamic(v)["tunnels"][0]["insideCidr"] = json!("169.254.10.42/30")),
        ("tunnel insideCidr values must be unique", |v| {
            dynamic(v)["tunnels"][1]["insideCidr"] = json!("169.254.10.40/30")
        }),
        ("tunnels[].insideCidr is required with bgp", |v| {
            dynamic(v)["tunnels"][1].as_object_mut().unwrap().remove("insideCidr");
        }),
    ];
    for (want, edit) in cases {
        let mut v = example();
        edit(&mut v);
        let errs = errors(&v);
        assert!(errs.iter().any(|e| e.contains(want)), "want {want:?}, got {errs:?}");
        // Parity: the pure validator (standalone mode, operator) rejects the same input.
        let spec: iotrelay_api::IotRelaySpec = serde_json::from_value(v["spec"].clone()).unwrap();
        assert!(iotrelay_api::validate(&spec).is_err(), "CEL rejects ({want}) but validate() accepts");
    }
}

/// Dynamic routing on the example: `spec.bgp` and both tunnels' inside CIDRs; returns the spec.
fn dynamic(v: &mut Value) -> &mut Value {
    let spec = &mut v["spec"];
    spec["bgp"] = json!({"localAsn": 65000});
    spec["tunnels"][0]["insideCidr"] = json!("169.254.10.40/30");
    spec["tunnels"][1]["insideCidr"] = json!("169.254.11.0/30");
    spec
}

#[test]
fn accepts_dynamic_routing() {
    let mut v = example();
    dynamic(&mut v)["bgp"] = json!({"localAsn": 4200000000u32, "holdTime": "0s", "announce": ["100.127.0.1/32"],
                                     "failbackDelay": "1h"});
    assert_eq!(errors(&v), Vec::<String>::new());
    let spec: iotrelay_api::IotRelaySpec = serde_json::from_value(v["spec"].clone()).unwrap();
    assert!(iotrelay_api::validate(&spec).is_ok(), "CEL accepts but validate() rejects");
}

/// Every CEL rule in the schema is exercised by a rejecting case above (so a new rule needs a new case).
#[test]
fn every_rule_has_a_case() {
    let mut messages = vec![];
    collect(&schema(), &mut messages);
    let covered = [
        "must be an IPv4 address",
        "must be an IPv4 CIDR with host bits zero, like 100.64.0.0/16",
        "insideAddress must not be inside remoteSubnets",
        "esp.lifetime must be shorter than ike.lifetime",
        "lifetime must be between 900s and 8h (AWS phase 1 range)",
        "lifetime must be between 900s and 1h (AWS phase 2 range)",
        "dpdTimeout must be longer than dpdInterval",
        "dpdInterval must be between 1s and 1h",
        "tunnel peerAddress values must be unique",
        "forward listenPort values must be unique",
        "forwards[].listenPort must not be 500 or 4500 (used by IKE and ESP-in-UDP)",
        "forwards[].listenPort must differ from adminPort",
        "forwards[].target.address must be inside remoteSubnets",
        "must be between 1s and 24h",
        "gateway.routes[] must be inside remoteSubnets",
        "gateway.localSubnets[] must not overlap remoteSubnets",
        "gateway.localSubnets[] must be inside bgp.announce (AWS routes answers only to announced prefixes)",
        "23456 (AS_TRANS) is not a real AS number",
        "localAsn must differ from awsAsn (AWS peers over external BGP)",
        "holdTime must be 0s or between 3s and 65535s",
        "failbackDelay must be between 0s and 3600s",
        "must be a /30 inside 169.254.0.0/16",
        "tunnel insideCidr values must be unique",
        "tunnels[].insideCidr is required with bgp",
    ];
    for m in &messages {
        assert!(covered.contains(&m.as_str()), "CEL rule without a test case: {m:?}");
    }
    fn collect(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::Array(rules)) = o.get("x-kubernetes-validations") {
                    out.extend(rules.iter().filter_map(|r| r["message"].as_str().map(String::from)));
                }
                o.values().for_each(|x| collect(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
}
