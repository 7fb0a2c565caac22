//! A responder `Tunnel` (StartupAction::Add) fed arbitrary datagrams on ports 500 and 4500, with time moving
//! forward and timers firing. Two ways to get deep (first octet modulo 2):
//! - raw (0): the input is a sequence of datagrams for the responder;
//! - relay (1): a real initiator talks to the responder and the input says which of its datagrams to alter
//!   (flip an octet, truncate, duplicate, drop), so mutations reach IKE_AUTH, SK decryption and CREATE_CHILD_SA.
//!
//! Never panics, and after every step every engine invariant holds (`Tunnel::check_invariants`: at most one
//! outbound CHILD_SA, a tunnel that is down has a reconnect timer, half-open SAs within their bound). What a
//! spoofing attacker may not change in an established tunnel is the oracle of `spoofed_peer`.
#![no_main]

use iotrelay_ikev2::{StartupAction, Tunnel};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

mod common;
use common::{INITIATOR, RESPONDER, settle};

/// Short lifetimes so a few simulated minutes (a few hundred timer events) reach CHILD and IKE rekeys, including
/// collisions when both sides' timers fire close together.
fn tunnel(own: Ipv4Addr, peer: Ipv4Addr, startup: StartupAction, now: Duration, seed: u8) -> Tunnel {
    let mut c = common::config(own, startup);
    c.ike_lifetime = Duration::from_secs(3600);
    c.ike_rekey_margin = Duration::from_secs(600);
    c.child_lifetime = Duration::from_secs(1200);
    c.child_rekey_margin = Duration::from_secs(300);
    c.rekey_fuzz = Duration::from_secs(60);
    common::tunnel(c, own, peer, now, seed)
}

/// Hands every datagram `from` wants to send to `to`, unaltered; true if there was any.
fn deliver(from: &mut Tunnel, to: &mut Tunnel, from_addr: Ipv4Addr, now: Duration) -> bool {
    let mut any = false;
    while let Some(tx) = from.poll_transmit() {
        any = true;
        let src = SocketAddr::new(IpAddr::V4(from_addr), tx.local_port);
        to.handle_datagram(now, tx.remote.port(), src, &tx.data);
    }
    settle(to);
    any
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let mut now = Duration::from_secs(1000);
    let mut resp = tunnel(RESPONDER, INITIATOR, StartupAction::Add, now, mode);
    if mode & 1 == 0 {
        // raw: [port/flags (1), length (2), datagram] ...
        while rest.len() >= 3 {
            let ctl = rest[0];
            let len = (usize::from(rest[1]) << 8 | usize::from(rest[2])).min(rest.len() - 3);
            let dgram = &rest[3..3 + len];
            rest = &rest[3 + len..];
            let port = if ctl & 1 == 0 { 500 } else { 4500 };
            let src = SocketAddr::new(IpAddr::V4(INITIATOR), if ctl & 2 == 0 { 500 } else { 4500 });
            resp.handle_datagram(now, port, src, dgram);
            now += Duration::from_millis(u64::from(ctl >> 2) * 250);
            resp.handle_timeout(now);
            while resp.poll_transmit().is_some() {}
            settle(&mut resp);
        }
        return;
    }
    // relay: a real initiator; each datagram it sends consumes one control record [op, position, value]
    // (none left: delivered as is). Then time moves on by the next control octet (x 10 s), firing every timer
    // on the way the way a driver would (at each `poll_timeout`): retransmissions, DPD, rekeys.
    let mut init = tunnel(INITIATOR, RESPONDER, StartupAction::Start, now, mode);
    init.connect(now);
    let mut budget = 1000u32;
    loop {
        pump(&mut init, &mut resp, now, &mut rest, &mut budget);
        let [step, tail @ ..] = rest else { break };
        rest = tail;
        let target = now + Duration::from_secs(u64::from(*step) * 10 + 1);
        while budget > 0 {
            budget -= 1;
            let next = [init.poll_timeout(), resp.poll_timeout()].into_iter().flatten().min();
            match next {
                Some(t) if t <= target => now = now.max(t),
                _ => break,
            }
            init.handle_timeout(now);
            resp.handle_timeout(now);
            settle(&mut init);
            settle(&mut resp);
            pump(&mut init, &mut resp, now, &mut rest, &mut budget);
        }
        now = now.max(target);
        if budget == 0 {
            break;
        }
    }
});

/// Exchanges datagrams until both sides are quiet; the initiator's pass through the fuzzer's alterations.
fn pump(init: &mut Tunnel, resp: &mut Tunnel, now: Duration, rest: &mut &[u8], budget: &mut u32) {
    while *budget > 0 {
        *budget -= 1;
        let Some(tx) = init.poll_transmit() else {
            if deliver(resp, init, RESPONDER, now) {
                continue; // the initiator may have answered
            }
            return;
        };
        let mut dgram = tx.data;
        let (op, pos, val) = match *rest {
            [a, b, c, tail @ ..] => {
                *rest = tail;
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
        let src = SocketAddr::new(IpAddr::V4(INITIATOR), tx.local_port);
        for _ in 0..copies {
            resp.handle_datagram(now, tx.remote.port(), src, &dgram);
        }
        settle(resp);
        deliver(resp, init, RESPONDER, now);
    }
}
