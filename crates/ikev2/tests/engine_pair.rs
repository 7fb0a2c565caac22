//! An initiator and a responder `Tunnel` over an in-memory link on a virtual clock: establishment for every
//! suite, failures, loss, retransmission, DPD, rekeys. The engine's invariants (at most one outbound CHILD_SA, a
//! down tunnel has a reconnect timer) are checked after every delivered datagram and timer (see `pair`).

mod pair;

use iotrelay_crypto::proposal::IkeProposal;
use iotrelay_crypto::{DhGroup, SeededRandom};
use iotrelay_ikev2::*;
use pair::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

#[test]
fn every_required_suite_establishes_with_matching_keys() {
    for (ike, esp) in [
        ("aes128-sha1-modp1024", "aes128-sha1-modp1024"),
        ("aes256-sha256-modp2048", "aes256-sha256-modp2048"),
        ("aes128gcm16-prfsha256-ecp256", "aes128gcm16-ecp256"),
        ("aes256gcm16-prfsha384-ecp384", "aes256gcm16-ecp384"),
        ("aes256-sha512-modp2048", "aes256-sha384"),
    ] {
        let p = established_pair(ike, esp);
        assert_eq!((p.a.dp.established, p.b.dp.established), (1, 1), "{ike}");
        p.assert_matching_child();
        let st = p.a.t.status();
        assert!(st.ike.unwrap().proposal.contains("PRF_"), "{ike}");
    }
}

#[test]
fn every_dh_group_establishes() {
    for g in DhGroup::ALL {
        let tok = iotrelay_crypto::proposal::dh_token(g);
        let p = established_pair(&format!("aes128-sha256-{tok}"), "aes128gcm16");
        p.assert_matching_child();
        assert!(p.a.t.status().ike.unwrap().proposal.ends_with(g.strongswan_name()));
    }
}

#[test]
fn wrong_psk_fails_on_both_sides_and_retries_slowly() {
    let mut p = Pair::new(
        cfg("right-psk_1", "aes128-sha1-modp1024", "aes128-sha1", A, StartupAction::Start),
        cfg("wrong-psk_1", "aes128-sha1-modp1024", "aes128-sha1", B, StartupAction::Add),
    );
    p.connect();
    p.run(Duration::from_secs(5));
    assert_eq!(p.a.dp.down.first(), Some(&DownReason::AuthenticationFailed { by_peer: true }));
    assert_eq!(p.b.dp.down.first(), Some(&DownReason::AuthenticationFailed { by_peer: false }));
    assert!(p.a.dp.outbound.is_none() && p.b.dp.outbound.is_none());
    assert!(p.a.t.status().last_error.unwrap().contains("AUTHENTICATION_FAILED"));
    // Retries, but slowly: at most a handful of attempts in 10 minutes, never a hot loop.
    p.run(Duration::from_secs(600));
    let attempts = p.a.dp.down.len();
    assert!((2..=8).contains(&attempts), "{attempts} attempts in 10 minutes");
    assert!(DownReason::AuthenticationFailed { by_peer: true }.is_permanent());
}

#[test]
fn no_common_proposal_fails_with_no_proposal_chosen() {
    let mut p = Pair::new(
        cfg("psk-psk-psk", "aes128-sha1-modp1024", "aes128-sha1", A, StartupAction::Start),
        cfg("psk-psk-psk", "aes256gcm16-prfsha384-ecp384", "aes128-sha1", B, StartupAction::Add),
    );
    p.connect();
    p.run(Duration::from_secs(5));
    assert_eq!(p.a.dp.down.first(), Some(&DownReason::NoProposalChosen { by_peer: true }));
    assert_eq!(p.b.dp.down.first(), Some(&DownReason::NoProposalChosen { by_peer: false }));
    // ESP proposals that do not match: the CHILD_SA is refused in IKE_AUTH.
    let mut p = Pair::new(
        cfg("psk-psk-psk", "aes128-sha1-modp1024", "aes128-sha1", A, StartupAction::Start),
        cfg("psk-psk-psk", "aes128-sha1-modp1024", "aes256gcm16", B, StartupAction::Add),
    );
    p.connect();
    p.run(Duration::from_secs(5));
    assert_eq!(p.a.dp.down.first(), Some(&DownReason::NoProposalChosen { by_peer: true }));
}

