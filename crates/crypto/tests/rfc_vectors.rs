//! Published known-answer vectors, run through the crate's public API: RFC 2202 / RFC 4231 (HMAC), RFC 3602
//! (AES-CBC), the GCM specification's test cases (McGrew & Viega; also NIST's), RFC 5903 §8 (ECP groups 19-21)
//! and RFC 7748 §5.2 / §6.1 (X25519). Every value was also re-checked with Python's hmac and pyca/cryptography.

use iotrelay_crypto::{DhGroup, Encr, Integ, Prf, SaCipher};

mod common;
use common::{Fixed, h};

#[test]
fn hmac_rfc2202_sha1() {
    for (key, data, mac) in [
        (vec![0x0b; 20], b"Hi There".to_vec(), "b617318655057264e28bc0b6fb378c8ef146be00"),
        (b"Jefe".to_vec(), b"what do ya want for nothing?".to_vec(), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
        // Test case 6: a key longer than the block size (hashed first).
        (
            vec![0xaa; 80],
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112",
        ),
    ] {
        assert_eq!(hex::encode(Prf::HmacSha1.compute(&key, &[&data])), mac);
    }
}

#[test]
fn hmac_rfc4231_sha2() {
    let long = b"Test Using Larger Than Block-Size Key - Hash Key First";
    for (prf, key, data, mac) in [
        // Test case 3: 0xaa * 20 key, 0xdd * 50 data.
        (
            Prf::HmacSha256,
            vec![0xaa; 20],
            vec![0xdd; 50],
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        ),
        // Test case 6: 131-octet key.
        (
            Prf::HmacSha256,
            vec![0xaa; 131],
            long.to_vec(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            Prf::HmacSha384,
            vec![0xaa; 131],
            long.to_vec(),
            "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952",
        ),
        (
            Prf::HmacSha512,
            vec![0xaa; 131],
            long.to_vec(),
            "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e52\
             95e64f73f63f0aec8b915a985d786598",
        ),
    ] {
        assert_eq!(hex::encode(prf.compute(&key, &[&data])), mac, "{prf:?}");
    }
}

#[test]
fn aes_cbc_rfc3602() {
    // RFC 3602 §4 cases 1-4 (AES-128), through SaCipher (the HMAC key is arbitrary; the ciphertext is checked).
    for (key, iv, plain, cipher) in [
        (
            "06a9214036b8a15b512e03d534120006",
            "3dafba429d9eb430b422da802c9fac41",
            b"Single block msg".to_vec(),
            "e353779c1079aeb82708942dbe77181a",
        ),
        (
            "c286696d887c9aa0611bbb3e2025a45a",
            "562e17996d093d28ddb3ba695a2e6f58",
            (0u8..32).collect(),
            "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1",
        ),
        (
            "6c3ea0477630ce21a2ce334aa746c2cd",
            "c782dc4c098c66cbd9cd27d825682c81",
            b"This is a 48-byte message (exactly 3 AES blocks)".to_vec(),
            "d0a02b3836451753d493665d33f0e8862dea54cdb293abc7506939276772f8d5021c19216bad525c8579695d83ba2684",
        ),
        (
            "56e47a38c5598974bc46903dba290349",
            "8ce82eefbea0da3c44699ed7db51b7d9",
            (0xa0u8..0xe0).collect(),
            "c30e32ffedc0774e6aff6af0869f71aa0f3af07a9a31a9c684db207eb0ef8e4e\
             35907aa632c3ffdf868bb7b29d3d46ad83ce9f9a102ee99d49a53e87f4c3da55",
        ),
    ] {
        let c = SaCipher::new(Encr::AesCbc128, Some(Integ::HmacSha256_128), &h(key), &[7; 32]).unwrap();
        let mut data = plain.clone();
        let mut icv = [0u8; 16];
        c.seal_in_place(b"aad", &h(iv), &mut data, &mut icv).unwrap();
        assert_eq!(hex::encode(&data), cipher.replace(' ', ""));
        c.open_in_place(b"aad", &h(iv), &mut data, &icv).unwrap();
        assert_eq!(data, plain);
    }
}

#[test]
fn aes_gcm_spec_test_cases() {
    // McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 2, 3, 4 (AES-128) and 14, 16 (AES-256).
    // The 96-bit IV is split as ESP does: salt (4 octets, from the key material) | explicit IV (8 octets).
    let p = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
    let k = "feffe9928665731c6d6a8f9467308308";
    let aad = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
    let cases: [(Encr, String, &str, String, &str, &str, &str); 5] = [
        (
            Encr::AesGcm16_128,
            "00".repeat(16),
            &"00".repeat(12),
            "00".repeat(16),
            "",
            "0388dace60b6a392f328c2b971b2fe78",
            "ab6e47d42cec13bdf53a67b21257bddf",
        ),
        (
            Encr::AesGcm16_128,
            k.to_string(),
            "cafebabefacedbaddecaf888",
            p.to_string(),
            "",
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
             21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
            "4d5c2af327cd64a62cf35abd2ba6fab4",
        ),
        (
            Encr::AesGcm16_128,
            k.to_string(),
            "cafebabefacedbaddecaf888",
            p[..120].to_string(),
            aad,
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
             21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
            "5bc94fbc3221a5db94fae95ae7121a47",
        ),
        (
            Encr::AesGcm16_256,
            "00".repeat(32),
            &"00".repeat(12),
            "00".repeat(16),
            "",
            "cea7403d4d606b6e074ec5d3baf39d18",
            "d0d1c8a799996bf0265b98b5d48ab919",
        ),
        (
            Encr::AesGcm16_256,
            k.repeat(2),
            "cafebabefacedbaddecaf888",
            p[..120].to_string(),
            aad,
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
             8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            "76fc6ece0f4e1768cddf8853bb2d551b",
        ),
    ];
    for (n, (encr, key, iv96, plain, aad, cipher, tag)) in cases.into_iter().enumerate() {
        let iv96 = h(iv96);
        let c = SaCipher::new(encr, None, &[h(&key), iv96[..4].to_vec()].concat(), &[]).unwrap();
        let mut data = h(&plain);
        let mut icv = [0u8; 16];
        c.seal_in_place(&h(aad), &iv96[4..], &mut data, &mut icv).unwrap();
        assert_eq!((hex::encode(&data), hex::encode(icv)), (cipher.replace(' ', ""), tag.to_string()), "case {n}");
        c.open_in_place(&h(aad), &iv96[4..], &mut data, &icv).unwrap();
        assert_eq!(data, h(&plain), "case {n}");
    }
}

#[test]
fn ecdh_rfc5903() {
    // RFC 5903 §8.1-8.3: i, g^i = gix | giy, r, g^r = grx | gry, and g^ir's x coordinate (the shared secret, §7).
    for (group, i, gi, r, gr, girx) in [
        (
            DhGroup::Ecp256,
            "C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433",
            "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180\
             5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3",
            "C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53",
            "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63\
             56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
            "D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE",
        ),
        (
            DhGroup::Ecp384,
            "099F3C7034D4A2C699884D73A375A67F7624EF7C6B3C0F160647B67414DCE655E35B538041E649EE3FAEF896783AB194",
            "667842D7D180AC2CDE6F74F37551F55755C7645C20EF73E31634FE72B4C55EE6DE3AC808ACB4BDB4C88732AEE95F41AA\
             9482ED1FC0EEB9CAFC4984625CCFC23F65032149E0E144ADA024181535A0F38EEB9FCFF3C2C947DAE69B4C634573A81C",
            "41CB0779B4BDB85D47846725FBEC3C9430FAB46CC8DC5060855CC9BDA0AA2942E0308312916B8ED2960E4BD55A7448FC",
            "E558DBEF53EECDE3D3FCCFC1AEA08A89A987475D12FD950D83CFA41732BC509D0D1AC43A0336DEF96FDA41D0774A3571\
             DCFBEC7AACF3196472169E838430367F66EEBE3C6E70C416DD5F0C68759DD1FFF83FA40142209DFF5EAAD96DB9E6386C",
            "11187331C279962D93D604243FD592CB9D0A926F422E47187521287E7156C5C4D603135569B9E9D09CF5D4A270F59746",
        ),
        (
            DhGroup::Ecp521,
            "0037ADE9319A89F4DABDB3EF411AACCCA5123C61ACAB57B5393DCE47608172A095AA85A30FE1C2952C6771D937BA9777\
             F5957B2639BAB072462F68C27A57382D4A52",
            "0015417E84DBF28C0AD3C278713349DC7DF153C897A1891BD98BAB4357C9ECBEE1E3BF42E00B8E380AEAE57C2D107564\
             941885942AF5A7F4601723C4195D176CED3E\
             017CAE20B6641D2EEB695786D8C946146239D099E18E1D5A514C739D7CB4A10AD8A788015AC405D7799DC75E7B7D5B6C\
             F2261A6A7F1507438BF01BEB6CA3926F9582",
            "0145BA99A847AF43793FDD0E872E7CDFA16BE30FDC780F97BCCC3F078380201E9C677D600B343757A3BDBF2A3163E4C2\
             F869CCA7458AA4A4EFFC311F5CB151685EB9",
            "00D0B3975AC4B799F5BEA16D5E13E9AF971D5E9B984C9F39728B5E5739735A219B97C356436ADC6E95BB0352F6BE64A6\
             C2912D4EF2D0433CED2B6171640012D9460F\
             015C68226383956E3BD066E797B623C27CE0EAC2F551A10C2C724D9852077B87220B6536C5C408A1D2AEBB8E86D678AE\
             49CB57091F4732296579AB44FCD17F0FC56A",
            "01144C7D79AE6956BC8EDB8E7C787C4521CB086FA64407F97894E5E6B2D79B04D1427E73CA4BAA240A34786859810C06\
             B3C715A3A8CC3151F2BEE417996D19F3DDEA",
        ),
    ] {
        let (i, gi, r, gr, girx) = (h(i), h(gi), h(r), h(gr), h(girx));
        assert_eq!(gi.len(), group.public_len());
        let initiator = group.generate(&mut Fixed(i));
        let responder = group.generate(&mut Fixed(r));
        assert_eq!(initiator.public_value(), &gi[..], "{group:?} g^i");
        assert_eq!(responder.public_value(), &gr[..], "{group:?} g^r");
        assert_eq!(&initiator.shared_secret(&gr).unwrap()[..], &girx[..], "{group:?} initiator g^ir");
        assert_eq!(&responder.shared_secret(&gi).unwrap()[..], &girx[..], "{group:?} responder g^ir");
    }
}

#[test]
fn x25519_rfc7748() {
    // §5.2: the two scalar multiplication vectors (the second u has its top bit set, which must be ignored).
    for (k, u, out) in [
        (
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        (
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ] {
        let a = DhGroup::Curve25519.generate(&mut Fixed(h(k)));
        assert_eq!(hex::encode(a.shared_secret(&h(u)).unwrap()), out);
    }
    // §6.1: Alice and Bob.
    let alice =
        DhGroup::Curve25519.generate(&mut Fixed(h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")));
    let bob =
        DhGroup::Curve25519.generate(&mut Fixed(h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")));
    assert_eq!(hex::encode(alice.public_value()), "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    assert_eq!(hex::encode(bob.public_value()), "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    let k = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
    assert_eq!(hex::encode(alice.shared_secret(bob.public_value()).unwrap()), k);
    assert_eq!(hex::encode(bob.shared_secret(alice.public_value()).unwrap()), k);
    // RFC 8031 §2.3 / RFC 7748 §6.1: an all-zero shared secret (from a low-order point) is rejected.
    let mut one = [0u8; 32];
    one[0] = 1;
    assert!(alice.shared_secret(&one).is_err(), "u = 1 is of low order");
    assert!(alice.shared_secret(&[0u8; 32]).is_err());
}
