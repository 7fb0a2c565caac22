//! Dynamic routing with iotrelay on both ends, sans-IO on a virtual clock: a relay `Datapath` with two tunnels and
//! BGP (AS 65000, connecting), and two "AWS" `Datapath`s, one per tunnel, each with a passive BGP session (AS
//! 64512) announcing the VPC. The BGP TCP connections run inside the ESP tunnels (userspace TCP on both ends).
//! Forwards are gated on learned prefixes (`noRoute`), announcements carry prepends on the standby tunnel and move
//! when the active tunnel dies (its IKE or its BGP session), come back only after the tunnel was stable for
//! `failbackDelay` (never while it flaps), and the status says `Degraded` when a tunnel is up without its BGP
//! session and `Ready=False` when no tunnel has one; a session flap raises its Events (notices) and shows in the
//! `iotrelay_bgp_*` metrics. The AWS sides' plans come from the relay's own `spec.bgp` with the AWS-side role
//! (`standalone --bgp-aws-side`), as in `make bgp`'s iotrelay-on-both-ends cases.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use iotrelay_api::standalone::load_yaml;
use iotrelay_api::validate::ValidatedSpec;
use iotrelay_bgp::Ipv4Cidr;
use iotrelay_crypto::SeededRandom;
use iotrelay_esp::ipv4;
use iotrelay_ikev2::StartupAction;
use iotrelay_sidecar::admin::{Published, render_metrics};
use iotrelay_sidecar::config::validate_spec;
use iotrelay_sidecar::datapath::{BgpPlan, BgpRole, BgpTunnelPlan, Datapath, ForwardId, Notice, Out, TunnelPlan};
use iotrelay_sidecar::gateway::{GatewayConfig, GatewayDrop};
use iotrelay_sidecar::status::{Owner, Place, WallClock, build_status};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

mod common;
use common::{Capture, DEVICE, RELAY, RELAY_INSIDE, admin_forward, config};

const AWS1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const AWS2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 5555);

fn p(s: &str) -> Ipv4Cidr {
    s.parse().unwrap()
}

/// Tunnel `k`'s inside /30 169.254.(10+k).0/30: AWS .1, relay .2.
fn inside(k: u8, aws: bool) -> Ipv4Addr {
    Ipv4Addr::new(169, 254, 10 + k, if aws { 1 } else { 2 })
}

/// The relay's `failbackDelay`.
const FAILBACK: Duration = Duration::from_secs(60);

