use iotrelay_crypto::{Encr, Integ, RandomSource, SaCipher, SeededRandom};
use iotrelay_esp::ipv4::{self, Ipv4Error};
use iotrelay_esp::*;

fn pair(encr: Encr, integ: Option<Integ>, window: u32) -> (OutboundSa, InboundSa) {
    let mut rng = SeededRandom::new(5);
    let mut ek = vec![0u8; encr.key_material_len()];
    let mut ak = vec![0u8; integ.map_or(0, |i| i.key_len())];
    rng.fill_bytes(&mut ek);
    rng.fill_bytes(&mut ak);
    (
        OutboundSa::new(0xc2da9d90, SaCipher::new(encr, integ, &ek, &ak).unwrap()),
        InboundSa::new(0xc2da9d90, SaCipher::new(encr, integ, &ek, &ak).unwrap(), window),
    )
}

fn suites() -> Vec<(Encr, Option<Integ>)> {
    let mut v = vec![(Encr::AesGcm16_128, None), (Encr::AesGcm16_256, None)];
    for e in [Encr::AesCbc128, Encr::AesCbc256] {
        for i in Integ::ALL {
            v.push((e, Some(i)));
        }
    }
    v
}

#[test]
fn replay_window_edges() {
    let mut w = ReplayWindow::new(64);
    assert!(!w.check(0), "sequence 0 is never valid");
    assert!(w.check(1));
    w.update(1);
    assert!(!w.check(1), "duplicate");
    assert!(w.check(3));
    w.update(3);
    assert!(w.check(2), "late but inside the window");
    w.update(2);
    assert!(!w.check(2));
    w.update(200);
    assert!(!w.check(200 - 64), "exactly window size behind");
    assert!(w.check(200 - 63), "inside the window after a slide");
    assert!(!w.check(3), "far past");
    assert!(w.check(u32::MAX), "far future");
    w.update(u32::MAX);
    assert!(!w.check(u32::MAX));
    assert!(!w.check(201), "everything below the window after a jump");
    assert_eq!(ReplayWindow::new(1000).size(), 1024);
    assert_eq!(ReplayWindow::new(1).size(), 64);
}

#[test]
fn seal_open_round_trip_every_suite() {
    let inner = ipv4::build_udp_vec([100, 127, 0, 1].into(), 7000, [100, 64, 1, 10].into(), 7000, &[0xab; 777]);
    let mut rng = SeededRandom::new(9);
    for (encr, integ) in suites() {
        let (mut o, mut i) = pair(encr, integ, 1024);
        let mut buf = [0u8; 2048];
        for n in [1usize, 20, 200, inner.len()] {
            let len = o.seal(&inner[..n], &mut rng, &mut buf).unwrap();
            assert_eq!(len, n + overhead_for(encr, integ, n));
            assert_eq!(&buf[..4], &0xc2da9d90u32.to_be_bytes());
            let plain = i.open(&mut buf[..len]).unwrap().to_vec();
            assert_eq!(plain, &inner[..n], "{encr:?} {integ:?} {n}");
        }
        assert_eq!(o.counters().0, 4);
        assert_eq!(i.counters().0, 4);
    }
}

fn overhead_for(encr: Encr, integ: Option<Integ>, n: usize) -> usize {
    let c = SaCipher::new(encr, integ, &vec![0; encr.key_material_len()], &vec![0; integ.map_or(0, |i| i.key_len())])
        .unwrap();
    overhead(&c, n)
}

#[test]
fn tamper_replay_unknown_spi_and_truncation() {
    let mut rng = SeededRandom::new(10);
    for (encr, integ) in suites() {
        let (mut o, mut i) = pair(encr, integ, 64);
        let inner = ipv4::build_udp_vec([1, 2, 3, 4].into(), 1, [5, 6, 7, 8].into(), 2, b"payload");
        let mut buf = [0u8; 256];
        let len = o.seal(&inner, &mut rng, &mut buf).unwrap();
        let good = buf[..len].to_vec();
        let mut bad = good.clone();
        bad[len - 1] ^= 1;
        assert_eq!(i.open(&mut bad), Err(EspError::Integrity));
        let mut bad = good.clone();
        bad[12] ^= 1;
        assert_eq!(i.open(&mut bad), Err(EspError::Integrity));
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert_eq!(i.open(&mut bad), Err(EspError::UnknownSpi));
        for n in 0..len {
            let mut t = good[..n].to_vec();
            assert!(i.open(&mut t).is_err(), "truncated to {n}");
        }
        let mut ok = good.clone();
        assert!(i.open(&mut ok).is_ok(), "a failed ICV must not have moved the window");
        let mut again = good.clone();
        assert_eq!(i.open(&mut again), Err(EspError::Replay));
    }
}

#[test]
fn garbage_never_panics() {
    let (_, mut i) = pair(Encr::AesCbc128, Some(Integ::HmacSha1_96), 1024);
    let mut rng = SeededRandom::new(11);
    let mut buf = [0u8; 400];
    for n in 0..4000 {
        rng.fill_bytes(&mut buf);
        buf[..4].copy_from_slice(&0xc2da9d90u32.to_be_bytes());
        let _ = i.open(&mut buf[..n % 400]);
        let _ = ipv4::parse_udp(&buf[..n % 400]);
        let _ = classify(&buf[..n % 50]);
    }
}

