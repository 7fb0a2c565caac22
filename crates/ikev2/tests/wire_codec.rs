//! Wire codec: round trips of every payload, truncation and garbage loops, emission independent of buffer
//! contents, structural errors, fragment reassembly.

use iotrelay_crypto::{RandomSource, SeededRandom};
use iotrelay_ikev2::wire::fragment::Reassembler;
use iotrelay_ikev2::wire::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn header(exchange: ExchangeType, flags: u8) -> Header {
    Header {
        spi_i: 0x8035ad4451a597a3,
        spi_r: 0,
        next_payload: PayloadType::NONE,
        version: 0x20,
        exchange,
        flags,
        message_id: 0,
        length: 0,
    }
}

fn every_payload() -> Vec<Payload> {
    vec![
        Payload::Sa(vec![
            Proposal {
                number: 1,
                protocol: ProtocolId::IKE,
                spi: vec![],
                transforms: vec![
                    Transform::new(TransformType::ENCR, 12, Some(128)),
                    Transform::new(TransformType::PRF, 2, None),
                    Transform::new(TransformType::INTEG, 2, None),
                    Transform::new(TransformType::DH, 2, None),
                ],
            },
            Proposal {
                number: 2,
                protocol: ProtocolId::ESP,
                spi: vec![0xc2, 0xda, 0x9d, 0x90],
                transforms: vec![Transform::new(TransformType::ENCR, 20, Some(256))],
            },
        ]),
        Payload::Ke { group: 14, data: vec![7; 256] },
        Payload::Nonce(vec![1; 32]),
        Payload::IdI(Identification { id_type: IdType::ID_IPV4_ADDR, data: vec![198, 51, 100, 1] }),
        Payload::IdR(Identification { id_type: IdType::ID_FQDN, data: b"aws.example".to_vec() }),
        Payload::Cert { encoding: 4, data: vec![1, 2, 3] },
        Payload::CertReq { encoding: 4, data: vec![] },
        Payload::Auth { method: AuthMethod::SHARED_KEY_MIC, data: vec![9; 20] },
        Payload::Notify(Notify {
            protocol: ProtocolId::NONE,
            spi: vec![],
            ty: NotifyType::NAT_DETECTION_SOURCE_IP,
            data: vec![3; 20],
        }),
        Payload::Notify(Notify {
            protocol: ProtocolId::ESP,
            spi: vec![1, 2, 3, 4],
            ty: NotifyType::REKEY_SA,
            data: vec![],
        }),
        Payload::Delete(Delete {
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]],
        }),
        Payload::Delete(Delete { protocol: ProtocolId::IKE, spi_size: 0, spis: vec![] }),
        Payload::VendorId(b"strongSwan".to_vec()),
        Payload::TsI(vec![TrafficSelector {
            ts_type: TsType::TS_IPV4_ADDR_RANGE,
            ip_protocol: 0,
            start_port: 0,
            end_port: 65535,
            start_addr: IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)),
            end_addr: IpAddr::V4(Ipv4Addr::new(255, 255, 255, 255)),
        }]),
        Payload::TsR(vec![
            TrafficSelector {
                ts_type: TsType::TS_IPV4_ADDR_RANGE,
                ip_protocol: 17,
                start_port: 7000,
                end_port: 7000,
                start_addr: IpAddr::V4(Ipv4Addr::new(100, 64, 0, 0)),
                end_addr: IpAddr::V4(Ipv4Addr::new(100, 64, 255, 255)),
            },
            TrafficSelector {
                ts_type: TsType::TS_IPV6_ADDR_RANGE,
                ip_protocol: 0,
                start_port: 0,
                end_port: 65535,
                start_addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                end_addr: IpAddr::V6(Ipv6Addr::from([0xff; 16])),
            },
        ]),
        Payload::Cp { cfg_type: 1, data: vec![0, 1, 0, 0] },
        Payload::Unknown { ty: PayloadType(200), critical: false, body: vec![1, 2, 3] },
    ]
}

#[test]
fn every_payload_round_trips_in_a_message() {
    let msg = Message { header: header(ExchangeType::IKE_SA_INIT, flags::INITIATOR), payloads: every_payload() };
    let bytes = msg.emit();
    let parsed = Message::parse(&bytes).unwrap();
    assert_eq!(parsed.payloads, msg.payloads);
    assert_eq!(parsed.header.length as usize, bytes.len());
    assert_eq!(parsed.header.next_payload, PayloadType::SA);
    assert_eq!(parsed.emit(), bytes, "re-emission is byte-identical");
}

