//! `iotrelay-sidecar import-aws` on realistic AWS documents (sidecar/tests/aws/: the XML of
//! `describe-vpn-connections` and the console's "Generic" text; documentation addresses only): the result loads with
//! the standalone loader and passes the CRD's rules, carries what the document says, and errors name the input
//! while no key ever reaches stderr.

use std::path::PathBuf;
use std::process::Command;

use iotrelay_api::standalone::load_yaml;
use iotrelay_sidecar::import_aws::{Options, import, text, xml};

fn sample(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/aws").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn opts() -> Options {
    Options {
        name: "plant-7".into(),
        namespace: "iot".into(),
        inside_address: "100.127.0.1".into(),
        remote_subnets: vec!["100.64.0.0/16".into()],
        forwards: vec!["admin:7000:100.64.1.10:7000:203.0.113.10/32".into()],
        source: "test".into(),
        ..Options::default()
    }
}

/// Imports a sample (XML by extension, else text) and loads the result back as standalone mode would.
fn import_sample(name: &str, o: &Options) -> Result<(iotrelay_api::IotRelay, Vec<Vec<u8>>, String), String> {
    let input = sample(name);
    let tunnels =
        if name.ends_with(".xml") { xml::parse(&input) } else { text::parse(&input) }.map_err(|e| e.to_string())?;
    let yaml = import(&tunnels, o).map_err(|e| e.to_string())?;
    let (relay, secrets) = load_yaml(&yaml).expect("the output loads");
    iotrelay_api::validate(&relay.spec).expect("the output passes the CRD's rules");
    let keys = relay
        .spec
        .tunnels
        .iter()
        .map(|t| {
            let r = &t.pre_shared_key_secret_ref;
            secrets[&(r.name.clone(), r.key.clone())].to_vec()
        })
        .collect();
    Ok((relay, keys, yaml.to_string()))
}

#[test]
fn one_tunnel_aws_defaults() {
    let (r, keys, _) = import_sample("one-tunnel.xml", &opts()).unwrap();
    let s = &r.spec;
    assert_eq!(r.metadata.name.as_deref(), Some("plant-7"));
    assert_eq!(r.metadata.namespace.as_deref(), Some("iot"));
    assert_eq!(s.tunnels.len(), 1);
    assert_eq!(s.tunnels[0].name, "tunnel1");
    assert_eq!(s.tunnels[0].peer_address, "203.0.113.21");
    assert_eq!(s.tunnels[0].pre_shared_key_secret_ref.name, "plant-7-psk");
    assert_eq!(keys, vec![b"Xq7.tunnel1_Key_abc".to_vec()]);
    assert_eq!(s.ike.proposals, ["aes128-sha1-modp1024"]);
    assert_eq!(s.esp.proposals, ["aes128-sha1-modp1024"]);
    assert_eq!((s.ike.lifetime.as_str(), s.esp.lifetime.as_str()), ("8h", "1h"));
    assert_eq!((s.ike.dpd_interval.as_str(), s.ike.dpd_timeout.as_str()), ("10s", "30s"));
    assert_eq!(s.local_identity.as_deref(), Some("198.51.100.10"));
    assert_eq!(s.local_address, None);
    assert_eq!(s.forwards.len(), 1);
    assert_eq!(s.forwards[0].allowed_sources, ["203.0.113.10/32"]);
    assert_eq!((s.forwards[0].target.address.as_str(), s.forwards[0].target.port), ("100.64.1.10", 7000));
}

#[test]
fn two_tunnels_the_same_from_xml_and_from_the_generic_text() {
    let (rx, kx, yx) = import_sample("two-tunnels.xml", &opts()).unwrap();
    let (rt, kt, yt) = import_sample("two-tunnels.txt", &opts()).unwrap();
    assert_eq!(rx.spec, rt.spec);
    assert_eq!(kx, kt);
    assert_eq!(kx, vec![b"Xq7.tunnel1_Key_abc".to_vec(), b"Pz9_tunnel2.Key_def".to_vec()]);
    let peers: Vec<_> = rx.spec.tunnels.iter().map(|t| t.peer_address.as_str()).collect();
    assert_eq!(peers, ["203.0.113.21", "203.0.113.22"]);
    // Only the header comment naming the input differs.
    let body = |y: &str| y.lines().filter(|l| !l.starts_with("# Generated")).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&yx), body(&yt));
}

