//! Every malformed-input branch, fed to a speaker in the state where it can arrive: session-ending errors are
//! answered with the RFC's NOTIFICATION code/subcode/data (RFC 4271 §6, RFC 5492, RFC 6608, RFC 7313), then Close
//! and Idle; RFC 7606 treat-as-withdraw and attribute-discard cases keep the session and act on the routes.

mod common;
use common::*;
use iotrelay_bgp::{DownReason, Event, Output, Speaker, State};

const CAP_AS4: [u8; 6] = [65, 4, 0, 0, 0xfc, 0x00];

fn open_body(version: u8, my_as: u16, hold: u16, id: [u8; 4], params: &[u8]) -> Vec<u8> {
    let mut b = vec![version];
    b.extend_from_slice(&my_as.to_be_bytes());
    b.extend_from_slice(&hold.to_be_bytes());
    b.extend_from_slice(&id);
    b.push(params.len() as u8);
    b.extend_from_slice(params);
    b
}

fn caps(c: &[u8]) -> Vec<u8> {
    let mut v = vec![2, c.len() as u8];
    v.extend_from_slice(c);
    v
}

fn open_confirm() -> Speaker {
    let mut s = open_sent(config());
    s.handle_bytes(T0, &aws_open());
    drain(&mut s);
    assert_eq!(s.state(), State::OpenConfirm);
    s
}

