//! Rekey collisions (RFC 7296 §2.8.1 for CHILD_SAs, §2.8.2 for IKE SAs), with access to the engine's internals:
//! the four nonces are read from both sides, so each test checks that the SA without the lowest nonce is the one
//! that survives, on both sides, for many seeds (both outcomes occur), and in three delivery orders:
//! - `Crossed`: each side receives the other's request before its own answer (both see the collision);
//! - `Reordered`: as `Crossed`, but what b sends after resolving reaches a before a's own answer;
//! - `Late`: a's rekey completes before b's request reaches a (a sees the collision only when b's request
//!   arrives, naming the SA a just replaced).

use super::*;
use iotrelay_crypto::proposal::{EspProposal, IkeProposal};

const A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    Crossed,
    Reordered,
    Late,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Child,
    Ike,
}

struct Lab {
    a: Tunnel,
    b: Tunnel,
    /// In flight: (to_b, receiver's port, bytes).
    link: Vec<(bool, u16, Vec<u8>)>,
    now: Duration,
}

fn config(ip: Ipv4Addr, startup: StartupAction) -> Config {
    let mut c = Config::aws_defaults(Zeroizing::new(b"collision-test-psk".to_vec()), Identity::Ipv4(ip));
    c.ike_proposals = vec![IkeProposal::parse("aes128gcm16-prfsha256-ecp256").expect("proposal")];
    c.esp_proposals = vec![EspProposal::parse("aes128gcm16-ecp256").expect("proposal")];
    c.startup = startup;
    c
}

/// The generator seed of one end (`side` 0 or 1) of lab number `n`: each lab draws other nonces, so across labs
/// either end's rekey wins the collision.
fn seed_of(n: u64, side: u8) -> [u8; 32] {
    let mut s = [side; 32];
    s[..8].copy_from_slice(&n.to_be_bytes());
    s
}

impl Lab {
    fn established(seed: u64) -> Lab {
        let now = Duration::from_secs(1000);
        let (sa, sb) = (SocketAddr::new(IpAddr::V4(A), 500), SocketAddr::new(IpAddr::V4(B), 500));
        let mut lab = Lab {
            a: Tunnel::new(config(A, StartupAction::Start), sa, sb, now, &seed_of(seed, 0)),
            b: Tunnel::new(config(B, StartupAction::Add), sb, sa, now, &seed_of(seed, 1)),
            link: Vec::new(),
            now,
        };
        lab.a.connect(now);
        lab.settle();
        assert_eq!(lab.a.status().state, TunnelState::Established);
        assert_eq!(lab.b.status().state, TunnelState::Established);
        lab
    }

    fn collect(&mut self) {
        while let Some(t) = self.a.poll_transmit() {
            self.link.push((true, t.remote.port(), t.data));
        }
        while let Some(t) = self.b.poll_transmit() {
            self.link.push((false, t.remote.port(), t.data));
        }
        for t in [&mut self.a, &mut self.b] {
            while let Some(e) = t.poll_event() {
                assert!(!matches!(e, Event::IkeSaDown { .. }), "a rekey collision took the tunnel down: {e:?}");
            }
        }
        assert!(self.a.outbound_child_sas() <= 1 && self.b.outbound_child_sas() <= 1);
    }

    /// Delivers the oldest (or, with `newest`, the most recent) datagram in flight toward b (or a).
    fn deliver(&mut self, to_b: bool, newest: bool) {
        self.collect();
        let mut toward = self.link.iter().enumerate().filter(|(_, d)| d.0 == to_b).map(|(i, _)| i);
        let i = if newest { toward.next_back() } else { toward.next() };
        let (_, port, data) = self.link.remove(i.expect("a datagram in flight"));
        let (dst, src) = if to_b { (&mut self.b, A) } else { (&mut self.a, B) };
        dst.handle_datagram(self.now, port, SocketAddr::new(IpAddr::V4(src), port), &data);
        self.collect();
    }

    /// Delivers everything in order, running timers, for 30 virtual seconds (grace periods and deletes done).
    fn settle(&mut self) {
        let end = self.now + Duration::from_secs(30);
        loop {
            self.collect();
            if !self.link.is_empty() {
                let to_b = self.link[0].0;
                self.deliver(to_b, false);
                continue;
            }
            match [self.a.poll_timeout(), self.b.poll_timeout()].into_iter().flatten().min() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                }
                _ => return,
            }
        }
    }
}

