//! Shared by the datapath tests and benches: addresses of the two-`Datapath` lab, a sink that captures what a
//! `Datapath` sends, a counting random source, the relay's `admin` forward, the IKE configuration both ends use,
//! the relay and device pair most of them start from, and the IKE exchange that brings the two ends up.
#![allow(dead_code)] // each user takes what it needs

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use iotrelay_api::validate::ValidatedForward;
use iotrelay_crypto::proposal::{EspProposal, IkeProposal};
use iotrelay_crypto::{RandomSource, SeededRandom};
use iotrelay_ikev2::{Config, Identity, StartupAction};
use iotrelay_sidecar::datapath::{Datapath, Out, Sink, TunnelPlan};
use zeroize::Zeroizing;

pub const RELAY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const AWS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const RELAY_INSIDE: Ipv4Addr = Ipv4Addr::new(100, 127, 0, 1);
pub const DEVICE: Ipv4Addr = Ipv4Addr::new(100, 64, 1, 10);

/// A deterministic random source that counts the times it is read (to show a path reads no randomness).
pub struct CountingRandom {
    inner: SeededRandom,
    pub reads: u64,
}

impl CountingRandom {
    pub fn new(seed: u64) -> Self {
        Self { inner: SeededRandom::new(seed), reads: 0 }
    }
}

impl RandomSource for CountingRandom {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.reads += 1;
        self.inner.fill_bytes(dest);
    }
}

/// Everything a `Datapath` sends, in order.
#[derive(Default)]
pub struct Capture(pub Vec<(Out, Vec<u8>)>);
impl Sink for Capture {
    fn send(&mut self, out: Out, data: &[u8]) -> bool {
        self.0.push((out, data.to_vec()));
        true
    }
}

/// The relay's one forward in these labs: `admin`, port 7000, from 203.0.113.10 only, to [`DEVICE`]:7000.
pub fn admin_forward() -> ValidatedForward {
    forward(7000, "203.0.113.10/32", SocketAddrV4::new(DEVICE, 7000))
}

/// A forward `admin` on `port`, from `allowed` (a CIDR) to `target`, idle timeout 60 s.
pub fn forward(port: u16, allowed: &str, target: SocketAddrV4) -> ValidatedForward {
    ValidatedForward {
        name: "admin".into(),
        listen_port: port,
        allowed_sources: vec![allowed.parse().unwrap()],
        target,
        idle_timeout: Duration::from_secs(60),
    }
}

/// The two ends the relay tests start from, not yet connected ([`exchange`] or a test's own pump brings them up),
/// both negotiating ESP `esp`:
/// - the relay at [`RELAY`] (initiator), its forward on port 7000 from `allowed` to [`DEVICE`]:7000;
/// - an "AWS" responder at [`AWS`] that plays the device too: its inside address is [`DEVICE`], and its one
///   forward (port 9000, from anywhere) targets the relay's inside address at `session_port`, so a datagram its
///   client sends from port 7000 reaches the relay as the device's reply to the session of that port.
pub fn relay_and_device(
    esp: &str,
    allowed: &str,
    session_port: u16,
    now: Duration,
    rng: &mut dyn RandomSource,
) -> (Datapath, Datapath) {
    let with_esp = |startup, me| {
        let mut c = config(startup, me);
        c.esp_proposals = vec![EspProposal::parse(esp).expect("proposal")];
        c
    };
    let relay = Datapath::new(
        RELAY_INSIDE,
        1024,
        RELAY,
        vec![TunnelPlan { name: "tunnel1".into(), peer: AWS, config: with_esp(StartupAction::Start, RELAY) }],
        vec![forward(7000, allowed, SocketAddrV4::new(DEVICE, 7000))],
        now,
        rng,
    );
    let aws = Datapath::new(
        DEVICE,
        1024,
        AWS,
        vec![TunnelPlan { name: "relay".into(), peer: RELAY, config: with_esp(StartupAction::Add, AWS) }],
        vec![forward(9000, "0.0.0.0/0", SocketAddrV4::new(RELAY_INSIDE, session_port))],
        now,
        rng,
    );
    (relay, aws)
}

/// One end's IKE configuration (aes128-sha256-ecp256, ESP aes128gcm16) with identity `me`.
pub fn config(startup: StartupAction, me: Ipv4Addr) -> Config {
    let mut c = Config::aws_defaults(Zeroizing::new(b"pair_test_psk_123".to_vec()), Identity::Ipv4(me));
    c.ike_proposals = vec![IkeProposal::parse("aes128-sha256-ecp256").expect("proposal")];
    c.esp_proposals = vec![EspProposal::parse("aes128gcm16").expect("proposal")];
    c.startup = startup;
    c
}

/// Moves the datagrams `relay` (at [`RELAY`]) and `aws` (at [`AWS`]) send each other on 500/4500 until both are
/// quiet (at most 50 rounds), all at time `now`; what they send elsewhere (clients, TUN) is dropped.
pub fn exchange(relay: &mut Datapath, aws: &mut Datapath, now: Duration) {
    for _ in 0..50 {
        let (mut a, mut b) = (Capture::default(), Capture::default());
        relay.drain(&mut a);
        aws.drain(&mut b);
        if a.0.is_empty() && b.0.is_empty() {
            return;
        }
        for (caps, src, dst) in [(a, RELAY, &mut *aws), (b, AWS, &mut *relay)] {
            for (out, mut data) in caps.0 {
                let Out::Outside { local_port, .. } = out else { continue };
                let from = SocketAddr::new(src.into(), local_port);
                if local_port == 4500 {
                    dst.handle_udp4500(now, from, &mut data, &mut Capture::default());
                } else {
                    dst.handle_udp500(now, from, &data);
                }
            }
        }
    }
}
