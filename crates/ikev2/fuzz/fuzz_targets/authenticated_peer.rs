//! An established tunnel fed messages that pass authentication but carry arbitrary content: the input is a
//! sequence of records, each sealed with the peer's keys (`Tunnel::seal_as_peer`, fuzzing builds only) as a request
//! or a response, so every handler (CREATE_CHILD_SA, INFORMATIONAL, DELETE, notifies, rekey answers) sees hostile
//! payloads from a peer that knows the keys. Between records time moves and timers fire, and the side under test
//! sometimes starts a rekey of its own so responses have something to answer.
//!
//! Never panics; every engine invariant (`Tunnel::check_invariants`: at most one outbound CHILD_SA, a tunnel
//! that is down has a reconnect timer) holds after every step. (The peer is authenticated here, so its SAs may
//! change; what unauthenticated input may not change is checked by `spoofed_peer`.)
#![no_main]

use iotrelay_crypto::proposal::{EspProposal, IkeProposal};
use iotrelay_ikev2::{Config, Identity, StartupAction, Tunnel, TunnelState};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use zeroize::Zeroizing;

const A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// Exchange types worth sending (IKE_SA_INIT is unencrypted and covered by responder_datagrams).
const EXCHANGES: [u8; 4] = [35, 36, 37, 0]; // IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL, garbage
/// First inner payload types worth naming (SA, KE, IDi, IDr, AUTH, Ni, N, D, V, TSi, TSr, SK, CP, EAP, SKF).
const FIRST: [u8; 16] = [33, 34, 35, 36, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 53, 0];

fn config(own: Ipv4Addr, startup: StartupAction) -> Config {
    let mut c = Config::aws_defaults(Zeroizing::new(b"fuzz-psk".to_vec()), Identity::Ipv4(own));
    c.ike_proposals = vec![IkeProposal::parse("aes128-sha1-curve25519").expect("proposal")];
    c.esp_proposals = vec![EspProposal::parse("aes128-sha1-curve25519").expect("proposal")];
    c.startup = startup;
    c
}

fn settle(t: &mut Tunnel) {
    while t.poll_event().is_some() {}
    if let Err(e) = t.check_invariants() {
        panic!("engine invariant broken: {e}");
    }
    let _ = t.status();
}

fuzz_target!(|data: &[u8]| {
    let mut now = Duration::from_secs(1000);
    let (sa, sb) = (SocketAddr::new(IpAddr::V4(A), 500), SocketAddr::new(IpAddr::V4(B), 500));
    let mut a = Tunnel::new(config(A, StartupAction::Start), sa, sb, now, &[7; 32]);
    let mut b = Tunnel::new(config(B, StartupAction::Add), sb, sa, now, &[8; 32]);
    a.connect(now);
    // Establish for real (both directions, until quiet).
    for _ in 0..20 {
        let mut any = false;
        while let Some(tx) = a.poll_transmit() {
            any = true;
            b.handle_datagram(now, tx.remote.port(), SocketAddr::new(IpAddr::V4(A), tx.local_port), &tx.data);
        }
        while let Some(tx) = b.poll_transmit() {
            any = true;
            a.handle_datagram(now, tx.remote.port(), SocketAddr::new(IpAddr::V4(B), tx.local_port), &tx.data);
        }
        if !any {
            break;
        }
    }
    settle(&mut a);
    assert_eq!(a.status().state, TunnelState::Established, "setup failed");
    // Records: [ctl, first, len_hi, len_lo, plaintext...]. ctl: bit 0 response, bits 1-2 exchange, bit 3 start a
    // rekey first (CHILD or IKE by bit 4), bits 5-7 seconds to advance afterwards.
    let mut rest = data;
    while rest.len() >= 4 {
        let (ctl, first) = (rest[0], rest[1]);
        let len = (usize::from(rest[2]) << 8 | usize::from(rest[3])).min(rest.len() - 4);
        let plain = &rest[4..4 + len];
        rest = &rest[4 + len..];
        if ctl & 8 != 0 {
            if ctl & 16 == 0 {
                a.rekey_child(now)
            } else {
                a.rekey_ike(now)
            }
            while a.poll_transmit().is_some() {}
        }
        let exchange = EXCHANGES[usize::from(ctl >> 1) & 3];
        let first = FIRST[usize::from(first) & 15];
        if let Some(msg) = a.seal_as_peer(exchange, ctl & 1 == 1, first, plain) {
            a.handle_datagram(now, 4500, SocketAddr::new(IpAddr::V4(B), 4500), &msg);
        }
        while a.poll_transmit().is_some() {}
        settle(&mut a);
        now += Duration::from_secs(u64::from(ctl >> 5));
        if a.poll_timeout().is_some_and(|t| t <= now) {
            a.handle_timeout(now);
            while a.poll_transmit().is_some() {}
            settle(&mut a);
        }
    }
});
