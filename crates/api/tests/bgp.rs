//! `spec.bgp` and `spec.tunnels[].insideCidr`: defaults, parsed values, and every rule with its field path.

use iotrelay_api::standalone::load_yaml;
use iotrelay_api::{IotRelaySpec, validate};
use serde_json::json;
use std::time::Duration;

const EXAMPLE: &str = include_str!("data/example.yaml");

/// The example with dynamic routing: our ASN only, both tunnels' inside CIDRs.
fn dynamic() -> serde_json::Value {
    let mut v = serde_json::to_value(load_yaml(EXAMPLE).unwrap().0.spec).unwrap();
    v["bgp"] = json!({"localAsn": 65000});
    v["tunnels"][0]["insideCidr"] = json!("169.254.10.40/30");
    v["tunnels"][1]["insideCidr"] = json!("169.254.11.0/30");
    v
}

fn errors(v: serde_json::Value) -> Vec<String> {
    let spec: IotRelaySpec = serde_json::from_value(v).expect("deserializes");
    match validate(&spec) {
        Ok(_) => vec![],
        Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn defaults_match_aws() {
    let spec: IotRelaySpec = serde_json::from_value(dynamic()).unwrap();
    let v = validate(&spec).expect("valid");
    let b = v.bgp.expect("bgp");
    assert_eq!((b.local_asn, b.aws_asn, b.hold_time), (65000, 64512, Duration::from_secs(30)));
    assert_eq!(b.announce.iter().map(|c| c.to_string()).collect::<Vec<_>>(), vec![format!("{}/32", v.inside_address)]);
    assert_eq!((b.standby_prepend, b.failback_delay), (2, Duration::from_secs(60)));
    let t = v.tunnels[0].inside.expect("inside");
    assert_eq!((t.aws.to_string(), t.local.to_string()), ("169.254.10.41".into(), "169.254.10.42".into()));
}

#[test]
fn without_bgp_nothing_changes_on_the_wire() {
    let spec = load_yaml(EXAMPLE).unwrap().0.spec;
    let text = serde_json::to_string(&spec).unwrap();
    assert!(!text.contains("bgp") && !text.contains("insideCidr"));
    let v = validate(&spec).unwrap();
    assert!(v.bgp.is_none() && v.tunnels.iter().all(|t| t.inside.is_none()));
}

#[test]
fn four_octet_asns_hold_time_zero_and_an_announce_list_are_accepted() {
    let mut v = dynamic();
    v["bgp"] = json!({"localAsn": 4200000000u32, "awsAsn": 4200000001u32, "holdTime": "0s",
                      "announce": ["100.127.0.1/32", "192.0.2.0/24"], "standbyPrepend": 0,
                      "failbackDelay": "0s"});
    let spec: IotRelaySpec = serde_json::from_value(v).unwrap();
    let b = validate(&spec).unwrap().bgp.unwrap();
    assert_eq!(
        (b.local_asn, b.aws_asn, b.hold_time, b.standby_prepend),
        (4_200_000_000, 4_200_000_001, Duration::ZERO, 0)
    );
    assert_eq!(b.announce.len(), 2);
}

#[test]
fn rejects_each_rule_with_its_path() {
    type Edit = fn(&mut serde_json::Value);
    let cases: &[(&str, Edit)] = &[
        ("spec.bgp.localAsn: 23456 (AS_TRANS)", |v| v["bgp"]["localAsn"] = json!(23456)),
        ("spec.bgp.localAsn: must be 1..4294967295", |v| v["bgp"]["localAsn"] = json!(0)),
        ("spec.bgp.localAsn: must be 1..4294967295", |v| v["bgp"]["localAsn"] = json!(4294967296u64)),
        ("spec.bgp.awsAsn: 23456 (AS_TRANS)", |v| v["bgp"]["awsAsn"] = json!(23456)),
        ("spec.bgp.localAsn: localAsn must differ from awsAsn", |v| v["bgp"]["localAsn"] = json!(64512)),
        ("spec.bgp.holdTime: holdTime must be 0s or between 3s and 65535s", |v| v["bgp"]["holdTime"] = json!("2s")),
        ("spec.bgp.holdTime: holdTime must be 0s or between 3s and 65535s", |v| v["bgp"]["holdTime"] = json!("19h")),
        ("spec.bgp.holdTime: invalid duration", |v| v["bgp"]["holdTime"] = json!("30")),
        ("spec.bgp.failbackDelay: failbackDelay must be between 0s and 3600s", |v| {
            v["bgp"]["failbackDelay"] = json!("3601s")
        }),
        ("spec.bgp.failbackDelay: invalid duration", |v| v["bgp"]["failbackDelay"] = json!("60")),
        ("spec.bgp.announce: must have 1..100 items", |v| v["bgp"]["announce"] = json!([])),
        ("spec.bgp.announce: must have 1..100 items", |v| {
            v["bgp"]["announce"] = (0..101).map(|i| format!("10.0.{i}.0/24")).collect::<Vec<_>>().into()
        }),
        ("spec.bgp.announce[1]: host bits must be zero", |v| {
            v["bgp"]["announce"] = json!(["100.127.0.1/32", "192.0.2.1/24"])
        }),
        ("spec.bgp.standbyPrepend: must be 0..10", |v| v["bgp"]["standbyPrepend"] = json!(11)),
        ("spec.tunnels[1].insideCidr: required with spec.bgp", |v| {
            v["tunnels"][1].as_object_mut().unwrap().remove("insideCidr");
        }),
        ("spec.tunnels[0].insideCidr: must be a /30 inside 169.254.0.0/16", |v| {
            v["tunnels"][0]["insideCidr"] = json!("169.254.10.40/29")
        }),
        ("spec.tunnels[0].insideCidr: must be a /30 inside 169.254.0.0/16", |v| {
            v["tunnels"][0]["insideCidr"] = json!("10.0.0.0/30")
        }),
        ("spec.tunnels[0].insideCidr: host bits must be zero", |v| {
            v["tunnels"][0]["insideCidr"] = json!("169.254.10.42/30")
        }),
        ("spec.tunnels[1].insideCidr: duplicate inside CIDR", |v| {
            v["tunnels"][1]["insideCidr"] = json!("169.254.10.40/30")
        }),
    ];
    for (want, edit) in cases {
        let mut v = dynamic();
        edit(&mut v);
        let errs = errors(v);
        assert!(errs.iter().any(|e| e.starts_with(want)), "want {want:?}, got {errs:?}");
    }
    assert_eq!(errors(dynamic()), Vec::<String>::new());
}

#[test]
fn gateway_with_bgp_configures_no_static_routes_unless_listed() {
    let mut v = dynamic();
    v["gateway"] = json!({});
    let spec: IotRelaySpec = serde_json::from_value(v.clone()).unwrap();
    assert!(validate(&spec).unwrap().gateway.unwrap().routes.is_empty(), "learned prefixes only");
    v["gateway"] = json!({"routes": [v["remoteSubnets"][0]]});
    let spec: IotRelaySpec = serde_json::from_value(v).unwrap();
    assert_eq!(validate(&spec).unwrap().gateway.unwrap().routes.len(), 1);
    // Without BGP the default stays remoteSubnets.
    let mut spec: IotRelaySpec = serde_json::from_value(dynamic()).unwrap();
    spec.bgp = None;
    spec.tunnels.iter_mut().for_each(|t| t.inside_cidr = None);
    spec.gateway = Some(Default::default());
    assert_eq!(validate(&spec).unwrap().gateway.unwrap().routes.len(), spec.remote_subnets.len());
}

fn texts(v: &[iotrelay_api::Ipv4Cidr]) -> Vec<String> {
    v.iter().map(|c| c.to_string()).collect()
}

#[test]
fn gateway_local_subnets_are_announced_by_default_and_bound_what_gateway_mode_carries() {
    let mut v = dynamic();
    v["gateway"] = json!({"localSubnets": ["192.0.2.0/24", "198.51.100.0/25"]});
    let spec: IotRelaySpec = serde_json::from_value(v.clone()).unwrap();
    let ok = validate(&spec).expect("valid");
    let want = ["100.127.0.1/32", "192.0.2.0/24", "198.51.100.0/25"];
    assert_eq!(texts(&ok.bgp.as_ref().unwrap().announce), want, "default announce: insideAddress/32 + localSubnets");
    assert_eq!(texts(&ok.gateway.as_ref().unwrap().local_subnets), want[1..]);
    assert_eq!(ok.gateway_local().map(|l| texts(&l)), Some(want.map(String::from).to_vec()));

    // An explicit announce that covers them is kept as written, and is what gateway mode carries.
    v["bgp"]["announce"] = json!(["100.127.0.0/16", "192.0.2.0/24", "198.51.100.0/24"]);
    let spec: IotRelaySpec = serde_json::from_value(v.clone()).unwrap();
    let ok = validate(&spec).expect("valid");
    assert_eq!(texts(&ok.bgp.as_ref().unwrap().announce), ["100.127.0.0/16", "192.0.2.0/24", "198.51.100.0/24"]);
    assert_eq!(ok.gateway_local().unwrap().len(), 3);

    // With BGP but without localSubnets gateway mode carries insideAddress/32 only (all AWS answers to).
    let mut v = dynamic();
    v["gateway"] = json!({});
    let ok = validate(&serde_json::from_value(v).unwrap()).unwrap();
    assert_eq!(ok.gateway_local().map(|l| texts(&l)), Some(vec!["100.127.0.1/32".to_string()]));

    // Static routing: no restriction unless localSubnets is set; then insideAddress/32 + localSubnets.
    let mut spec = load_yaml(EXAMPLE).unwrap().0.spec;
    assert_eq!(validate(&spec).unwrap().gateway_local(), None, "no gateway mode");
    spec.gateway = Some(Default::default());
    assert_eq!(validate(&spec).unwrap().gateway_local(), None);
    spec.gateway.as_mut().unwrap().local_subnets = Some(vec!["192.0.2.0/24".into()]);
    let ok = validate(&spec).unwrap();
    assert_eq!(ok.gateway_local().map(|l| texts(&l)), Some(vec!["100.127.0.1/32".into(), "192.0.2.0/24".into()]));
    assert!(ok.bgp.is_none());
}

#[test]
fn gateway_local_subnets_rules() {
    type Edit = fn(&mut serde_json::Value);
    let cases: &[(&str, Edit)] = &[
        ("spec.gateway.localSubnets[0]: must not overlap remoteSubnets (100.64.1.0/24 overlaps 100.64.0.0/16)", |v| {
            v["gateway"] = json!({"localSubnets": ["100.64.1.0/24"]})
        }),
        ("spec.gateway.localSubnets[1]: must not overlap remoteSubnets (100.0.0.0/8 overlaps 100.64.0.0/16)", |v| {
            v["gateway"] = json!({"localSubnets": ["192.0.2.0/24", "100.0.0.0/8"]})
        }),
        ("spec.gateway.localSubnets[0]: host bits must be zero", |v| {
            v["gateway"] = json!({"localSubnets": ["192.0.2.1/24"]})
        }),
        ("spec.gateway.localSubnets: must have at least 1 item", |v| v["gateway"] = json!({"localSubnets": []})),
        ("spec.gateway.localSubnets[1]: must be inside bgp.announce", |v| {
            v["gateway"] = json!({"localSubnets": ["192.0.2.0/25", "198.51.100.0/24"]});
            v["bgp"]["announce"] = json!(["100.127.0.1/32", "192.0.2.0/24"]);
        }),
    ];
    for (want, edit) in cases {
        let mut v = dynamic();
        edit(&mut v);
        let errs = errors(v);
        assert!(errs.iter().any(|e| e.starts_with(want)), "want {want:?}, got {errs:?}");
    }
}
