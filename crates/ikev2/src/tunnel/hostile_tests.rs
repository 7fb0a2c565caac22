//! Hostile answers and requests that need the engine's internals to build: rekey answers that differ from our
//! offer, sealed with the peer's real keys; a DELETE sealed with the keys of a half-open exchange before the
//! peer's AUTH verified; and the outbound CHILD_SA count, shown able to exceed one.

use super::*;
use iotrelay_crypto::SeededRandom;
use iotrelay_crypto::proposal::{EspProposal, IkeProposal};

const A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

struct Lab {
    a: Tunnel,
    b: Tunnel,
    rng: SeededRandom,
    now: Duration,
}

fn config(ip: Ipv4Addr, startup: StartupAction) -> Config {
    let mut c = Config::aws_defaults(Zeroizing::new(b"hostile-test-psk".to_vec()), Identity::Ipv4(ip));
    c.ike_proposals = vec![IkeProposal::parse("aes128-sha256-modp2048").expect("proposal")];
    // PFS: CHILD_SA rekeys carry a MODP-2048 KE.
    c.esp_proposals = vec![EspProposal::parse("aes128-sha1-modp2048").expect("proposal")];
    c.startup = startup;
    c
}

impl Lab {
    fn new() -> Lab {
        let now = Duration::from_secs(1000);
        let (sa, sb) = (SocketAddr::new(IpAddr::V4(A), 500), SocketAddr::new(IpAddr::V4(B), 500));
        let mut lab = Lab {
            a: Tunnel::new(config(A, StartupAction::Start), sa, sb, now, &[1; 32]),
            b: Tunnel::new(config(B, StartupAction::Add), sb, sa, now, &[2; 32]),
            rng: SeededRandom::new(21),
            now,
        };
        lab.a.connect(now);
        lab
    }

    /// Delivers one datagram from a to b (`to_b`) or back; false if none was queued.
    fn step(&mut self, to_b: bool) -> bool {
        let (from, to, src) = if to_b { (&mut self.a, &mut self.b, A) } else { (&mut self.b, &mut self.a, B) };
        let Some(t) = from.poll_transmit() else { return false };
        to.handle_datagram(self.now, t.remote.port(), SocketAddr::new(IpAddr::V4(src), t.local_port), &t.data);
        self.check();
        true
    }

    fn settle(&mut self) {
        while self.step(true) | self.step(false) {}
    }

    fn check(&self) {
        self.a.check_invariants().expect("a");
        self.b.check_invariants().expect("b");
    }

    fn established() -> Lab {
        let mut lab = Lab::new();
        lab.settle();
        assert_eq!(lab.a.status().state, TunnelState::Established);
        while lab.a.poll_event().is_some() | lab.b.poll_event().is_some() {}
        lab
    }

    /// b's answer to a's request in flight, with `payloads` of our choosing, sealed with b's real keys.
    fn answer_as_b(&mut self, payloads: &[Payload]) -> Vec<u8> {
        let id = self.a.ike.sa().and_then(|s| s.pending.as_ref()).expect("a request in flight").id;
        let sa_b = self.b.ike.sa().expect("b's IKE SA");
        encrypt(sa_b, ExchangeType::CREATE_CHILD_SA, true, id, payloads, &mut self.rng)
    }

    fn deliver_to_a(&mut self, data: &[u8]) {
        self.a.handle_datagram(self.now, 4500, SocketAddr::new(IpAddr::V4(B), 4500), data);
        self.check();
    }
}

/// The KE a's CHILD_SA rekey request carries (its group and the DH secret stay inside a).
fn a_offered_group(lab: &Lab) -> DhGroup {
    match lab.a.ike.sa().and_then(|s| s.pending.as_ref()).map(|p| &p.req) {
        Some(Req::RekeyChild { dh: Some(d), .. }) => d.group(),
        _ => panic!("a CHILD_SA rekey with PFS in flight"),
    }
}

