//! The tunnel owns its randomness: a generator seeded through `Tunnel::new` and refreshed by `Tunnel::reseed`.
//! No engine method takes a random source (structural: the signatures have none), and these tests show the
//! engine draws on nothing else: two tunnels built from the same seed say exactly the same octets through a whole
//! lifetime (IKE_SA_INIT, IKE_AUTH, CHILD and IKE rekeys, DELETE), and any other seed or reseed changes them.

use iotrelay_crypto::proposal::{EspProposal, IkeProposal};
use iotrelay_ikev2::wire::{Message, Payload};
use iotrelay_ikev2::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use zeroize::Zeroizing;

const A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

fn tunnel(own: Ipv4Addr, peer: Ipv4Addr, startup: StartupAction, seed: &[u8; 32]) -> Tunnel {
    let mut c = Config::aws_defaults(Zeroizing::new(b"owned-randomness".to_vec()), Identity::Ipv4(own));
    c.ike_proposals = vec![IkeProposal::parse("aes128-sha256-curve25519").expect("proposal")];
    c.esp_proposals = vec![EspProposal::parse("aes128-sha256-curve25519").expect("proposal")];
    c.startup = startup;
    let (o, p) = (SocketAddr::new(IpAddr::V4(own), 500), SocketAddr::new(IpAddr::V4(peer), 500));
    Tunnel::new(c, o, p, Duration::from_secs(5), seed)
}

/// The first IKE_SA_INIT request of a tunnel seeded with `seed` (and reseeded with `reseed` before it starts).
fn first_init(seed: &[u8; 32], reseed: Option<&[u8; 32]>) -> Vec<u8> {
    let mut t = tunnel(A, B, StartupAction::Start, seed);
    if let Some(r) = reseed {
        t.reseed(r);
    }
    t.connect(Duration::from_secs(5));
    t.poll_transmit().expect("an IKE_SA_INIT request").data
}

/// Every datagram both ends send, in order, through establishment, a CHILD and an IKE rekey from each side, and
/// the close.
fn lifetime(seed_a: &[u8; 32], seed_b: &[u8; 32]) -> Vec<Vec<u8>> {
    let mut a = tunnel(A, B, StartupAction::Start, seed_a);
    let mut b = tunnel(B, A, StartupAction::Add, seed_b);
    let mut now = Duration::from_secs(5);
    let mut said = Vec::new();
    let mut exchange = |a: &mut Tunnel, b: &mut Tunnel, now: Duration| -> usize {
        let before = said.len();
        for _ in 0..20 {
            let mut quiet = true;
            while let Some(t) = a.poll_transmit() {
                b.handle_datagram(now, t.remote.port(), SocketAddr::new(IpAddr::V4(A), t.local_port), &t.data);
                said.push(t.data);
                quiet = false;
            }
            while let Some(t) = b.poll_transmit() {
                a.handle_datagram(now, t.remote.port(), SocketAddr::new(IpAddr::V4(B), t.local_port), &t.data);
                said.push(t.data);
                quiet = false;
            }
            while a.poll_event().is_some() || b.poll_event().is_some() {}
            if quiet {
                break;
            }
        }
        said.len() - before
    };
    a.connect(now);
    exchange(&mut a, &mut b, now);
    assert_eq!((a.status().state, b.status().state), (TunnelState::Established, TunnelState::Established));
    for step in 0..4 {
        now += Duration::from_secs(10);
        match step {
            0 => a.rekey_child(now),
            1 => b.rekey_child(now),
            2 => a.rekey_ike(now),
            _ => b.rekey_ike(now),
        }
        assert!(exchange(&mut a, &mut b, now) >= 2, "step {step}: a request and its answer");
    }
    assert_eq!(a.status().counters.ike_rekeys, 2);
    a.close(now);
    assert!(exchange(&mut a, &mut b, now) >= 2, "DELETE and its answer");
    said
}

/// The payloads a tunnel draws at random in an IKE_SA_INIT: its SPI, its nonce and its key exchange value.
fn drawn(init: &[u8]) -> (u64, Vec<u8>, Vec<u8>) {
    let m = Message::parse(init).expect("an IKE message");
    let nonce = m.payloads.iter().find_map(|p| if let Payload::Nonce(n) = p { Some(n.clone()) } else { None });
    let ke = m.payloads.iter().find_map(|p| if let Payload::Ke { data, .. } = p { Some(data.clone()) } else { None });
    (m.header.spi_i, nonce.expect("a nonce"), ke.expect("a KE payload"))
}

#[test]
fn the_same_seed_gives_the_same_ike_sa_init_and_another_seed_another() {
    assert_eq!(first_init(&[1; 32], None), first_init(&[1; 32], None));
    let (one, two) = (drawn(&first_init(&[1; 32], None)), drawn(&first_init(&[2; 32], None)));
    assert_ne!(one.0, two.0, "SPI");
    assert_ne!(one.1, two.1, "nonce");
    assert_ne!(one.2, two.2, "DH public value");
}

#[test]
fn a_reseed_changes_what_follows_and_is_deterministic_itself() {
    let plain = first_init(&[1; 32], None);
    let reseeded = first_init(&[1; 32], Some(&[9; 32]));
    assert_ne!(drawn(&reseeded), drawn(&plain));
    assert_eq!(reseeded, first_init(&[1; 32], Some(&[9; 32])));
    assert_ne!(drawn(&reseeded), drawn(&first_init(&[1; 32], Some(&[8; 32]))));
}

#[test]
fn a_whole_lifetime_depends_on_the_seeds_alone() {
    let once = lifetime(&[3; 32], &[4; 32]);
    assert!(once.len() >= 12, "{} datagrams", once.len());
    assert_eq!(once, lifetime(&[3; 32], &[4; 32]));
    // The responder's seed alone changes its first answer (its SPI, nonce and key share) and so everything after.
    let other = lifetime(&[3; 32], &[5; 32]);
    assert_eq!(once[0], other[0], "the initiator's request depends on its own seed only");
    assert!(once.iter().zip(&other).skip(1).all(|(x, y)| x != y));
}
