//! Known byte vectors assembled by hand from the RFC figures (RFC 4271 §4, RFC 5492 §4, RFC 6793, RFC 2918),
//! round trips, and truncation of every vector.

use iotrelay_bgp::Ipv4Cidr;
use iotrelay_bgp::wire::codes;
use iotrelay_bgp::wire::{
    AS_TRANS, AsPathSegment, Capability, Message, Notification, Open, PathAttributes, RouteRefresh, Update,
};
use iotrelay_types::CidrError;
use std::net::Ipv4Addr;

fn hdr(len: u16, ty: u8) -> Vec<u8> {
    let mut v = vec![0xff; 16];
    v.extend_from_slice(&len.to_be_bytes());
    v.push(ty);
    v
}

fn p(s: &str) -> Ipv4Cidr {
    s.parse().unwrap()
}

/// OPEN from AS 4200000000 (needs 4 octets, so AS_TRANS in "My Autonomous System"), hold time 30 s, BGP
/// identifier 169.254.10.2, one capabilities parameter: multiprotocol IPv4 unicast, route refresh, 4-octet AS.
fn open_vector() -> Vec<u8> {
    let mut v = hdr(45, 1);
    v.extend_from_slice(&[4, 0x5b, 0xa0, 0x00, 0x1e, 169, 254, 10, 2]); // version, AS_TRANS, hold, id
    v.extend_from_slice(&[16, 2, 14]); // opt param len, type 2 (capabilities), len
    v.extend_from_slice(&[1, 4, 0, 1, 0, 1]); // MP: AFI 1, reserved, SAFI 1
    v.extend_from_slice(&[2, 0]); // route refresh
    v.extend_from_slice(&[65, 4, 0xfa, 0x56, 0xea, 0x00]); // 4-octet AS 4200000000
    v
}

/// UPDATE withdrawing 192.0.2.0/24 and announcing 10.0.0.0/16 and 100.64.0.0/10 with ORIGIN IGP, AS_PATH
/// AS_SEQUENCE [64512, 4200000000] in 4-octet encoding, NEXT_HOP 169.254.10.1, MULTI_EXIT_DISC 100.
fn update_vector() -> Vec<u8> {
    let mut v = hdr(64, 2);
    v.extend_from_slice(&[0, 4, 24, 192, 0, 2]); // withdrawn routes
    v.extend_from_slice(&[0, 31]); // total path attribute length
    v.extend_from_slice(&[0x40, 1, 1, 0]); // ORIGIN IGP
    v.extend_from_slice(&[0x40, 2, 10, 2, 2, 0, 0, 0xfc, 0x00, 0xfa, 0x56, 0xea, 0x00]); // AS_PATH
    v.extend_from_slice(&[0x40, 3, 4, 169, 254, 10, 1]); // NEXT_HOP
    v.extend_from_slice(&[0x80, 4, 4, 0, 0, 0, 100]); // MED
    v.extend_from_slice(&[16, 10, 0, 10, 100, 64]); // NLRI
    v
}

#[test]
fn open_with_four_octet_as_capability_matches_the_rfc_layout() {
    let bytes = open_vector();
    let Message::Open(o) = Message::parse(&bytes).unwrap() else { panic!("not an OPEN") };
    assert_eq!(o.my_as, AS_TRANS);
    assert_eq!(o.asn(), 4_200_000_000);
    assert_eq!(o.hold_time, 30);
    assert_eq!(o.bgp_id, Ipv4Addr::new(169, 254, 10, 2));
    assert_eq!(
        o.capabilities,
        vec![Capability::IPV4_UNICAST, Capability::RouteRefresh, Capability::FourOctetAs(4_200_000_000)]
    );
    // Our emitter produces exactly these octets.
    let ours = Open::new(4_200_000_000, 30, Ipv4Addr::new(169, 254, 10, 2));
    assert_eq!(Message::Open(ours).to_bytes(), bytes);
    // A 2-octet ASN goes in the 2-octet field as itself.
    assert_eq!(Open::new(65000, 30, Ipv4Addr::new(1, 2, 3, 4)).my_as, 65000);
}

#[test]
fn update_with_four_octet_as_path_matches_the_rfc_layout() {
    let bytes = update_vector();
    let Message::Update(u) = Message::parse(&bytes).unwrap() else { panic!("not an UPDATE") };
    assert_eq!(u.withdrawn, vec![p("192.0.2.0/24")]);
    assert_eq!(u.nlri, vec![p("10.0.0.0/16"), p("100.64.0.0/10")]);
    assert_eq!(u.treat_as_withdraw, None);
    let a = &u.attributes;
    assert_eq!(a.origin, Some(0));
    assert_eq!(a.as_path, Some(vec![AsPathSegment::sequence(vec![64512, 4_200_000_000])]));
    assert_eq!(a.first_as(), Some(64512));
    assert_eq!(a.next_hop, Some(Ipv4Addr::new(169, 254, 10, 1)));
    assert_eq!(a.med, Some(100));
    assert_eq!(Message::Update(u.clone()).to_bytes(), bytes);
    assert_eq!(u.wire_len(), bytes.len());
}