#[test]
fn invalid_ke_payload_is_retried_with_the_requested_group() {
    let mut a = cfg("psk-psk-psk", "aes128-sha256-ecp256-modp2048", "aes128gcm16", A, StartupAction::Start);
    a.ike_proposals = vec![IkeProposal::parse("aes128-sha256-ecp256-modp2048").unwrap()];
    let b = cfg("psk-psk-psk", "aes128-sha256-modp2048", "aes128gcm16", B, StartupAction::Add);
    let mut p = Pair::new(a, b);
    p.connect();
    p.run(Duration::from_secs(5));
    p.assert_matching_child();
    assert!(p.a.t.status().ike.unwrap().proposal.ends_with("MODP_2048"));
}

#[test]
fn traffic_selectors_are_narrowed_and_disjoint_ones_refused() {
    let mut a = cfg("psk-psk-psk", "aes128-sha1-modp1024", "aes128-sha1", A, StartupAction::Start);
    a.local_ts = vec![Ipv4Cidr::host(Ipv4Addr::new(100, 127, 0, 1))];
    let mut b = cfg("psk-psk-psk", "aes128-sha1-modp1024", "aes128-sha1", B, StartupAction::Add);
    b.local_ts = vec!["100.64.0.0/16".parse().unwrap()];
    let mut p = Pair::new(a.clone(), b);
    p.connect();
    p.run(Duration::from_secs(5));
    p.assert_matching_child();
    let mut b2 = cfg("psk-psk-psk", "aes128-sha1-modp1024", "aes128-sha1", B, StartupAction::Add);
    b2.remote_ts = vec!["10.0.0.0/8".parse().unwrap()];
    let mut p = Pair::new(a, b2);
    p.connect();
    p.run(Duration::from_secs(5));
    assert_eq!(p.a.dp.down.first(), Some(&DownReason::TsUnacceptable { by_peer: true }));
    assert_eq!(p.b.dp.down.first(), Some(&DownReason::TsUnacceptable { by_peer: false }));
}

#[test]
fn loss_and_duplication_still_establish() {
    for pct in [10u64, 25, 40] {
        let mut p = Pair::new(
            cfg("psk-psk-psk", "aes256-sha256-modp2048", "aes256-sha256", A, StartupAction::Start),
            cfg("psk-psk-psk", "aes256-sha256-modp2048", "aes256-sha256", B, StartupAction::Add),
        );
        p.loss_pct = pct;
        p.connect();
        p.run(Duration::from_secs(60));
        p.assert_matching_child();
        let (ra, rb) = (p.a.t.status().counters.retransmits, p.b.t.status().counters.retransmits);
        assert!(ra + rb > 0, "{pct}% loss but no retransmission: the loss was not exercised");
    }
    let mut p = Pair::new(
        cfg("psk-psk-psk", "aes256-sha256-modp2048", "aes256-sha256", A, StartupAction::Start),
        cfg("psk-psk-psk", "aes256-sha256-modp2048", "aes256-sha256", B, StartupAction::Add),
    );
    p.duplicate = true;
    p.connect();
    p.run(Duration::from_secs(5));
    p.assert_matching_child();
    assert_eq!((p.a.dp.established, p.b.dp.established), (1, 1), "duplicates must not create a second SA");
}

#[test]
fn retransmission_gives_up_without_a_peer() {
    let mut p = Pair::new(
        cfg("psk-psk-psk", "aes128-sha1-modp1024", "aes128-sha1", A, StartupAction::Start),
        cfg("psk-psk-psk", "aes128-sha1-modp1024", "aes128-sha1", B, StartupAction::Add),
    );
    p.cut = true;
    p.connect();
    // 1 + 1.8 + 3.24 + 5.83 + 10 (capped) s: gives up at about 22 s; the next attempt waits 2 s more.
    p.run(Duration::from_secs(23));
    assert_eq!(p.a.dp.down.first(), Some(&DownReason::DeadPeer));
    assert_eq!(p.a.t.status().counters.retransmits, 4, "5 tries in all");
}

