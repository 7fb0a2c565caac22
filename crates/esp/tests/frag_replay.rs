use iotrelay_crypto::{Encr, RandomSource, SaCipher, SeededRandom};
use iotrelay_esp::ipv4::{self, Fragmenter, Ipv4Error, Reassembler};
use iotrelay_esp::*;
use std::collections::BTreeSet;
use std::time::Duration;

fn fragments(pkt: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    let mut f = Fragmenter::new(pkt, mtu).unwrap();
    let mut buf = vec![0xa5u8; mtu];
    let mut v = Vec::new();
    while let Some(n) = f.next_into(&mut buf).unwrap() {
        v.push(buf[..n].to_vec());
    }
    v
}

fn big(len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    ipv4::build_udp_vec([100, 64, 1, 10].into(), 7000, [100, 127, 0, 1].into(), 5000, &payload)
}

const T: Duration = Duration::from_secs(100);

/// The replay window against a naive model (a set of every accepted number) on random sequences.
#[test]
fn replay_window_matches_a_naive_model() {
    let mut rng = SeededRandom::new(42);
    for size in [64u32, 1024, 2048] {
        let mut w = ReplayWindow::new(size);
        assert_eq!(w.size(), size);
        let mut seen = BTreeSet::new();
        let mut top = 0u32;
        for _ in 0..20_000 {
            let mut r = [0u8; 4];
            rng.fill_bytes(&mut r);
            let x = u32::from_be_bytes(r);
            // Mostly near the top, sometimes far ahead or far behind.
            let seq = match x % 16 {
                0 => top.saturating_add(x % 5000),
                1 => top.saturating_sub(x % 5000),
                _ => (top + 40).saturating_sub(x % (size + 80)),
            };
            let model = seq != 0 && !seen.contains(&seq) && (seq > top || top - seq < size);
            assert_eq!(w.check(seq), model, "size {size} top {top} seq {seq}");
            if model {
                w.update(seq);
                seen.insert(seq);
                top = top.max(seq);
            }
        }
    }
}

#[test]
fn replay_window_default_1024_edges() {
    let mut w = ReplayWindow::new(DEFAULT_REPLAY_WINDOW);
    assert!(w.check(1), "first packet");
    w.update(5000);
    assert!(!w.check(5000 - 1024), "exactly the window size behind");
    assert!(w.check(5000 - 1023), "the oldest number still inside");
    w.update(5000 - 1023);
    assert!(!w.check(5000 - 1023), "duplicate at the edge");
    w.update(5001);
    assert!(!w.check(5001 - 1024), "the window slid by one");
    assert!(w.check(5001 - 1023));
    w.update(5000 + 64 * 3 + 5); // slide by several words
    for s in 5002..5000 + 64 * 3 + 5 {
        assert!(w.check(s), "slots of skipped numbers are cleared: {s}");
    }
}

#[test]
fn fragment_and_reassemble_in_order_and_out_of_order() {
    for (len, mtu) in [(3000, 1400), (1446, 576), (100, 28), (65000, 1446)] {
        let pkt = big(len);
        let frags = fragments(&pkt, mtu);
        assert!(frags.len() > 1);
        for f in &frags {
            assert!(f.len() <= mtu);
            assert!(ipv4::check_header(f).is_ok());
        }
        for order in ["in", "reverse", "shuffled"] {
            let mut idx: Vec<usize> = (0..frags.len()).collect();
            match order {
                "reverse" => idx.reverse(),
                "shuffled" => idx.sort_by_key(|i| (i * 7919) % frags.len()),
                _ => {}
            }
            let mut r = Reassembler::new(4, 65515, Duration::from_secs(30));
            let mut done = None;
            for (k, &i) in idx.iter().enumerate() {
                let out = r.push(T, &frags[i]).unwrap().map(<[u8]>::to_vec);
                assert_eq!(out.is_some(), k + 1 == idx.len(), "{len}/{mtu} {order}: complete only at the end");
                done = out;
            }
            assert_eq!(done.unwrap(), pkt, "{len}/{mtu} {order}");
            assert_eq!(r.pending(), 0);
        }
    }
}

