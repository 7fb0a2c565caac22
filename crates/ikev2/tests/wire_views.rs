//! The zero-copy views (`wire::packet`) and the structural rules built on them: SK/SKF last, SKF numbering,
//! unknown critical payloads in a decrypted chain, every view rejecting every short buffer.

use iotrelay_ikev2::wire::packet::*;
use iotrelay_ikev2::wire::*;

fn header() -> Header {
    Header {
        spi_i: 0x0102030405060708,
        spi_r: 0x1112131415161718,
        next_payload: PayloadType::NONE,
        version: 0x20,
        exchange: ExchangeType::IKE_AUTH,
        flags: flags::INITIATOR,
        message_id: 0x01020304,
        length: 0,
    }
}

fn nonce() -> Payload {
    Payload::Nonce(vec![7; 16])
}

#[test]
fn header_view_reads_named_fields() {
    let bytes = Message { header: header(), payloads: vec![nonce()] }.emit();
    let p = HeaderPacket::new_checked(&bytes[..]).unwrap();
    assert_eq!((p.spi_i(), p.spi_r()), (0x0102030405060708, 0x1112131415161718));
    assert_eq!((p.next_payload(), p.version(), p.exchange(), p.flags()), (40, 0x20, 35, 0x08));
    assert_eq!((p.message_id(), p.length() as usize), (0x01020304, bytes.len()));
    assert_eq!(p.payloads(), &bytes[HEADER_LEN..]);
    let g = GenericPayload::new_checked(p.payloads()).unwrap();
    assert_eq!((g.next_payload(), g.critical(), g.payload_length(), g.body()), (0, false, 20, &[7u8; 16][..]));
    for n in 0..HEADER_LEN {
        assert!(HeaderPacket::new_checked(&bytes[..n]).is_err());
    }
}

#[test]
fn header_setters_overwrite_junk() {
    let mut junk = [0xa5u8; HEADER_LEN];
    let mut clean = [0u8; HEADER_LEN];
    let h = Header { length: 28, ..header() };
    h.emit(&mut junk);
    h.emit(&mut clean);
    assert_eq!(junk, clean);
    let mut p = HeaderPacket::new_checked(&mut junk[..]).unwrap();
    p.set_message_id(9);
    assert_eq!(p.message_id(), 9);
    assert_eq!(Header::parse(&junk).unwrap(), Header { message_id: 9, ..h });
}