#[test]
fn encrypted_payload_is_last_and_reports_aad() {
    let payloads = vec![
        Payload::Notify(Notify { protocol: ProtocolId::NONE, spi: vec![], ty: NotifyType::COOKIE, data: vec![5; 8] }),
        Payload::Sk { next_inner: PayloadType::IDI, body: vec![0xaa; 64], aad_len: 0 },
    ];
    let bytes = Message { header: header(ExchangeType::IKE_AUTH, flags::INITIATOR), payloads }.emit();
    let parsed = Message::parse(&bytes).unwrap();
    match &parsed.payloads[1] {
        Payload::Sk { next_inner, body, aad_len } => {
            assert_eq!(*next_inner, PayloadType::IDI);
            assert_eq!(body.len(), 64);
            // header 28 + notify (4 + 4 + 8) + SK generic header 4
            assert_eq!(*aad_len, 28 + 16 + 4);
            assert_eq!(&bytes[*aad_len..], &body[..]);
        }
        p => panic!("not SK: {p:?}"),
    }
    let skf = vec![Payload::Skf { next_inner: PayloadType::NONE, number: 2, total: 3, body: vec![1; 40], aad_len: 0 }];
    let bytes = Message { header: header(ExchangeType::IKE_AUTH, flags::INITIATOR), payloads: skf }.emit();
    match &Message::parse(&bytes).unwrap().payloads[0] {
        Payload::Skf { number: 2, total: 3, aad_len, body, .. } => {
            assert_eq!(*aad_len, 28 + 8);
            assert_eq!(body.len(), 40);
        }
        p => panic!("not SKF: {p:?}"),
    }
}

#[test]
fn rejects_truncated_messages() {
    let bytes = Message { header: header(ExchangeType::IKE_SA_INIT, 0), payloads: every_payload() }.emit();
    for n in 0..bytes.len() {
        assert!(Message::parse(&bytes[..n]).is_err(), "prefix of {n} octets parsed");
        // A prefix with a header claiming exactly that length must still fail or parse consistently.
        if n >= HEADER_LEN {
            let mut fixed = bytes[..n].to_vec();
            fixed[24..28].copy_from_slice(&(n as u32).to_be_bytes());
            let _ = Message::parse(&fixed);
        }
    }
}

#[test]
fn rejects_trailing_garbage_and_bad_lengths() {
    let mut bytes =
        Message { header: header(ExchangeType::IKE_SA_INIT, 0), payloads: vec![Payload::Nonce(vec![1; 16])] }.emit();
    bytes.push(0);
    assert!(Message::parse(&bytes).is_err(), "datagram longer than header length");
    let n = bytes.len() as u32;
    bytes[24..28].copy_from_slice(&n.to_be_bytes());
    assert!(Message::parse(&bytes).is_err(), "octets after the last payload");
    // Payload length below 4.
    let mut bytes =
        Message { header: header(ExchangeType::IKE_SA_INIT, 0), payloads: vec![Payload::Nonce(vec![1; 16])] }.emit();
    bytes[30..32].copy_from_slice(&2u16.to_be_bytes());
    assert!(Message::parse(&bytes).is_err());
    // Version 1.
    let mut bytes = Message { header: header(ExchangeType::IKE_SA_INIT, 0), payloads: vec![] }.emit();
    bytes[17] = 0x10;
    assert_eq!(Message::parse(&bytes), Err(WireError::InvalidMajorVersion(1)));
}

#[test]
fn unknown_payloads_critical_or_not() {
    let ok =
        vec![Payload::Unknown { ty: PayloadType(99), critical: false, body: vec![1] }, Payload::Nonce(vec![2; 16])];
    let bytes = Message { header: header(ExchangeType::INFORMATIONAL, 0), payloads: ok.clone() }.emit();
    assert_eq!(Message::parse(&bytes).unwrap().payloads, ok);
    let crit = vec![Payload::Unknown { ty: PayloadType(99), critical: true, body: vec![1] }];
    let bytes = Message { header: header(ExchangeType::INFORMATIONAL, 0), payloads: crit }.emit();
    assert_eq!(Message::parse(&bytes), Err(WireError::UnsupportedCriticalPayload(99)));
}

#[test]
fn garbage_never_panics() {
    let mut rng = SeededRandom::new(42);
    let valid = Message { header: header(ExchangeType::IKE_SA_INIT, 0), payloads: every_payload() }.emit();
    let mut buf = vec![0u8; 2048];
    for i in 0..20_000 {
        let n = (i * 37) % buf.len();
        rng.fill_bytes(&mut buf[..n]);
        let _ = Message::parse(&buf[..n]);
        let _ = parse_payloads(PayloadType(buf.first().copied().unwrap_or(33)), &buf[..n]);
        // Mutate a valid message in a few places: structure mostly right, fields wrong.
        let mut m = valid.clone();
        for _ in 0..3 {
            let mut r = [0u8; 3];
            rng.fill_bytes(&mut r);
            let at = (usize::from(r[0]) << 8 | usize::from(r[1])) % m.len();
            m[at] = r[2];
        }
        if let Ok(parsed) = Message::parse(&m) {
            // Whatever parses re-emits to something that parses to the same payloads.
            let again = Message::parse(&parsed.emit()).unwrap();
            assert_eq!(again.payloads, parsed.payloads);
        }
    }
}