/// The VPN connection as both ends' `spec.bgp` describe it: the customer gateway AS 65000, AWS AS 64512 (the
/// default), tunnel `k`'s inside /30 169.254.(10+k).0/30.
fn connection_spec() -> ValidatedSpec {
    let yaml = format!(
        "apiVersion: iotrelay.dev/v1alpha1
kind: IotRelay
metadata: {{name: lab, namespace: default}}
spec:
  insideAddress: {RELAY_INSIDE}
  remoteSubnets: [\"100.64.0.0/16\"]
  tunnels:
  - {{name: tunnel1, peerAddress: {AWS1}, insideCidr: 169.254.10.0/30, preSharedKeySecretRef: {{name: s, key: k}}}}
  - {{name: tunnel2, peerAddress: {AWS2}, insideCidr: 169.254.11.0/30, preSharedKeySecretRef: {{name: s, key: k}}}}
  bgp: {{localAsn: 65000}}
---
apiVersion: v1
kind: Secret
metadata: {{name: s, namespace: default}}
stringData: {{k: \"x\"}}
"
    );
    let (relay, _) = load_yaml(&yaml).unwrap();
    validate_spec(&relay.spec, false).unwrap()
}

/// AWS endpoint `k`'s BGP: the AWS side's plan (`--bgp-aws-side`) from the same `spec.bgp` as the relay's, on
/// tunnel `k` only (passive, AS 64512, the first host), announcing nothing until a test says so.
fn aws_plan(k: usize) -> BgpPlan {
    let mut plan = BgpPlan::from_spec(&connection_spec(), BgpRole::AwsSide).unwrap();
    plan.tunnels = vec![plan.tunnels[k]];
    plan.announce = vec![];
    plan
}

#[test]
fn the_aws_side_plays_the_other_end_of_the_same_connection() {
    let spec = connection_spec();
    let cgw = BgpPlan::from_spec(&spec, BgpRole::CustomerGateway).unwrap();
    let aws = BgpPlan::from_spec(&spec, BgpRole::AwsSide).unwrap();
    assert_eq!((cgw.local_as, cgw.peer_as, cgw.passive), (65000, 64512, false));
    assert_eq!((aws.local_as, aws.peer_as, aws.passive), (64512, 65000, true));
    for k in 0..2 {
        let (c, a) = (cgw.tunnels[k].unwrap(), aws.tunnels[k].unwrap());
        assert_eq!((c.local, c.peer), (inside(k as u8, false), inside(k as u8, true)));
        assert_eq!((a.local, a.peer), (c.peer, c.local));
    }
    // AWS prefers no tunnel: no prepends and no failback damping, whatever the customer gateway's settings.
    assert_eq!((cgw.standby_prepend, cgw.failback_delay), (2, Duration::from_secs(60)));
    assert_eq!((aws.standby_prepend, aws.failback_delay), (0, Duration::ZERO));
}

struct Lab {
    relay: Datapath,
    aws: Vec<Datapath>,
    /// The AWS endpoint at this index is dead: nothing reaches it or leaves it.
    dead: Vec<bool>,
    rng: SeededRandom,
    now: Duration,
}

impl Lab {
    fn new(aws_bgp: bool) -> Lab {
        let mut rng = SeededRandom::new(17);
        let now = Duration::ZERO;
        let forward = admin_forward();
        let tunnels = [("tunnel1", AWS1), ("tunnel2", AWS2)].map(|(n, a)| TunnelPlan {
            name: n.into(),
            peer: a,
            config: config(StartupAction::Start, RELAY),
        });
        let mut relay = Datapath::new(RELAY_INSIDE, 1024, RELAY, tunnels.into(), vec![forward], now, &mut rng);
        let plan = BgpPlan {
            local_as: 65000,
            peer_as: 64512,
            hold_time: 30,
            announce: vec![p("100.127.0.1/32")],
            standby_prepend: 2,
            failback_delay: FAILBACK,
            tunnels: (0..2).map(|k| Some(BgpTunnelPlan { local: inside(k, false), peer: inside(k, true) })).collect(),
            passive: false,
        };
        relay.set_bgp(plan, &mut rng).unwrap();
        relay.set_listening(ForwardId(0), true);
        let aws = [AWS1, AWS2]
            .iter()
            .enumerate()
            .map(|(k, a)| {
                let t = TunnelPlan { name: "relay".into(), peer: RELAY, config: config(StartupAction::Add, *a) };
                let mut d = Datapath::new(DEVICE, 1024, *a, vec![t], vec![], now, &mut rng);
                if aws_bgp {
                    d.set_bgp(aws_plan(k), &mut rng).unwrap();
                }
                d
            })
            .collect();
        Lab { relay, aws, dead: vec![false, false], rng, now }
    }

    /// Moves datagrams until every side is quiet, running timers that are due now (BGP packets are sealed there).
    fn pump(&mut self) {
        for _ in 0..500 {
            let mut moved = false;
            let mut c = Capture::default();
            self.relay.drain(&mut c);
            if self.relay.poll_timeout().is_some_and(|t| t <= self.now) {
                self.relay.handle_timeout(self.now, &mut self.rng, &mut c);
            }
            moved |= !c.0.is_empty();
            self.deliver_from_relay(c);
            for k in 0..self.aws.len() {
                let mut c = Capture::default();
                self.aws[k].drain(&mut c);
                if self.aws[k].poll_timeout().is_some_and(|t| t <= self.now) {
                    self.aws[k].handle_timeout(self.now, &mut self.rng, &mut c);
                }
                moved |= !c.0.is_empty();
                self.deliver_from_aws(k, c);
            }
            if !moved {
                return;
            }
        }
        panic!("never quiet");
    }

    fn deliver_from_relay(&mut self, c: Capture) {
        for (out, mut data) in c.0 {
            let Out::Outside { local_port, remote } = out else { continue };
            let k = if remote.ip() == std::net::IpAddr::V4(AWS1) { 0 } else { 1 };
            if self.dead[k] {
                continue;
            }
            let from = SocketAddr::new(RELAY.into(), local_port);
            let mut sink = Capture::default();
            if local_port == 4500 {
                self.aws[k].handle_udp4500(self.now, from, &mut data, &mut sink);
            } else {
                self.aws[k].handle_udp500(self.now, from, &data);
            }
        }
    }

    fn deliver_from_aws(&mut self, k: usize, c: Capture) {
        if self.dead[k] {
            return;
        }
        let src = [AWS1, AWS2][k];
        for (out, mut data) in c.0 {
            let Out::Outside { local_port, .. } = out else { continue };
            let from = SocketAddr::new(src.into(), local_port);
            let mut sink = Capture::default();
            if local_port == 4500 {
                self.relay.handle_udp4500(self.now, from, &mut data, &mut sink);
            } else {
                self.relay.handle_udp500(self.now, from, &data);
            }
        }
    }

    /// Runs the clock forward in steps of at most 500 ms.
    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.pump();
        while self.now < until {
            self.now = (self.now + Duration::from_millis(500)).min(until);
            self.pump();
        }
    }

    fn client(&mut self) {
        let mut c = Capture::default();
        self.relay.handle_forward(self.now, ForwardId(0), CLIENT, b"admin", &mut c);
        self.deliver_from_relay(c);
        self.pump();
    }

    fn bgp_state(&self, ti: usize) -> String {
        self.relay.snapshot().0[ti].bgp.as_ref().unwrap().state.clone()
    }

    /// The AS paths AWS 1 and 2 have for our inside address (empty: no route).
    fn paths(&self) -> Vec<Vec<u32>> {
        self.aws.iter().map(|a| a.bgp_routes(0).first().map(|r| r.as_path.clone()).unwrap_or_default()).collect()
    }

    /// The tunnel the relay sends on.
    fn active(&self) -> Option<usize> {
        self.relay.snapshot().0.iter().position(|t| t.active)
    }

    /// Runs the clock until `f` holds (500 ms steps), at most `max`; the time it took.
    fn run_until(&mut self, max: Duration, f: impl Fn(&Lab) -> bool) -> Duration {
        let start = self.now;
        while !f(self) {
            assert!(self.now - start < max, "condition not reached within {max:?}");
            self.run_for(Duration::from_millis(500));
        }
        self.now - start
    }

    fn status(&self) -> iotrelay_api::IotRelayStatus {
        let (t, f, d) = self.relay.snapshot();
        let place = Place { node_name: None, outside_address: RELAY, public_identity: None };
        let clock = WallClock { origin: "2026-11-30T12:00:00Z".parse().unwrap() };
        let now = Time("2026-11-30T12:00:00Z".parse().unwrap());
        let g = self.relay.gateway_on().then(|| self.relay.gateway_counters());
        build_status(Owner::Standalone, None, &place, &t, &f, d, g.as_ref(), &clock, now, &[])
    }
}

#[test]
fn sessions_routes_forward_gating_and_failover() {
    let mut lab = Lab::new(true);
    lab.run_for(Duration::from_secs(2));
    assert_eq!(lab.bgp_state(0), "Established");
    assert_eq!(lab.bgp_state(1), "Established");
    // AWS learned our inside address on both tunnels: plain on the active one, prepended on the standby.
    let paths: Vec<Vec<u32>> = (0..2).map(|k| lab.aws[k].bgp_routes(0)[0].as_path.clone()).collect();
    assert_eq!(paths, vec![vec![65000], vec![65000, 65000, 65000]]);
    assert_eq!(lab.aws[0].bgp_routes(0)[0].prefix, p("100.127.0.1/32"));
    assert_eq!(lab.aws[0].bgp_routes(0)[0].next_hop, inside(0, false));

    // AWS announces nothing yet: the forward's target has no route.
    lab.client();
    let f = &lab.relay.snapshot().1[0];
    assert_eq!((f.drops.no_route, f.packets_in), (1, 0));

    // The VPC is announced: the forward goes through.
    for a in &mut lab.aws {
        a.set_bgp_announce(vec![p("100.64.0.0/16")]);
    }
    lab.pump();
    assert_eq!(lab.relay.bgp_routes(0)[0].prefix, p("100.64.0.0/16"));
    lab.client();
    let f = &lab.relay.snapshot().1[0];
    assert_eq!((f.drops.no_route, f.packets_in), (1, 1));
    let s = lab.status();
    let b = s.tunnels[0].bgp.as_ref().unwrap();
    assert_eq!((b.state.as_str(), b.prefixes_received, b.prefixes_announced, b.prepend), ("Established", 1, 1, 0));
    assert_eq!(b.received, vec!["100.64.0.0/16"]);
    assert!(b.established_at.is_some());
    assert_eq!(s.tunnels[1].bgp.as_ref().unwrap().prepend, 2);
    assert_eq!(s.condition("Degraded").unwrap().status, "False");

    // Withdrawn: forwards stop, counted.
    for a in &mut lab.aws {
        a.set_bgp_announce(vec![]);
    }
    lab.pump();
    assert!(lab.relay.bgp_routes(0).is_empty());
    lab.client();
    let f = &lab.relay.snapshot().1[0];
    assert_eq!((f.drops.no_route, f.packets_in), (2, 1));
    for a in &mut lab.aws {
        a.set_bgp_announce(vec![p("100.64.0.0/16")]);
    }
    lab.pump();

    // Tunnel1's AWS endpoint dies: dead peer detection takes tunnel1 down, its session stops, tunnel2 becomes
    // active and AWS2 now learns our prefix without prepends; forwards keep working over tunnel2's route.
    lab.dead[0] = true;
    lab.run_for(Duration::from_secs(90));
    let (t, _, _) = lab.relay.snapshot();
    assert_ne!(t[0].engine.state, iotrelay_ikev2::TunnelState::Established, "tunnel1 still up");
    assert!(t[1].active);
    assert_eq!(lab.bgp_state(0), "Idle");
    assert_eq!(lab.aws[1].bgp_routes(0)[0].as_path, vec![65000], "announcement moved to tunnel2");
    let s = lab.status();
    assert_eq!(s.tunnels[0].bgp.as_ref().unwrap().last_error, "tunnel down: session stopped");
    assert_eq!(s.condition("Degraded").unwrap().reason, "TunnelDown");
    lab.client();
    let f = &lab.relay.snapshot().1[0];
    assert_eq!((f.drops.no_route, f.packets_in), (2, 2));
}

#[test]
fn tunnel_up_without_bgp_session_is_degraded() {
    // The AWS ends run no BGP: the tunnels come up, the sessions never do.
    let mut lab = Lab::new(false);
    lab.run_for(Duration::from_secs(5));
    let (t, _, _) = lab.relay.snapshot();
    assert!(t.iter().all(|t| t.engine.state == iotrelay_ikev2::TunnelState::Established));
    assert_ne!(lab.bgp_state(0), "Established");
    let s = lab.status();
    let d = s.condition("Degraded").unwrap();
    assert_eq!((d.status.as_str(), d.reason.as_str()), ("True", "BgpSessionDown"));
    // AWS routes nothing into a tunnel without its session: not Ready.
    assert_eq!(s.condition("Ready").unwrap().reason, "NoBgpSessionEstablished");
    assert_eq!(s.condition("Ready").unwrap().status, "False");
    assert!(d.message.contains("tunnel1") && d.message.contains("tunnel2"), "{}", d.message);
    lab.client();
    assert_eq!(lab.relay.snapshot().1[0].drops.no_route, 1);
}

const PLAIN: [u32; 1] = [65000];
const PREPENDED: [u32; 3] = [65000, 65000, 65000];

#[test]
fn bgp_loss_fails_over_at_once_and_failback_waits_for_a_stable_tunnel() {
    let mut lab = Lab::new(true);
    lab.run_for(Duration::from_secs(2));
    assert_eq!(lab.paths(), vec![PLAIN.to_vec(), PREPENDED.to_vec()]);
    assert_eq!(lab.active(), Some(0));
    let r = lab.status().condition("Ready").cloned().unwrap();
    assert_eq!((r.status.as_str(), r.message.as_str()), ("True", "established with BGP: tunnel1, tunnel2"));

    // AWS1's BGP speaker restarts (its IKE and CHILD_SA stay): the relay's tunnel1 session is reset. Traffic and
    // the plain announcement move to tunnel2 in the same pass.
    lab.aws[0].set_bgp(aws_plan(0), &mut lab.rng).unwrap();
    lab.run_until(Duration::from_secs(15), |l| l.bgp_state(0) != "Established");
    assert_eq!(lab.active(), Some(1), "traffic moved to tunnel2");
    assert_eq!(lab.paths()[1], PLAIN, "tunnel2 announced plain");
    let d = lab.status().condition("Degraded").cloned().unwrap();
    assert_eq!((d.reason.as_str(), d.message.contains("tunnel1")), ("BgpSessionDown", true));

    // The session reconnects (after the 5 s backoff): tunnel1 is usable again but stays standby, prepended, and
    // the status says when it takes traffic back.
    lab.run_until(Duration::from_secs(15), |l| l.bgp_state(0) == "Established");
    let back = lab.now;
    assert_eq!(lab.paths(), vec![PREPENDED.to_vec(), PLAIN.to_vec()]);
    assert_eq!(lab.active(), Some(1));
    let s = lab.status();
    let at = s.tunnels[0].bgp.as_ref().unwrap().failback_at.clone().expect("failbackAt set");
    let clock = WallClock { origin: "2026-11-30T12:00:00Z".parse().unwrap() };
    assert_eq!(at, clock.at(back + FAILBACK));

    // It flaps again 30 s later: the clock starts over from its next re-establishment.
    lab.run_for(Duration::from_secs(30));
    assert_eq!(lab.active(), Some(1));
    lab.aws[0].set_bgp(aws_plan(0), &mut lab.rng).unwrap();
    lab.run_until(Duration::from_secs(15), |l| l.bgp_state(0) != "Established");
    lab.run_until(Duration::from_secs(15), |l| l.bgp_state(0) == "Established");
    let back = lab.now;
    assert!(lab.status().tunnels[0].bgp.as_ref().unwrap().failback_at.is_some());
    // Where the first re-establishment's delay would have ended, tunnel2 still carries traffic.
    lab.run_for(FAILBACK - Duration::from_secs(1));
    assert_eq!((lab.active(), lab.paths()[0].clone()), (Some(1), PREPENDED.to_vec()), "failback before the delay");
    // Exactly when the delay has passed since the last re-establishment, traffic and the plain path move back.
    lab.run_for(back + FAILBACK - lab.now);
    assert_eq!(lab.active(), Some(0), "no failback after the delay");
    assert_eq!(lab.paths(), vec![PLAIN.to_vec(), PREPENDED.to_vec()]);
    let s = lab.status();
    assert!(s.tunnels[0].bgp.as_ref().unwrap().failback_at.is_none());
    assert_eq!(s.tunnels[0].bgp.as_ref().unwrap().sessions_established, 3);
    assert_eq!(s.condition("Degraded").unwrap().reason, "AllTunnelsEstablished");
}

#[test]
fn ike_loss_fails_over_and_the_tunnel_that_comes_back_waits_before_failback() {
    let mut lab = Lab::new(true);
    lab.run_for(Duration::from_secs(2));
    assert_eq!(lab.active(), Some(0));
    // Tunnel1's AWS endpoint vanishes until DPD takes the tunnel down: tunnel2 takes over.
    lab.dead[0] = true;
    lab.run_until(Duration::from_secs(90), |l| l.active() == Some(1));
    assert_eq!(lab.paths()[1], PLAIN);
    // It is back: the relay re-establishes tunnel1, then its session; tunnel1 waits out the delay.
    lab.dead[0] = false;
    lab.run_until(Duration::from_secs(180), |l| l.bgp_state(0) == "Established");
    let back = lab.now;
    assert_eq!(lab.paths(), vec![PREPENDED.to_vec(), PLAIN.to_vec()]);
    let waited = lab.run_until(FAILBACK + Duration::from_secs(1), |l| l.active() == Some(0));
    assert!(lab.now >= back + FAILBACK, "failback after {waited:?}");
    assert_eq!(lab.paths(), vec![PLAIN.to_vec(), PREPENDED.to_vec()]);
}

#[test]
fn losing_the_standby_moves_nothing() {
    let mut lab = Lab::new(true);
    lab.run_for(Duration::from_secs(2));
    // The standby's session resets: nothing moves (tunnel1 stays preferred).
    lab.aws[1].set_bgp(aws_plan(1), &mut lab.rng).unwrap();
    lab.run_until(Duration::from_secs(15), |l| l.bgp_state(1) != "Established");
    assert_eq!((lab.active(), lab.paths()[0].clone()), (Some(0), PLAIN.to_vec()));
    lab.run_until(Duration::from_secs(15), |l| l.bgp_state(1) == "Established");
    assert_eq!(lab.paths(), vec![PLAIN.to_vec(), PREPENDED.to_vec()]);
    assert!(lab.status().tunnels[1].bgp.as_ref().unwrap().failback_at.is_none());
}

/// The relay's `/metrics` text for its current state.
fn metrics(lab: &Lab) -> String {
    render_metrics(&Published { status: lab.status(), tunnels: lab.relay.snapshot().0, ..Default::default() })
}

/// The BGP notices (Kubernetes Events) for `tunnel` the relay raised since the last call: `Established` or the
/// down reason.
fn bgp_notices(lab: &mut Lab, tunnel: &str) -> Vec<&'static str> {
    let notices = lab.relay.take_notices();
    notices
        .iter()
        .filter_map(|n| match n {
            Notice::BgpEstablished { tunnel: t } if t == tunnel => Some("Established"),
            Notice::BgpDown { tunnel: t, reason } if t == tunnel => Some(*reason),
            _ => None,
        })
        .collect()
}

#[test]
fn a_session_flap_is_an_event_and_counted_in_the_metrics() {
    let mut lab = Lab::new(true);
    lab.run_for(Duration::from_secs(2));
    assert_eq!(bgp_notices(&mut lab, "tunnel1"), vec!["Established"]);
    let m = metrics(&lab);
    assert!(m.contains("iotrelay_bgp_session_established{tunnel=\"tunnel1\"} 1\n"), "{m}");
    assert!(m.contains("iotrelay_bgp_sessions_established_total{tunnel=\"tunnel1\"} 1\n"), "{m}");

    // AWS1's BGP speaker restarts: the relay's session on tunnel1 goes down (an Event with the reason, the gauge
    // at 0) and comes back (an Event, the flap counter at 2); tunnel2's session saw nothing.
    lab.aws[0].set_bgp(aws_plan(0), &mut lab.rng).unwrap();
    lab.run_until(Duration::from_secs(15), |l| l.bgp_state(0) != "Established");
    assert_eq!(bgp_notices(&mut lab, "tunnel1"), vec!["ConnectionClosed"]);
    let m = metrics(&lab);
    assert!(m.contains("iotrelay_bgp_session_established{tunnel=\"tunnel1\"} 0\n"), "{m}");
    lab.run_until(Duration::from_secs(15), |l| l.bgp_state(0) == "Established");
    assert_eq!(bgp_notices(&mut lab, "tunnel1"), vec!["Established"]);
    let m = metrics(&lab);
    assert!(m.contains("iotrelay_bgp_session_established{tunnel=\"tunnel1\"} 1\n"), "{m}");
    assert!(m.contains("iotrelay_bgp_sessions_established_total{tunnel=\"tunnel1\"} 2\n"), "{m}");
    assert!(m.contains("iotrelay_bgp_sessions_established_total{tunnel=\"tunnel2\"} 1\n"), "{m}");
    assert!(bgp_notices(&mut lab, "tunnel2").is_empty());
}

/// An ICMP echo request of 84 octets from the relay's host to `dst`.
fn ping(dst: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; 84];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&84u16.to_be_bytes());
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&RELAY_INSIDE.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = ipv4::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20] = 8;
    p
}

