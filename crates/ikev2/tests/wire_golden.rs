//! Golden messages captured from real strongSwan 5.9 charons (`tests/golden/capture.sh`): every message parses,
//! has the structure strongSwan logged, and re-emits byte-identically; every prefix and any trailing garbage is
//! rejected.

use iotrelay_ikev2::wire::*;
use std::path::PathBuf;

struct Golden {
    name: String,
    bytes: Vec<u8>,
}

fn golden() -> Vec<Golden> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/golden") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("hex") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("hex file");
        let hex: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit")).collect();
        out.push(Golden { name: path.file_name().unwrap().to_string_lossy().into_owned(), bytes });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(out.len() >= 12, "expected the captured golden messages, found {}", out.len());
    out
}

fn one(name: &str) -> Message {
    let g = golden().into_iter().find(|g| g.name == name).unwrap_or_else(|| panic!("{name} missing"));
    Message::parse(&g.bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn notify_types(m: &Message) -> Vec<NotifyType> {
    m.payloads
        .iter()
        .filter_map(|p| match p {
            Payload::Notify(n) => Some(n.ty),
            _ => None,
        })
        .collect()
}

fn types(m: &Message) -> Vec<PayloadType> {
    m.payloads.iter().map(Payload::payload_type).collect()
}

#[test]
fn every_golden_message_reemits_byte_identical() {
    for g in golden() {
        let m = Message::parse(&g.bytes).unwrap_or_else(|e| panic!("{}: {e}", g.name));
        assert_eq!(m.header.length as usize, g.bytes.len(), "{}", g.name);
        assert_eq!(m.emit(), g.bytes, "{}: re-emission differs", g.name);
        // The header view alone agrees with the message.
        assert_eq!(Header::parse(&g.bytes).unwrap(), m.header, "{}", g.name);
    }
}

#[test]
fn rejects_truncated_golden_messages() {
    for g in golden() {
        for n in 0..g.bytes.len() {
            assert!(Message::parse(&g.bytes[..n]).is_err(), "{}: prefix of {n} octets accepted", g.name);
        }
    }
}

#[test]
fn rejects_truncated_golden_messages_with_fixed_up_length() {
    // Same prefixes, but with the header length patched to match: now the payload chain itself is short.
    for g in golden() {
        for n in HEADER_LEN..g.bytes.len() {
            let mut b = g.bytes[..n].to_vec();
            b[24..28].copy_from_slice(&(n as u32).to_be_bytes());
            assert!(Message::parse(&b).is_err(), "{}: fixed-up prefix of {n} octets accepted", g.name);
        }
    }
}

#[test]
fn rejects_trailing_garbage_after_golden_messages() {
    for g in golden() {
        for extra in [&[0u8][..], &[0, 0, 0, 4], &[0xff; 9]] {
            let mut b = g.bytes.clone();
            b.extend_from_slice(extra);
            assert!(Message::parse(&b).is_err(), "{}: garbage accepted (length unchanged)", g.name);
            let len = b.len() as u32;
            b[24..28].copy_from_slice(&len.to_be_bytes());
            assert!(Message::parse(&b).is_err(), "{}: garbage accepted (length patched)", g.name);
        }
    }
}

fn check_ike_sa_init_request(m: &Message, encr: (u16, u16), prf: u16, integ: Option<u16>, dh: u16, ke_len: usize) {
    let h = &m.header;
    assert_eq!(h.exchange, ExchangeType::IKE_SA_INIT);
    assert!(h.is_initiator() && !h.is_response());
    assert_eq!((h.version, h.message_id, h.spi_r), (0x20, 0, 0));
    assert_ne!(h.spi_i, 0);
    assert_eq!(&types(m)[..3], &[PayloadType::SA, PayloadType::KE, PayloadType::NONCE]);
    let Payload::Sa(props) = &m.payloads[0] else { panic!("SA first") };
    assert_eq!(props.len(), 1);
    let p = &props[0];
    assert_eq!((p.number, p.protocol, p.spi.len()), (1, ProtocolId::IKE, 0));
    let find = |ty| p.transforms.iter().filter(|t| t.ty == ty).collect::<Vec<_>>();
    let e = find(TransformType::ENCR);
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].id, e[0].key_length), (encr.0, Some(encr.1)));
    assert!(p.transforms.iter().all(|t| !t.unknown_attributes));
    assert_eq!(find(TransformType::PRF).iter().map(|t| t.id).collect::<Vec<_>>(), vec![prf]);
    assert_eq!(
        find(TransformType::INTEG).iter().map(|t| t.id).collect::<Vec<_>>(),
        integ.into_iter().collect::<Vec<_>>()
    );
    assert_eq!(find(TransformType::DH).iter().map(|t| t.id).collect::<Vec<_>>(), vec![dh]);
    let Payload::Ke { group, data } = &m.payloads[1] else { panic!("KE second") };
    assert_eq!((*group, data.len()), (dh, ke_len));
    let Payload::Nonce(n) = &m.payloads[2] else { panic!("Nonce third") };
    assert!((16..=256).contains(&n.len()));
    let nt = notify_types(m);
    for want in [
        NotifyType::NAT_DETECTION_SOURCE_IP,
        NotifyType::NAT_DETECTION_DESTINATION_IP,
        NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
        NotifyType::SIGNATURE_HASH_ALGORITHMS,
    ] {
        assert!(nt.contains(&want), "{want:?} missing in {nt:?}");
    }
    for p in &m.payloads {
        if let Payload::Notify(n) = p
            && (n.ty == NotifyType::NAT_DETECTION_SOURCE_IP || n.ty == NotifyType::NAT_DETECTION_DESTINATION_IP)
        {
            assert_eq!((n.protocol, n.spi.len(), n.data.len()), (ProtocolId::NONE, 0, 20), "SHA-1 hash");
        }
    }
}