#[test]
fn child_rekey_answers_that_differ_from_our_offer_are_refused() {
    let aes = Encr::AesCbc128;
    let sha1 = Some(Integ::HmacSha1_96);
    for (what, suite) in [
        ("no PFS in the answer to a PFS offer", EspSuite { encr: aes, integ: sha1, dh: None }),
        ("another group", EspSuite { encr: aes, integ: sha1, dh: Some(DhGroup::Ecp256) }),
        ("a cipher we did not offer", EspSuite { encr: Encr::AesCbc256, integ: sha1, dh: Some(DhGroup::Modp2048) }),
        ("an integrity we did not offer", EspSuite { encr: aes, integ: Some(Integ::HmacSha256_128), dh: None }),
    ] {
        let mut lab = Lab::established();
        let before = lab.a.status();
        let now = lab.now;
        lab.a.rekey_child(now);
        while lab.a.poll_transmit().is_some() {} // b never sees the request
        assert_eq!(a_offered_group(&lab), DhGroup::Modp2048);
        let mut payloads = vec![suite_proposal_esp(&suite, 1, 0x1234_5678), Payload::Nonce(vec![7; 32])];
        if let Some(g) = suite.dh {
            payloads.push(Payload::Ke { group: g.id(), data: g.generate(&mut lab.rng).public_value().to_vec() });
        }
        payloads.push(Payload::TsI(ts_payload(&lab.a.cfg.local_ts)));
        payloads.push(Payload::TsR(ts_payload(&lab.a.cfg.remote_ts)));
        let answer = lab.answer_as_b(&payloads);
        lab.deliver_to_a(&answer);
        let after = lab.a.status();
        assert_eq!(after.counters.child_rekeys, 0, "{what}");
        while let Some(e) = lab.a.poll_event() {
            let installs = matches!(e, Event::ChildSaRekeyed { .. } | Event::ChildSaInstalled(_));
            assert!(!installs, "{what}: {e:?}");
        }
        assert!(before.child_outbound_spi().is_some());
        assert!(after.last_error.is_some_and(|e| e.contains("did not offer")), "{what}");
        // The peer may already send on the SA it created: the IKE SA (and so, on the peer, every CHILD_SA under
        // it) is closed with a DELETE in flight, and the tunnel reconnects at once.
        assert_closed_and_reconnecting(&lab, now, what);
    }
}

/// After a rekey answer we refused: the IKE SA is gone on our side, a DELETE for it is in flight (tracked as a
/// retiring SA), and a reconnect is due now.
fn assert_closed_and_reconnecting(lab: &Lab, now: Duration, what: &str) {
    assert!(lab.a.ike.is_none(), "{what}: the IKE SA is still in use");
    assert!(lab.a.child.is_none(), "{what}: the CHILD_SA is still in use");
    assert!(lab.a.retiring.iter().any(|r| matches!(r.sa.pending.as_ref().map(|p| &p.req), Some(Req::DeleteIke))));
    assert_eq!(lab.a.reconnect_at, Some(now), "{what}: no reconnect at once");
}

#[test]
fn ike_rekey_answers_that_differ_from_our_offer_are_refused() {
    // With our KE's group the keys of the SA the peer created can be derived, so it is deleted too.
    for (what, prf, group, derivable) in [
        ("a PRF we did not offer", Prf::HmacSha512, DhGroup::Modp2048, true),
        ("another group", Prf::HmacSha256, DhGroup::Ecp256, false),
    ] {
        let mut lab = Lab::established();
        let before = lab.a.status();
        let now = lab.now;
        lab.a.rekey_ike(now);
        while lab.a.poll_transmit().is_some() {}
        let suite = IkeSuite { encr: Encr::AesCbc128, integ: Some(Integ::HmacSha256_128), prf, dh: group };
        let payloads = vec![
            suite_proposal_ike(&suite, 1, Some(0x0102_0304_0506_0708)),
            Payload::Nonce(vec![9; 32]),
            Payload::Ke { group: group.id(), data: group.generate(&mut lab.rng).public_value().to_vec() },
        ];
        let answer = lab.answer_as_b(&payloads);
        lab.deliver_to_a(&answer);
        let after = lab.a.status();
        assert_eq!(after.counters.ike_rekeys, 0, "{what}");
        assert!(after.last_error.is_some_and(|e| e.starts_with("IKE SA rekey")), "{what}");
        // The peer moved the CHILD_SA to the IKE SA it created: that SA (its keys derive from the answer) and
        // ours are both closed with a DELETE, and the tunnel reconnects at once.
        let deleting: Vec<u64> = lab
            .a
            .retiring
            .iter()
            .filter(|r| matches!(r.sa.pending.as_ref().map(|p| &p.req), Some(Req::DeleteIke)))
            .map(|r| r.sa.remote_spi())
            .collect();
        let mut expected = vec![before.ike_remote_spi().expect("spi")];
        if derivable {
            expected.insert(0, 0x0102_0304_0506_0708);
        }
        assert_eq!(deleting, expected, "{what}");
        assert_closed_and_reconnecting(&lab, now, what);
    }
}

