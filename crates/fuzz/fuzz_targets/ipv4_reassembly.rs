//! Inner IPv4/UDP parsing, fragmentation and reassembly.
//!
//! Oracles: parsing arbitrary bytes never panics, and the header-only look (`peek_udp_dst`) names the same
//! destination as the full parse whenever that succeeds; a generated UDP datagram fragmented at a fuzzed MTU and
//! pushed in a fuzzed order, with duplicates and hostile fragments interleaved, reassembles to exactly the original;
//! the reassembler never holds more datagrams than its slots (its memory is allocated once, up front) and every
//! returned datagram parses.
#![no_main]

use std::time::Duration;

use iotrelay_esp::ipv4::{self, Fragmenter, Reassembler};
use libfuzzer_sys::fuzz_target;

const SLOTS: usize = 4;

fuzz_target!(|data: &[u8]| {
    // The cheap look that routes a packet agrees with the full parse wherever the parse succeeds.
    if let Ok(p) = ipv4::parse_udp(data) {
        assert_eq!(ipv4::peek_udp_dst(data), Some((p.dst, p.dport)));
    }
    let _ = ipv4::check_header(data);
    if data.len() < 4 {
        return;
    }
    let len = usize::from(u16::from_le_bytes([data[0], data[1]])) % 4000;
    let mtu = 68 + usize::from(data[2]) * 8;
    let pkt = ipv4::build_udp_vec([100, 64, 1, 10].into(), 7000, [100, 127, 0, 1].into(), 5555, &vec![0x5a; len]);
    let Ok(mut f) = Fragmenter::new(&pkt, mtu) else { return };
    let mut frags = Vec::new();
    let mut buf = vec![0u8; mtu.max(1500)];
    while let Ok(Some(n)) = f.next_into(&mut buf) {
        frags.push(buf[..n].to_vec());
    }
    let mut r = Reassembler::new(SLOTS, 8192, Duration::from_secs(30));
    let mut done = false;
    let mut sent = vec![false; frags.len()];
    let now = Duration::from_secs(1);
    for op in data[3..].chunks(2) {
        if op.len() == 2 && op[0] & 0x80 != 0 {
            // A hostile fragment: arbitrary bytes from the input.
            let start = usize::from(op[1]) % data.len();
            let end = (start + usize::from(op[0] & 0x7f) * 8 + 20).min(data.len());
            if let Ok(Some(d)) = r.push(now, &data[start..end]) {
                let _ = ipv4::check_header(d);
            }
        } else if !frags.is_empty() {
            let i = usize::from(op[0]) % frags.len();
            sent[i] = true;
            if let Ok(Some(d)) = r.push(now, &frags[i]) {
                if frags.len() == 1 || d == &pkt[..] {
                    done = true;
                }
                assert!(ipv4::check_header(d).is_ok(), "reassembled datagram does not parse");
            }
        }
        assert!(r.pending() <= SLOTS);
    }
    // Without hostile input, every fragment delivered means the datagram came out whole.
    if sent.iter().all(|s| *s) && !data[3..].chunks(2).any(|op| op.len() == 2 && op[0] & 0x80 != 0) {
        assert!(done, "all {} fragments delivered but no datagram", frags.len());
    }
});
