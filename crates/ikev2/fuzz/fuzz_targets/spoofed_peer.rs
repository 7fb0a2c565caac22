//! The spoofing attacker's view of an established tunnel: a real initiator and responder establish it, then the
//! input's datagrams reach either end from the other end's address (any source port), while the real ends keep
//! talking between them. Structure-aware: a record may carry the SPIs an on-path observer sees (of the established
//! IKE SA, or of the last message an end sent, e.g. a half-open SA's IKE_SA_INIT answer), so forged encrypted
//! messages get past the SA lookup to the message-ID checks and decryption. The first octet seeds the RNG.
//!
//! The oracle (the engine's rule for hostile input): unauthenticated input never changes the established tunnel.
//! After every record both ends keep their state, IKE SA SPIs, CHILD_SA SPIs and peer address; never a panic, and
//! every engine invariant holds (`Tunnel::check_invariants`).
#![no_main]

use iotrelay_ikev2::{StartupAction, Tunnel, TunnelState};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

mod common;
use common::{INITIATOR, RESPONDER, config, settle};

/// The default lifetimes keep rekeys (which legitimately change SPIs) far beyond the 300 simulated seconds an input
/// may span.
fn tunnel(own: Ipv4Addr, peer: Ipv4Addr, startup: StartupAction, now: Duration, seed: u8) -> Tunnel {
    common::tunnel(config(own, startup), own, peer, now, seed)
}

/// What an attacker must not change: state, IKE SPIs, CHILD_SA SPIs, and the peer's address.
type TunnelId = (TunnelState, Option<u64>, Option<u64>, Option<u32>, Option<u32>, SocketAddr);

fn tunnel_id(t: &Tunnel) -> TunnelId {
    let s = t.status();
    (s.state, s.ike_local_spi(), s.ike_remote_spi(), s.child_inbound_spi(), s.child_outbound_spi(), t.peer_address())
}

/// The SPIs (IKE header octets 0..16) an on-path observer learns: of the established IKE SA (in header order:
/// the initiator's first), and of the last IKE message each end sent (e.g. a half-open SA's IKE_SA_INIT answer).
#[derive(Default)]
struct Seen {
    established: [[u8; 16]; 2],
    last_sent: [[u8; 16]; 2],
}