/// Runs both ends (deliveries, then timers on a 100 ms virtual clock) until `done` holds or `limit` passes.
fn run_until(lab: &mut Lab, limit: Duration, done: impl Fn(&Lab) -> bool) -> bool {
    let end = lab.now + limit;
    while lab.now < end {
        lab.settle();
        if done(lab) {
            return true;
        }
        lab.now += Duration::from_millis(100);
        let now = lab.now;
        for t in [&mut lab.a, &mut lab.b] {
            if t.poll_timeout().is_some_and(|at| at <= now) {
                t.handle_timeout(now);
            }
        }
        lab.check();
    }
    false
}

/// Both ends hold exactly one IKE SA and one CHILD_SA, the same ones.
fn agree(lab: &Lab) -> bool {
    let (a, b) = (lab.a.status(), lab.b.status());
    a.state == TunnelState::Established
        && b.state == TunnelState::Established
        && a.ike_local_spi().is_some()
        && a.ike_local_spi() == b.ike_remote_spi()
        && a.ike_remote_spi() == b.ike_local_spi()
        && a.child_inbound_spi() == b.child_outbound_spi()
        && a.child_outbound_spi() == b.child_inbound_spi()
        && lab.b.retiring.is_empty()
        && lab.b.ike_collision.is_none()
        && lab.b.old_inbound.is_empty()
}

/// b, a real responder, answers a's rekey with what it chose from a's offer; a then refuses that choice (its
/// proposals changed before the answer arrived, as if b had chosen something a did not offer). Whatever b created
/// for the refused exchange must not outlive it on b.
fn refused_rekey_leaves_nothing_on_the_peer(ike: bool) {
    let mut lab = Lab::established();
    let now = lab.now;
    if ike {
        lab.a.rekey_ike(now);
    } else {
        lab.a.rekey_child(now);
    }
    assert!(lab.step(true), "a's rekey request");
    // b answered and moved to what it created: an IKE SA (the CHILD_SA under it) or a CHILD_SA.
    let created_ike = lab.b.ike.sa().map(|s| s.local_spi());
    let created_child = lab.b.child.as_ref().map(|c| c.inbound_spi);
    assert_eq!(lab.b.status().counters.ike_rekeys + lab.b.status().counters.child_rekeys, 1);
    let (ike_offer, esp_offer) = (lab.a.cfg.ike_proposals.clone(), lab.a.cfg.esp_proposals.clone());
    lab.a.cfg.ike_proposals = vec![IkeProposal::parse("aes256-sha256-modp2048").expect("proposal")];
    lab.a.cfg.esp_proposals = vec![EspProposal::parse("aes256-sha1-modp2048").expect("proposal")];
    assert!(lab.step(false), "b's answer");
    assert!(lab.a.status().last_error.is_some_and(|e| e.contains("which we did not offer")));
    (lab.a.cfg.ike_proposals, lab.a.cfg.esp_proposals) = (ike_offer, esp_offer);
    // What a sends at once (before any timer: no new IKE SA yet, which could replace b's SAs by itself) removes
    // what b created.
    lab.settle();
    let holds = |t: &Tunnel, spi: Option<u64>| {
        t.ike.sa().into_iter().chain(t.retiring.iter().map(|r| &r.sa)).any(|s| Some(s.local_spi()) == spi)
    };
    if ike {
        assert!(!holds(&lab.b, created_ike), "b still holds the IKE SA of the refused rekey");
    } else {
        assert_ne!(lab.b.child.as_ref().map(|c| c.inbound_spi), created_child, "b still uses the refused CHILD_SA");
    }
    let consistent = run_until(&mut lab, Duration::from_secs(20), agree);
    assert!(
        consistent,
        "the two ends disagree 20 s after a refused rekey answer:\n a {:?}\n b {:?}",
        lab.a.status(),
        lab.b.status()
    );
    assert!(!holds(&lab.b, created_ike));
    assert_ne!(lab.b.child.as_ref().map(|c| c.inbound_spi), created_child);
}