#[test]
fn reassembly_duplicates_overlap_timeout_and_eviction() {
    let pkt = big(3000);
    let frags = fragments(&pkt, 1000);
    let mut r = Reassembler::new(2, 65515, Duration::from_secs(30));
    assert_eq!(r.push(T, &frags[0]).unwrap(), None);
    assert_eq!(r.push(T, &frags[0]).unwrap(), None, "a duplicate changes nothing");
    assert_eq!(r.push(T, &frags[2]).unwrap(), None);
    assert_eq!(r.push(T, &frags[3]).unwrap(), None);
    assert_eq!(r.push(T, &frags[1]).unwrap(), Some(&pkt[..]));
    // Timeout: a datagram's fragments 30 s apart never complete.
    assert_eq!(r.push(T, &frags[0]).unwrap(), None);
    for f in &frags[1..] {
        assert_eq!(r.push(T + Duration::from_secs(30), f).unwrap(), None);
    }
    assert_eq!(r.dropped(), 1);
    // Bounded: a third datagram in progress evicts the oldest.
    let mut r = Reassembler::new(2, 65515, Duration::from_secs(30));
    let other = |id: u16| {
        let mut p = pkt.clone();
        p[4..6].copy_from_slice(&id.to_be_bytes());
        p[10..12].copy_from_slice(&[0, 0]);
        let c = ipv4::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        fragments(&p, 1000)
    };
    let (a, b, c) = (other(1), other(2), other(3));
    r.push(T, &a[0]).unwrap();
    r.push(T + Duration::from_secs(1), &b[0]).unwrap();
    r.push(T + Duration::from_secs(2), &c[0]).unwrap();
    assert_eq!(r.pending(), 2);
    assert_eq!(r.dropped(), 1);
    for f in &a[1..] {
        assert_eq!(r.push(T + Duration::from_secs(3), f).unwrap(), None, "a was evicted");
    }
    let mut got = None;
    for f in &c[1..] {
        got = r.push(T + Duration::from_secs(3), f).unwrap().map(<[u8]>::to_vec);
    }
    assert!(got.is_some(), "c completes");
    // Non-fragments pass through; a datagram beyond the limit is refused.
    assert_eq!(r.push(T, &pkt).unwrap(), Some(&pkt[..]));
    let mut small = Reassembler::new(1, 1000, Duration::from_secs(30));
    assert_eq!(small.push(T, &frags[1]), Err(Ipv4Error::TooBig));
}