fn check_ike_sa_init_response(m: &Message, req: &Message, dh: u16) {
    let h = &m.header;
    assert_eq!(h.exchange, ExchangeType::IKE_SA_INIT);
    assert!(h.is_response() && !h.is_initiator());
    assert_eq!((h.spi_i, h.message_id), (req.header.spi_i, 0));
    assert_ne!(h.spi_r, 0);
    assert_eq!(&types(m)[..3], &[PayloadType::SA, PayloadType::KE, PayloadType::NONCE]);
    let (Payload::Sa(chosen), Payload::Sa(offered)) = (&m.payloads[0], &req.payloads[0]) else { panic!() };
    assert_eq!(chosen, offered, "one proposal offered, the same one chosen");
    let Payload::Ke { group, .. } = &m.payloads[1] else { panic!() };
    assert_eq!(*group, dh);
    assert!(notify_types(m).contains(&NotifyType::IKEV2_FRAGMENTATION_SUPPORTED));
}

/// IKE_AUTH request: the header and one SK payload whose first inner payload is IDi. `iv` and `icv` are the
/// suite's IV and ICV sizes: the body is IV | ciphertext (whole blocks for CBC) | ICV.
fn check_ike_auth_request(m: &Message, init: &Message, iv: usize, icv: usize, block: usize) {
    let h = &m.header;
    assert_eq!(h.exchange, ExchangeType::IKE_AUTH);
    assert!(h.is_initiator() && !h.is_response());
    assert_eq!(h.message_id, 1);
    assert_eq!(h.spi_i, init.header.spi_i);
    assert_ne!(h.spi_r, 0);
    assert_eq!(m.payloads.len(), 1);
    let Payload::Sk { next_inner, body, aad_len } = &m.payloads[0] else { panic!("SK") };
    assert_eq!(*next_inner, PayloadType::IDI);
    assert_eq!(*aad_len, HEADER_LEN + GENERIC_HEADER_LEN);
    assert_eq!(*aad_len + body.len(), h.length as usize);
    assert!(body.len() > iv + icv);
    assert_eq!((body.len() - iv - icv) % block, 0, "ciphertext is whole blocks");
}

