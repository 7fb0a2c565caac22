//! Hostile IKE input against a pair of tunnels on a virtual clock: datagrams spoofed from the peer's
//! address must create or drop only half-open state. After each attack both ends still hold the same IKE and
//! CHILD_SA SPIs, the tunnel still works 40 s of virtual time later (DPD, a CHILD_SA rekey), and every engine
//! invariant held after every step (`pair`).

mod pair;

use iotrelay_crypto::proposal::IkeProposal;
use iotrelay_crypto::{DhGroup, RandomSource, SeededRandom};
use iotrelay_ikev2::wire::*;
use iotrelay_ikev2::*;
use pair::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

const SUITE: &str = "aes128-sha256-modp2048";

/// Both ends' IKE and CHILD_SA SPIs.
fn spis(p: &Pair) -> [Option<u64>; 6] {
    let (a, b) = (p.a.t.status(), p.b.t.status());
    let c = |v: Option<u32>| v.map(u64::from);
    [
        a.ike_local_spi(),
        b.ike_local_spi(),
        c(a.child_inbound_spi()),
        c(a.child_outbound_spi()),
        c(b.child_inbound_spi()),
        c(b.child_outbound_spi()),
    ]
}

/// An IKE_SA_INIT request as a third party would build it: `ike` proposal (token list), a KE of `group` (a real
/// public value), a nonce of `nonce_len` octets, optionally a COOKIE.
fn init_request(
    rng: &mut SeededRandom,
    ike: &str,
    group: DhGroup,
    nonce_len: usize,
    cookie: Option<Vec<u8>>,
) -> Vec<u8> {
    let mut spi = [0u8; 8];
    rng.fill_bytes(&mut spi);
    let mut t = Vec::new();
    let mut sa = |ty, id, len| t.push(Transform::new(ty, id, len));
    if ike == "3des" {
        sa(TransformType::ENCR, 3, None); // ENCR_3DES: offered by nobody here
        sa(TransformType::PRF, 2, None);
        sa(TransformType::INTEG, 2, None);
        sa(TransformType::DH, group.id(), None);
    } else {
        let p = IkeProposal::parse(ike).expect("proposal");
        for e in &p.encr {
            sa(TransformType::ENCR, e.transform_id(), Some(e.key_bits()));
        }
        for f in &p.prf {
            sa(TransformType::PRF, f.transform_id(), None);
        }
        for i in &p.integ {
            sa(TransformType::INTEG, i.transform_id(), None);
        }
        sa(TransformType::DH, group.id(), None);
    }
    let mut payloads = Vec::new();
    if let Some(c) = cookie {
        payloads.push(Payload::Notify(Notify {
            protocol: ProtocolId::NONE,
            spi: vec![],
            ty: NotifyType::COOKIE,
            data: c,
        }));
    }
    payloads.push(Payload::Sa(vec![Proposal { number: 1, protocol: ProtocolId::IKE, spi: vec![], transforms: t }]));
    payloads.push(Payload::Ke { group: group.id(), data: group.generate(rng).public_value().to_vec() });
    let mut n = vec![0u8; nonce_len];
    rng.fill_bytes(&mut n);
    payloads.push(Payload::Nonce(n));
    let header = Header {
        spi_i: u64::from_be_bytes(spi),
        spi_r: 0,
        next_payload: PayloadType::NONE,
        version: 0x20,
        exchange: ExchangeType::IKE_SA_INIT,
        flags: flags::INITIATOR,
        message_id: 0,
        length: 0,
    };
    Message { header, payloads }.emit()
}

/// Sends `data` to side b (`to_b`) or a as if from the other side's address and `port`; returns what the target
/// answered directly (taken off its queue, so nothing reaches the real peer).
fn spoof(p: &mut Pair, to_b: bool, port: u16, data: &[u8]) -> Vec<Message> {
    let (dst, src) = if to_b { (&mut p.b, A) } else { (&mut p.a, B) };
    dst.t.handle_datagram(p.now, 500, SocketAddr::new(IpAddr::V4(src), port), data);
    let mut out = Vec::new();
    while let Some(t) = dst.t.poll_transmit() {
        out.push(Message::parse(&t.data).expect("our own reply parses"));
    }
    p.check_invariant();
    out
}

fn notify_of(m: &Message) -> Option<NotifyType> {
    m.payloads.iter().find_map(|p| if let Payload::Notify(n) = p { Some(n.ty) } else { None })
}