#[test]
fn classify_udp_4500() {
    assert_eq!(classify(&[0xff]), Demux::Keepalive);
    assert_eq!(classify(&[0, 0, 0, 0, 1, 2]), Demux::Ike(&[1, 2]));
    assert_eq!(classify(&[0, 0, 1, 0, 0, 0, 0, 1]), Demux::Esp { spi: 256 });
    assert_eq!(classify(&[1, 2, 3]), Demux::Malformed);
}

#[test]
fn inner_udp_matches_independent_bytes_and_checks() {
    // Computed with Python's struct and a hand-written RFC 1071 sum (see the commit).
    let expected = "450000211234000040119ece647f00016440010a1b581b59000dbb8668656c6c6f";
    let mut out = [0xa5u8; 64];
    let n = ipv4::build_udp([100, 127, 0, 1].into(), 7000, [100, 64, 1, 10].into(), 7001, b"hello", 0x1234, &mut out)
        .unwrap();
    assert_eq!(hex(&out[..n]), expected);
    let p = ipv4::parse_udp(&out[..n]).unwrap();
    assert_eq!((p.sport, p.dport, p.payload), (7000, 7001, &b"hello"[..]));
    let mut bad = out[..n].to_vec();
    bad[27] ^= 1;
    assert_eq!(ipv4::parse_udp(&bad), Err(Ipv4Error::BadUdpChecksum));
    let mut bad = out[..n].to_vec();
    bad[8] = 1;
    assert_eq!(ipv4::parse_udp(&bad), Err(Ipv4Error::BadChecksum));
    for k in 0..n {
        assert!(ipv4::parse_udp(&out[..k]).is_err());
    }
}

/// The cheap look at a packet's destination agrees with the full parse on every valid packet, ignores both
/// checksums (the taker verifies them), and sees nothing in a fragment, another protocol or a cut packet.
#[test]
fn peek_udp_dst_agrees_with_parse_udp_without_checksums() {
    let pkt = ipv4::build_udp_vec([100, 64, 1, 10].into(), 7000, [100, 127, 0, 1].into(), 5555, b"reply");
    let p = ipv4::parse_udp(&pkt).unwrap();
    assert_eq!(ipv4::peek_udp_dst(&pkt), Some((p.dst, p.dport)));
    let mut bad = pkt.clone();
    bad[10] ^= 1; // IPv4 header checksum
    bad[27] ^= 1; // UDP checksum
    assert!(ipv4::parse_udp(&bad).is_err());
    assert_eq!(ipv4::peek_udp_dst(&bad), Some(([100, 127, 0, 1].into(), 5555)));
    let mut frag = pkt.clone();
    frag[6] |= 0x20; // MF
    assert_eq!(ipv4::peek_udp_dst(&frag), None);
    let mut tcp = pkt.clone();
    tcp[9] = 6;
    assert_eq!(ipv4::peek_udp_dst(&tcp), None);
    for k in 0..28 {
        assert_eq!(ipv4::peek_udp_dst(&pkt[..k]), None, "cut at {k}");
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn fragmentation_respects_mtu_and_offsets() {
    let big = ipv4::build_udp_vec([100, 127, 0, 1].into(), 1, [100, 64, 1, 10].into(), 2, &[7u8; 3000]);
    let mut frags = Vec::new();
    assert!(ipv4::fragment(&big, 1400, |f| frags.push(f.to_vec())));
    assert_eq!(frags.len(), 3);
    let mut joined = Vec::new();
    for (k, f) in frags.iter().enumerate() {
        assert!(f.len() <= 1400);
        assert_eq!(ipv4::checksum(&f[..20]), 0);
        let fo = u16::from_be_bytes([f[6], f[7]]);
        assert_eq!(usize::from(fo & 0x1fff) * 8, joined.len());
        assert_eq!(fo & 0x2000 != 0, k + 1 < frags.len());
        joined.extend_from_slice(&f[20..]);
    }
    assert_eq!(joined, &big[20..]);
    let mut df = big.clone();
    df[6] |= 0x40;
    assert!(!ipv4::fragment(&df, 1400, |_| {}));
}

#[test]
fn tunnel_mtu_per_suite() {
    let gcm = tunnel_mtu(Encr::AesGcm16_128, None, 1500);
    assert_eq!(gcm, 1438, "1500 - IPv4 20 - UDP 8 - ESP 8 - IV 8 - ICV 16 - pad length/next header 2");
    assert_eq!(tunnel_mtu(Encr::AesGcm16_128, None, 9000), 1446, "capped at AWS's 1446");
    let cbc = tunnel_mtu(Encr::AesCbc256, Some(Integ::HmacSha512_256), 1500);
    assert!(cbc < 1446);
    // The ESP-in-UDP datagram of a packet that size fits 1500 with IPv4 + UDP headers.
    assert!(cbc + overhead_for(Encr::AesCbc256, Some(Integ::HmacSha512_256), cbc) + 28 <= 1500);
}