#[test]
fn gcm_and_sha2_options_become_proposals_with_prfs() {
    let (r, _, _) = import_sample("gcm-sha2.xml", &opts()).unwrap();
    let s = &r.spec;
    // Tunnel 1: AES-256-GCM, SHA2-384, group 20; tunnel 2 lists several values, CBC and GCM.
    assert_eq!(
        s.ike.proposals,
        [
            "aes256gcm16-prfsha384-ecp384",
            "aes256-sha256-sha384-ecp256-modp2048",
            "aes128gcm16-prfsha256-prfsha384-ecp256-modp2048",
        ]
    );
    assert_eq!(s.esp.proposals, ["aes256gcm16-ecp384", "aes256-sha256-ecp256", "aes128gcm16-ecp256"]);
    // One setting serves both tunnels: the shorter lifetimes (tunnel 1's 14400 s and 1800 s).
    assert_eq!((s.ike.lifetime.as_str(), s.esp.lifetime.as_str()), ("4h", "30m"));
    // DPD every 15 s (AWS's <delay>), 4 retries: dead after 1 min.
    assert_eq!((s.ike.dpd_interval.as_str(), s.ike.dpd_timeout.as_str()), ("15s", "1m"));
    let (t, _, _) = import_sample("gcm-sha2.txt", &opts()).unwrap();
    assert_eq!(t.spec.ike.proposals, ["aes128gcm16-prfsha256-ecp256"]);
    assert_eq!(t.spec.esp.proposals, ["aes128gcm16-ecp256"]);
}

#[test]
fn nat_customer_gateway_becomes_the_identity() {
    let mut o = opts();
    o.local_address = Some("192.0.2.10".into());
    let (r, _, _) = import_sample("nat.xml", &o).unwrap();
    assert_eq!(r.spec.local_address.as_deref(), Some("192.0.2.10"));
    assert_eq!(r.spec.local_identity.as_deref(), Some("203.0.113.50"));
    // The node owns the customer gateway's address: no identity override needed.
    o.local_address = Some("203.0.113.50".into());
    let (r, _, _) = import_sample("nat.xml", &o).unwrap();
    assert_eq!(r.spec.local_address.as_deref(), Some("203.0.113.50"));
    assert_eq!(r.spec.local_identity, None);
}

#[test]
fn bad_documents_are_errors_naming_the_input() {
    let o = opts();
    let e = import_sample("malformed.xml", &o).unwrap_err();
    assert!(e.starts_with("XML line 31, column"), "{e}");
    let e = import_sample("truncated.xml", &o).unwrap_err();
    assert!(e.contains("truncated"), "{e}");
    let e = import_sample("missing-key.xml", &o).unwrap_err();
    assert!(e.starts_with("ipsec_tunnel[2] (line 52): missing the pre-shared key"), "{e}");
    let e = import_sample("missing-key.txt", &o).unwrap_err();
    assert!(e.starts_with("IPSec Tunnel #2 (line 115): missing the pre-shared key"), "{e}");
    // An element with a value AWS would not write.
    let bad = sample("one-tunnel.xml").replace(
        "<encryption_protocol>aes-128-cbc</encryption_protocol>\n      <lifetime>28800",
        "<encryption_protocol>aes-129-cbc</encryption_protocol>\n      <lifetime>28800",
    );
    let e = import(&xml::parse(&bad).unwrap(), &o).unwrap_err().to_string();
    assert_eq!(
        e,
        "ipsec_tunnel[1]/ike/encryption_protocol (line 30): unknown encryption algorithm \"aes-129-cbc\" (AWS offers \
         aes-128-cbc, aes-256-cbc, aes-128-gcm-16, aes-256-gcm-16)"
    );
    let bad = sample("one-tunnel.xml").replace("Xq7.tunnel1_Key_abc", "Xq7-tunnel1-Key-abc");
    let e = import(&xml::parse(&bad).unwrap(), &o).unwrap_err().to_string();
    assert!(e.starts_with("ipsec_tunnel[1]/ike/pre_shared_key (line 34): "), "{e}");
    assert!(!e.contains("Xq7"), "{e}");
    let e = text::parse("hello\nworld: 1\n").unwrap_err().to_string();
    assert!(e.contains("IPSec Tunnel #1"), "{e}");
}