/// 40 s of virtual time: still the same SAs and no IKE SA down; then a CHILD_SA rekey works.
fn still_works(p: &mut Pair, before: [Option<u64>; 6]) {
    p.run(Duration::from_secs(40));
    assert_eq!(spis(p), before, "SPIs changed");
    p.assert_matching_child();
    assert!(p.a.dp.down.is_empty() && p.b.dp.down.is_empty(), "down: {:?} {:?}", p.a.dp.down, p.b.dp.down);
    let now = p.now;
    p.a.t.rekey_child(now);
    p.run(Duration::from_secs(20));
    p.assert_matching_child();
    assert_eq!(p.a.dp.rekeys, 1, "the CHILD_SA rekey after the attack did not complete");
}

fn pair(suite: &str) -> Pair {
    let mut p = Pair::new(
        pair::cfg("hostile-psk-1", suite, "aes128-sha1", A, StartupAction::Start),
        pair::cfg("hostile-psk-1", suite, "aes128-sha1", B, StartupAction::Add),
    );
    p.connect();
    p.run(Duration::from_secs(5));
    p.assert_matching_child();
    p
}

#[test]
fn spoofed_bad_proposal_init_is_answered_statelessly_and_touches_nothing() {
    let mut p = pair(SUITE);
    let before = spis(&p);
    let mut rng = SeededRandom::new(5);
    // At both ends (the responder and the initiator of the tunnel), from the peer's address, any source port.
    for (to_b, port) in [(true, 500), (true, 4500), (true, 31337), (false, 500), (false, 4500)] {
        let init = init_request(&mut rng, "3des", DhGroup::Modp2048, 32, None);
        let replies = spoof(&mut p, to_b, port, &init);
        assert_eq!(replies.len(), 1);
        assert_eq!(notify_of(&replies[0]), Some(NotifyType::NO_PROPOSAL_CHOSEN));
        assert_eq!(replies[0].header.spi_r, 0, "a stateless answer has no responder SPI");
        assert_eq!(spis(&p), before);
    }
    assert_eq!((p.a.t.half_open(), p.b.t.half_open()), (0, 0));
    still_works(&mut p, before);
}

#[test]
fn a_burst_of_acceptable_inits_engages_cookies_and_creates_bounded_state() {
    let mut p = pair(SUITE);
    let before = spis(&p);
    let threshold = Config::aws_defaults(Default::default(), Identity::Ipv4(A)).cookie_threshold;
    let mut rng = SeededRandom::new(6);
    let (mut answered, mut cookies) = (0, 0);
    // 200 INITs over 10 virtual seconds from the peer's address (a blind spoofer: it never sees the cookies).
    for i in 0..200u16 {
        let init = init_request(&mut rng, SUITE, DhGroup::Modp2048, 32, None);
        for m in spoof(&mut p, true, 500 + (i % 3), &init) {
            match notify_of(&m) {
                Some(NotifyType::COOKIE) => cookies += 1,
                _ if m.header.spi_r != 0 => answered += 1,
                other => panic!("unexpected answer {other:?}"),
            }
        }
        p.now += Duration::from_millis(50);
        let now = p.now;
        p.b.t.handle_timeout(now);
        p.a.t.handle_timeout(now);
        p.collect();
        p.check_invariant();
        assert!(p.b.t.half_open() <= threshold, "{} half-open SAs", p.b.t.half_open());
    }
    assert_eq!(answered, threshold, "half-open SAs created before cookies engaged");
    assert_eq!(cookies, 200 - threshold);
    assert_eq!(p.b.t.status().counters.cookies_sent, (200 - threshold) as u64);
    assert_eq!(spis(&p), before);
    still_works(&mut p, before);
    assert_eq!(p.b.t.half_open(), 0, "half-open SAs expire");
}

#[test]
fn a_restarted_peer_gets_through_a_flood_by_returning_the_cookie() {
    let mut p = pair(SUITE);
    let mut rng = SeededRandom::new(7);
    for _ in 0..20 {
        let init = init_request(&mut rng, SUITE, DhGroup::Modp2048, 32, None);
        spoof(&mut p, true, 500, &init);
    }
    assert!(p.b.t.status().counters.cookies_sent > 0);
    // The initiator restarts (a new process) while b's half-open table is at the threshold.
    p.a.t = Tunnel::new(
        pair::cfg("hostile-psk-1", SUITE, "aes128-sha1", A, StartupAction::Start),
        SocketAddr::new(IpAddr::V4(A), 500),
        SocketAddr::new(IpAddr::V4(B), 500),
        p.now,
        &[21; 32],
    );
    p.a.dp = Datapath::default();
    p.connect();
    p.run(Duration::from_secs(5));
    p.assert_matching_child();
    assert_eq!(p.b.dp.established, 2);
}