#[test]
fn strongswan_aes128_sha1_modp1024() {
    let req = one("aes128-sha1-modp1024-1-ike_sa_init-request.hex");
    // ENCR_AES_CBC (12) 128, PRF_HMAC_SHA1 (2), AUTH_HMAC_SHA1_96 (2), MODP 1024 (group 2, 128-octet KE).
    check_ike_sa_init_request(&req, (12, 128), 2, Some(2), 2, 128);
    // charon logged: [ SA KE No N(NATD_S_IP) N(NATD_D_IP) N(FRAG_SUP) N(HASH_ALG) N(REDIR_SUP) ]
    assert_eq!(
        notify_types(&req),
        vec![
            NotifyType::NAT_DETECTION_SOURCE_IP,
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
            NotifyType::SIGNATURE_HASH_ALGORITHMS,
            NotifyType::REDIRECT_SUPPORTED,
        ]
    );
    assert_eq!(format!("{:?}", notify_types(&req)[4]), "REDIRECT_SUPPORTED");
    let resp = one("aes128-sha1-modp1024-2-ike_sa_init-response.hex");
    check_ike_sa_init_response(&resp, &req, 2);
    // charon logged: [ SA KE No N(NATD_S_IP) N(NATD_D_IP) N(FRAG_SUP) N(HASH_ALG) N(CHDLESS_SUP) N(MULT_AUTH) ]
    assert_eq!(
        notify_types(&resp)[3..],
        [
            NotifyType::SIGNATURE_HASH_ALGORITHMS,
            NotifyType::CHILDLESS_IKEV2_SUPPORTED,
            NotifyType::MULTIPLE_AUTH_SUPPORTED
        ]
    );
    let auth = one("aes128-sha1-modp1024-3-ike_auth-request.hex");
    // AES-CBC: 16-octet IV, 16-octet blocks; HMAC-SHA1-96: 12-octet ICV.
    check_ike_auth_request(&auth, &req, 16, 12, 16);
    let auth_resp = one("aes128-sha1-modp1024-4-ike_auth-response.hex");
    assert!(auth_resp.header.is_response());
    assert!(matches!(auth_resp.payloads[..], [Payload::Sk { next_inner: PayloadType::IDR, .. }]));
}

#[test]
fn strongswan_aes256gcm16_prfsha384_ecp384() {
    let req = one("aes256gcm16-prfsha384-ecp384-1-ike_sa_init-request.hex");
    // ENCR_AES_GCM_16 (20) 256, PRF_HMAC_SHA2_384 (6), no integrity transform, ECP 384 (group 20: x | y = 96).
    check_ike_sa_init_request(&req, (20, 256), 6, None, 20, 96);
    let resp = one("aes256gcm16-prfsha384-ecp384-2-ike_sa_init-response.hex");
    check_ike_sa_init_response(&resp, &req, 20);
    let auth = one("aes256gcm16-prfsha384-ecp384-3-ike_auth-request.hex");
    // AES-GCM: 8-octet IV, 16-octet ICV, any length (RFC 5282).
    check_ike_auth_request(&auth, &req, 8, 16, 1);
}

#[test]
fn strongswan_fragmented_ike_auth() {
    let req = one("skf-1-ike_sa_init-request.hex");
    // PRF_HMAC_SHA2_256 (5), AUTH_HMAC_SHA2_256_128 (12), MODP 2048 (group 14).
    check_ike_sa_init_request(&req, (12, 128), 5, Some(12), 14, 256);
    let f1 = one("skf-3-ike_auth-request.hex");
    let f2 = one("skf-4-ike_auth-request.hex");
    for (m, want_number, want_next) in [(&f1, 1, PayloadType::IDI), (&f2, 2, PayloadType::NONE)] {
        assert_eq!(m.header.exchange, ExchangeType::IKE_AUTH);
        assert_eq!(m.header.message_id, 1);
        assert_eq!(m.payloads.len(), 1);
        let Payload::Skf { next_inner, number, total, body, aad_len } = &m.payloads[0] else { panic!("SKF") };
        assert_eq!((*number, *total, *next_inner), (want_number, 2, want_next));
        // RFC 7383 §2.5: the AAD runs through the fragment number and total.
        assert_eq!(*aad_len, HEADER_LEN + GENERIC_HEADER_LEN + 4);
        assert_eq!(*aad_len + body.len(), m.header.length as usize);
    }
}

#[test]
fn golden_messages_emit_into_junk_filled_buffers() {
    for g in golden() {
        let m = Message::parse(&g.bytes).unwrap();
        assert_eq!(m.buffer_len(), g.bytes.len(), "{}", g.name);
        for junk in [0x00u8, 0xa5, 0xff] {
            let mut buf = vec![junk; g.bytes.len() + 7];
            let n = m.emit_into(&mut buf).unwrap();
            assert_eq!(&buf[..n], &g.bytes[..], "{}: junk {junk:#x} shows through", g.name);
            assert!(buf[n..].iter().all(|&b| b == junk), "{}: wrote past the message", g.name);
        }
        let mut short = vec![0u8; g.bytes.len() - 1];
        assert!(m.emit_into(&mut short).is_err(), "{}: short buffer accepted", g.name);
    }
}
