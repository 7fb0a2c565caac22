//! ESP known-answer vectors: fixed keys (encr key 00 01 02 ..., integ key 80 81 82 ...), SPI c2da9d90, the inner
//! packet from `esp.rs`, CBC IV 10 11 .. 1f. The expected packets were computed independently by
//! `crates/esp/tests/esp_vectors.py` (python3 `cryptography` 48, written from the RFCs, no shared code).

use iotrelay_crypto::{Encr, Integ, RandomSource, SaCipher};
use iotrelay_esp::{EspError, InboundSa, OutboundSa};

const INNER: &str = "450000211234000040119ece647f00016440010a1b581b59000dbb8668656c6c6f";
const SPI: u32 = 0xc2da9d90;

/// Fills every request with 10 11 12 ...: a fixed IV for the CBC vectors.
struct FixedIv;
impl RandomSource for FixedIv {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for (i, b) in dest.iter_mut().enumerate() {
            *b = 0x10 + i as u8;
        }
    }
}

const VECTORS: &[(&str, u32, &str)] = &[
    (
        "AesGcm16_128",
        1,
        "c2da9d900000000100000000000000011b46fab0a9202e167f9633837efbf2e7b5d0527700be7db49b419ebf2a9dd537986b3ec48c210d0bcc98a2ee662c6cb618664165",
    ),
    (
        "AesGcm16_128",
        2,
        "c2da9d900000000200000000000000023d35c065d1d90fd0b107505cbce5a41643c8dc333ef325e5a7d94acc84e09af8d2778d0845a0cb3ff25803c8cacbfccfb4bcacfc",
    ),
    (
        "AesGcm16_256",
        1,
        "c2da9d900000000100000000000000012c8f3b97445505da46da25943543755f3a3e56d9df247303562afbb6234421119f34230dfdab44ddc8dab8bf10993eb359d3ccd3",
    ),
    (
        "AesGcm16_256",
        2,
        "c2da9d900000000200000000000000027f637262ac432dd6e0683482054e4ac1f2d4099523a5ef8615c16e7e762ff3d5bbd628c2a3f847787e8f3e803336ba5dc6c44bab",
    ),
    (
        "AesCbc128/HmacSha1_96",
        1,
        "c2da9d9000000001101112131415161718191a1b1c1d1e1fce6878e9e078caf8b27d128035c2f05ccf96f5a621d94bc8c9fdb28f1ae0b3a176c9567b8eaf5003e7eea3d0c7e556dbb6b2731d13654385947a5912",
    ),
    (
        "AesCbc128/HmacSha1_96",
        2,
        "c2da9d9000000002101112131415161718191a1b1c1d1e1fce6878e9e078caf8b27d128035c2f05ccf96f5a621d94bc8c9fdb28f1ae0b3a176c9567b8eaf5003e7eea3d0c7e556db7e331ed453a71cbc15d5a65b",
    ),
    (
        "AesCbc128/HmacSha256_128",
        1,
        "c2da9d9000000001101112131415161718191a1b1c1d1e1fce6878e9e078caf8b27d128035c2f05ccf96f5a621d94bc8c9fdb28f1ae0b3a176c9567b8eaf5003e7eea3d0c7e556db0a7d6ca02eaf40aed787e5d937032610",
    ),
    (
        "AesCbc128/HmacSha256_128",
        2,
        "c2da9d9000000002101112131415161718191a1b1c1d1e1fce6878e9e078caf8b27d128035c2f05ccf96f5a621d94bc8c9fdb28f1ae0b3a176c9567b8eaf5003e7eea3d0c7e556db50d84343a6c8124349f7a9d0eeb545c9",
    ),
    (
        "AesCbc128/HmacSha384_192",
        1,
        "c2da9d9000000001101112131415161718191a1b1c1d1e1fce6878e9e078caf8b27d128035c2f05ccf96f5a621d94bc8c9fdb28f1ae0b3a176c9567b8eaf5003e7eea3d0c7e556db7917693750c44f2074ba3cab0ed7e7115da2aaa384a4f412",
    ),
    (
        "AesCbc128/HmacSha384_192",
        2,
        "c2da9d9000000002101112131415161718191a1b1c1d1e1fce6878e9e078caf8b27d128035c2f05ccf96f5a621d94bc8c9fdb28f1ae0b3a176c9567b8eaf5003e7eea3d0c7e556dbdbac49260827750df33bf47032e9cb6b56d9df7e1fe53c86",
    ),
    (
        "AesCbc128/HmacSha512_256",
        1,
        "c2da9d9000000001101112131415161718191a1b1c1d1e1fce6878e9e078caf8b27d128035c2f05ccf96f5a621d94bc8c9fdb28f1ae0b3a176c9567b8eaf5003e7eea3d0c7e556dbf8c9d0401fafa2f0c843bc6cd5b8cca73ecc31e81ed7718d8e76ec1507abde16",
    ),
    (
        "AesCbc128/HmacSha512_256",
        2,
        "c2da9d9000000002101112131415161718191a1b1c1d1e1fce6878e9e078caf8b27d128035c2f05ccf96f5a621d94bc8c9fdb28f1ae0b3a176c9567b8eaf5003e7eea3d0c7e556dbb33f2b2711e6561a1e2c87a35d89974a9d59a6572d5c47cc0e5d6004ae4c119c",
    ),
    (
        "AesCbc256/HmacSha1_96",
        1,
        "c2da9d9000000001101112131415161718191a1b1c1d1e1f8514ef2f716e7a805e482fa07ce177c9033f5332cce78350d3b2e2245eb827d0cfea22a0cd3200e77e796c3c16cc82ce9fc9558dca23cc0445ced781",
    ),
    (
        "AesCbc256/HmacSha1_96",
        2,
        "c2da9d9000000002101112131415161718191a1b1c1d1e1f8514ef2f716e7a805e482fa07ce177c9033f5332cce78350d3b2e2245eb827d0cfea22a0cd3200e77e796c3c16cc82ceb5531378305d1410b35e900e",
    ),
    (
        "AesCbc256/HmacSha256_128",
        1,
        "c2da9d9000000001101112131415161718191a1b1c1d1e1f8514ef2f716e7a805e482fa07ce177c9033f5332cce78350d3b2e2245eb827d0cfea22a0cd3200e77e796c3c16cc82ce0343ef24fcc891a556e60e522d5a2abb",
    ),
    (
        "AesCbc256/HmacSha256_128",
        2,
        "c2da9d9000000002101112131415161718191a1b1c1d1e1f8514ef2f716e7a805e482fa07ce177c9033f5332cce78350d3b2e2245eb827d0cfea22a0cd3200e77e796c3c16cc82ce262436346525fe4fe65c339a484ba659",
    ),
    (
        "AesCbc256/HmacSha384_192",
        1,
        "c2da9d9000000001101112131415161718191a1b1c1d1e1f8514ef2f716e7a805e482fa07ce177c9033f5332cce78350d3b2e2245eb827d0cfea22a0cd3200e77e796c3c16cc82ce24f3cbb809116d8011641ed025909a6aba58371e9631b306",
    ),
    (
        "AesCbc256/HmacSha384_192",
        2,
        "c2da9d9000000002101112131415161718191a1b1c1d1e1f8514ef2f716e7a805e482fa07ce177c9033f5332cce78350d3b2e2245eb827d0cfea22a0cd3200e77e796c3c16cc82ceb138fd1641e3101d1a6b38be37b9ba4eb6d1167b2c7114a3",
    ),
    (
        "AesCbc256/HmacSha512_256",
        1,
        "c2da9d9000000001101112131415161718191a1b1c1d1e1f8514ef2f716e7a805e482fa07ce177c9033f5332cce78350d3b2e2245eb827d0cfea22a0cd3200e77e796c3c16cc82ceb32202832acffaabff2d68013c026f41a5fea528312eeb2d158978ad2fc93c2b",
    ),
    (
        "AesCbc256/HmacSha512_256",
        2,
        "c2da9d9000000002101112131415161718191a1b1c1d1e1f8514ef2f716e7a805e482fa07ce177c9033f5332cce78350d3b2e2245eb827d0cfea22a0cd3200e77e796c3c16cc82ce07475676192d5ef510b945f88344feea209181f18f9ebe4a7211ba71f53aa530",
    ),
];