#[test]
fn the_half_open_limit_holds_against_a_sender_that_returns_cookies() {
    // An on-path attacker sees the cookies and returns them: the per-tunnel limit still bounds the table, and the
    // established SA is untouched.
    let mut p = pair(SUITE);
    let before = spis(&p);
    let limit = Config::aws_defaults(Default::default(), Identity::Ipv4(A)).half_open_limit;
    let mut rng = SeededRandom::new(8);
    for _ in 0..30 {
        let init = init_request(&mut rng, SUITE, DhGroup::Modp2048, 32, None);
        let replies = spoof(&mut p, true, 500, &init);
        let Some(cookie) = replies.iter().find_map(|m| {
            m.payloads.iter().find_map(|p| match p {
                Payload::Notify(n) if n.ty == NotifyType::COOKIE => Some(n.data.clone()),
                _ => None,
            })
        }) else {
            continue;
        };
        // The same request again with the cookie (same SPI and nonce: rebuild from the parsed original).
        let mut m = Message::parse(&init).unwrap();
        m.payloads.insert(
            0,
            Payload::Notify(Notify { protocol: ProtocolId::NONE, spi: vec![], ty: NotifyType::COOKIE, data: cookie }),
        );
        spoof(&mut p, true, 500, &m.emit());
    }
    assert_eq!(p.b.t.half_open(), limit);
    assert!(p.b.t.status().counters.half_open_refused > 0);
    assert_eq!(spis(&p), before);
    still_works(&mut p, before);
}

#[test]
fn a_spoofed_init_during_our_own_handshake_does_not_replace_it() {
    for deliver_first in [0usize, 2] {
        // 0: while a's IKE_SA_INIT is in flight (InitSent); 2: while its IKE_AUTH is (AuthSent).
        let mut p = Pair::new(
            pair::cfg("hostile-psk-1", SUITE, "aes128-sha1", A, StartupAction::Start),
            pair::cfg("hostile-psk-1", SUITE, "aes128-sha1", B, StartupAction::Add),
        );
        p.connect();
        for _ in 0..deliver_first {
            p.collect();
            let (to_b, port, data) = p.link.remove(0);
            let (dst, src) = if to_b { (&mut p.b, A) } else { (&mut p.a, B) };
            dst.t.handle_datagram(p.now, port, SocketAddr::new(IpAddr::V4(src), port), &data);
        }
        p.collect(); // what a sends next is in flight, not taken by `spoof`
        let mut rng = SeededRandom::new(9);
        let init = init_request(&mut rng, SUITE, DhGroup::Modp2048, 32, None);
        let replies = spoof(&mut p, false, 500, &init);
        assert_eq!(replies.len(), 1, "answered like any INIT");
        assert_eq!(p.a.t.half_open(), 1);
        p.run(Duration::from_secs(5));
        p.assert_matching_child();
        // The half-open SA expires; the tunnel stays up (before, its expiry left the tunnel down for good).
        let before = spis(&p);
        still_works(&mut p, before);
        assert_eq!(p.a.t.half_open(), 0);
    }
}

#[test]
fn garbage_ike_auth_on_an_observed_half_open_spi_changes_nothing() {
    let mut p = pair(SUITE);
    let before = spis(&p);
    let mut rng = SeededRandom::new(10);
    let init = init_request(&mut rng, SUITE, DhGroup::Modp2048, 32, None);
    let replies = spoof(&mut p, true, 500, &init);
    let h = replies[0].header;
    assert_ne!(h.spi_r, 0);
    // IKE_AUTH with the observed SPIs and an SK payload of random octets, plain and fragmented.
    for first in [PayloadType::SK, PayloadType::SKF] {
        let mut body = vec![0u8; 200];
        rng.fill_bytes(&mut body);
        let header = Header { exchange: ExchangeType::IKE_AUTH, flags: flags::INITIATOR, message_id: 1, ..h };
        let mut msg = Message { header, payloads: vec![] }.emit();
        let len = 4 + body.len() + if first == PayloadType::SKF { 4 } else { 0 };
        msg[16] = first.0;
        msg.extend_from_slice(&[PayloadType::IDI.0, 0]);
        msg.extend_from_slice(&(len as u16).to_be_bytes());
        if first == PayloadType::SKF {
            msg.extend_from_slice(&[0, 1, 0, 2]);
        }
        msg.extend_from_slice(&body);
        let total = msg.len() as u32;
        msg[24..28].copy_from_slice(&total.to_be_bytes());
        assert!(spoof(&mut p, true, 4500, &msg).is_empty(), "garbage is never answered");
        assert_eq!(spis(&p), before);
        assert_eq!(p.b.t.half_open(), 1, "the half-open SA stays until it expires");
    }
    let dropped = p.b.t.status().counters.dropped;
    assert_eq!(dropped.get(DropReason::Unauthenticated), 2, "both counted as failing the integrity check");
    still_works(&mut p, before);
}