#[test]
fn notification_keepalive_and_route_refresh_vectors() {
    let mut hold = hdr(21, 3);
    hold.extend_from_slice(&[4, 0]);
    let n = Notification { code: codes::err::HOLD_TIMER_EXPIRED, subcode: 0, data: vec![] };
    assert_eq!(Message::parse(&hold).unwrap(), Message::Notification(n.clone()));
    assert_eq!(Message::Notification(n).to_bytes(), hold);

    // OPEN Message Error / Unsupported Version Number, data = the largest version supported (4).
    let mut version = hdr(23, 3);
    version.extend_from_slice(&[2, 1, 0, 4]);
    let n = Notification { code: 2, subcode: 1, data: vec![0, 4] };
    assert_eq!(Message::parse(&version).unwrap(), Message::Notification(n.clone()));
    assert_eq!(Message::Notification(n).to_bytes(), version);

    assert_eq!(Message::parse(&hdr(19, 4)).unwrap(), Message::Keepalive);
    assert_eq!(Message::Keepalive.to_bytes(), hdr(19, 4));

    let mut rr = hdr(23, 5);
    rr.extend_from_slice(&[0, 1, 0, 1]);
    let r = RouteRefresh { afi: 1, subtype: 0, safi: 1 };
    assert_eq!(Message::parse(&rr).unwrap(), Message::RouteRefresh(r));
    assert_eq!(Message::RouteRefresh(r).to_bytes(), rr);
}

#[test]
fn every_truncation_is_a_bad_message_length() {
    for v in [open_vector(), update_vector()] {
        for n in 0..v.len() {
            let e = Message::parse(&v[..n]).unwrap_err();
            assert_eq!((e.code, e.subcode), (1, 2), "truncated to {n}: {e}");
        }
        // And trailing garbage is refused too.
        let mut longer = v.clone();
        longer.push(0);
        assert_eq!(Message::parse(&longer).unwrap_err().subcode, 2);
    }
}

#[test]
fn round_trips() {
    let path = vec![AsPathSegment::sequence(vec![65000; 300]), AsPathSegment { kind: 1, asns: vec![1, 2, 3] }];
    let u = Update {
        withdrawn: vec![p("0.0.0.0/0"), p("128.0.0.0/1"), p("10.128.0.0/9"), p("203.0.113.7/32")],
        attributes: PathAttributes {
            origin: Some(2),
            as_path: Some(path),
            next_hop: Some(Ipv4Addr::new(169, 254, 10, 2)),
            med: Some(7),
            atomic_aggregate: true,
            aggregator: Some((4_200_000_000, Ipv4Addr::new(192, 0, 2, 1))),
            ..PathAttributes::default()
        },
        nlri: vec![p("198.51.100.0/24"), p("100.64.0.0/10")],
        treat_as_withdraw: None,
    };
    let bytes = Message::Update(u.clone()).to_bytes();
    let Message::Update(back) = Message::parse(&bytes).unwrap() else { panic!() };
    // 300 ASNs went out as two segments (255 + 45): the same path, split.
    assert_eq!(back.attributes.as_path_asns().collect::<Vec<_>>(), u.attributes.as_path_asns().collect::<Vec<_>>());
    assert_eq!(back.attributes.as_path.as_ref().unwrap().len(), 3);
    assert_eq!(back.withdrawn, u.withdrawn);
    assert_eq!(back.nlri, u.nlri);
    assert_eq!((back.attributes.aggregator, back.attributes.atomic_aggregate), (u.attributes.aggregator, true));
    // The AS_PATH (1212 octets) needed the extended length bit.
    assert!(bytes.windows(2).any(|w| w == [0x50, 2]));

    let o = Open {
        version: 4,
        my_as: 65000,
        hold_time: 0,
        bgp_id: Ipv4Addr::new(192, 0, 2, 9),
        capabilities: vec![Capability::Unknown { code: 64, value: vec![0, 120] }, Capability::FourOctetAs(65000)],
    };
    assert_eq!(Message::parse(&Message::Open(o.clone()).to_bytes()).unwrap(), Message::Open(o));
}

#[test]
fn prefixes_clear_host_bits_from_the_wire_and_refuse_them_in_config() {
    // 10.31.0.0/12 on the wire: two address octets; the four host bits of the second are dropped.
    let mut v = hdr(26, 2);
    v.extend_from_slice(&[0, 0, 0, 0, 12, 10, 0x1f]);
    let Message::Update(u) = Message::parse(&v).unwrap() else { panic!() };
    assert_eq!(u.nlri, vec![p("10.16.0.0/12")]);
    assert!(matches!("10.1.2.3/16".parse::<Ipv4Cidr>(), Err(CidrError::HostBits(_))));
    assert!("10.0.0.0/33".parse::<Ipv4Cidr>().is_err());
}