/// Spoofed mode: establish for real, then each record [ctl, len_hi, len_lo, datagram] goes to the responder
/// (ctl bit 2 clear) or the initiator, from the other end's IP (port 500/4500 by bits 0-1, or 1024 + ctl); time
/// moves by (ctl >> 4) x 250 ms, timers fire and the real ends exchange what they send. Virtual time stays well
/// below the first CHILD_SA rekey, so the tunnel's SPIs must not change at all.
///
/// Structure-aware part: an attacker who sees the wire knows the SPIs, which a fuzzer would have to guess (16
/// random octets). With len_hi bit 7 set, the datagram's octets 0..16 are replaced by SPIs the target knows: with
/// bit 6 clear those of the established IKE SA, with bit 6 set those of the last IKE message the target sent
/// (a half-open SA's, after a spoofed IKE_SA_INIT); the length is then ((len_hi & 0x3f) << 8 | len_lo). So forged
/// INFORMATIONAL, CREATE_CHILD_SA and IKE_AUTH messages reach the SA lookup, message-ID checks and decryption.
fn spoofed(mut rest: &[u8], seed: u8) {
    let mut now = Duration::from_secs(1000);
    let mut resp = tunnel(RESPONDER, INITIATOR, StartupAction::Add, now, seed);
    let mut init = tunnel(INITIATOR, RESPONDER, StartupAction::Start, now, seed);
    let mut seen = Seen::default();
    init.connect(now);
    for _ in 0..8 {
        let a = deliver_seen(&mut init, &mut resp, INITIATOR, now, &mut seen.last_sent[1]);
        let b = deliver_seen(&mut resp, &mut init, RESPONDER, now, &mut seen.last_sent[0]);
        if !(a || b) {
            break;
        }
    }
    settle(&mut init);
    let before = (tunnel_id(&init), tunnel_id(&resp));
    assert_eq!(before.0.0, TunnelState::Established, "setup failed");
    let s = init.status();
    let mut spis = [0u8; 16];
    spis[..8].copy_from_slice(&s.ike_local_spi().unwrap_or(0).to_be_bytes());
    spis[8..].copy_from_slice(&s.ike_remote_spi().unwrap_or(0).to_be_bytes());
    seen.established = [spis; 2];
    let end = now + Duration::from_secs(300);
    let mut dgram = Vec::new();
    while rest.len() >= 3 && now < end {
        let (ctl, len_hi) = (rest[0], rest[1]);
        let (wire, last) = (len_hi & 0x80 != 0, len_hi & 0x40 != 0);
        let len_hi = if wire { len_hi & 0x3f } else { len_hi };
        let len = (usize::from(len_hi) << 8 | usize::from(rest[2])).min(rest.len() - 3);
        dgram.clear();
        dgram.extend_from_slice(&rest[3..3 + len]);
        rest = &rest[3 + len..];
        let end_ix = usize::from(ctl & 4 != 0); // 0: the responder, 1: the initiator
        if wire {
            if dgram.len() < 28 {
                dgram.resize(28, 0);
            }
            let spis = if last { seen.last_sent[end_ix] } else { seen.established[end_ix] };
            dgram[..16].copy_from_slice(&spis);
        }
        let port = if ctl & 1 == 0 { 500 } else { 4500 };
        let src_port = match ctl & 10 {
            0 => 500,
            2 => 4500,
            _ => 1024 + u16::from(ctl),
        };
        // An answer to the spoofer goes to the other end's address: the real end gets it (and drops it).
        let (target, other, from, to) = if end_ix == 0 {
            (&mut resp, &mut init, INITIATOR, RESPONDER)
        } else {
            (&mut init, &mut resp, RESPONDER, INITIATOR)
        };
        target.handle_datagram(now, port, SocketAddr::new(IpAddr::V4(from), src_port), &dgram);
        settle(target);
        deliver_seen(target, other, to, now, &mut seen.last_sent[end_ix]);
        now += Duration::from_millis(u64::from(ctl >> 4) * 250);
        for _ in 0..16 {
            let next = [init.poll_timeout(), resp.poll_timeout()].into_iter().flatten().min();
            if next.is_some_and(|t| t <= now) {
                init.handle_timeout(now);
                resp.handle_timeout(now);
            }
            let a = deliver_seen(&mut init, &mut resp, INITIATOR, now, &mut seen.last_sent[1]);
            let b = deliver_seen(&mut resp, &mut init, RESPONDER, now, &mut seen.last_sent[0]);
            settle(&mut init);
            if !(a || b || next.is_some_and(|t| t <= now)) {
                break;
            }
        }
        assert_eq!((tunnel_id(&init), tunnel_id(&resp)), before, "unauthenticated input changed the tunnel");
    }
}

/// Hands every datagram `from` wants to send to `to`, unaltered (true if there was any), keeping the SPIs (IKE header octets 0..16) of the last datagram `from` sent in `last`.
fn deliver_seen(from: &mut Tunnel, to: &mut Tunnel, from_addr: Ipv4Addr, now: Duration, last: &mut [u8; 16]) -> bool {
    let mut any = false;
    while let Some(tx) = from.poll_transmit() {
        any = true;
        if let Ok(h) = <[u8; 16]>::try_from(tx.data.get(..16).unwrap_or(&[])) {
            *last = h;
        }
        let src = SocketAddr::new(IpAddr::V4(from_addr), tx.local_port);
        to.handle_datagram(now, tx.remote.port(), src, &tx.data);
    }
    settle(to);
    any
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else { return };
    spoofed(rest, seed);
});
