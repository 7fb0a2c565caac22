//! The TUN hot path allocates nothing per packet: with a counting global allocator (counting only on the thread
//! that asks, so other tests running in parallel do not disturb it), segmenting 64 KiB TSO super-packets
//! (`tun_gso::segment`) and queueing, coalescing and flushing the resulting segments (`tun_gro::TunOutbox`) with
//! buffers taken beforehand performs zero allocations.
//!
//! A global allocator can only be written with `unsafe` (the trait and `System`'s methods are unsafe): allowed in
//! this test binary only, where it forwards every call to `System` unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use iotrelay_esp::ipv4::{PROTO_TCP, TCP_ACK};
use iotrelay_sidecar::tun_gro::TunOutbox;
use iotrelay_sidecar::tun_gso::{F_NEEDS_CSUM, GSO_TCPV4, VNET_HDR_LEN, VnetHdr, fold, pseudo, segment};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // try_with: the thread-locals may be gone while a thread exits.
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get)
}

/// A vnet frame: header + IPv4/TCP super-packet of `payload` octets in segments of `mss`, as the host hands it.
fn tso_frame(payload: usize, mss: u16) -> Vec<u8> {
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 40,
        gso_size: mss,
        csum_start: 20,
        csum_offset: 16,
    };
    let mut f = hdr.encode().to_vec();
    let mut p = vec![0u8; 40 + payload];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = PROTO_TCP;
    p[12..16].copy_from_slice(&[100, 127, 0, 1]);
    p[16..20].copy_from_slice(&[100, 64, 1, 10]);
    p[20..24].copy_from_slice(&[0x9c, 0x40, 0, 22]);
    p[32] = 5 << 4;
    p[33] = TCP_ACK;
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let seed = fold(pseudo(&p, PROTO_TCP, 20 + payload));
    p[36..38].copy_from_slice(&seed.to_be_bytes());
    f.extend_from_slice(&p);
    f
}

#[test]
fn segmenting_and_coalescing_allocate_nothing() {
    let frame = tso_frame(1382 * 47, 1382);
    let mut read_buf = vec![0u8; 65536 + VNET_HDR_LEN];
    let mut scratch = vec![0u8; 65536];
    let mut outbox = TunOutbox::new(true);
    let mut plain = TunOutbox::new(false);
    let mut segments = 0usize;
    let mut written = 0u64;
    let n = allocations(|| {
        for _ in 0..20 {
            read_buf[..frame.len()].copy_from_slice(&frame);
            let (hdr, at) = VnetHdr::parse(&read_buf[..frame.len()]).unwrap();
            let got = segment(&hdr, &mut read_buf[at..frame.len()], &mut scratch, &mut |s| {
                segments += 1;
                // The datapath would seal it; here the segment goes straight back to the write side.
                if !outbox.push(s) {
                    written += outbox.flush(&mut |_| true).packets;
                    assert!(outbox.push(s));
                }
                assert!(plain.push(s) || (plain.flush(&mut |_| true).writes > 0 && plain.push(s)));
            });
            assert_eq!(got, Ok(47));
            written += outbox.flush(&mut |_| true).packets;
            plain.flush(&mut |_| true);
        }
    });
    assert_eq!(segments, 20 * 47);
    assert_eq!(written, 20 * 47, "every segment written");
    assert_eq!(n, 0, "allocations on the TUN hot path");
    // The counter counts: the same work with a Vec per packet is seen.
    let m = allocations(|| {
        let (hdr, at) = VnetHdr::parse(&frame).unwrap();
        let mut p = frame[at..].to_vec();
        segment(&hdr, &mut p, &mut scratch, &mut |s| drop(s.to_vec())).unwrap();
    });
    assert!(m >= 48, "the counting allocator saw {m} allocations");
}
