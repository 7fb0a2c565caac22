//! The BGP speaker (`crates/bgp/`) fed fuzzed TCP stream chunks, framed messages, time, reconnects and announcement
//! changes, with or without a valid AWS handshake first.
//!
//! Oracles, after every step: nothing panics; every message the speaker sends parses and fits in 4096 octets; a
//! parse error is answered with exactly one NOTIFICATION (code 1, 2, 3 or 7) followed by Close, and the speaker is
//! Idle; Close is never followed by the speaker still connected; the learned-route table never exceeds its bound,
//! and `RoutesChanged` agrees with it; the session reaches Established only if the stream since the connection
//! came up starts with an OPEN carrying AWS's 4-octet AS (64512) followed by a KEEPALIVE (so a garbage stream
//! never does); set_announce refuses exactly what is over AWS's limits.
#![no_main]

use std::net::Ipv4Addr;
use std::time::Duration;

use iotrelay_bgp::wire::{Message, Open};
use iotrelay_bgp::{Announce, Config, Event, Ipv4Cidr, Output, Speaker, State};
use libfuzzer_sys::fuzz_target;

const US: Ipv4Addr = Ipv4Addr::new(169, 254, 10, 2);
const AWS: Ipv4Addr = Ipv4Addr::new(169, 254, 10, 1);
const BOUND: usize = 8;

struct Input<'a>(&'a [u8]);
impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (h, t) = self.0.split_at(n.min(self.0.len()));
        self.0 = t;
        h
    }
    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) << 8 | u16::from(self.u8())
    }
}

fn keepalive() -> Vec<u8> {
    Message::Keepalive.to_bytes()
}

/// The independent check of how Established may be reached: OPEN (version 4, the 4-octet AS capability with
/// 64512 somewhere in it) then exactly a KEEPALIVE.
fn valid_handshake(stream: &[u8]) -> bool {
    if stream.len() < 29 || stream[..16].iter().any(|&b| b != 0xff) || stream[18] != 1 || stream[19] != 4 {
        return false;
    }
    let len = usize::from(u16::from_be_bytes([stream[16], stream[17]]));
    if stream.len() < len + 19 || len < 29 {
        return false;
    }
    let open = &stream[..len];
    open.windows(6).any(|w| w == [65, 4, 0, 0, 0xfc, 0x00]) && stream[len..len + 19] == keepalive()[..]
}

struct Harness {
    s: Speaker,
    now: Duration,
    /// Bytes fed since the last connection came up.
    stream: Vec<u8>,
    was_established: bool,
}

impl Harness {
    /// Drains outputs and events and checks the invariants; `malformed_before` is the counter before the step.
    fn check(&mut self, malformed_before: u64) {
        let out: Vec<Output> = std::iter::from_fn(|| self.s.poll_output()).collect();
        for o in &out {
            if let Output::Send(b) = o {
                assert!(b.len() <= 4096);
                Message::parse(b).unwrap_or_else(|e| panic!("we sent an unparseable message: {e}"));
            }
        }
        if out.last() == Some(&Output::Close) {
            assert!(!self.s.state().is_connected(), "Close but still {:?}", self.s.state());
        }
        if self.s.counters().malformed_messages > malformed_before {
            assert_eq!(self.s.counters().malformed_messages, malformed_before + 1);
            let [.., Output::Send(n), Output::Close] = out.as_slice() else { panic!("no NOTIFICATION+Close: {out:?}") };
            let Ok(Message::Notification(n)) = Message::parse(n) else { panic!("not a NOTIFICATION") };
            assert!(matches!(n.code, 1 | 2 | 3 | 7), "parse error answered with code {}", n.code);
            assert_eq!(self.s.state(), State::Idle);
        }
        let rib = self.s.routes();
        assert!(rib.len() <= BOUND && rib.max() == BOUND);
        while let Some(e) = self.s.poll_event() {
            if let Event::RoutesChanged { learned, withdrawn } = e {
                assert!(learned.iter().all(|p| self.s.routes().get(p).is_some()));
                assert!(withdrawn.iter().all(|p| self.s.routes().get(p).is_none()));
            }
        }
        let established = self.s.state() == State::Established;
        if established && !self.was_established {
            assert!(valid_handshake(&self.stream), "Established without a valid OPEN + KEEPALIVE");
            let id = Ipv4Addr::new(self.stream[24], self.stream[25], self.stream[26], self.stream[27]);
            assert_eq!(self.s.peer_id(), Some(id));
            let theirs = u64::from(u16::from_be_bytes([self.stream[22], self.stream[23]]));
            assert_eq!(self.s.hold_time(), Some(Duration::from_secs(theirs.min(30))));
        }
        self.was_established = established;
    }