#[test]
fn gateway_mode_routes_are_the_learned_prefixes() {
    let mut lab = Lab::new(true);
    let remote = vec!["100.64.0.0/16".parse().unwrap()];
    lab.relay.set_gateway(Some(GatewayConfig { mtu: None, remote_subnets: remote, local: None }));
    lab.run_for(Duration::from_secs(2));
    let routes = |l: &Lab| l.relay.gateway_bgp_routes().map(|(v, r)| (v, r.to_vec())).unwrap();
    let (v0, r) = routes(&lab);
    assert!(r.is_empty());
    let tun = |l: &mut Lab| {
        let mut c = Capture::default();
        let (now, mut pkt) = (l.now, ping(DEVICE));
        l.relay.handle_tun(now, &mut pkt, &mut c);
        l.relay.gateway_counters()
    };
    // Nothing learned: the host's packet to the VPC is not sent (even though remoteSubnets covers it).
    let g = tun(&mut lab);
    assert_eq!((g.to_tunnel, g.drops_of(GatewayDrop::OutsideSelectors)), (0, 1));

    // AWS announces the VPC on both tunnels, a second prefix on tunnel2 and a default route (it covers the tunnel
    // peers: refused, counted).
    lab.aws[0].set_bgp_announce(vec![p("100.64.0.0/16"), p("0.0.0.0/0")]);
    lab.aws[1].set_bgp_announce(vec![p("100.64.0.0/16"), p("100.65.0.0/16")]);
    lab.pump();
    let (v1, r) = routes(&lab);
    assert!(v1 > v0);
    assert_eq!(r, vec![p("100.64.0.0/16"), p("100.65.0.0/16")]);
    let g = tun(&mut lab);
    assert_eq!((g.to_tunnel, g.bgp_routes, g.bgp_routes_refused), (1, 2, 1));
    let s = lab.status();
    let gs = s.gateway.as_ref().expect("status.gateway");
    assert_eq!((gs.bgp_routes, gs.bgp_routes_refused), (2, 1));

    // Tunnel2's session resets: what only it announced is withdrawn from the routes, the VPC stays (tunnel1).
    lab.aws[1].set_bgp(aws_plan(1), &mut lab.rng).unwrap();
    lab.run_until(Duration::from_secs(15), |l| l.bgp_state(1) != "Established");
    let (v2, r) = routes(&lab);
    assert_eq!((v2 > v1, r), (true, vec![p("100.64.0.0/16")]));

    // AWS withdraws everything: no routes, the packet is dropped again.
    lab.aws[0].set_bgp_announce(vec![]);
    lab.pump();
    assert!(routes(&lab).1.is_empty());
    let g = tun(&mut lab);
    assert_eq!((g.to_tunnel, g.drops_of(GatewayDrop::OutsideSelectors), g.bgp_routes), (1, 2, 0));
}