#[test]
fn spec_rules_are_traced_back_to_the_flag() {
    let mut o = opts();
    o.inside_address = "100.64.0.1".into();
    let e = import_sample("one-tunnel.xml", &o).unwrap_err();
    assert!(e.starts_with("--inside-address: spec.insideAddress: must not be inside remoteSubnets"), "{e}");
    let mut o = opts();
    o.forwards = vec!["admin:7000:100.65.1.10:7000:203.0.113.10/32".into()];
    let e = import_sample("one-tunnel.xml", &o).unwrap_err();
    assert!(e.starts_with("--forward admin:7000:100.65.1.10:7000:203.0.113.10/32: spec.forwards[0]"), "{e}");
    let mut o = opts();
    o.forwards = vec!["admin:4500:100.64.1.10:7000".into()];
    assert!(import_sample("one-tunnel.xml", &o).unwrap_err().starts_with("--forward admin:4500"));
    let mut o = opts();
    o.forwards = vec!["admin:7000:100.64.1.10".into()];
    assert!(import_sample("one-tunnel.xml", &o).unwrap_err().contains("expected NAME:LISTEN_PORT"));
    let mut o = opts();
    o.name = "Plant_7".into();
    assert!(import_sample("one-tunnel.xml", &o).unwrap_err().starts_with("--name: "));
}

#[test]
fn several_forwards_and_open_sources() {
    let mut o = opts();
    o.forwards = vec![
        "admin:7000:100.64.1.10:7000:203.0.113.10/32,203.0.113.11/32".into(),
        "telemetry:7001:100.64.2.20:9000".into(),
    ];
    let (r, _, yaml) = import_sample("two-tunnels.xml", &o).unwrap();
    assert_eq!(r.spec.forwards.len(), 2);
    assert_eq!(r.spec.forwards[0].allowed_sources, ["203.0.113.10/32", "203.0.113.11/32"]);
    assert_eq!(r.spec.forwards[1].allowed_sources, ["0.0.0.0/0"]);
    assert!(yaml.contains("# every sender"), "{yaml}");
}

fn bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_iotrelay-sidecar")).args(args).output().expect("runs")
}

const FLAGS: &[&str] = &["--name", "plant-7", "--inside-address", "100.127.0.1", "--remote-subnet", "100.64.0.0/16"];

#[test]
fn the_command_prints_yaml_and_keeps_keys_off_stderr() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/aws");
    let keys = ["Xq7.tunnel1_Key_abc", "Pz9_tunnel2.Key_def"];
    let ok = bin(&[&["import-aws", "--xml", dir.join("two-tunnels.xml").to_str().unwrap()], FLAGS].concat());
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(ok.stderr.is_empty(), "{}", String::from_utf8_lossy(&ok.stderr));
    let out = String::from_utf8(ok.stdout).unwrap();
    assert!(keys.iter().all(|k| out.contains(k)));
    load_yaml(&out).unwrap();
    for (file, want) in [
        ("missing-key.xml", "ipsec_tunnel[2]"),
        ("truncated.xml", "truncated"),
        ("malformed.xml", "XML line 31"),
        ("two-tunnels.txt", "XML line 1, column 1"), // the text given as XML
    ] {
        let r = bin(&[&["import-aws", "--xml", dir.join(file).to_str().unwrap()], FLAGS].concat());
        assert_eq!(r.status.code(), Some(1), "{file}");
        assert!(r.stdout.is_empty(), "{file}");
        let err = String::from_utf8(r.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{file}: {err}");
        assert!(err.contains(want), "{file}: {err}");
        assert!(keys.iter().all(|k| !err.contains(k)), "{file}: {err}");
    }
    // A validation failure after the keys were read: still no key on stderr.
    let r = bin(&[
        &["import-aws", "--text", dir.join("two-tunnels.txt").to_str().unwrap()],
        &FLAGS[..4],
        &["--remote-subnet", "100.127.0.0/16"],
    ]
    .concat());
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8(r.stderr).unwrap();
    assert!(err.starts_with("import-aws: --inside-address: "), "{err}");
    assert!(keys.iter().all(|k| !err.contains(k)), "{err}");
}