/// (name, speaker state to feed it in, bytes, code, subcode, expected data or None for "not checked").
type Case = (&'static str, fn() -> Speaker, Vec<u8>, u8, u8, Option<Vec<u8>>);

fn est() -> Speaker {
    established(config())
}
fn sent() -> Speaker {
    open_sent(config())
}

fn cases() -> Vec<Case> {
    let id = [169, 254, 10, 1];
    let mut bad_marker = keepalive();
    bad_marker[3] = 0;
    let mut len18 = keepalive();
    len18[17] = 18;
    let mut len4097 = keepalive();
    len4097[16..18].copy_from_slice(&4097u16.to_be_bytes());
    let rr24 = msg(5, &[0, 1, 0, 1, 0]);
    let good = good_attrs();
    let mut unknown_wk = good.clone();
    unknown_wk.extend_from_slice(&[0x40, 99, 2, 7, 7]);
    let mut dup_mp = good.clone();
    dup_mp.extend_from_slice(&[0x80, 14, 0, 0x80, 14, 0]);
    vec![
        ("marker not all ones", est, bad_marker, 1, 1, Some(vec![])),
        ("length 18", est, len18, 1, 2, Some(vec![0, 18])),
        ("length 4097", est, len4097, 1, 2, Some(vec![0x10, 0x01])),
        ("type 6", est, msg(6, &[]), 1, 3, Some(vec![6])),
        ("type 0", est, msg(0, &[]), 1, 3, Some(vec![0])),
        ("KEEPALIVE with a body", est, msg(4, &[0]), 1, 2, Some(vec![0, 20])),
        ("UPDATE shorter than 23", est, msg(2, &[0, 0, 0]), 1, 2, Some(vec![0, 22])),
        ("NOTIFICATION shorter than 21", est, msg(3, &[6]), 1, 2, Some(vec![0, 20])),
        ("OPEN shorter than 29", sent, msg(1, &[4; 9]), 1, 2, Some(vec![0, 28])),
        ("ROUTE-REFRESH not 23", est, rr24.clone(), 7, 1, Some(rr24)),
        ("version 3", sent, msg(1, &open_body(3, 64512, 30, id, &caps(&CAP_AS4))), 2, 1, Some(vec![0, 4])),
        ("peer AS 64513", sent, msg(1, &open_body(4, 64513, 30, id, &[])), 2, 2, None),
        ("4-octet AS 64513", sent, msg(1, &open_body(4, 64512, 30, id, &caps(&[65, 4, 0, 0, 0xfc, 1]))), 2, 2, None),
        ("hold time 1", sent, msg(1, &open_body(4, 64512, 1, id, &caps(&CAP_AS4))), 2, 6, None),
        ("hold time 2", sent, msg(1, &open_body(4, 64512, 2, id, &caps(&CAP_AS4))), 2, 6, None),
        ("BGP identifier 0", sent, msg(1, &open_body(4, 64512, 30, [0; 4], &caps(&CAP_AS4))), 2, 3, None),
        ("optional parameter 1", sent, msg(1, &open_body(4, 64512, 30, id, &[1, 1, 0])), 2, 4, None),
        (
            "optional parameters overrun",
            sent,
            {
                let mut b = open_body(4, 64512, 30, id, &caps(&CAP_AS4));
                b[9] += 2;
                msg(1, &b)
            },
            2,
            0,
            None,
        ),
        (
            "capability overruns its parameter",
            sent,
            msg(1, &open_body(4, 64512, 30, id, &[2, 3, 65, 4, 0])),
            2,
            0,
            None,
        ),
        (
            "4-octet AS capability of 2 octets",
            sent,
            msg(1, &open_body(4, 64512, 30, id, &caps(&[65, 2, 0xfc, 0]))),
            2,
            0,
            None,
        ),
        (
            "no 4-octet AS capability",
            sent,
            msg(1, &open_body(4, 64512, 30, id, &[])),
            2,
            7,
            Some(vec![65, 4, 0, 0, 0xfd, 0xe8]),
        ),
        (
            "no IPv4 unicast",
            sent,
            msg(1, &open_body(4, 64512, 30, id, &caps(&[1, 4, 0, 2, 0, 1, 65, 4, 0, 0, 0xfc, 0]))),
            2,
            7,
            Some(vec![1, 4, 0, 1, 0, 1]),
        ),
        ("UPDATE in OpenSent", sent, aws_update(&[]), 5, 1, None),
        ("KEEPALIVE in OpenSent", sent, keepalive(), 5, 1, None),
        ("OPEN in OpenConfirm", open_confirm, aws_open(), 5, 2, None),
        ("UPDATE in OpenConfirm", open_confirm, aws_update(&[]), 5, 2, None),
        ("OPEN in Established", est, aws_open(), 5, 3, None),
        ("withdrawn length beyond the message", est, msg(2, &[0, 10, 1, 2]), 3, 1, None),
        ("attribute length beyond the message", est, msg(2, &[0, 0, 0, 50, 0x40, 1, 1, 0]), 3, 1, None),
        ("NLRI prefix length 33", est, msg(2, &update_body(&[], &good, &[33, 1, 2, 3, 4, 5])), 3, 10, None),
        ("NLRI prefix truncated", est, msg(2, &update_body(&[], &good, &[24, 10, 0])), 3, 10, None),
        ("withdrawn prefix length 40", est, msg(2, &update_body(&[40, 1, 2, 3, 4, 5], &[], &[])), 3, 10, None),
        (
            "unrecognized well-known attribute",
            est,
            msg(2, &update_body(&[], &unknown_wk, &[16, 100, 64])),
            3,
            2,
            Some(vec![0x40, 99, 2, 7, 7]),
        ),
        ("MP_REACH_NLRI twice", est, msg(2, &update_body(&[], &dup_mp, &[16, 100, 64])), 3, 1, None),
    ]
}

#[test]
fn session_ending_errors_get_the_rfc_notification_then_idle() {
    for (name, setup, bytes, code, subcode, data) in cases() {
        let mut s = setup();
        s.handle_bytes(T0, &bytes);
        let n = expect_notification(&mut s);
        assert_eq!((n.code, n.subcode), (code, subcode), "{name}: got {n:?}");
        if let Some(d) = data {
            assert_eq!(n.data, d, "{name}: NOTIFICATION data");
        }
        let events: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
        assert!(
            events.iter().any(|e| matches!(e, Event::Down { reason: DownReason::NotificationSent { code: c, subcode: sc, .. } } if (*c, *sc) == (code, subcode))),
            "{name}: no Down event: {events:?}"
        );
        // Bytes after the error (here: a valid KEEPALIVE) are not processed: the connection is gone.
        let before = s.counters().messages_received;
        s.handle_bytes(T0, &keepalive());
        assert_eq!(s.counters().messages_received, before, "{name}");
        // Active mode: a reconnect is scheduled.
        assert!(s.poll_timeout().is_some_and(|t| t > T0), "{name}: no reconnect timer");
    }
}

/// Builds an UPDATE re-announcing 100.64.0.0/16 from the given raw attributes.
fn reannounce(attrs: &[u8]) -> Vec<u8> {
    msg(2, &update_body(&[], attrs, &[16, 100, 64]))
}

const ORIGIN: [u8; 4] = [0x40, 1, 1, 0];
const AS_PATH: [u8; 9] = [0x40, 2, 6, 2, 1, 0, 0, 0xfc, 0x00];
const NEXT_HOP: [u8; 7] = [0x40, 3, 4, 169, 254, 10, 1];

fn with(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn rfc7606_treat_as_withdraw_keeps_the_session_and_withdraws_the_route() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ORIGIN 3", with(&[&[0x40, 1, 1, 3], &AS_PATH, &NEXT_HOP])),
        ("ORIGIN length 2", with(&[&[0x40, 1, 2, 0, 0], &AS_PATH, &NEXT_HOP])),
        ("ORIGIN flagged optional", with(&[&[0xc0, 1, 1, 0], &AS_PATH, &NEXT_HOP])),
        ("AS_PATH segment type 5", with(&[&ORIGIN, &[0x40, 2, 6, 5, 1, 0, 0, 0xfc, 0], &NEXT_HOP])),
        ("AS_PATH confederation segment", with(&[&ORIGIN, &[0x40, 2, 6, 3, 1, 0, 0, 0xfc, 0], &NEXT_HOP])),
        ("AS_PATH segment of 0 ASNs", with(&[&ORIGIN, &[0x40, 2, 2, 2, 0], &NEXT_HOP])),
        ("AS_PATH segment overrun", with(&[&ORIGIN, &[0x40, 2, 6, 2, 2, 0, 0, 0xfc, 0], &NEXT_HOP])),
        ("AS_PATH not starting with the peer", with(&[&ORIGIN, &[0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9], &NEXT_HOP])),
        ("AS_PATH empty", with(&[&ORIGIN, &[0x40, 2, 0], &NEXT_HOP])),
        ("AS_PATH flagged optional", with(&[&ORIGIN, &[0x80, 2, 6, 2, 1, 0, 0, 0xfc, 0], &NEXT_HOP])),
        ("NEXT_HOP 0.0.0.0", with(&[&ORIGIN, &AS_PATH, &[0x40, 3, 4, 0, 0, 0, 0]])),
        ("NEXT_HOP multicast", with(&[&ORIGIN, &AS_PATH, &[0x40, 3, 4, 224, 0, 0, 1]])),
        ("NEXT_HOP length 5", with(&[&ORIGIN, &AS_PATH, &[0x40, 3, 5, 169, 254, 10, 1, 0]])),
        ("MED length 3", with(&[&good_attrs(), &[0x80, 4, 3, 0, 0, 1]])),
        ("MED flagged well-known", with(&[&good_attrs(), &[0x40, 4, 4, 0, 0, 0, 1]])),
        ("attribute overruns the field", with(&[&good_attrs(), &[0xc0, 99, 50, 1, 2, 3]])),
        ("attribute header truncated", with(&[&good_attrs(), &[0xc0, 99]])),
        ("missing NEXT_HOP", with(&[&ORIGIN, &AS_PATH])),
        ("missing ORIGIN", with(&[&AS_PATH, &NEXT_HOP])),
        ("missing AS_PATH", with(&[&ORIGIN, &NEXT_HOP])),
    ];
    for (name, attrs) in cases {
        let mut s = est();
        s.handle_bytes(T0, &reannounce(&attrs));
        assert_eq!(s.state(), State::Established, "{name}");
        assert_eq!(drain(&mut s), vec![], "{name}: something was sent");
        assert!(s.routes().is_empty(), "{name}: route kept");
        assert_eq!(s.counters().updates_treated_as_withdraw, 1, "{name}");
        assert!(s.last_error().unwrap().contains("treated as withdraw"), "{name}");
        assert_eq!(s.poll_event(), Some(Event::RoutesChanged { learned: vec![], withdrawn: vec![p("100.64.0.0/16")] }));
    }
}