#[test]
fn emission_does_not_depend_on_buffer_contents() {
    let h = Header { length: 28, ..header(ExchangeType::CREATE_CHILD_SA, flags::RESPONSE) };
    let mut a = vec![0u8; HEADER_LEN];
    let mut b = vec![0xa5u8; HEADER_LEN];
    h.emit(&mut a);
    h.emit(&mut b);
    assert_eq!(a, b);
    assert_eq!(Header::parse(&a).unwrap(), h);
    assert!(Header::parse(&a).unwrap().is_response());
    let (first, chain) = emit_payloads(&every_payload());
    assert_eq!(first, PayloadType::SA);
    assert_eq!(parse_payloads(first, &chain).unwrap(), every_payload());
    assert_eq!(emit_payloads(&[]), (PayloadType::NONE, vec![]));
}

#[test]
fn sa_structure_errors() {
    let sa = vec![Payload::Sa(vec![Proposal {
        number: 1,
        protocol: ProtocolId::ESP,
        spi: vec![1, 2, 3, 4],
        transforms: vec![
            Transform::new(TransformType::ENCR, 12, Some(128)),
            Transform::new(TransformType::INTEG, 2, None),
        ],
    }])];
    let (first, good) = emit_payloads(&sa);
    assert!(parse_payloads(first, &good).is_ok());
    // Offsets: generic 4, proposal header 8, SPI 4, then transform 1 starts at 16: its "last" flag.
    let mut bad = good.clone();
    bad[16] = 0;
    assert!(parse_payloads(first, &bad).is_err(), "first transform marked last");
    let mut bad = good.clone();
    bad[4] = 1;
    assert!(parse_payloads(first, &bad).is_err(), "proposal 'last' = 1");
    // An attribute other than Key Length marks the transform unusable.
    let mut with_attr = good.clone();
    // transform 2 (INTEG) begins at 16 + 12 = 28; append a TV attribute of type 5 inside it.
    with_attr.splice(36..36, [0x80, 0x05, 0x00, 0x01]);
    for (at, delta) in [(2usize, 4u16), (6, 4), (30, 4)] {
        let v = u16::from_be_bytes([with_attr[at], with_attr[at + 1]]) + delta;
        with_attr[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
    match &parse_payloads(first, &with_attr).unwrap()[0] {
        Payload::Sa(p) => assert!(p[0].transforms[1].unknown_attributes),
        p => panic!("{p:?}"),
    }
}

#[test]
fn reassembler_joins_in_any_order_and_ignores_duplicates() {
    let mut r = Reassembler::new();
    assert_eq!(r.add(5, 2, 3, PayloadType::NONE, b"bb").unwrap(), None);
    assert_eq!(r.add(5, 2, 3, PayloadType::NONE, b"bb").unwrap(), None);
    assert_eq!(r.add(5, 3, 3, PayloadType::NONE, b"c").unwrap(), None);
    assert_eq!(r.add(4, 1, 2, PayloadType::SA, b"old").unwrap(), None, "older message ignored");
    assert_eq!(r.add(5, 1, 3, PayloadType::IDI, b"aa").unwrap(), Some((PayloadType::IDI, b"aabbc".to_vec())));
    assert_eq!(r.add(5, 3, 3, PayloadType::NONE, b"c").unwrap(), None, "late duplicate after completion");
    assert!(r.add(6, 1, 2, PayloadType::SA, b"x").unwrap().is_none());
    // Same message, more fragments: the sender re-fragmented smaller; the earlier fragment is dropped.
    assert_eq!(r.add(6, 2, 3, PayloadType::NONE, b"y").unwrap(), None);
    // Fewer fragments than the current set: stale, ignored (it would otherwise complete a 2-fragment message).
    assert_eq!(r.add(6, 2, 2, PayloadType::NONE, b"y").unwrap(), None);
    assert_eq!(r.add(6, 3, 3, PayloadType::NONE, b"z").unwrap(), None);
    assert_eq!(r.add(6, 1, 3, PayloadType::SA, b"x").unwrap(), Some((PayloadType::SA, b"xyz".to_vec())));
    assert!(r.add(7, 0, 2, PayloadType::SA, b"x").is_err());
    assert!(r.add(7, 3, 2, PayloadType::SA, b"x").is_err());
    assert!(r.add(7, 1, 1000, PayloadType::SA, b"x").is_err());
    let big = vec![0u8; 40 * 1024];
    assert!(r.add(8, 1, 2, PayloadType::SA, &big).unwrap().is_none());
    assert!(r.add(8, 2, 2, PayloadType::NONE, &big).is_err(), "over the size bound");
}

#[test]
fn code_points_print_rfc_names() {
    assert_eq!(format!("{:?}", NotifyType::NO_PROPOSAL_CHOSEN), "NO_PROPOSAL_CHOSEN");
    assert_eq!(format!("{:?}", NotifyType(12345)), "NotifyType(12345)");
    assert!(NotifyType::AUTHENTICATION_FAILED.is_error());
    assert!(!NotifyType::INITIAL_CONTACT.is_error());
}