#[test]
fn fragmenter_refuses_df_and_tiny_mtu() {
    let mut pkt = big(3000);
    pkt[6] |= 0x40;
    pkt[10..12].copy_from_slice(&[0, 0]);
    let c = ipv4::checksum(&pkt[..20]);
    pkt[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(Fragmenter::new(&pkt, 1400).unwrap_err(), Ipv4Error::TooBig);
    assert!(!ipv4::fragment(&pkt, 1400, |_| panic!("nothing emitted")));
    assert!(Fragmenter::new(&pkt, 4000).unwrap().is_whole(), "DF is fine when it fits");
    let pkt = big(100);
    assert_eq!(Fragmenter::new(&pkt, 27).unwrap_err(), Ipv4Error::TooBig, "less than 8 data octets");
    let mut f = Fragmenter::new(&pkt, 60).unwrap();
    assert_eq!(f.next_into(&mut [0u8; 10]), Err(Ipv4Error::BufferTooSmall));
    // The convenience wrapper splits packets bigger than 1500 even with a jumbo MTU.
    let huge = big(5000);
    let mut n = 0;
    assert!(ipv4::fragment(&huge, 9000, |_| n += 1));
    assert_eq!(n, 1, "fits 9000: passed through");
    let mut sizes = Vec::new();
    assert!(ipv4::fragment(&big(12000), 9000, |f| sizes.push(f.len())));
    assert!(sizes.iter().all(|&s| s <= 1500) && sizes.len() == 9, "{sizes:?}");
}

#[test]
fn reassembler_and_parsers_survive_garbage() {
    let mut rng = SeededRandom::new(7);
    let mut r = Reassembler::new(4, 4000, Duration::from_secs(1));
    let frags = fragments(&big(3000), 1000);
    let mut buf = [0u8; 1100];
    for n in 0..20_000usize {
        let f = &frags[n % frags.len()];
        let len = f.len();
        buf[..len].copy_from_slice(f);
        // Corrupt some octets, then fix the header checksum so the fragment logic sees the garbage.
        let mut x = [0u8; 8];
        rng.fill_bytes(&mut x);
        for k in 0..(x[0] % 4) {
            buf[usize::from(x[1 + k as usize]) % 20] ^= x[5];
        }
        buf[10..12].copy_from_slice(&[0, 0]);
        let ihl = usize::from(buf[0] & 15) * 4;
        if (20..=len).contains(&ihl) {
            let c = ipv4::checksum(&buf[..ihl]);
            buf[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let cut = if x[6] % 3 == 0 { usize::from(x[7]) % len } else { len };
        let now = Duration::from_millis(n as u64 * 10);
        let _ = r.push(now, &buf[..cut]);
        let _ = ipv4::parse_udp(&buf[..cut]);
        let _ = Fragmenter::new(&buf[..cut], 200).map(|mut f| while let Ok(Some(_)) = f.next_into(&mut [0u8; 200]) {});
    }
}

#[test]
fn open_packet_reports_next_header() {
    let key = [3u8; 20];
    let c = || SaCipher::new(Encr::AesGcm16_128, None, &key, &[]).unwrap();
    let (mut o, mut i) = (OutboundSa::new(7, c()), InboundSa::new(7, c(), 64));
    let inner = big(1);
    let mut buf = [0u8; 200];
    let n = o.seal(&inner, &mut SeededRandom::new(1), &mut buf).unwrap();
    let opened = i.open_packet(&mut buf[..n]).unwrap();
    assert_eq!((opened.next_header, opened.inner), (NEXT_HEADER_IPV4, &inner[..]));
}

/// For every suite and outer MTU: a packet of exactly `tunnel_mtu` fits the outer MTU as ESP-in-UDP-in-IPv4,
/// and one octet more would not (unless capped at AWS's 1446).
#[test]
fn tunnel_mtu_is_the_largest_that_fits_for_every_suite() {
    use iotrelay_crypto::Integ;
    let mut suites = vec![(Encr::AesGcm16_128, None), (Encr::AesGcm16_256, None)];
    for e in [Encr::AesCbc128, Encr::AesCbc256] {
        for i in Integ::ALL {
            suites.push((e, Some(i)));
        }
    }
    let mut buf = vec![0u8; 2000];
    let mut rng = SeededRandom::new(3);
    for (encr, integ) in suites {
        let ek = vec![1u8; encr.key_material_len()];
        let ik = vec![2u8; integ.map_or(0, |i| i.key_len())];
        let mut sa = OutboundSa::new(1, SaCipher::new(encr, integ, &ek, &ik).unwrap());
        for outer in (576..=1600).step_by(7) {
            let m = tunnel_mtu(encr, integ, outer);
            let n = sa.seal(&vec![0x45; m], &mut rng, &mut buf).unwrap();
            assert!(20 + 8 + n <= outer, "{encr:?} {integ:?} outer {outer}: {m} does not fit");
            if m < AWS_MAX_INNER_MTU {
                let n = sa.seal(&vec![0x45; m + 1], &mut rng, &mut buf).unwrap();
                assert!(20 + 8 + n > outer, "{encr:?} {integ:?} outer {outer}: {m} is not the largest");
            } else {
                assert_eq!(m, AWS_MAX_INNER_MTU);
            }
        }
    }
}