#[test]
fn discarded_and_unknown_optional_attributes_keep_the_route() {
    let cases: Vec<(&str, Vec<u8>, u64)> = vec![
        ("LOCAL_PREF from an external peer", with(&[&good_attrs(), &[0x40, 5, 4, 0, 0, 0, 100]]), 1),
        ("AGGREGATOR of 6 octets", with(&[&good_attrs(), &[0xc0, 7, 6, 0, 0, 0xfc, 0, 1, 2]]), 1),
        ("ATOMIC_AGGREGATE of 1 octet", with(&[&good_attrs(), &[0x40, 6, 1, 0]]), 1),
        ("ORIGIN twice", with(&[&good_attrs(), &[0x40, 1, 1, 2]]), 1),
        ("unknown optional transitive", with(&[&good_attrs(), &[0xe0, 99, 2, 1, 2]]), 0),
        ("unknown optional non-transitive", with(&[&good_attrs(), &[0x80, 98, 0]]), 0),
    ];
    for (name, attrs, discarded) in cases {
        let mut s = est();
        let mut withdraw_first = update_body(&[16, 100, 64], &[], &[]);
        withdraw_first = msg(2, &withdraw_first);
        s.handle_bytes(T0, &withdraw_first);
        assert!(s.routes().is_empty());
        s.handle_bytes(T0, &reannounce(&attrs));
        assert_eq!(s.state(), State::Established, "{name}");
        let r = s.routes().get(&p("100.64.0.0/16")).unwrap_or_else(|| panic!("{name}: route not learned"));
        assert_eq!((r.origin, r.as_path.as_slice(), r.next_hop), (0, &[64512][..], AWS), "{name}");
        assert_eq!(s.counters().attributes_discarded, discarded, "{name}");
        assert_eq!(s.counters().updates_treated_as_withdraw, 0, "{name}");
    }
}

#[test]
fn a_path_through_our_own_as_is_not_learned() {
    let mut s = est();
    s.handle_bytes(
        T0,
        &reannounce(&with(&[&ORIGIN, &[0x40, 2, 10, 2, 2, 0, 0, 0xfc, 0, 0, 0, 0xfd, 0xe8], &NEXT_HOP])),
    );
    assert_eq!(s.state(), State::Established);
    assert!(s.routes().is_empty());
    assert_eq!(s.counters().routes_rejected_loop, 1);
}

#[test]
fn a_notification_from_the_peer_is_not_answered() {
    let mut s = est();
    s.handle_bytes(T0, &msg(3, &[6, 2]));
    assert_eq!(drain(&mut s), vec![Output::Close]);
    assert_eq!(s.state(), State::Idle);
    assert!(s.routes().is_empty());
    let events: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(
        events,
        vec![
            Event::RoutesChanged { learned: vec![], withdrawn: vec![p("100.64.0.0/16")] },
            Event::Down { reason: DownReason::NotificationReceived { code: 6, subcode: 2 } },
        ]
    );
    assert_eq!(s.last_error(), Some("peer sent NOTIFICATION Cease / Administrative Shutdown"));
    assert_eq!(s.counters().notifications_sent, 0);
}