#[test]
fn views_reject_every_short_buffer() {
    // One valid instance of each structure; every prefix shorter than its stated length must be refused.
    let proposal = [0u8, 0, 0, 20, 1, 3, 4, 1, 1, 2, 3, 4, 0, 0, 0, 8, 1, 0, 0, 12];
    let transform = [0u8, 0, 0, 12, 1, 0, 0, 12, 0x80, 14, 0, 128];
    let tv = [0x80u8, 14, 0, 128];
    let tlv = [0x00u8, 5, 0, 2, 9, 9];
    let ts4 = [7u8, 0, 0, 16, 0, 0, 255, 255, 0, 0, 0, 0, 255, 255, 255, 255];
    let mut ts6 = vec![8u8, 6, 0, 40, 0, 0, 255, 255];
    ts6.extend_from_slice(&[0; 16]);
    ts6.extend_from_slice(&[0xff; 16]);
    let notify = [3u8, 4, 0x40, 0x09, 1, 2, 3, 4];
    let delete = [3u8, 4, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8];
    let generic = [0u8, 0, 0, 6, 1, 2];
    assert!(ProposalPacket::new_checked(&proposal[..]).is_ok());
    assert!(TransformPacket::new_checked(&transform[..]).is_ok());
    assert!(AttributePacket::new_checked(&tv[..]).is_ok());
    assert!(AttributePacket::new_checked(&tlv[..]).is_ok());
    assert!(TrafficSelectorPacket::new_checked(&ts4[..]).is_ok());
    assert!(TrafficSelectorPacket::new_checked(&ts6[..]).is_ok());
    assert!(NotifyPacket::new_checked(&notify[..]).is_ok());
    assert!(DeletePacket::new_checked(&delete[..]).is_ok());
    assert!(GenericPayload::new_checked(&generic[..]).is_ok());
    for n in 0..proposal.len() {
        assert!(ProposalPacket::new_checked(&proposal[..n]).is_err(), "proposal {n}");
    }
    for n in 0..transform.len() {
        assert!(TransformPacket::new_checked(&transform[..n]).is_err(), "transform {n}");
    }
    for n in 0..tlv.len() {
        assert!(AttributePacket::new_checked(&tlv[..n]).is_err(), "attribute {n}");
    }
    for n in 0..ts6.len() {
        assert!(TrafficSelectorPacket::new_checked(&ts6[..n]).is_err(), "ts6 {n}");
    }
    for n in 0..ts4.len() {
        assert!(TrafficSelectorPacket::new_checked(&ts4[..n]).is_err(), "ts4 {n}");
    }
    for n in 0..notify.len() - 4 {
        assert!(NotifyPacket::new_checked(&notify[..n]).is_err(), "notify {n}");
    }
    for n in 0..delete.len() {
        assert!(DeletePacket::new_checked(&delete[..n]).is_err(), "delete {n}");
    }
    for n in 0..generic.len() {
        assert!(GenericPayload::new_checked(&generic[..n]).is_err(), "generic {n}");
    }
    // Accessors on the valid views.
    let t = TrafficSelectorPacket::new_checked(&ts6[..]).unwrap();
    assert_eq!((t.ts_type(), t.ip_protocol(), t.start_port(), t.end_port()), (8, 6, 0, 65535));
    assert_eq!((t.start_addr(), t.end_addr()), (&[0u8; 16][..], &[0xffu8; 16][..]));
    let d = DeletePacket::new_checked(&delete[..]).unwrap();
    assert_eq!(d.spis().collect::<Vec<_>>(), vec![&[1u8, 2, 3, 4][..], &[5, 6, 7, 8][..]]);
    let p = ProposalPacket::new_checked(&proposal[..]).unwrap();
    assert_eq!((p.number(), p.protocol(), p.spi(), p.num_transforms()), (1, 3, &[1u8, 2, 3, 4][..], 1));
    let a = AttributePacket::new_checked(&tlv[..]).unwrap();
    assert_eq!((a.is_tv(), a.attribute_type(), a.total_len()), (false, 5, 6));
    // Wrong lengths inside structures.
    let mut bad_ts = ts4;
    bad_ts[3] = 24;
    assert!(TrafficSelectorPacket::new_checked(&bad_ts[..]).is_err(), "IPv4 selector claiming 24 octets");
    let mut bad_ts = ts4;
    bad_ts[0] = 9;
    assert!(TrafficSelectorPacket::new_checked(&bad_ts[..]).is_err(), "unknown selector type");
    assert!(DeletePacket::new_checked(&[1u8, 0, 0, 1][..]).is_err(), "IKE delete with an SPI count");
    assert!(DeletePacket::new_checked(&[3u8, 4, 0, 1, 1, 2, 3, 4, 5][..]).is_err(), "extra octet after SPIs");
}

#[test]
fn rejects_sk_not_last() {
    let sk = Payload::Sk { next_inner: PayloadType::IDI, body: vec![0xaa; 48], aad_len: 0 };
    let good = Message { header: header(), payloads: vec![nonce(), sk.clone()] }.emit();
    assert!(Message::parse(&good).is_ok());
    // The SK payload's "next payload" names the first inner payload, so anything after SK is outside the chain.
    let mut bad = good.clone();
    bad.extend_from_slice(&[0, 0, 0, 20]);
    bad.extend_from_slice(&[7; 16]);
    let n = bad.len() as u32;
    bad[24..28].copy_from_slice(&n.to_be_bytes());
    assert_eq!(Message::parse(&bad), Err(WireError::InvalidSyntax("data after the encrypted payload")));
    let skf = Payload::Skf { next_inner: PayloadType::IDI, number: 1, total: 2, body: vec![1; 32], aad_len: 0 };
    let (first, mut chain) = emit_payloads(&[skf]);
    chain.extend_from_slice(&[0, 0, 0, 4]);
    assert!(parse_payloads(first, &chain).is_err(), "data after SKF");
}

#[test]
fn skf_numbering_is_validated() {
    let emit = |number, total, next| {
        let skf = Payload::Skf { next_inner: next, number, total, body: vec![1; 16], aad_len: 0 };
        Message { header: header(), payloads: vec![skf] }.emit()
    };
    assert!(Message::parse(&emit(1, 1, PayloadType::IDI)).is_ok());
    assert!(Message::parse(&emit(3, 3, PayloadType::NONE)).is_ok());
    assert!(Message::parse(&emit(0, 3, PayloadType::NONE)).is_err(), "number 0");
    assert!(Message::parse(&emit(4, 3, PayloadType::NONE)).is_err(), "number above total");
    assert!(Message::parse(&emit(1, 0, PayloadType::IDI)).is_err(), "total 0");
    assert!(Message::parse(&emit(2, 3, PayloadType::IDI)).is_err(), "next payload set after fragment 1");
    // A truncated SKF header (fewer than 4 octets after the generic header).
    let bytes = emit(1, 1, PayloadType::IDI);
    let mut short = bytes[..HEADER_LEN + 4 + 2].to_vec();
    short[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&6u16.to_be_bytes());
    let n = short.len() as u32;
    short[24..28].copy_from_slice(&n.to_be_bytes());
    assert!(Message::parse(&short).is_err());
}

