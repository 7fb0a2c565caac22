//! Known-answer tests: RFC vectors, and values computed independently by `gen_kat.py`
//! (Python hmac/hashlib, pyca/cryptography, integer pow).

use iotrelay_crypto::kdf::{child_sa_keys, ike_sa_keys, psk_auth, skeyseed, skeyseed_rekey};
use iotrelay_crypto::proposal::{EspProposal, IkeProposal};
use iotrelay_crypto::{CryptoError, DhGroup, Encr, Integ, Prf, RandomSource, SaCipher, SeededRandom};

#[allow(dead_code)]
mod kat_generated;
use kat_generated as k;

mod common;
use common::{Fixed, h};

#[test]
fn hmac_over_several_slices_equals_one() {
    // The PRF takes its input in pieces (prf+ feeds T(n-1) | S | n): the pieces must hash as one string. RFC 4231
    // test case 2 (the vectors themselves are in rfc_vectors.rs).
    let data = b"what do ya want for nothing?";
    assert_eq!(
        Prf::HmacSha256.compute(b"Jefe", &[&data[..10], &data[10..]]).to_vec(),
        h("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    );
}

#[test]
fn prf_plus_and_ike_keys_match_independent_computation() {
    assert_eq!(
        Prf::HmacSha512.prf_plus(&h(&filler(64, 5)), &h(&filler(40, 6)), 300).to_vec(),
        h(k::PRF_PLUS_SHA512_300)
    );
    let (ni, nr, gir) = (h(k::NI), h(k::NR), h(k::GIR));
    let sks = skeyseed(Prf::HmacSha1, &ni, &nr, &gir);
    assert_eq!(sks.to_vec(), h(k::SKEYSEED_SHA1));
    let keys = ike_sa_keys(
        Prf::HmacSha1,
        &sks,
        &ni,
        &nr,
        0x8035ad4451a597a3,
        0xca77882f005cd577,
        Encr::AesCbc128,
        Some(Integ::HmacSha1_96),
    );
    let all: Vec<u8> = [&keys.sk_d, &keys.sk_ai, &keys.sk_ar, &keys.sk_ei, &keys.sk_er, &keys.sk_pi, &keys.sk_pr]
        .iter()
        .flat_map(|v| v.to_vec())
        .collect();
    assert_eq!(all, h(k::IKE_KEYMAT_SHA1_CBC128));
    assert_eq!((keys.sk_d.len(), keys.sk_ai.len(), keys.sk_ei.len(), keys.sk_pi.len()), (20, 20, 16, 20));
    assert_eq!(skeyseed_rekey(Prf::HmacSha1, &keys.sk_d, &gir, &ni, &nr).to_vec(), h(k::SKEYSEED_REKEY_SHA1));

    let sks = skeyseed(Prf::HmacSha384, &ni, &nr, &gir);
    assert_eq!(sks.to_vec(), h(k::SKEYSEED_SHA384));
    let keys =
        ike_sa_keys(Prf::HmacSha384, &sks, &ni, &nr, 0x8035ad4451a597a3, 0xca77882f005cd577, Encr::AesGcm16_256, None);
    assert!(keys.sk_ai.is_empty() && keys.sk_ar.is_empty());
    let all: Vec<u8> =
        [&keys.sk_d, &keys.sk_ei, &keys.sk_er, &keys.sk_pi, &keys.sk_pr].iter().flat_map(|v| v.to_vec()).collect();
    assert_eq!(all, h(k::IKE_KEYMAT_SHA384_GCM256));
}

/// The same deterministic filler as gen_kat.py's b().
fn filler(n: usize, seed: usize) -> String {
    hex::encode((0..n).map(|i| ((seed * 31 + i * 7) % 256) as u8).collect::<Vec<_>>())
}

#[test]
fn child_keys_match_independent_computation() {
    let (ni, nr, gir, skd) = (h(k::NI), h(k::NR), h(k::GIR), h(k::SKD256));
    let c = child_sa_keys(Prf::HmacSha256, &skd, Some(&gir), &ni, &nr, Encr::AesCbc256, Some(Integ::HmacSha256_128));
    let all: Vec<u8> = [
        &c.initiator_to_responder.encr_key,
        &c.initiator_to_responder.integ_key,
        &c.responder_to_initiator.encr_key,
        &c.responder_to_initiator.integ_key,
    ]
    .iter()
    .flat_map(|v| v.to_vec())
    .collect();
    assert_eq!(all, h(k::CHILD_KEYMAT_SHA256_CBC256_PFS));
    let c = child_sa_keys(Prf::HmacSha256, &skd, None, &ni, &nr, Encr::AesGcm16_128, None);
    assert!(c.initiator_to_responder.integ_key.is_empty());
    let all = [c.initiator_to_responder.encr_key.to_vec(), c.responder_to_initiator.encr_key.to_vec()].concat();
    assert_eq!(all, h(k::CHILD_KEYMAT_SHA256_GCM128));
    assert!(!format!("{:?}", c.initiator_to_responder).contains(&hex::encode(&c.initiator_to_responder.encr_key[..4])));
}

#[test]
fn psk_auth_matches_independent_computation() {
    assert_eq!(psk_auth(Prf::HmacSha256, b"aws-tunnel1-psk._0", &h(k::SIGNED)).to_vec(), h(k::PSK_AUTH_SHA256));
}

#[test]
fn sa_cipher_matches_independent_computation() {
    let (aad, iv16, iv8, data) = (h(k::AAD), h(k::IV16), h(k::IV8), h(k::DATA));
    for (encr, integ, ek, ak, ct, icv) in [
        (
            Encr::AesCbc128,
            Integ::HmacSha1_96,
            k::CBC128_SHA1_EK,
            k::CBC128_SHA1_AK,
            k::CBC128_SHA1_CT,
            k::CBC128_SHA1_ICV,
        ),
        (
            Encr::AesCbc256,
            Integ::HmacSha256_128,
            k::CBC256_SHA256_EK,
            k::CBC256_SHA256_AK,
            k::CBC256_SHA256_CT,
            k::CBC256_SHA256_ICV,
        ),
        (
            Encr::AesCbc128,
            Integ::HmacSha384_192,
            k::CBC128_SHA384_EK,
            k::CBC128_SHA384_AK,
            k::CBC128_SHA384_CT,
            k::CBC128_SHA384_ICV,
        ),
        (
            Encr::AesCbc256,
            Integ::HmacSha512_256,
            k::CBC256_SHA512_EK,
            k::CBC256_SHA512_AK,
            k::CBC256_SHA512_CT,
            k::CBC256_SHA512_ICV,
        ),
    ] {
        let c = SaCipher::new(encr, Some(integ), &h(ek), &h(ak)).unwrap();
        let mut buf = data.clone();
        let mut tag = vec![0u8; c.icv_len()];
        c.seal_in_place(&aad, &iv16, &mut buf, &mut tag).unwrap();
        assert_eq!((hex::encode(&buf), hex::encode(&tag)), (ct.to_string(), icv.to_string()), "{encr:?} {integ:?}");
        c.open_in_place(&aad, &iv16, &mut buf, &tag).unwrap();
        assert_eq!(buf, data);
    }
    for (encr, ek, ct, icv) in [
        (Encr::AesGcm16_128, k::GCM128_EK, k::GCM128_CT, k::GCM128_ICV),
        (Encr::AesGcm16_256, k::GCM256_EK, k::GCM256_CT, k::GCM256_ICV),
    ] {
        let c = SaCipher::new(encr, None, &h(ek), &[]).unwrap();
        let mut buf = data[..61].to_vec();
        let mut tag = [0u8; 16];
        c.seal_in_place(&aad, &iv8, &mut buf, &mut tag).unwrap();
        assert_eq!((hex::encode(&buf), hex::encode(tag)), (ct.to_string(), icv.to_string()), "{encr:?}");
        c.open_in_place(&aad, &iv8, &mut buf, &tag).unwrap();
        assert_eq!(buf, data[..61]);
    }
}

#[test]
fn sa_cipher_detects_tampering_and_bad_lengths() {
    let mut rng = SeededRandom::new(1);
    for encr in Encr::ALL {
        let integs: Vec<Option<Integ>> =
            if encr.is_aead() { vec![None] } else { Integ::ALL.iter().map(|i| Some(*i)).collect() };
        for integ in integs {
            let mut ek = vec![0u8; encr.key_material_len()];
            let mut ak = vec![0u8; integ.map_or(0, |i| i.key_len())];
            rng.fill_bytes(&mut ek);
            rng.fill_bytes(&mut ak);
            let c = SaCipher::new(encr, integ, &ek, &ak).unwrap();
            let aad = [1u8, 2, 3, 4, 5, 6, 7, 8];
            let iv = vec![9u8; c.iv_len()];
            let plain = vec![0x5au8; 48];
            let mut data = plain.clone();
            let mut icv = vec![0u8; c.icv_len()];
            c.seal_in_place(&aad, &iv, &mut data, &mut icv).unwrap();
            assert_ne!(data, plain);
            let sealed = data.clone();
            // Flip one bit in each input in turn: always IntegrityCheckFailed.
            for target in 0..4 {
                let (mut a, mut v, mut d, mut t) = (aad.to_vec(), iv.clone(), sealed.clone(), icv.clone());
                match target {
                    0 => a[3] ^= 1,
                    1 => v[0] ^= 0x80,
                    2 => d[17] ^= 4,
                    _ => t[0] ^= 1,
                }
                assert_eq!(
                    c.open_in_place(&a, &v, &mut d, &t),
                    Err(CryptoError::IntegrityCheckFailed),
                    "{encr:?} {integ:?} {target}"
                );
            }
            let mut d = sealed.clone();
            c.open_in_place(&aad, &iv, &mut d, &icv).unwrap();
            assert_eq!(d, plain);
            // Wrong lengths are errors, never panics.
            assert!(c.open_in_place(&aad, &iv[1..], &mut d.clone(), &icv).is_err());
            assert!(c.open_in_place(&aad, &iv, &mut d.clone(), &icv[1..]).is_err());
            if !encr.is_aead() {
                assert!(c.seal_in_place(&aad, &iv, &mut [0u8; 17], &mut icv.clone()).is_err());
            }
        }
        assert!(SaCipher::new(encr, None, &[0u8; 3], &[]).is_err());
    }
    assert!(SaCipher::new(Encr::AesCbc128, None, &[0u8; 16], &[]).is_err());
    assert!(SaCipher::new(Encr::AesGcm16_128, Some(Integ::HmacSha1_96), &[0u8; 20], &[0u8; 20]).is_err());
    assert!(SaCipher::new(Encr::AesCbc128, Some(Integ::HmacSha256_128), &[0u8; 16], &[0u8; 20]).is_err());
}

#[test]
fn ecdh_matches_independent_computation() {
    for (group, da, puba, pubb, shared) in [
        (DhGroup::Ecp256, k::P256_DA, k::P256_PUBA, k::P256_PUBB, k::P256_SHARED),
        (DhGroup::Ecp384, k::P384_DA, k::P384_PUBA, k::P384_PUBB, k::P384_SHARED),
        (DhGroup::Ecp521, k::P521_DA, k::P521_PUBA, k::P521_PUBB, k::P521_SHARED),
    ] {
        let a = group.generate(&mut Fixed(h(da)));
        assert_eq!(hex::encode(a.public_value()), puba, "{group:?}");
        assert_eq!(hex::encode(a.shared_secret(&h(pubb)).unwrap()), shared, "{group:?}");
        // Off-curve point, identity-like zeros, wrong length: rejected.
        let mut bad = h(pubb);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(a.shared_secret(&bad).is_err());
        assert!(a.shared_secret(&vec![0u8; group.public_len()]).is_err());
        assert!(a.shared_secret(&h(pubb)[1..]).is_err());
    }
}

#[test]
fn x25519_rejects_non_contributory_and_short_values() {
    // The RFC 7748 vectors are in rfc_vectors.rs; here: a low-order point (all zeros) gives a non-contributory
    // secret, and a short value is not a point.
    let a =
        DhGroup::Curve25519.generate(&mut Fixed(h("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")));
    assert!(a.shared_secret(&[0u8; 32]).is_err());
    assert!(a.shared_secret(&[9u8; 31]).is_err());
}

#[test]
fn modp2048_matches_integer_pow() {
    let a = DhGroup::Modp2048.generate(&mut Fixed(h(k::MODP2048_XA)));
    assert_eq!(hex::encode(a.public_value()), k::MODP2048_YA);
    assert_eq!(hex::encode(a.shared_secret(&h(k::MODP2048_YB)).unwrap()), k::MODP2048_SHARED);
}

#[test]
fn every_group_agrees_and_rejects_bad_public_values() {
    let mut rng = SeededRandom::new(7);
    for group in DhGroup::ALL {
        let a = group.generate(&mut rng);
        let b = group.generate(&mut rng);
        assert_eq!(a.public_value().len(), group.public_len(), "{group:?}");
        let s1 = a.shared_secret(b.public_value()).unwrap();
        let s2 = b.shared_secret(a.public_value()).unwrap();
        assert_eq!(s1, s2, "{group:?}");
        assert_ne!(a.public_value(), b.public_value());
        let n = group.public_len();
        assert!(a.shared_secret(&b.public_value()[1..]).is_err(), "{group:?} short");
        assert!(a.shared_secret(&[b.public_value(), &[0]].concat()).is_err(), "{group:?} long");
        if !matches!(group, DhGroup::Ecp256 | DhGroup::Ecp384 | DhGroup::Ecp521 | DhGroup::Curve25519) {
            let mut one = vec![0u8; n];
            one[n - 1] = 1;
            assert!(a.shared_secret(&vec![0u8; n]).is_err(), "{group:?} 0");
            assert!(a.shared_secret(&one).is_err(), "{group:?} 1");
            assert!(a.shared_secret(&vec![0xffu8; n]).is_err(), "{group:?} > p");
        }
        assert!(!format!("{a:?}").contains(&hex::encode(&s1[..8])));
    }
    // p-1 and p for group 14 (p = 2^2048 - ...; p-1 ends in ...fe, p in ...ff).
    let a = DhGroup::Modp2048.generate(&mut rng);
    let mut p_minus_1 = vec![0xffu8; 256];
    p_minus_1[255] = 0xfe;
    assert!(a.shared_secret(&p_minus_1).is_err());
    assert!(a.shared_secret(&[0xffu8; 256]).is_err());
    // RFC 5114 group: a value of full order (not in the q-subgroup) is rejected: p-2 has order 2q or so.
    let a = DhGroup::Modp2048s256.generate(&mut rng);
    let mut two = vec![0u8; 256];
    two[255] = 2;
    assert!(a.shared_secret(&two).is_err(), "2 is not in the prime-order subgroup of RFC 5114 group 24");
}

#[test]
fn proposals_parse_and_round_trip() {
    let p = IkeProposal::parse("aes128-sha1-modp1024").unwrap();
    assert_eq!(
        (p.encr.clone(), p.integ.clone(), p.prf.clone(), p.dh.clone()),
        (vec![Encr::AesCbc128], vec![Integ::HmacSha1_96], vec![Prf::HmacSha1], vec![DhGroup::Modp1024])
    );
    assert_eq!(p.to_string(), "aes128-sha1-prfsha1-modp1024");
    let p = IkeProposal::parse("aes256gcm16-prfsha384-ecp384").unwrap();
    assert!(p.integ.is_empty());
    assert_eq!(p.prf, vec![Prf::HmacSha384]);
    // The contract: integrity is not allowed with only GCM (the PRF is written prfsha384).
    assert_eq!(IkeProposal::parse("aes256gcm16-sha384-ecp384").unwrap_err().token, "sha384");
    for s in iotrelay_crypto::proposal::DEFAULT_IKE_PROPOSALS.iter().chain(
        ["aes256-sha256-modp2048", "aes128gcm16-prfsha256-ecp256", "aes256-sha512-prfsha256-curve25519-modp2048s256"]
            .iter(),
    ) {
        let p = IkeProposal::parse(s).unwrap();
        assert_eq!(IkeProposal::parse(&p.to_string()).unwrap(), p, "{s}");
    }
    let e = EspProposal::parse("aes128-sha1-modp1024").unwrap();
    assert_eq!(e.dh, vec![DhGroup::Modp1024]);
    assert_eq!(e.to_string(), "aes128-sha1-modp1024");
    assert!(EspProposal::parse("aes256gcm16").unwrap().dh.is_empty());
    assert!(EspProposal::parse("aes128-sha256-noesn").is_ok());
    for s in iotrelay_crypto::proposal::DEFAULT_ESP_PROPOSALS {
        let p = EspProposal::parse(s).unwrap();
        assert_eq!(EspProposal::parse(&p.to_string()).unwrap(), p);
    }
    // Errors name the bad token.
    let err = IkeProposal::parse("aes129-sha1-modp1024").unwrap_err();
    assert_eq!(err.token, "aes129");
    assert!(err.to_string().contains("\"aes129\""), "{err}");
    assert_eq!(EspProposal::parse("aes128-sha1-esn").unwrap_err().token, "esn");
    assert!(IkeProposal::parse("aes128-modp1024").is_err(), "CBC without integrity");
    assert!(IkeProposal::parse("aes128-sha1").is_err(), "IKE without DH");
    assert!(IkeProposal::parse("sha1-modp1024").is_err(), "no encryption");
    assert!(IkeProposal::parse("aes128-aes128gcm16-sha1-modp1024").is_err(), "mixed AEAD");
    assert!(EspProposal::parse("aes128gcm16-sha1").is_err(), "GCM with integrity in ESP");
    assert!(EspProposal::parse("aes128-sha1-prfsha1").is_err(), "PRF in ESP");
    assert!(IkeProposal::parse("").is_err());
    assert!(IkeProposal::parse("aes128--sha1-modp1024").is_err());
    // Every error names the offending (or the nearest) token, and the whole proposal.
    for (s, ike, token) in [
        ("aes129-sha1-modp1024", true, "aes129"),
        ("aes128-sha1-modp1023", true, "modp1023"),
        ("aes128-sha1-modp1024-noesn", true, "noesn"),
        ("aes128-modp1024", true, "aes128"),
        ("aes128-sha1", true, "sha1"),
        ("sha1-modp1024", true, "sha1"),
        ("aes128gcm16-ecp256", true, "aes128gcm16"),
        ("aes128-aes128gcm16-sha1-modp1024", true, "aes128gcm16"),
        ("aes128gcm16-aes256-sha1-modp1024", true, "aes256"),
        ("aes128gcm16-sha1", false, "sha1"),
        ("aes128-sha1-prfsha256", false, "prfsha256"),
        ("aes256-modp2048", false, "aes256"),
        ("AES128-SHA1-esn", false, "esn"),
    ] {
        let e = if ike { IkeProposal::parse(s).unwrap_err() } else { EspProposal::parse(s).unwrap_err() };
        assert_eq!((e.token.as_str(), e.proposal.as_str()), (token, s), "{e}");
        assert!(e.to_string().contains(&format!("{token:?} in proposal {s:?}")), "{e}");
    }
    assert_eq!(
        IkeProposal::parse("aes129-sha1-modp1024").unwrap_err().to_string(),
        r#"unknown algorithm "aes129" in proposal "aes129-sha1-modp1024""#
    );
    // Case-insensitive, duplicates dropped, canonical output.
    let p = IkeProposal::parse("AES256-aes256-SHA256-modp2048").unwrap();
    assert_eq!(p.to_string(), "aes256-sha256-prfsha256-modp2048");
    let list = iotrelay_crypto::proposal::ike_proposals_from(&["aes128-sha1-modp1024".to_string()]).unwrap();
    assert_eq!(list[0].dh, vec![DhGroup::Modp1024]);
    assert!(iotrelay_crypto::proposal::esp_proposals_from(&["aes128".to_string()]).is_err());
}

#[test]
fn prf_plus_lengths_up_to_the_limit() {
    // Prefixes agree (prf+ is a stream), and the 255-block limit is reachable exactly.
    for prf in Prf::ALL {
        let max = 255 * prf.output_len();
        let long = prf.prf_plus(b"key", b"seed", max);
        assert_eq!(long.len(), max);
        for len in [0, 1, prf.output_len(), prf.output_len() + 1, 384] {
            assert_eq!(&prf.prf_plus(b"key", b"seed", len)[..], &long[..len], "{prf:?} {len}");
        }
        // T1 = prf(K, S | 0x01).
        assert_eq!(&long[..prf.output_len()], &prf.compute(b"key", &[b"seed", &[1]])[..]);
    }
}
