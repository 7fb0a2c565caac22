//! The sidecar's 500/4500 demux and the readers' early classification (`sidecar/src/demux.rs`, included as it
//! is: it depends only on std, iotrelay-esp and iotrelay-relay, so the fuzz build need not compile the sidecar's
//! I/O stack).
//!
//! Oracles: nothing from a non-peer address is ever queued; an IKE_SA_INIT (or anything whose SPIs we do not
//! hold) never rides the established lane; ESP rides it only with an SPI we hold; only a single 0xFF is a
//! keepalive; a forward queues only allow-listed sources; framing round-trips.
#![no_main]

#[allow(dead_code)]
#[path = "../../../sidecar/src/demux.rs"]
mod demux;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use demux::{EarlyDrop, Known, Lane, Verdict, classify_forward, classify_outside, frame_ike};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, d)) = data.split_first() else { return };
    let peer = Ipv4Addr::new(192, 0, 2, 2);
    let from_ip = if sel & 1 == 0 { peer } else { Ipv4Addr::new(192, 0, 2, sel) };
    let from = SocketAddr::V4(SocketAddrV4::new(from_ip, 4500));
    let known = Known { peers: vec![peer], esp_spis: [0xc0ff_ee01].into(), ike_spis: [0x1111_2222_3333_4444].into() };
    for natt in [false, true] {
        let v = classify_outside(&known, from, d, natt);
        if from_ip != peer {
            assert_eq!(v, Verdict::Drop(EarlyDrop::NotPeer));
            continue;
        }
        let ike = if natt { d.strip_prefix(&[0u8; 4][..]) } else { Some(d) };
        match v {
            Verdict::Drop(EarlyDrop::Keepalive) => assert!(natt && d == [0xff]),
            Verdict::Drop(other) => panic!("unexpected early drop {other:?}"),
            Verdict::Queue(Lane::Forward) => panic!("an outside datagram in the forward lane"),
            Verdict::Queue(Lane::Established) => match ike {
                Some(m) => {
                    assert!(m.len() >= 19 && m[18] != 34, "an IKE_SA_INIT or runt in the established lane");
                    let spi = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap());
                    assert!(known.ike_spis.contains(&spi(&m[0..8])) || known.ike_spis.contains(&spi(&m[8..16])));
                }
                None => assert!(d.len() >= 8 && known.esp_spis.contains(&u32::from_be_bytes([d[0], d[1], d[2], d[3]]))),
            },
            Verdict::Queue(Lane::Handshake) => {}
        }
    }
    let mut buf = vec![0u8; d.len() + 4];
    let n = frame_ike(d, &mut buf).unwrap();
    assert_eq!(iotrelay_esp::classify(&buf[..n]), iotrelay_esp::Demux::Ike(d));
    let allowed = ["203.0.113.0/28".parse().unwrap()];
    let client = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, sel), 1));
    let v = classify_forward(&allowed, client);
    assert_eq!(v == Verdict::Queue(Lane::Forward), sel < 16);
});