#[test]
fn unknown_critical_payload_inside_decrypted_chain() {
    let chain = vec![nonce(), Payload::Unknown { ty: PayloadType(200), critical: true, body: vec![1, 2, 3] }];
    let (first, bytes) = emit_payloads(&chain);
    assert_eq!(parse_payloads(first, &bytes), Err(WireError::UnsupportedCriticalPayload(200)));
    // The critical bit on a known payload is not an error (RFC 7296 §2.5: it only matters for unknown types).
    let (first, mut bytes) = emit_payloads(&[nonce()]);
    bytes[1] = 0x80;
    assert_eq!(parse_payloads(first, &bytes).unwrap(), vec![nonce()]);
}

#[test]
fn every_payload_type_round_trips_alone() {
    use std::net::{IpAddr, Ipv6Addr};
    let all = vec![
        Payload::Ke { group: 31, data: vec![9; 32] },
        Payload::IdI(Identification { id_type: IdType::ID_KEY_ID, data: b"k".to_vec() }),
        Payload::IdR(Identification { id_type: IdType::ID_IPV6_ADDR, data: vec![0x20; 16] }),
        Payload::Cert { encoding: 4, data: vec![] },
        Payload::CertReq { encoding: 4, data: vec![0; 20] },
        Payload::Auth { method: AuthMethod::SHARED_KEY_MIC, data: vec![1; 32] },
        Payload::Nonce(vec![]),
        Payload::Notify(Notify { protocol: ProtocolId::NONE, spi: vec![], ty: NotifyType(40000), data: vec![] }),
        Payload::Delete(Delete { protocol: ProtocolId::ESP, spi_size: 4, spis: vec![] }),
        Payload::VendorId(vec![]),
        Payload::TsI(vec![]),
        Payload::TsR(vec![TrafficSelector {
            ts_type: TsType::TS_IPV6_ADDR_RANGE,
            ip_protocol: 58,
            start_port: 1,
            end_port: 2,
            start_addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            end_addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
        }]),
        Payload::Cp { cfg_type: 1, data: vec![0, 1, 0, 0] },
        Payload::Sa(vec![Proposal {
            number: 1,
            protocol: ProtocolId::ESP,
            spi: vec![1, 2, 3, 4],
            transforms: vec![Transform {
                ty: TransformType::ENCR,
                id: 12,
                key_length: Some(256),
                unknown_attributes: true,
                extra_attributes: vec![0x00, 0x05, 0x00, 0x01, 0xff],
            }],
        }]),
        Payload::Unknown { ty: PayloadType(48), critical: false, body: vec![1] },
        Payload::Sk { next_inner: PayloadType::NONE, body: vec![], aad_len: 0 },
        Payload::Skf { next_inner: PayloadType::NONE, number: 1, total: 1, body: vec![], aad_len: 0 },
    ];
    for p in all {
        let msg = Message { header: header(), payloads: vec![p.clone()] };
        let bytes = msg.emit();
        let parsed = Message::parse(&bytes).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        let mut want = p.clone();
        match &mut want {
            Payload::Sk { aad_len, .. } => *aad_len = HEADER_LEN + 4,
            Payload::Skf { aad_len, .. } => *aad_len = HEADER_LEN + 8,
            _ => {}
        }
        assert_eq!(parsed.payloads, vec![want], "{p:?}");
        assert_eq!(parsed.emit(), bytes);
        for n in 0..bytes.len() {
            assert!(Message::parse(&bytes[..n]).is_err());
        }
    }
}

#[test]
fn emit_into_matches_emit_for_every_payload() {
    use iotrelay_crypto::{RandomSource, SeededRandom};
    let mut rng = SeededRandom::new(7);
    let msgs = [
        Message { header: header(), payloads: vec![] },
        Message { header: header(), payloads: vec![nonce(), nonce()] },
        Message {
            header: header(),
            payloads: vec![
                Payload::Delete(Delete { protocol: ProtocolId::ESP, spi_size: 4, spis: vec![vec![1, 2, 3, 4]] }),
                Payload::Skf { next_inner: PayloadType::IDI, number: 1, total: 9, body: vec![3; 33], aad_len: 0 },
            ],
        },
    ];
    for m in msgs {
        let want = m.emit();
        assert_eq!(m.buffer_len(), want.len());
        let mut buf = vec![0u8; want.len()];
        rng.fill_bytes(&mut buf);
        assert_eq!(m.emit_into(&mut buf), Ok(want.len()));
        assert_eq!(buf, want);
    }
}