/// Our rekey request in flight: its Ni, and the SA it creates named by what we choose (CHILD: our inbound SPI;
/// IKE: our SPI, the initiator SPI of the new IKE SA).
fn in_flight(t: &Tunnel) -> (Vec<u8>, u64) {
    match t.ike.sa().and_then(|s| s.pending.as_ref()).map(|p| &p.req) {
        Some(Req::RekeyChild { ni, new_in_spi, .. }) => (ni.clone(), u64::from(*new_in_spi)),
        Some(Req::RekeyIke { ni, new_spi, .. }) => (ni.clone(), *new_spi),
        _ => panic!("no rekey in flight"),
    }
}

/// The peer's exchange as this side answered it: (peer's Ni, our Nr, the SA it creates named as `survivor` names
/// it: our inbound CHILD SPI, or the IKE initiator SPI).
fn answered(t: &Tunnel, kind: Kind) -> (Vec<u8>, Vec<u8>, u64) {
    match kind {
        Kind::Child => {
            let c = t.child_collision.as_ref().expect("collision noted");
            (c.peer_ni.clone(), c.our_nr.clone(), u64::from(c.inbound_spi))
        }
        Kind::Ike => {
            let c = t.ike_collision.as_ref().expect("collision noted");
            (c.peer_ni.clone(), c.our_nr.clone(), c.sa.spi_i)
        }
    }
}

/// From a's side: the surviving SA, named as in `in_flight`/`answered` (a's inbound CHILD SPI, or the IKE
/// initiator SPI).
fn survivor(t: &Tunnel, kind: Kind) -> u64 {
    match kind {
        Kind::Child => u64::from(t.child.as_ref().expect("a CHILD_SA").inbound_spi),
        Kind::Ike => t.ike.sa().expect("an IKE SA").spi_i,
    }
}

fn start(t: &mut Tunnel, kind: Kind, now: Duration) {
    match kind {
        Kind::Child => t.rekey_child(now),
        Kind::Ike => t.rekey_ike(now),
    }
}