fn suite(name: &str) -> (Encr, Option<Integ>) {
    let (e, i) = name.split_once('/').unwrap_or((name, ""));
    let encr = match e {
        "AesGcm16_128" => Encr::AesGcm16_128,
        "AesGcm16_256" => Encr::AesGcm16_256,
        "AesCbc128" => Encr::AesCbc128,
        "AesCbc256" => Encr::AesCbc256,
        _ => panic!("unknown suite {name}"),
    };
    let integ = match i {
        "" => None,
        "HmacSha1_96" => Some(Integ::HmacSha1_96),
        "HmacSha256_128" => Some(Integ::HmacSha256_128),
        "HmacSha384_192" => Some(Integ::HmacSha384_192),
        "HmacSha512_256" => Some(Integ::HmacSha512_256),
        _ => panic!("unknown integrity {name}"),
    };
    (encr, integ)
}

fn cipher(encr: Encr, integ: Option<Integ>) -> SaCipher {
    let ek: Vec<u8> = (0..encr.key_material_len() as u8).collect();
    let ik: Vec<u8> = (0..integ.map_or(0, |i| i.key_len()) as u8).map(|b| 0x80 + b).collect();
    SaCipher::new(encr, integ, &ek, &ik).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn seal_matches_independent_vectors_for_every_suite() {
    let inner = unhex(INNER);
    let mut suites: Vec<&str> = VECTORS.iter().map(|v| v.0).collect();
    suites.dedup();
    assert_eq!(suites.len(), 10, "2 GCM + 2 CBC x 4 HMAC");
    for name in suites {
        let (encr, integ) = suite(name);
        let mut sa = OutboundSa::new(SPI, cipher(encr, integ));
        for &(_, seq, expected) in VECTORS.iter().filter(|v| v.0 == name) {
            let mut out = [0x5au8; 256];
            let n = sa.seal(&inner, &mut FixedIv, &mut out).unwrap();
            assert_eq!(out[..n], unhex(expected)[..], "{name} seq {seq}");
        }
    }
}

#[test]
fn open_accepts_independent_vectors_and_rejects_tampering() {
    let inner = unhex(INNER);
    for &(name, seq, expected) in VECTORS {
        let (encr, integ) = suite(name);
        let mut sa = InboundSa::new(SPI, cipher(encr, integ), 1024);
        let mut pkt = unhex(expected);
        assert_eq!(sa.open(&mut pkt).unwrap(), &inner[..], "{name} seq {seq}");
        for at in [4, 9, 20, unhex(expected).len() - 1] {
            let mut bad = unhex(expected);
            bad[at] ^= 0x80;
            let mut fresh = InboundSa::new(SPI, cipher(encr, integ), 1024);
            assert_eq!(fresh.open(&mut bad), Err(EspError::Integrity), "{name} flipped octet {at}");
        }
    }
}
