//! The TUN device's offloads (`sidecar/src/tun_gso.rs` and `tun_gro.rs`, included as they are: std and
//! `iotrelay_esp::ipv4`'s header constants only).
//!
//! Oracles: any frame the device could hand us is segmented or refused, never a panic; every segment emitted is a
//! whole IPv4 packet (total length = its length, header checksum and transport checksum verify) no larger than the
//! headers plus the segment size, and the segments' payloads put together are the super-packet's. On the write
//! side, whatever sequence of packets is queued, each write taken back apart as the kernel does gives exactly the
//! packets queued, in order (a coalesced segment differs only in its IP ID and header checksum), and every packet
//! is written once.
#![no_main]

#[allow(dead_code)]
#[path = "../../../sidecar/src/tun_gso.rs"]
mod tun_gso;

#[allow(dead_code)]
#[path = "../../../sidecar/src/tun_gro.rs"]
mod tun_gro;

use iotrelay_esp::ipv4::PROTO_TCP;
use libfuzzer_sys::fuzz_target;
use tun_gro::TunOutbox;
use tun_gso::{VNET_HDR_LEN, VnetHdr, fold, pseudo, segment, sum};

fn checksums_ok(p: &[u8]) -> bool {
    let ihl = usize::from(p[0] & 0xf) * 4;
    fold(sum(0, &p[..ihl])) == 0xffff && fold(sum(pseudo(p, p[9], p.len() - ihl), &p[ihl..])) == 0xffff
}

/// A TCP segment of one of two flows, from 8 octets of input: flow, flags, size, sequence step.
fn tcp(b: &[u8], seq: &mut u32) -> Vec<u8> {
    let n = usize::from(b[2]) * 8 + usize::from(b[3] & 7);
    let mut p = vec![0u8; 52 + n];
    p[0] = 0x45;
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p[4..6].copy_from_slice(&[b[4], b[5]]);
    p[6] = if b[6] & 1 == 0 { 0x40 } else { 0 };
    p[8] = 64;
    p[9] = PROTO_TCP;
    p[12..16].copy_from_slice(&[100, 127, 0, 1]);
    p[16..20].copy_from_slice(&[100, 64, 1, 10 + (b[0] & 1)]);
    p[20..24].copy_from_slice(&[0x9c, 0x40, 0, 22]);
    if b[7] & 3 != 0 {
        *seq = seq.wrapping_add(n as u32);
    }
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[32] = 8 << 4;
    p[33] = [0x10, 0x18, 0x10, 0x11, 0x02, 0x10, 0x14, 0x10][usize::from(b[1] & 7)];
    p[34..36].copy_from_slice(&502u16.to_be_bytes());
    p[40..52].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, b[7] >> 7, 0, 0, 0, 2]);
    for (i, x) in p[52..].iter_mut().enumerate() {
        *x = (i as u8) ^ b[5];
    }
    tun_gso::set_ip_checksum(&mut p, 20);
    let c = !fold(sum(pseudo(&p, 6, p.len() - 20), &p[20..]));
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let mut scratch = vec![0u8; 65536];
    if sel & 1 == 0 {
        // The read side: an arbitrary frame.
        let Some((hdr, at)) = VnetHdr::parse(rest) else { return };
        let mut p = rest[at..].to_vec();
        let orig = p.clone();
        let mut emitted = 0;
        let mut payload = Vec::new();
        let gso = hdr.gso_type & 0x7f != 0;
        let r = segment(&hdr, &mut p, &mut scratch, &mut |s| {
            emitted += 1;
            if gso {
                let ihl = usize::from(s[0] & 0xf) * 4;
                let hlen = if s[9] == PROTO_TCP { ihl + usize::from(s[ihl + 12] >> 4) * 4 } else { ihl + 8 };
                assert_eq!(usize::from(u16::from_be_bytes([s[2], s[3]])), s.len());
                assert!(checksums_ok(s), "a segment's checksums");
                assert!(s.len() <= hlen + usize::from(hdr.gso_size));
                payload.extend_from_slice(&s[hlen..]);
            }
        });
        if let Ok(n) = r {
            assert_eq!(n, emitted);
            if gso {
                let ihl = usize::from(orig[0] & 0xf) * 4;
                let hlen = if orig[9] == PROTO_TCP { ihl + usize::from(orig[ihl + 12] >> 4) * 4 } else { ihl + 8 };
                assert_eq!(payload, orig[hlen..], "the segments' payloads are the super-packet's");
            }
        }
        return;
    }
    // The write side: a sequence of TCP segments (and, for odd records, the raw octets as a packet).
    let mut o = TunOutbox::new(sel & 2 == 0);
    let mut seq = 1u32;
    let mut queued: Vec<Vec<u8>> = Vec::new();
    let mut back: Vec<Vec<u8>> = Vec::new();
    let vnet = sel & 2 == 0;
    let take = |o: &mut TunOutbox, back: &mut Vec<Vec<u8>>| {
        o.flush(&mut |w| {
            if !vnet {
                back.push(w.to_vec());
                return true;
            }
            let (h, at) = VnetHdr::parse(w).expect("every write has a header");
            let mut p = w[at..].to_vec();
            let mut s = vec![0u8; 65536];
            segment(&h, &mut p, &mut s, &mut |x| back.push(x.to_vec())).expect("our own writes split");
            true
        });
    };
    for rec in rest.chunks_exact(8) {
        let p = if rec[0] & 0x80 != 0 { rec.to_vec() } else { tcp(rec, &mut seq) };
        if !o.push(&p) {
            take(&mut o, &mut back);
            assert!(o.push(&p), "an empty outbox takes a packet");
        }
        queued.push(p);
    }
    take(&mut o, &mut back);
    assert_eq!(back.len(), queued.len(), "every packet written once");
    for (b, q) in back.iter().zip(&queued) {
        assert_eq!(b.len(), q.len());
        if b != q {
            // Coalesced: only the IP ID and header checksum may differ.
            assert_eq!((&b[..4], &b[6..10], &b[12..]), (&q[..4], &q[6..10], &q[12..]));
        }
    }
    let _ = VNET_HDR_LEN;
});
