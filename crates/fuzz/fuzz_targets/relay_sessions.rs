//! The relay's allow-lists and bounded session table under fuzzed clients, replies, time and reconfiguration.
//!
//! Oracles, after every step: a source outside a forward's `allowedSources` never holds a session on it (the
//! flooder 198.51.100.66 is never allowed anywhere, and narrowed allow-lists end sessions); the table never
//! exceeds `max_sessions`, no client IP exceeds `max_per_source`; the forwards' `sessions` counters add up to the
//! table size; a reply is delivered only to a client that sent on that forward.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use iotrelay_esp::ipv4;
use iotrelay_relay::{ForwardConfig, Relay};
use libfuzzer_sys::fuzz_target;

const INSIDE: Ipv4Addr = Ipv4Addr::new(100, 127, 0, 1);
const MAX: usize = 24;
const PER_SOURCE: usize = 5;
const FLOODER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);

fn target(k: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(100, 64, 1, 10 + k), 7000)
}

fn forwards(narrow: bool, idle: u64) -> Vec<ForwardConfig> {
    let allowed = if narrow { "203.0.113.0/30" } else { "203.0.113.0/28" };
    (0..3u8)
        .map(|k| ForwardConfig {
            name: format!("f{k}"),
            listen_port: 7000 + u16::from(k),
            allowed_sources: vec![allowed.parse().unwrap()],
            target: target(k),
            idle_timeout: Duration::from_secs(idle),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut r = Relay::with_limits(INSIDE, forwards(false, 30), MAX, PER_SOURCE);
    let mut now = Duration::ZERO;
    let mut narrow = false;
    let mut out = [0u8; 256];
    let mut senders: Vec<(usize, SocketAddrV4)> = Vec::new();
    for op in data.chunks_exact(4) {
        let ids: Vec<_> = r.forwards().map(|(id, _)| id).collect();
        match op[0] % 6 {
            0 | 1 | 2 => {
                let ip = if op[1] < 40 { FLOODER } else { Ipv4Addr::new(203, 0, 113, op[1] % 20) };
                let client = SocketAddrV4::new(ip, u16::from_le_bytes([op[2], op[3]]));
                let f = usize::from(op[3] % 3);
                if let Some(&id) = ids.get(f)
                    && r.on_client_datagram(now, id, client, &op[..2], &mut out).is_ok()
                {
                    senders.push((f, client));
                }
            }
            3 => {
                // A reply from a target (or not) to an inside port.
                let from = target(op[1] % 4);
                let port = u16::from_le_bytes([op[2], op[3]]);
                let pkt = ipv4::build_udp_vec(*from.ip(), from.port(), INSIDE, port, b"r");
                if let Ok(d) = r.on_inner_packet(now, &pkt) {
                    let f = usize::from(op[1] % 4);
                    assert!(senders.contains(&(f, d.client)), "reply to {} who never sent on forward {f}", d.client);
                }
                let _ = r.on_inner_packet(now, op);
            }
            4 => now += Duration::from_secs(u64::from(op[1] % 40)),
            _ => {
                narrow = op[1] & 1 == 1;
                r.set_forwards(forwards(narrow, 10 + u64::from(op[2] % 40)));
                if r.next_expiry().is_some_and(|t| t <= now) {
                    r.expire(now);
                }
            }
        }
        let (max, per) = r.session_limits();
        assert!(r.session_count() <= max);
        assert_eq!(r.sessions_of_source(FLOODER), 0, "a disallowed source holds a session");
        for k in 0..20u8 {
            let ip = Ipv4Addr::new(203, 0, 113, k);
            assert!(r.sessions_of_source(ip) <= per);
            if narrow && k > 3 {
                assert_eq!(r.sessions_of_source(ip), 0, "{ip} kept a session after its prefix was removed");
            }
        }
        let sum: u64 = r.forwards().filter_map(|(id, _)| r.stats(id)).map(|s| s.sessions).sum();
        assert_eq!(sum, r.session_count() as u64);
    }
});
