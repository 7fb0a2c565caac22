//! Every metric the chart's PrometheusRule and Grafana dashboard query is one a relay exports. A relay
//! `Datapath` is brought up against an "AWS" `Datapath` (and a second relay against an AWS end with another
//! pre-shared key, so a tunnel is down for AuthenticationFailed); their status and `/metrics` text are built with
//! the sidecar's own `build_status` and `admin::render_metrics`. The `iotrelay_*` names in
//! charts/iotrelay/templates/prometheusrule.yaml and charts/iotrelay/dashboards/iotrelay.json must each have a
//! sample in that text.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use iotrelay_crypto::SeededRandom;
use iotrelay_ikev2::{Config, StartupAction};
use iotrelay_sidecar::admin::{Published, render_metrics};
use iotrelay_sidecar::datapath::{Datapath, ForwardId, TunnelPlan};
use iotrelay_sidecar::status::{Owner, Place, WallClock, build_status};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use zeroize::Zeroizing;

mod common;
use common::{AWS, Capture, DEVICE, RELAY, RELAY_INSIDE, admin_forward, config, exchange};

fn datapath(me: Ipv4Addr, inside: Ipv4Addr, peer: Ipv4Addr, cfg: Config, rng: &mut SeededRandom) -> Datapath {
    let forward = admin_forward();
    Datapath::new(
        inside,
        1024,
        me,
        vec![TunnelPlan { name: "tunnel1".into(), peer, config: cfg }],
        vec![forward],
        Duration::ZERO,
        rng,
    )
}

/// Brings a relay up against an AWS end (`aws_psk` differing from the relay's makes authentication fail), with
/// some traffic and a refused client, and returns the relay's `/metrics` text.
fn relay_metrics(aws_psk: Option<&[u8]>) -> String {
    let mut rng = SeededRandom::new(11);
    let mut relay = datapath(RELAY, RELAY_INSIDE, AWS, config(StartupAction::Start, RELAY), &mut rng);
    let mut aws_cfg = config(StartupAction::Add, AWS);
    if let Some(psk) = aws_psk {
        aws_cfg.psk = Zeroizing::new(psk.to_vec());
    }
    let mut aws = datapath(AWS, DEVICE, RELAY, aws_cfg, &mut rng);
    let now = Duration::from_secs(1);
    exchange(&mut relay, &mut aws, now);
    // A client the forward does not allow: a forward drop with a reason.
    let client = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 99), 5555);
    relay.handle_forward(now, ForwardId(0), client, b"not allowed", &mut Capture::default());

    let (tunnels, forwards, drops) = relay.snapshot();
    let place = Place { node_name: Some("node-a".into()), outside_address: RELAY, public_identity: None };
    let clock = WallClock { origin: "2026-11-28T20:00:00Z".parse().unwrap() };
    let now = Time("2026-11-28T20:00:05Z".parse().unwrap());
    let status =
        build_status(Owner::InCluster, None, &place, &tunnels, &forwards, drops.clone(), None, &clock, now, &[]);
    render_metrics(&Published { status, tunnels, forwards, datapath: drops, ..Default::default() })
}

/// Names of the samples in a Prometheus/OpenMetrics text (`name{labels} value` or `name value`).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Every `iotrelay_<name>` token in a file (PromQL in YAML or JSON).
fn queried_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("iotrelay_") {
        let name: String =
            text[i..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
        out.insert(name);
    }
    out
}

fn chart_file(path: &str) -> String {
    let p = format!("{}/../charts/iotrelay/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_query_is_exported() {
    let healthy = relay_metrics(None);
    let refused = relay_metrics(Some(b"another_psk_456"));
    assert!(healthy.contains("iotrelay_tunnel_up{tunnel=\"tunnel1\"} 1"), "relay not established:\n{healthy}");
    // The down-reason family exists on a healthy relay too (0, reason None), so a query never finds no data.
    assert!(
        healthy.contains("iotrelay_tunnel_down_reason{tunnel=\"tunnel1\",reason=\"None\"} 0"),
        "no down-reason series on a healthy relay:\n{healthy}"
    );
    assert!(
        refused.contains("iotrelay_tunnel_down_reason{tunnel=\"tunnel1\",reason=\"AuthenticationFailed\"} 1"),
        "no AuthenticationFailed series (the alert's selector):\n{refused}"
    );
    let exported: BTreeSet<String> = sample_names(&healthy).union(&sample_names(&refused)).cloned().collect();

    let rules = queried_names(&chart_file("templates/prometheusrule.yaml"));
    let dashboard = queried_names(&chart_file("dashboards/iotrelay.json"));
    assert!(rules.len() >= 5 && dashboard.len() >= 10, "too few names found: {rules:?} {dashboard:?}");
    for (what, names) in [("prometheusrule.yaml", &rules), ("iotrelay.json", &dashboard)] {
        let missing: Vec<&String> = names.difference(&exported).collect();
        assert!(missing.is_empty(), "{what} queries metrics no relay exports: {missing:?}\nexported: {exported:?}");
    }
}