/// [`ping`] from `src`.
fn ping_from(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut p = ping(dst);
    p[12..16].copy_from_slice(&src.octets());
    p[10..12].fill(0);
    let c = ipv4::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// Gateway mode with BGP and a site network behind the relay's host (`gateway.localSubnets`, announced): the host
/// may send into the tunnel from `insideAddress` and the site network only, and the tunnel delivers to the device
/// only what is addressed to them, even when the far side sends elsewhere.
#[test]
fn gateway_mode_carries_only_the_announced_networks() {
    let site = Ipv4Addr::new(198, 51, 100, 7);
    let elsewhere = Ipv4Addr::new(203, 0, 113, 5);
    let mut lab = Lab::new(true);
    let local = vec![p("100.127.0.1/32"), p("198.51.100.0/24")];
    let cidrs = local.iter().map(|c| c.to_string().parse().unwrap()).collect();
    lab.relay.set_gateway(Some(GatewayConfig {
        mtu: None,
        remote_subnets: vec!["100.64.0.0/16".parse().unwrap()],
        local: Some(cidrs),
    }));
    // A far side that routes whatever the relay announces back into the tunnel (AWS's behaviour). The relay
    // announces a third prefix it does not carry (a peer that sends there anyway).
    lab.aws[0].set_gateway(Some(GatewayConfig { mtu: None, remote_subnets: vec![], local: None }));
    lab.relay.set_bgp_announce([local.as_slice(), &[p("203.0.113.0/24")]].concat());
    lab.run_for(Duration::from_secs(2));
    for a in &mut lab.aws {
        a.set_bgp_announce(vec![p("100.64.0.0/16")]);
    }
    lab.pump();
    let learned: Vec<Ipv4Cidr> = lab.aws[0].bgp_routes(0).iter().map(|r| r.prefix).collect();
    assert!(learned.contains(&p("198.51.100.0/24")), "AWS learned the site network: {learned:?}");

    // From the host: insideAddress and the site network are sent, another source is not.
    let from_host = |l: &mut Lab, src: Ipv4Addr| {
        let mut c = Capture::default();
        let (now, mut pkt) = (l.now, ping_from(src, DEVICE));
        l.relay.handle_tun(now, &mut pkt, &mut c);
        l.deliver_from_relay(c);
        let g = l.relay.gateway_counters();
        (g.to_tunnel, g.drops_of(GatewayDrop::OutsideSelectors))
    };
    assert_eq!(from_host(&mut lab, RELAY_INSIDE), (1, 0));
    assert_eq!(from_host(&mut lab, site), (2, 0));
    assert_eq!(from_host(&mut lab, elsewhere), (2, 1));

    // From the tunnel: to the site network it reaches the device, elsewhere it is dropped and counted.
    let from_vpc = |l: &mut Lab, dst: Ipv4Addr| {
        let mut c = Capture::default();
        let (now, mut pkt) = (l.now, ping_from(DEVICE, dst));
        l.aws[0].handle_tun(now, &mut pkt, &mut c);
        assert_eq!(l.aws[0].gateway_counters().drops_of(GatewayDrop::OutsideSelectors), 0, "the far side sends");
        let mut to_device = Capture::default();
        for (out, mut data) in c.0 {
            if let Out::Outside { local_port: 4500, .. } = out {
                let from = SocketAddr::new(AWS1.into(), 4500);
                l.relay.handle_udp4500(l.now, from, &mut data, &mut to_device);
            }
        }
        let tun = to_device.0.iter().filter(|(o, _)| matches!(o, Out::Tun)).count();
        let g = l.relay.gateway_counters();
        (tun, g.to_device, g.drops_of(GatewayDrop::OutsideSelectors))
    };
    assert_eq!(from_vpc(&mut lab, site), (1, 1, 1));
    assert_eq!(from_vpc(&mut lab, elsewhere), (0, 1, 2));
}