#[test]
fn the_command_reads_stdin() {
    use std::io::Write;
    let mut c = Command::new(env!("CARGO_BIN_EXE_iotrelay-sidecar"))
        .args([&["import-aws", "--xml", "-"], FLAGS].concat())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(sample("one-tunnel.xml").as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    let (r, _) = load_yaml(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(r.spec.tunnels[0].peer_address, "203.0.113.21");
}

#[test]
fn dynamic_routing_fills_spec_bgp_and_the_inside_cidrs() {
    let (r, keys, yaml) = import_sample("dynamic.xml", &opts()).unwrap();
    let b = r.spec.bgp.clone().expect("spec.bgp");
    assert_eq!((b.local_asn, b.aws_asn, b.hold_time.as_str()), (4_200_000_000, 64512, "30s"));
    assert_eq!((b.announce.as_ref(), b.standby_prepend), (None, 2));
    let cidrs: Vec<_> = r.spec.tunnels.iter().map(|t| t.inside_cidr.as_deref()).collect();
    assert_eq!(cidrs, [Some("169.254.10.40/30"), Some("169.254.20.40/30")]);
    let v = iotrelay_api::validate(&r.spec).unwrap();
    let inside = v.tunnels[0].inside.unwrap();
    assert_eq!((inside.local.to_string(), inside.aws.to_string()), ("169.254.10.42".into(), "169.254.10.41".into()));
    assert!(yaml.contains("  bgp:   # the VPN connection uses dynamic routing"));
    // Everything else is what the static document with the same tunnels gives.
    let (st, skeys, _) = import_sample("two-tunnels.xml", &opts()).unwrap();
    assert_eq!(st.spec.bgp, None);
    let mut without = r.spec.clone();
    without.bgp = None;
    without.tunnels.iter_mut().for_each(|t| t.inside_cidr = None);
    assert_eq!(without, st.spec);
    assert_eq!(keys, skeys);
}

#[test]
fn dynamic_routing_errors_name_the_element() {
    let doc = sample("dynamic.xml");
    let run = |text: &str| -> String {
        let tunnels = xml::parse(text).unwrap();
        import(&tunnels, &opts()).unwrap_err().to_string()
    };
    // The second tunnel's ASN differs from the first's.
    let other =
        doc.replacen("<asn>64512</asn>", "<asn>64513</asn>", 2).replacen("<asn>64513</asn>", "<asn>64512</asn>", 1);
    assert!(run(&other).starts_with("ipsec_tunnel[2]"), "{}", run(&other));
    assert!(run(&other).contains("differ in BGP ASNs"));
    let e = run(&doc.replacen("<asn>4200000000</asn>", "<asn>AS65000</asn>", 1));
    assert!(e.starts_with("ipsec_tunnel[1]/customer_gateway/bgp/asn (line"), "{e}");
    let e = run(&doc.replacen("<network_cidr>30</network_cidr>", "<network_cidr>29</network_cidr>", 1));
    assert!(e.contains("network_cidr") && e.contains("/30"), "{e}");
    let e = run(&doc.replacen("169.254.10.42", "169.254.10.1.2", 1));
    assert!(e.contains("tunnel_inside_address/ip_address") && e.contains("IPv4"), "{e}");
}