#[test]
fn every_drop_is_counted_with_its_reason() {
    let mut p = pair(SUITE);
    let before = spis(&p);
    let status = p.b.t.status();
    // b answered a's IKE_SA_INIT: SPIi is a's, SPIr is b's.
    let (spi_i, spi_r) = (status.ike_remote_spi().expect("up"), status.ike_local_spi().expect("up"));
    let base = status.counters;
    let informational = |spi_i, spi_r, flags, message_id| {
        let exchange = ExchangeType::INFORMATIONAL;
        let (next_payload, version, length) = (PayloadType::NONE, 0x20, 0);
        let header = Header { spi_i, spi_r, next_payload, version, exchange, flags, message_id, length };
        Message { header, payloads: vec![] }.emit()
    };
    let elsewhere = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 66)), 500);
    let now = p.now;
    p.b.t.handle_datagram(now, 500, elsewhere, &informational(spi_i, spi_r, flags::INITIATOR, 2));
    assert!(p.b.t.poll_transmit().is_none());
    let attacks = [
        vec![0x55; 20],                                                     // malformed
        informational(1, 2, flags::INITIATOR, 2),                           // unknown SPIs
        informational(spi_i, spi_r, flags::INITIATOR, 1000),                // outside the window
        informational(spi_i, spi_r, flags::INITIATOR | flags::RESPONSE, 7), // a response to nothing
    ];
    for data in attacks {
        assert!(spoof(&mut p, true, 4500, &data).is_empty(), "never answered");
    }
    let counters = p.b.t.status().counters;
    let new: Vec<(DropReason, u64)> =
        counters.dropped.iter().map(|(r, n)| (r, n - base.dropped.get(r))).filter(|(_, n)| *n > 0).collect();
    use DropReason::*;
    assert_eq!(new, [(NotFromPeer, 1), (Malformed, 1), (UnknownSpi, 1), (UnexpectedMessageId, 2)]);
    assert_eq!(counters.invalid_messages - base.invalid_messages, 5, "the total is the sum of the reasons");
    still_works(&mut p, before);
}

#[test]
fn an_ike_auth_with_the_wrong_psk_drops_only_its_half_open_sa() {
    // A sender that completes IKE_SA_INIT from the peer's address (it receives there) but does not know the PSK.
    let mut p = pair(SUITE);
    let before = spis(&p);
    let mut rogue = Tunnel::new(
        pair::cfg("not-the-psk-1", SUITE, "aes128-sha1", A, StartupAction::Start),
        SocketAddr::new(IpAddr::V4(A), 500),
        SocketAddr::new(IpAddr::V4(B), 500),
        p.now,
        &[22; 32],
    );
    rogue.connect(p.now);
    for _ in 0..4 {
        while let Some(t) = rogue.poll_transmit() {
            let src = SocketAddr::new(IpAddr::V4(A), t.local_port);
            p.b.t.handle_datagram(p.now, t.remote.port(), src, &t.data);
            while let Some(r) = p.b.t.poll_transmit() {
                rogue.handle_datagram(p.now, r.remote.port(), SocketAddr::new(IpAddr::V4(B), r.remote.port()), &r.data);
            }
            p.check_invariant();
        }
    }
    assert!(rogue.status().last_error.is_some_and(|e| e.contains("AUTHENTICATION_FAILED")));
    assert_eq!(p.b.t.half_open(), 0, "the failed half-open SA is dropped");
    assert_eq!(spis(&p), before);
    still_works(&mut p, before);
}

#[test]
fn a_nonce_shorter_than_the_prf_needs_is_refused() {
    let mut p = pair("aes256-sha512-modp2048");
    let mut rng = SeededRandom::new(12);
    // HMAC-SHA-512: nonces of at least 32 octets (half its key size), though 16 are enough for SHA-1.
    let short = init_request(&mut rng, "aes256-sha512-modp2048", DhGroup::Modp2048, 24, None);
    let replies = spoof(&mut p, true, 500, &short);
    assert_eq!(notify_of(&replies[0]), Some(NotifyType::INVALID_SYNTAX));
    let ok = init_request(&mut rng, "aes256-sha512-modp2048", DhGroup::Modp2048, 32, None);
    let replies = spoof(&mut p, true, 500, &ok);
    assert_ne!(replies[0].header.spi_r, 0);
    assert_eq!(p.b.t.half_open(), 1);
}