#[test]
fn dpd_declares_a_dead_peer_within_the_timeout_and_reconnects() {
    let mut p = established_pair("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    let cut_at = p.now;
    p.cut = true;
    // DPD every 10 s, dead after about 30 s without an answer (the DPD's retransmissions give up after ~22 s): the
    // last answer came at most one DPD interval before the cut, so the peer is declared dead 20..40 s after it.
    while p.a.dp.down.is_empty() && p.now < cut_at + Duration::from_secs(60) {
        p.run(Duration::from_secs(1));
    }
    let took = p.now - cut_at;
    assert!((20..=40).contains(&took.as_secs()), "declared dead {took:?} after the cut");
    assert_eq!(p.a.dp.down.first(), Some(&DownReason::DeadPeer));
    assert_eq!(p.a.t.status().last_error.as_deref(), Some("peer did not answer (dead peer detection)"));
    assert!(p.a.dp.outbound.is_none(), "CHILD_SA removed when the peer is dead");
    // The link comes back: the initiator re-establishes by itself.
    p.cut = false;
    p.b.t = Tunnel::new(
        cfg("secret-psk_1", "aes128-sha1-modp1024", "aes128-sha1-modp1024", B, StartupAction::Add),
        SocketAddr::new(IpAddr::V4(B), 500),
        SocketAddr::new(IpAddr::V4(A), 500),
        p.now,
        &[11; 32],
    );
    p.b.dp = Datapath::default();
    p.run(Duration::from_secs(120));
    assert_eq!(p.b.dp.established, 1);
    p.assert_matching_child();
}

#[test]
fn idle_tunnel_sends_dpd_and_stays_up() {
    let mut p = established_pair("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    let before = p.delivered;
    p.run(Duration::from_secs(300));
    assert!(p.a.dp.down.is_empty() && p.b.dp.down.is_empty());
    // No traffic and no rekey is due: everything on the link is DPD, a request and its answer every 10 s.
    let dpd = p.delivered - before;
    assert!((2 * 29..=4 * 31).contains(&dpd), "{dpd} datagrams in 300 s of idle (DPD every 10 s)");
    p.assert_matching_child();
}

#[test]
fn child_rekey_from_either_side_keeps_one_outbound_sa() {
    for initiator_side in [true, false] {
        let mut p = established_pair("aes256-sha256-modp2048", "aes256-sha256-modp2048");
        for round in 0..3 {
            let now = p.now;
            if initiator_side {
                p.a.t.rekey_child(now);
            } else {
                p.b.t.rekey_child(now);
            }
            p.run(Duration::from_secs(20));
            p.assert_matching_child();
            assert_eq!(p.a.dp.rekeys, round + 1, "side a rekeys");
            assert_eq!(p.b.dp.rekeys, round + 1, "side b rekeys");
            // Old inbound SAs are deleted after the grace period.
            assert_eq!(p.a.dp.inbound.len(), 1, "old inbound SA left on a");
            assert_eq!(p.b.dp.inbound.len(), 1, "old inbound SA left on b");
        }
        assert_eq!(p.a.t.status().counters.child_rekeys, 3);
    }
}

#[test]
fn simultaneous_child_rekey_yields_exactly_one_new_sa() {
    // Which SA survives is checked against the nonces in engine::collision_tests; here, from the outside: one
    // collision on each side, resolved at once (no retry), one SA pair left, nothing torn down.
    let mut p = established_pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16-ecp256");
    let now = p.now;
    p.a.t.rekey_child(now);
    p.b.t.rekey_child(now);
    p.run(Duration::ZERO);
    p.assert_matching_child();
    // The side whose rekey survives saw the peer's SA replaced by its own: two switches, the other side one.
    assert_eq!(p.a.dp.rekeys + p.b.dp.rekeys, 3);
    p.run(Duration::from_secs(60));
    p.assert_matching_child();
    for side in [&p.a, &p.b] {
        assert_eq!(side.t.status().counters.rekey_collisions, 1);
        assert_eq!(side.dp.inbound.len(), 1);
        assert!(side.dp.down.is_empty());
    }
}

#[test]
fn simultaneous_ike_rekey_keeps_one_ike_sa_and_the_child() {
    let mut p = established_pair("aes256-sha256-modp2048", "aes256-sha256");
    let before = p.a.t.status();
    let now = p.now;
    p.a.t.rekey_ike(now);
    p.b.t.rekey_ike(now);
    p.run(Duration::from_secs(60));
    let after = p.a.t.status();
    assert_ne!(before.ike_local_spi(), after.ike_local_spi());
    assert_eq!(before.child_inbound_spi(), after.child_inbound_spi());
    p.assert_matching_child();
    for side in [&p.a, &p.b] {
        let c = side.t.status().counters;
        assert_eq!((c.rekey_collisions, c.ike_rekeys), (1, 1));
        assert!(side.dp.down.is_empty());
    }
}

#[test]
fn ike_rekey_from_either_side_keeps_the_child() {
    for initiator_side in [true, false] {
        let mut p = established_pair("aes256gcm16-prfsha384-ecp384", "aes256gcm16");
        let before = p.a.t.status();
        let now = p.now;
        if initiator_side {
            p.a.t.rekey_ike(now);
        } else {
            p.b.t.rekey_ike(now);
        }
        p.run(Duration::from_secs(20));
        let after = p.a.t.status();
        assert_ne!(before.ike_local_spi(), after.ike_local_spi(), "new IKE SPIs");
        assert_eq!(before.child_outbound_spi(), after.child_outbound_spi(), "CHILD_SA unaffected");
        p.assert_matching_child();
        // The rekeyed SA works: a CHILD rekey over it succeeds, and DPD keeps it up.
        let now = p.now;
        p.a.t.rekey_child(now);
        p.run(Duration::from_secs(60));
        p.assert_matching_child();
        assert_eq!(p.a.dp.rekeys, 1);
        assert!(p.a.dp.down.is_empty() && p.b.dp.down.is_empty());
    }
}

#[test]
fn nat_is_detected_only_on_the_side_behind_it_and_survives_an_ike_rekey() {
    let (ike, esp) = ("aes128-sha1-modp2048", "aes128-sha1");
    let p = established_pair(ike, esp);
    assert_eq!(
        (p.a.t.status().ike.map(|s| s.nat_detected), p.b.t.status().ike.map(|s| s.nat_detected)),
        (Some(false), Some(false))
    );
    // `a` sits behind a NAT (192.0.2.2 rewritten to A), once as initiator and once as responder.
    for a_starts in [true, false] {
        let (sa, sb) = if a_starts {
            (StartupAction::Start, StartupAction::Add)
        } else {
            (StartupAction::Add, StartupAction::Start)
        };
        let mut p = Pair::with_a_local(
            cfg("secret-psk_1", ike, esp, A, sa),
            cfg("secret-psk_1", ike, esp, B, sb),
            Ipv4Addr::new(192, 0, 2, 2),
        );
        assert_eq!(p.a.t.status().ike.map(|s| s.nat_detected), None, "unknown before IKE_SA_INIT");
        let now = p.now;
        if a_starts {
            p.a.t.connect(now);
        } else {
            p.b.t.connect(now);
        }
        p.run(Duration::from_secs(5));
        p.assert_matching_child();
        assert_eq!(
            (p.a.t.status().ike.map(|s| s.nat_detected), p.b.t.status().ike.map(|s| s.nat_detected)),
            (Some(true), Some(false))
        );
        let now = p.now;
        p.a.t.rekey_ike(now);
        p.run(Duration::from_secs(20));
        assert_eq!(p.a.t.status().ike.map(|s| s.nat_detected), Some(true), "kept by the rekeyed IKE SA");
    }
}

#[test]
fn lifetimes_drive_rekeys_before_expiry() {
    let mut a = cfg("psk-psk-psk", "aes128-sha1-modp1024", "aes128-sha1-modp1024", A, StartupAction::Start);
    a.child_lifetime = Duration::from_secs(120);
    a.child_rekey_margin = Duration::from_secs(30);
    a.rekey_fuzz = Duration::from_secs(10);
    a.ike_lifetime = Duration::from_secs(400);
    a.ike_rekey_margin = Duration::from_secs(60);
    let b = cfg("psk-psk-psk", "aes128-sha1-modp1024", "aes128-sha1-modp1024", B, StartupAction::Add);
    let mut p = Pair::new(a, b);
    p.connect();
    p.run(Duration::from_secs(500));
    p.assert_matching_child();
    let s = p.a.t.status();
    let c = s.counters;
    assert!(c.child_rekeys >= 4, "{c:?}");
    assert!(c.ike_rekeys >= 1, "{c:?}");
    // The current SAs expire one lifetime after they were established, and are rekeyed before.
    let child = s.child.expect("CHILD_SA");
    let (est, rekey, exp) = (child.established_at, child.rekey_at, child.expires_at);
    assert_eq!(exp, est + Duration::from_secs(120));
    assert!(rekey < exp, "CHILD_SA rekey {rekey:?} not before expiry {exp:?}");
    let ike = s.ike.expect("IKE SA");
    let (est, rekey, exp) = (ike.established_at, ike.rekey_at, ike.expires_at);
    assert_eq!(exp, est + Duration::from_secs(400));
    assert!(rekey < exp, "IKE SA rekey {rekey:?} not before expiry {exp:?}");
}

#[test]
fn cookies_are_demanded_and_honoured() {
    let a = cfg("psk-psk-psk", "aes128-sha1-modp1024", "aes128-sha1", A, StartupAction::Start);
    let mut b = cfg("psk-psk-psk", "aes128-sha1-modp1024", "aes128-sha1", B, StartupAction::Add);
    b.cookie_threshold = 0;
    let mut p = Pair::new(a, b);
    p.connect();
    p.run(Duration::from_secs(5));
    p.assert_matching_child();
}

#[test]
fn close_deletes_on_both_sides() {
    let mut p = established_pair("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    let now = p.now;
    p.a.t.close(now);
    p.run(Duration::from_secs(5));
    assert!(p.a.dp.outbound.is_none() && p.b.dp.outbound.is_none());
    assert_eq!(p.b.dp.down.first(), Some(&DownReason::DeletedByPeer));
    assert_eq!(p.a.dp.down.first(), Some(&DownReason::Closed));
    p.run(Duration::from_secs(120));
    assert_eq!(p.a.dp.established, 1, "a closed tunnel does not reconnect");
}

#[test]
fn restarted_initiator_replaces_the_old_sa_on_the_responder() {
    let mut p = established_pair("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    // The initiator restarts with no memory (a new process).
    p.a.t = Tunnel::new(
        cfg("secret-psk_1", "aes128-sha1-modp1024", "aes128-sha1-modp1024", A, StartupAction::Start),
        SocketAddr::new(IpAddr::V4(A), 500),
        SocketAddr::new(IpAddr::V4(B), 500),
        p.now,
        &[12; 32],
    );
    p.a.dp = Datapath::default();
    p.connect();
    p.run(Duration::from_secs(5));
    p.assert_matching_child();
    assert_eq!(p.b.dp.inbound.len(), 1, "responder keeps exactly one CHILD_SA");
    assert_eq!(p.b.dp.established, 2);
}

#[test]
fn garbage_datagrams_never_panic_and_are_counted() {
    let mut p = established_pair("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    let mut rng = SeededRandom::new(3);
    let mut buf = [0u8; 600];
    for i in 0..2000 {
        use iotrelay_crypto::RandomSource;
        rng.fill_bytes(&mut buf);
        if i % 2 == 0 {
            // Plausible headers: version 2, lengths right.
            buf[17] = 0x20;
            buf[18] = 34 + (i % 4) as u8;
            let n = 28 + i % 500;
            buf[24..28].copy_from_slice(&(n as u32).to_be_bytes());
            let now = p.now;
            p.b.t.handle_datagram(now, 4500, SocketAddr::new(IpAddr::V4(A), 4500), &buf[..n]);
        } else {
            let now = p.now;
            p.b.t.handle_datagram(now, 500, SocketAddr::new(IpAddr::V4(A), 500), &buf[..i % 600]);
        }
    }
    assert!(p.b.t.status().counters.invalid_messages > 0);
    while p.b.t.poll_transmit().is_some() {}
    p.run(Duration::from_secs(30));
    p.assert_matching_child();
}

/// A pair (a initiates) using `suite` for IKE and ESP that fragments messages above `fragment_size` octets.
fn fragmenting_pair(suite: &str, fragment_size: usize) -> Pair {
    let mut a = cfg("frag-psk-0123", suite, suite, A, StartupAction::Start);
    let mut b = cfg("frag-psk-0123", suite, suite, B, StartupAction::Add);
    a.fragment_size = fragment_size;
    b.fragment_size = fragment_size;
    Pair::new(a, b)
}

#[test]
fn large_messages_go_out_as_fragments_and_are_reassembled() {
    // A small fragment size makes IKE_AUTH and every CREATE_CHILD_SA (with a 256-octet KE) too large for one
    // datagram: both sides announce RFC 7383 support, so they fragment, and the peer reassembles.
    let mut p = fragmenting_pair("aes256-sha256-modp2048", 200);
    p.connect();
    p.run(Duration::from_secs(5));
    p.assert_matching_child();
    let after_auth = p.fragments;
    assert!(after_auth.0 >= 2 && after_auth.1 >= 2, "IKE_AUTH not fragmented both ways: {after_auth:?}");
    for side_a in [true, false] {
        let now = p.now;
        if side_a {
            p.a.t.rekey_child(now);
        } else {
            p.b.t.rekey_ike(now);
        }
        p.run(Duration::from_secs(30));
        p.assert_matching_child();
    }
    assert!(p.fragments.0 > after_auth.0 && p.fragments.1 > after_auth.1, "rekeys not fragmented");
    assert_eq!(p.a.t.status().counters.invalid_messages, 0);
    assert_eq!(p.b.t.status().counters.invalid_messages, 0);
    assert!(p.a.dp.down.is_empty() && p.b.dp.down.is_empty());
}

#[test]
fn lost_fragments_are_retransmitted_with_the_whole_message() {
    let mut p = fragmenting_pair("aes128-sha1-modp2048", 160);
    // The second fragment of a's IKE_AUTH request is lost, and every datagram is duplicated: a retransmits every
    // fragment of the message, b ignores the duplicates, reassembles, and answers.
    p.drop_fragment = Some((true, 2));
    p.duplicate = true;
    p.connect();
    p.run(Duration::from_secs(60));
    assert!(p.drop_fragment.is_none(), "no second fragment was sent");
    p.assert_matching_child();
    assert!(p.fragments.0 >= 2 && p.fragments.1 >= 2);
    assert!(p.a.t.status().counters.retransmits > 0, "a lost fragment but nothing retransmitted");
    // Then b's answer to a CHILD_SA rekey loses its first fragment: a retransmits its request, and b answers the
    // retransmission from its reply cache, once.
    p.drop_fragment = Some((false, 1));
    let now = p.now;
    p.a.t.rekey_child(now);
    p.run(Duration::from_secs(30));
    assert!(p.drop_fragment.is_none());
    p.assert_matching_child();
    assert_eq!(p.a.dp.rekeys, 1);
    assert!(p.a.dp.down.is_empty() && p.b.dp.down.is_empty());
}

/// A CHILD_SA rekey and an IKE SA rekey started at once from the two ends (README: the one refused with
/// TEMPORARY_FAILURE retries after 1-5 s): both rekeys complete, nothing goes down, one SA pair results.
#[test]
fn child_and_ike_rekey_at_once_both_complete() {
    for child_side_is_a in [true, false] {
        let mut p = established_pair("aes256-sha256-modp2048", "aes256-sha256");
        let before = p.a.t.status();
        let now = p.now;
        let (c, i) = if child_side_is_a { (&mut p.a, &mut p.b) } else { (&mut p.b, &mut p.a) };
        c.t.rekey_child(now);
        i.t.rekey_ike(now);
        p.run(Duration::from_secs(60));
        let after = p.a.t.status();
        assert_ne!(before.ike_local_spi(), after.ike_local_spi(), "the IKE rekey did not complete");
        assert_ne!(before.child_inbound_spi(), after.child_inbound_spi(), "the CHILD rekey did not complete");
        p.assert_matching_child();
        for side in [&p.a, &p.b] {
            assert!(side.dp.down.is_empty(), "a tunnel went down");
            let c = side.t.status().counters;
            assert_eq!((c.ike_rekeys, c.child_rekeys), (1, 1), "child side a: {child_side_is_a}");
        }
    }
}

/// The initiator of a CHILD_SA rekey keeps the old inbound SA until the peer answers its DELETE: a peer that
/// switches its outbound to the new SA only when that DELETE arrives (strongSwan as the rekey's responder) may send
/// on the old SA until then, and those packets must still be accepted.
#[test]
fn old_inbound_sa_lives_until_the_delete_is_answered() {
    let mut p = established_pair("aes128-sha1-modp2048", "aes128-sha1-modp2048");
    let now = p.now;
    p.a.t.rekey_child(now);
    p.run(Duration::from_secs(1));
    assert_eq!(p.a.dp.rekeys, 1, "the rekey completed");
    assert_eq!(p.a.dp.inbound.len(), 2, "old and new inbound SA right after the rekey");
    // Every datagram is lost from now on: a's DELETE of the old SA goes out (and is resent) but is never answered.
    p.cut = true;
    p.run(Duration::from_secs(15));
    assert_eq!(p.a.dp.inbound.len(), 2, "the old inbound SA went before the peer answered the DELETE");
    // The link comes back: the resent DELETE is answered and the old inbound SA goes.
    p.cut = false;
    p.run(Duration::from_secs(30));
    assert_eq!(p.a.dp.inbound.len(), 1, "old inbound SA left on a after the answer");
    assert_eq!(p.b.dp.inbound.len(), 1, "old inbound SA left on b");
    p.assert_matching_child();
}
