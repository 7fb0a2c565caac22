//! The pure validator and the standalone loader, driven by YAML samples.

use iotrelay_api::standalone::{LoadError, load_yaml};
use iotrelay_api::{IotRelay, IotRelaySpec, validate};
use serde_json::json;

const EXAMPLE: &str = include_str!("data/example.yaml");

fn example_spec() -> IotRelaySpec {
    load_yaml(EXAMPLE).expect("example loads").0.spec
}

/// Applies `edit` to the example spec (as JSON, like a user editing YAML) and returns the error strings.
fn errors_after(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<String> {
    let mut v = serde_json::to_value(example_spec()).unwrap();
    edit(&mut v);
    let spec: IotRelaySpec = serde_json::from_value(v).expect("still deserializes");
    match validate(&spec) {
        Ok(_) => vec![],
        Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn example_from_api_md_is_valid() {
    let (relay, secrets) = load_yaml(EXAMPLE).unwrap();
    assert_eq!(relay.metadata.name.as_deref(), Some("plant-7"));
    let v = validate(&relay.spec).expect("valid");
    assert_eq!(v.tunnels.len(), 2);
    assert_eq!(v.forwards[0].target.to_string(), "100.64.1.10:7000");
    assert_eq!(v.ike.lifetime.as_secs(), 28_800);
    assert_eq!(v.esp.replay_window, 1024);
    assert_eq!(secrets.len(), 2);
    assert_eq!(
        secrets.get(&("aws-vpn".to_string(), "tunnel1".to_string())).map(|v| v.as_slice()),
        Some(&b"psk.one_secret"[..])
    );
}

#[test]
fn defaults_are_aws_compatible_and_valid() {
    let yaml = r#"
apiVersion: iotrelay.dev/v1alpha1
kind: IotRelay
metadata: {name: minimal}
spec:
  insideAddress: 100.127.0.1
  remoteSubnets: ["100.64.0.0/16"]
  tunnels:
  - {name: tunnel1, peerAddress: 198.51.100.2, preSharedKeySecretRef: {name: s, key: k}}
---
apiVersion: v1
kind: Secret
metadata: {name: s}
data: {k: cHNrLmtleQ==}
"#;
    let (relay, secrets) = load_yaml(yaml).unwrap();
    let v = validate(&relay.spec).expect("defaults valid");
    assert_eq!(v.ike.lifetime.as_secs(), 8 * 3600);
    assert_eq!(v.esp.lifetime.as_secs(), 3600);
    assert_eq!(v.ike.dpd_interval.as_secs(), 10);
    assert_eq!(v.admin_port, 9464);
    assert!(!v.ike.proposals.is_empty() && !v.esp.proposals.is_empty());
    // The hostile-input bounds default to the engine's and the relay's built-in values.
    assert_eq!((v.ike.cookie_threshold, v.ike.half_open_limit), (2, 5));
    assert_eq!(v.max_sessions_per_source, 512);
    assert_eq!(secrets.values().next().map(|v| v.as_slice()), Some(&b"psk.key"[..]));
}

type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;

#[test]
fn rejects_bad_values_with_field_paths() {
    let cases: Vec<(&str, Edit)> = vec![
        (
            "spec.forwards[0].target.port: must be 1..65535",
            Box::new(|v| v["forwards"][0]["target"]["port"] = 70000.into()),
        ),
        ("spec.forwards[0].listenPort: must be 1..65535", Box::new(|v| v["forwards"][0]["listenPort"] = 0.into())),
        (
            "spec.insideAddress: must not be inside remoteSubnets",
            Box::new(|v| v["insideAddress"] = "100.64.0.5".into()),
        ),
        ("spec.insideAddress: must be an IPv4 address", Box::new(|v| v["insideAddress"] = "100.64.0".into())),
        ("spec.remoteSubnets[0]: host bits must be zero", Box::new(|v| v["remoteSubnets"][0] = "100.64.0.1/16".into())),
        (
            "spec.tunnels[1].peerAddress: duplicate peer address",
            Box::new(|v| v["tunnels"][1]["peerAddress"] = "198.51.100.2".into()),
        ),
        ("spec.tunnels[1].name: duplicate tunnel name", Box::new(|v| v["tunnels"][1]["name"] = "tunnel1".into())),
        ("spec.tunnels: must have 1 or 2 tunnels", Box::new(|v| v["tunnels"] = serde_json::json!([]))),
        ("spec.ike.lifetime: must be between 900s and 8h", Box::new(|v| v["ike"]["lifetime"] = "9h".into())),
        ("spec.ike.lifetime: must be between 900s and 8h", Box::new(|v| v["ike"]["lifetime"] = "899s".into())),
        ("spec.esp.lifetime: must be between 900s and 1h", Box::new(|v| v["esp"]["lifetime"] = "2h".into())),
        ("spec.esp.lifetime: must be shorter than ike.lifetime", Box::new(|v| v["ike"]["lifetime"] = "30m".into())),
        ("spec.esp.replayWindow: must be 64..2048", Box::new(|v| v["esp"]["replayWindow"] = 4096.into())),
        ("spec.esp.replayWindow: must be 64..2048", Box::new(|v| v["esp"]["replayWindow"] = 32.into())),
        ("spec.ike.proposals[0]: must look like", Box::new(|v| v["ike"]["proposals"][0] = "AES128_SHA1".into())),
        ("spec.ike.dpdTimeout: must be longer than dpdInterval", Box::new(|v| v["ike"]["dpdTimeout"] = "5s".into())),
        ("spec.ike.dpdInterval: invalid duration", Box::new(|v| v["ike"]["dpdInterval"] = "10 s".into())),
        (
            "spec.forwards[0].listenPort: must not be 500 or 4500",
            Box::new(|v| v["forwards"][0]["listenPort"] = 4500.into()),
        ),
        (
            "spec.forwards[0].target.address: must be inside remoteSubnets",
            Box::new(|v| v["forwards"][0]["target"]["address"] = "192.0.2.9".into()),
        ),
        (
            "spec.forwards[0].allowedSources: must have at least 1 item",
            Box::new(|v| v["forwards"][0]["allowedSources"] = serde_json::json!([])),
        ),
        (
            "spec.forwards[1].listenPort: duplicate listen port 7000",
            Box::new(|v| {
                let mut f = v["forwards"][0].clone();
                f["name"] = "other".into();
                v["forwards"].as_array_mut().unwrap().push(f);
            }),
        ),
        (
            "spec.forwards[1].name: duplicate forward name",
            Box::new(|v| {
                let mut f = v["forwards"][0].clone();
                f["listenPort"] = 7001.into();
                v["forwards"].as_array_mut().unwrap().push(f);
            }),
        ),
        (
            "spec.forwards[0].idleTimeout: must be between 1s and 24h",
            Box::new(|v| v["forwards"][0]["idleTimeout"] = "48h".into()),
        ),
        (
            "spec.gateway.interface: must be an interface name",
            Box::new(|v| v["gateway"] = serde_json::json!({"interface": "iotrelay0-too-long"})),
        ),
        ("spec.gateway.interface: must be an interface name", Box::new(|v| v["gateway"] = json!({"interface": "a/b"}))),
        ("spec.gateway.interface: must be an interface name", Box::new(|v| v["gateway"] = json!({"interface": ""}))),
        ("spec.gateway.mtu: must be 576..1446", Box::new(|v| v["gateway"] = json!({"mtu": 1447}))),
        ("spec.gateway.mtu: must be 576..1446", Box::new(|v| v["gateway"] = json!({"mtu": 575}))),
        (
            "spec.gateway.routes[1]: must be inside remoteSubnets, got 100.0.0.0/8",
            Box::new(|v| v["gateway"] = json!({"routes": ["100.64.1.0/24", "100.0.0.0/8"]})),
        ),
        ("spec.gateway.routes: must have at least 1 item", Box::new(|v| v["gateway"] = json!({"routes": []}))),
        (
            "spec.gateway.routes[0]: host bits must be zero",
            Box::new(|v| v["gateway"] = json!({"routes": ["100.64.1.1/24"]})),
        ),
        ("spec.ike.cookieThreshold: must be 0..64 (half-open", Box::new(|v| v["ike"]["cookieThreshold"] = 65.into())),
        ("spec.ike.cookieThreshold: must be 0..64", Box::new(|v| v["ike"]["cookieThreshold"] = (-1).into())),
        ("spec.ike.halfOpenLimit: must be 1..64 (half-open", Box::new(|v| v["ike"]["halfOpenLimit"] = 0.into())),
        ("spec.ike.halfOpenLimit: must be 1..64", Box::new(|v| v["ike"]["halfOpenLimit"] = 1000.into())),
        (
            "spec.maxSessionsPerSource: must be 1..4096 (sessions per sender IP",
            Box::new(|v| v["maxSessionsPerSource"] = 0.into()),
        ),
        ("spec.maxSessionsPerSource: must be 1..4096", Box::new(|v| v["maxSessionsPerSource"] = 4097.into())),
    ];
    for (want, edit) in cases {
        let errs = errors_after(edit);
        assert!(errs.iter().any(|e| e.starts_with(want)), "want {want:?}, got {errs:?}");
    }
}

#[test]
fn gateway_is_off_unless_present_and_defaults_apply() {
    let v = validate(&example_spec()).unwrap();
    assert_eq!(v.gateway, None, "no spec.gateway: no gateway mode");
    let mut s = example_spec();
    s.gateway = Some(serde_json::from_value(json!({})).unwrap());
    let g = validate(&s).unwrap().gateway.expect("gateway: {} turns it on");
    assert_eq!(g.interface, "iotrelay0");
    assert_eq!(g.mtu, None, "derived from the negotiated suite");
    assert_eq!(g.routes, v.remote_subnets, "routes default to remoteSubnets");
    s.gateway =
        Some(serde_json::from_value(json!({"interface": "vpc_1", "mtu": 1400, "routes": ["100.64.1.0/24"]})).unwrap());
    let g = validate(&s).unwrap().gateway.unwrap();
    assert_eq!((g.interface.as_str(), g.mtu), ("vpc_1", Some(1400)));
    assert_eq!(g.routes, vec!["100.64.1.0/24".parse().unwrap()]);
    // Absent stays absent when written back (the pod spec and config hash of existing relays do not change).
    let out = serde_json::to_value(example_spec()).unwrap();
    assert!(out.get("gateway").is_none(), "{out}");
}

#[test]
fn hostile_input_bounds_are_read_at_their_limits() {
    let mut v = serde_json::to_value(example_spec()).unwrap();
    v["ike"]["cookieThreshold"] = 0.into();
    v["ike"]["halfOpenLimit"] = 64.into();
    v["maxSessionsPerSource"] = 4096.into();
    let spec: IotRelaySpec = serde_json::from_value(v).unwrap();
    let ok = validate(&spec).expect("valid at the limits");
    assert_eq!((ok.ike.cookie_threshold, ok.ike.half_open_limit, ok.max_sessions_per_source), (0, 64, 4096));
}

#[test]
fn missing_secret_and_key_are_named_without_values() {
    let no_secret = EXAMPLE.split("---").next().unwrap();
    match load_yaml(no_secret) {
        Err(e @ LoadError::MissingSecret { .. }) => {
            assert!(e.to_string().contains("\"aws-vpn\""), "{e}")
        }
        other => panic!("unexpected {:?}", other.map(|_| ())),
    }
    let one_key = EXAMPLE.replace("tunnel2: \"psk.two_secret\"", "other: \"psk.two_secret\"");
    match load_yaml(&one_key) {
        Err(e @ LoadError::MissingKey { .. }) => {
            let s = e.to_string();
            assert!(s.contains("aws-vpn") && s.contains("tunnel2"), "{s}");
            assert!(!s.contains("psk."), "secret value leaked: {s}");
        }
        other => panic!("unexpected {:?}", other.map(|_| ())),
    }
}

#[test]
fn secret_in_another_namespace_does_not_count() {
    let other =
        EXAMPLE.replace("metadata: {name: aws-vpn, namespace: iot}", "metadata: {name: aws-vpn, namespace: elsewhere}");
    assert!(matches!(load_yaml(&other), Err(LoadError::MissingSecret { .. })));
    let none = EXAMPLE.replace("metadata: {name: aws-vpn, namespace: iot}", "metadata: {name: aws-vpn}");
    assert!(load_yaml(&none).is_ok());
}

#[test]
fn debug_of_loaded_secrets_is_redacted() {
    let (_, secrets) = load_yaml(EXAMPLE).unwrap();
    let dbg = format!("{secrets:?}");
    assert!(!dbg.contains("psk.") && !dbg.contains("112, 115, 107"), "{dbg}");
    assert!(dbg.contains("redacted"));
}

#[test]
fn bad_base64_error_does_not_echo_the_value() {
    let yaml = EXAMPLE.replace(
        "stringData: {tunnel1: \"psk.one_secret\", tunnel2: \"psk.two_secret\"}",
        "data: {tunnel1: \"not*base64*SECRETVALUE\"}",
    );
    let e = load_yaml(&yaml).map(|_| ()).unwrap_err();
    let s = format!("{e} {e:?}");
    assert!(s.contains("tunnel1") && !s.contains("SECRETVALUE"), "{s}");
}

#[test]
fn rejects_multiple_relays_and_unknown_kinds() {
    let two = format!("{EXAMPLE}\n---\n{}", EXAMPLE.split("---").next().unwrap());
    assert!(matches!(load_yaml(&two), Err(LoadError::MultipleIotRelays { .. })));
    let cm = format!("{EXAMPLE}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n");
    assert!(matches!(load_yaml(&cm), Err(LoadError::UnsupportedKind { .. })));
    assert!(matches!(load_yaml("---\n"), Err(LoadError::NoIotRelay)));
}

#[test]
fn status_summary_columns() {
    use iotrelay_api::{ForwardStatus, IotRelayStatus, TunnelState, TunnelStatus};
    let mut s = IotRelayStatus {
        tunnels: vec![
            TunnelStatus {
                name: "tunnel1".into(),
                state: TunnelState::Established,
                active: true,
                ..Default::default()
            },
            TunnelStatus { name: "tunnel2".into(), state: TunnelState::Connecting, ..Default::default() },
        ],
        forwards: vec![ForwardStatus { name: "admin".into(), listening: true, ..Default::default() }],
        ..Default::default()
    };
    s.summarize();
    assert_eq!(s.tunnels_up.as_deref(), Some("1/2"));
    assert_eq!(s.active_tunnel.as_deref(), Some("tunnel1"));
    assert_eq!(s.forwards_listening.as_deref(), Some("1/1"));
    let _: IotRelay = serde_saphyr::from_str(EXAMPLE.split("---").next().unwrap()).unwrap();
}