    fn feed(&mut self, bytes: &[u8]) {
        let before = self.s.counters().malformed_messages;
        if self.s.state().is_connected() {
            self.stream.extend_from_slice(bytes);
        }
        self.s.handle_bytes(self.now, bytes);
        self.check(before);
    }

    /// Runs timers until the speaker asks to connect, then brings the connection up.
    fn reconnect(&mut self) {
        for _ in 0..4 {
            if let Some(t) = self.s.poll_timeout() {
                self.now = self.now.max(t);
            }
            self.s.handle_timeout(self.now);
            let out: Vec<Output> = std::iter::from_fn(|| self.s.poll_output()).collect();
            if out.contains(&Output::Connect) {
                assert!(self.s.connection_up(self.now));
                self.stream.clear();
                let before = self.s.counters().malformed_messages;
                self.check(before);
                return;
            }
            while self.s.poll_event().is_some() {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.u8();
    let mut cfg = Config::aws(65000, 64512, US);
    cfg.max_learned_routes = BOUND;
    let mut h = Harness {
        s: Speaker::new(cfg, u64::from(mode)).unwrap(),
        now: Duration::from_secs(1000),
        stream: Vec::new(),
        was_established: false,
    };
    h.s.start(h.now);
    h.reconnect();
    assert_eq!(h.s.state(), State::OpenSent);
    let handshake = [Message::Open(Open::new(64512, 30, AWS)).to_bytes(), keepalive()].concat();
    if mode & 1 == 1 {
        h.feed(&handshake);
        assert_eq!(h.s.state(), State::Established);
    }
    while !input.0.is_empty() {
        let op = input.u8();
        match op & 7 {
            0..=2 => {
                let n = usize::from(input.u8());
                let chunk = input.take(n);
                h.feed(chunk);
            }
            3 | 4 => {
                // A framed message: valid marker and length, fuzzed type and body, fed in pieces.
                let ty = input.u8();
                let n = usize::from(input.u16()) % (4096 - 19 + 8);
                let body = input.take(n);
                let mut m = vec![0xff; 16];
                m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
                m.push(ty);
                m.extend_from_slice(body);
                let piece = usize::from(op >> 3) * 64 + 1;
                for c in m.chunks(piece) {
                    h.feed(c);
                }
            }
            5 => {
                h.now += Duration::from_millis(u64::from(input.u16()) * 50);
                let before = h.s.counters().malformed_messages;
                h.s.handle_timeout(h.now);
                h.check(before);
            }
            6 => {
                if op & 8 != 0 {
                    h.s.connection_down(h.now);
                }
                if !h.s.state().is_connected() {
                    h.reconnect();
                    if op & 16 != 0 {
                        h.feed(&handshake);
                    }
                }
                let before = h.s.counters().malformed_messages;
                h.check(before);
            }
            _ => {
                let count = usize::from(input.u8()) % 120;
                let prepend = input.u8() % 12;
                let prefixes: Vec<Ipv4Cidr> =
                    (0..count).map(|i| Ipv4Cidr::new(Ipv4Addr::new(10, 0, i as u8, 0), 24).unwrap()).collect();
                let r = h.s.set_announce(h.now, Announce { prefixes, prepend, med: None });
                assert_eq!(r.is_ok(), count <= 100 && prepend <= 10);
                let before = h.s.counters().malformed_messages;
                h.check(before);
            }
        }
    }
});