#[test]
fn a_refused_ike_rekey_answer_leaves_nothing_on_the_peer() {
    refused_rekey_leaves_nothing_on_the_peer(true);
}

#[test]
fn a_refused_child_rekey_answer_leaves_nothing_on_the_peer() {
    refused_rekey_leaves_nothing_on_the_peer(false);
}

#[test]
fn a_delete_before_the_peers_auth_verified_is_ignored() {
    let mut lab = Lab::new();
    assert!(lab.step(true)); // a's IKE_SA_INIT
    assert!(lab.step(false)); // b's answer: a is in AuthSent, its IKE_AUTH queued
    assert!(matches!(lab.a.ike.sa().map(|s| &s.state), Some(IkeState::AuthSent { .. })));
    // Whoever answered a's IKE_SA_INIT holds keys for this SA; that proves nothing about the PSK.
    let del = Payload::Delete(Delete { protocol: ProtocolId::IKE, spi_size: 0, spis: vec![] });
    let sa_b = lab.b.half_open.get(0).expect("b's half-open SA");
    let msg = encrypt(sa_b, ExchangeType::INFORMATIONAL, false, 0, &[del], &mut lab.rng);
    lab.deliver_to_a(&msg);
    assert!(matches!(lab.a.ike.sa().map(|s| &s.state), Some(IkeState::AuthSent { .. })));
    assert!(lab.a.poll_event().is_none(), "the DELETE was acted on");
    assert_eq!(lab.a.status().counters.invalid_messages, 1);
    lab.settle();
    assert_eq!(lab.a.status().state, TunnelState::Established);
    assert_eq!(lab.b.status().state, TunnelState::Established);
}

#[test]
fn the_outbound_count_sees_a_second_install() {
    let mut lab = Lab::established();
    assert_eq!(lab.a.outbound_child_sas(), 1);
    // What a bug installing the SA of another exchange (a collision's, a second IKE SA's) would emit.
    let suite = lab.a.child.as_ref().expect("child").suite;
    let (now, ts) = (lab.now, lab.a.cfg.local_ts.clone());
    let extra = lab.a.make_child(now, 0x4242_4242, 0x5151_5151, suite, None, &[1; 32], &[2; 32], true, ts.clone(), ts);
    lab.a.emit(Event::ChildSaInstalled(extra.expect("child")));
    assert_eq!(lab.a.outbound_child_sas(), 2);
    assert!(lab.a.check_invariants().is_err_and(|e| e.contains("2 outbound")));
}

/// The peer deletes only our CHILD_SA (strongSwan's `swanctl --terminate --child`): we start over with a fresh IKE
/// SA at once, and the IKE SA left without a CHILD_SA is deleted on the peer too, so it holds one SA pair, not two.
#[test]
fn a_peer_child_delete_leaves_one_sa_pair_on_both_ends() {
    let mut lab = Lab::established();
    let spi = lab.b.child.as_ref().expect("b's CHILD_SA").inbound_spi;
    let now = lab.now;
    lab.b.send_request(
        now,
        ExchangeType::INFORMATIONAL,
        vec![delete_esp(&[spi])],
        Req::DeleteChild { inbound_spi: spi },
    );
    lab.settle();
    assert!(lab.a.status().last_error.is_some_and(|e| e.contains("peer deleted the CHILD_SA")));
    let mut b_lost_ike = false;
    while let Some(e) = lab.b.poll_event() {
        b_lost_ike |= matches!(e, Event::IkeSaDown { reason: DownReason::DeletedByPeer });
    }
    assert!(b_lost_ike, "the IKE SA whose CHILD_SA the peer deleted was not deleted on the peer");
    let consistent = run_until(&mut lab, Duration::from_secs(20), agree);
    assert!(consistent, "the two ends disagree:\n a {:?}\n b {:?}", lab.a.status(), lab.b.status());
}
