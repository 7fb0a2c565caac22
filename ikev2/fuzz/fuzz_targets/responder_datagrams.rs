//! A responder `Tunnel` (StartupAction::Add) fed arbitrary datagrams on ports 500 and 4500, with time moving
//! forward and timers firing. Two ways to get deep:
//! - raw: the input is a sequence of datagrams for the responder;
//! - relay: a real initiator talks to the responder and the input says which of its datagrams to alter (flip
//!   an octet, truncate, duplicate, drop), so mutations reach IKE_AUTH, SK decryption and CREATE_CHILD_SA.
//!
//! Never panics; the invariant "at most one outbound CHILD_SA" holds after every step.
#![no_main]

use iotrelay_crypto::SeededRandom;
use iotrelay_crypto::proposal::{EspProposal, IkeProposal};
use iotrelay_ikev2::{Config, Identity, StartupAction, Tunnel};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use zeroize::Zeroizing;

const INITIATOR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const RESPONDER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

fn config(own: Ipv4Addr, startup: StartupAction) -> Config {
    let mut c = Config::aws_defaults(Zeroizing::new(b"fuzz-psk".to_vec()), Identity::Ipv4(own));
    // The initiator uses the first (cheapest) group, which keeps executions fast; modp1024 is the suite of the
    // original report and of the golden strongSwan IKE_SA_INIT requests in the seed corpus.
    c.ike_proposals = vec![IkeProposal::parse("aes128-sha1-curve25519-modp1024").expect("proposal")];
    c.esp_proposals = vec![EspProposal::parse("aes128-sha1").expect("proposal")];
    c.startup = startup;
    c.cookie_threshold = 2;
    c
}

fn tunnel(own: Ipv4Addr, peer: Ipv4Addr, startup: StartupAction, now: Duration) -> Tunnel {
    Tunnel::new(
        config(own, startup),
        SocketAddr::new(IpAddr::V4(own), 500),
        SocketAddr::new(IpAddr::V4(peer), 500),
        now,
    )
}

fn settle(t: &mut Tunnel) {
    while t.poll_event().is_some() {}
    assert!(t.outbound_child_sas() <= 1, "more than one outbound CHILD_SA");
    let _ = t.status();
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let mut now = Duration::from_secs(1000);
    let mut rng = SeededRandom::new(u64::from(mode));
    let mut resp = tunnel(RESPONDER, INITIATOR, StartupAction::Add, now);
    let from = SocketAddr::new(IpAddr::V4(INITIATOR), 500);
    if mode & 1 == 0 {
        // raw: [port/flags (1), length (2), datagram] ...
        while rest.len() >= 3 {
            let ctl = rest[0];
            let len = (usize::from(rest[1]) << 8 | usize::from(rest[2])).min(rest.len() - 3);
            let dgram = &rest[3..3 + len];
            rest = &rest[3 + len..];
            let port = if ctl & 1 == 0 { 500 } else { 4500 };
            let src = SocketAddr::new(IpAddr::V4(INITIATOR), if ctl & 2 == 0 { 500 } else { 4500 });
            resp.handle_datagram(now, &mut rng, port, src, dgram);
            now += Duration::from_millis(u64::from(ctl >> 2) * 250);
            resp.handle_timeout(now, &mut rng);
            while resp.poll_transmit().is_some() {}
            settle(&mut resp);
        }
        return;
    }
    // relay: a real initiator; each datagram it sends consumes one control record [op, position, value].
    let mut init = tunnel(INITIATOR, RESPONDER, StartupAction::Start, now);
    init.connect(now, &mut rng);
    // Bounded: each round is at most a few DH operations, so executions stay fast.
    for _ in 0..12 {
        let mut progressed = false;
        while let Some(tx) = init.poll_transmit() {
            progressed = true;
            let mut dgram = tx.data;
            let (op, pos, val) = match rest {
                [a, b, c, tail @ ..] => {
                    rest = tail;
                    (*a, *b, *c)
                }
                _ => (0, 0, 0),
            };
            let mut copies = 1;
            match op % 8 {
                1 if !dgram.is_empty() => {
                    let i = usize::from(pos) * dgram.len() / 256;
                    dgram[i] ^= val | 1;
                }
                2 => dgram.truncate(usize::from(pos) * dgram.len() / 256),
                3 => copies = 2,
                4 => copies = 0,
                5 => dgram.extend_from_slice(&[val; 4]),
                _ => {}
            }
            for _ in 0..copies {
                resp.handle_datagram(now, &mut rng, tx.local_port, from, &dgram);
            }
            settle(&mut resp);
            while let Some(back) = resp.poll_transmit() {
                let to_init = SocketAddr::new(IpAddr::V4(RESPONDER), back.local_port);
                init.handle_datagram(now, &mut rng, back.local_port, to_init, &back.data);
            }
            settle(&mut init);
        }
        // Let time pass: retransmissions, DPD, rekeys (the lifetimes are hours: jump by the control octet).
        let step = match rest {
            [s, tail @ ..] => {
                rest = tail;
                u64::from(*s)
            }
            _ => break,
        };
        now += Duration::from_secs(step * 60 + 1);
        init.handle_timeout(now, &mut rng);
        resp.handle_timeout(now, &mut rng);
        settle(&mut resp);
        while let Some(back) = resp.poll_transmit() {
            let to_init = SocketAddr::new(IpAddr::V4(RESPONDER), back.local_port);
            init.handle_datagram(now, &mut rng, back.local_port, to_init, &back.data);
        }
        settle(&mut init);
        if !progressed && rest.is_empty() {
            break;
        }
    }
});