/// Runs one collision and checks its outcome; returns whether a's exchange survived.
fn collide(seed: u64, kind: Kind, order: Order) -> bool {
    let mut lab = Lab::established(seed);
    let (now, before_a, before_b) = (lab.now, lab.a.status(), lab.b.status());
    start(&mut lab.a, kind, now);
    start(&mut lab.b, kind, now);
    let (ni_a, sa_a) = in_flight(&lab.a);
    let (ni_b, _) = in_flight(&lab.b);
    // a's request reaches b first: b notes the collision and answers it.
    lab.deliver(true, false);
    let (_, nr_for_a, _) = answered(&lab.b, kind);
    let expect_a_wins = match order {
        Order::Crossed | Order::Reordered => {
            lab.deliver(false, false); // b's request reaches a, which notes the collision too
            let (_, nr_for_b, sa_b) = answered(&lab.a, kind);
            assert_eq!(answered(&lab.a, kind).0, ni_b);
            if order == Order::Reordered {
                lab.deliver(true, false); // b gets its answer and resolves first...
                lab.deliver(false, true); // ...and what it sent then overtakes a's answer
            }
            lab.settle();
            // Computed here independently of the engine: which exchange holds the lowest of the four nonces.
            let four = [(&ni_a, true), (&nr_for_a, true), (&ni_b, false), (&nr_for_b, false)];
            let a_redundant = four.iter().min_by(|x, y| x.0.as_slice().cmp(y.0.as_slice())).map(|x| x.1) == Some(true);
            let want = if a_redundant { sa_b } else { sa_a };
            assert_eq!(survivor(&lab.a, kind), want, "{kind:?} {order:?} seed {seed}: wrong survivor");
            !a_redundant
        }
        Order::Late => {
            lab.deliver(false, true); // b's answer reaches a before b's request: a's rekey completes
            assert!(lab.a.child_collision.is_none() && lab.a.ike_collision.is_none());
            // b's request then names the SA a just replaced. CHILD_SA: a answers it and resolves at once (it holds
            // all four nonces; which survives is checked in the other orders, here that both ends agree). IKE SA:
            // the old IKE SA is retiring, so a answers TEMPORARY_FAILURE and b adopts a's new IKE SA.
            lab.settle();
            let a_won = survivor(&lab.a, kind) == sa_a;
            assert!(kind == Kind::Child || a_won, "late IKE collision, seed {seed}: a's rekey must stand");
            a_won
        }
    };
    // Both sides agree and are clean: one IKE SA, one CHILD_SA pair whose SPIs match crosswise, nothing left over.
    let (a, b) = (lab.a.status(), lab.b.status());
    assert_eq!(a.state, TunnelState::Established);
    assert_eq!(b.state, TunnelState::Established);
    assert_eq!(a.ike_local_spi(), b.ike_remote_spi());
    assert_eq!(a.ike_remote_spi(), b.ike_local_spi());
    assert_eq!(a.child_inbound_spi(), b.child_outbound_spi());
    assert_eq!(a.child_outbound_spi(), b.child_inbound_spi());
    match kind {
        Kind::Child => {
            assert_ne!(a.child_inbound_spi(), before_a.child_inbound_spi(), "CHILD_SA not rekeyed");
            assert_eq!(a.ike_local_spi(), before_a.ike_local_spi());
        }
        Kind::Ike => {
            assert_ne!(a.ike_local_spi(), before_a.ike_local_spi(), "IKE SA not rekeyed");
            assert_eq!(a.child_inbound_spi(), before_a.child_inbound_spi(), "the CHILD_SA moves to the new IKE SA");
        }
    }
    let _ = before_b;
    for t in [&lab.a, &lab.b] {
        assert!(t.old_inbound.is_empty(), "a replaced or redundant CHILD_SA was never deleted");
        assert!(t.child_collision.is_none() && t.ike_collision.is_none());
        assert!(t.ike.sa().is_some_and(|s| s.pending.is_none()));
    }
    // Retiring IKE SAs are gone once their DELETE was answered (or, at the latest, after the linger time).
    lab.now += RETIRED_IKE_LINGER;
    lab.a.handle_timeout(lab.now);
    lab.b.handle_timeout(lab.now);
    lab.settle();
    assert!(lab.a.retiring.is_empty() && lab.b.retiring.is_empty(), "a redundant IKE SA lingers");
    // The tunnel still works: a plain rekey afterwards succeeds.
    let now = lab.now;
    lab.a.rekey_child(now);
    lab.settle();
    assert_eq!(lab.a.status().child_inbound_spi(), lab.b.status().child_outbound_spi());
    let collisions = usize::from(order != Order::Late || kind == Kind::Child);
    assert_eq!(lab.a.counters.rekey_collisions as usize, collisions);
    assert_eq!(lab.b.counters.rekey_collisions, 1, "b sees a collision in every order");
    expect_a_wins
}

fn every_order(kind: Kind) {
    for order in [Order::Crossed, Order::Reordered, Order::Late] {
        let outcomes: Vec<bool> = (1..=12).map(|seed| collide(seed, kind, order)).collect();
        if order != Order::Late || kind == Kind::Child {
            assert!(outcomes.contains(&true) && outcomes.contains(&false), "{order:?}: both outcomes must occur");
        }
    }
}

#[test]
fn simultaneous_child_rekeys_keep_the_sa_without_the_lowest_nonce() {
    every_order(Kind::Child);
}

#[test]
fn simultaneous_ike_rekeys_keep_the_sa_without_the_lowest_nonce() {
    every_order(Kind::Ike);
}

#[test]
fn lowest_nonce_compares_octet_by_octet_and_a_prefix_is_lower() {
    // The lowest of the four decides, wherever it is.
    assert!(first_exchange_is_redundant(&[1, 9], &[7], &[2], &[3]));
    assert!(first_exchange_is_redundant(&[7], &[1, 9], &[2], &[3]));
    assert!(!first_exchange_is_redundant(&[7], &[5], &[2, 0], &[9]));
    assert!(!first_exchange_is_redundant(&[7], &[5], &[9], &[2, 0]));
    // Octet by octet, not as integers: [0, 255] < [1] although 255 > 1 as a length-blind number.
    assert!(first_exchange_is_redundant(&[0, 255], &[9], &[1], &[9]));
    // A nonce that is a prefix of another is the lower one.
    assert!(first_exchange_is_redundant(&[4, 4], &[9], &[4, 4, 0], &[9]));
    assert!(!first_exchange_is_redundant(&[4, 4, 0], &[9], &[4, 4], &[9]));
}