/// A responder that answers every IKE_SA_INIT with `answer(request)`; returns how many INITs a sent in 60 s.
fn hostile_responder(a: Config, answer: impl Fn(&Message, usize) -> Vec<Payload>) -> (usize, Tunnel) {
    let mut now = Duration::from_secs(1000);
    let mut t =
        Tunnel::new(a, SocketAddr::new(IpAddr::V4(A), 500), SocketAddr::new(IpAddr::V4(B), 500), now, &[23; 32]);
    t.connect(now);
    let mut sent = 0;
    while now < Duration::from_secs(1060) {
        while let Some(tx) = t.poll_transmit() {
            let req = Message::parse(&tx.data).unwrap();
            sent += 1;
            let header = Header { flags: flags::RESPONSE, ..req.header };
            let reply = Message { header, payloads: answer(&req, sent) }.emit();
            t.handle_datagram(now, 500, SocketAddr::new(IpAddr::V4(B), 500), &reply);
            t.check_invariants().unwrap();
            if sent > 100 {
                return (sent, t);
            }
        }
        let Some(next) = t.poll_timeout() else { break };
        now = now.max(next);
        t.handle_timeout(now);
        t.check_invariants().unwrap();
    }
    (sent, t)
}

#[test]
fn cookie_and_invalid_ke_loops_are_bounded() {
    let notify = |ty, data| vec![Payload::Notify(Notify { protocol: ProtocolId::NONE, spi: vec![], ty, data })];
    // A new cookie every time.
    let a = pair::cfg("hostile-psk-1", SUITE, "aes128-sha1", A, StartupAction::Start);
    let (sent, t) = hostile_responder(a, |_, n| notify(NotifyType::COOKIE, vec![n as u8; 8]));
    // Per attempt: the first INIT and at most 4 resends; attempts are 2 s apart at first, then back off.
    assert!(sent <= 5 * 6, "{sent} IKE_SA_INITs in 60 s");
    assert_eq!(t.status().last_down_reason, Some(DownReason::PeerError { notify: NotifyType::COOKIE.0 }));
    assert_eq!(t.status().state, TunnelState::Connecting, "the tunnel keeps trying");
    // INVALID_KE_PAYLOAD alternating between the two groups we offer.
    let a = pair::cfg("hostile-psk-1", "aes128-sha256-ecp256-modp2048", "aes128-sha1", A, StartupAction::Start);
    let (sent, t) = hostile_responder(a, |req, _| {
        let offered =
            req.payloads.iter().find_map(|p| if let Payload::Ke { group, .. } = p { Some(*group) } else { None });
        let other = if offered == Some(DhGroup::Ecp256.id()) { DhGroup::Modp2048 } else { DhGroup::Ecp256 };
        notify(NotifyType::INVALID_KE_PAYLOAD, other.id().to_be_bytes().to_vec())
    });
    assert!(sent <= 5 * 6, "{sent} IKE_SA_INITs in 60 s");
    assert_eq!(t.status().last_down_reason, Some(DownReason::PeerError { notify: NotifyType::INVALID_KE_PAYLOAD.0 }));
}

#[test]
fn half_open_sas_are_counted_relay_wide() {
    // Two tunnels sharing one count (as the sidecar does): INITs to either count against one threshold.
    let shared = HalfOpenCount::new();
    let mut p = pair(SUITE);
    let mut q = pair(SUITE);
    p.b.t.share_half_open(shared.clone());
    q.b.t.share_half_open(shared.clone());
    let mut rng = SeededRandom::new(14);
    let threshold = Config::aws_defaults(Default::default(), Identity::Ipv4(A)).cookie_threshold;
    for i in 0..6 {
        let target = if i % 2 == 0 { &mut p } else { &mut q };
        let init = init_request(&mut rng, SUITE, DhGroup::Modp2048, 32, None);
        spoof(target, true, 500, &init);
    }
    assert_eq!(shared.get(), threshold);
    assert_eq!(p.b.t.half_open() + q.b.t.half_open(), threshold);
    drop(q);
    assert_eq!(shared.get(), p.b.t.half_open());
    let _ = Ipv4Addr::UNSPECIFIED;
}
