//! Two [`Session`]s over the userspace TCP stack, exchanging raw IPv4 packets through an in-memory "tunnel" on a
//! virtual clock: "us" (active, AS 65000, 169.254.10.42) and "aws" (passive, AS 64512, 169.254.10.41, announcing
//! the VPC). TCP handshake and BGP establishment, routes both ways, packet loss recovered by TCP retransmission,
//! the tunnel going away and coming back, a peer sending garbage over TCP answered with a NOTIFICATION, the inbound
//! filter and queue bound, and determinism (same seeds, same packets).

use iotrelay_bgp::tcp::{LinkState, RX_QUEUE, TcpLink};
use iotrelay_bgp::wire::{Message, codes::err};
use iotrelay_bgp::{Announce, Config, ConnectMode, Event, Ipv4Cidr, Session, State};
use iotrelay_types::ipv4::{PROTO_TCP, PROTO_UDP};
use std::net::Ipv4Addr;
use std::time::Duration;

const AWS: Ipv4Addr = Ipv4Addr::new(169, 254, 10, 41);
const US: Ipv4Addr = Ipv4Addr::new(169, 254, 10, 42);
const T0: Duration = Duration::from_secs(1000);
const MTU: usize = 1400;

fn p(s: &str) -> Ipv4Cidr {
    s.parse().unwrap()
}

fn us_config() -> Config {
    let mut c = Config::aws(65000, 64512, US);
    c.announce = Announce { prefixes: vec![p("100.127.0.1/32")], prepend: 0, med: None };
    c
}

fn aws_config() -> Config {
    let mut c = Config::aws(64512, 65000, AWS);
    c.mode = ConnectMode::Passive;
    c.announce = Announce { prefixes: vec![p("100.64.0.0/16")], prepend: 0, med: None };
    c
}

/// Both sessions and the tunnel between them.
struct Tunnel {
    us: Session,
    aws: Session,
    now: Duration,
    /// Every packet that crossed, in order, with its direction (true: us -> aws).
    trace: Vec<(bool, Vec<u8>)>,
    /// Drop the n-th packet (counting both directions) when `loss(n)`.
    loss: fn(usize) -> bool,
    sent: usize,
    /// The tunnel carries nothing (it is down).
    cut: bool,
    us_events: Vec<Event>,
}

impl Tunnel {
    fn new(seed: u64) -> Tunnel {
        let mut us = Session::new(us_config(), AWS, 30, MTU, seed, T0).unwrap();
        let mut aws = Session::new(aws_config(), US, 30, MTU, seed ^ 0xabcd, T0).unwrap();
        aws.start(T0);
        us.start(T0);
        Tunnel { us, aws, now: T0, trace: vec![], loss: |_| false, sent: 0, cut: false, us_events: vec![] }
    }

    /// Moves packets both ways until none is left.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(pkt) = self.us.poll_packet() {
                moved = true;
                self.deliver(true, pkt);
            }
            while let Some(pkt) = self.aws.poll_packet() {
                moved = true;
                self.deliver(false, pkt);
            }
            while let Some(e) = self.us.poll_event() {
                self.us_events.push(e);
            }
            while self.aws.poll_event().is_some() {}
            if !moved {
                return;
            }
        }
    }

    fn deliver(&mut self, to_aws: bool, pkt: Vec<u8>) {
        self.sent += 1;
        if self.cut || (self.loss)(self.sent) {
            return;
        }
        self.trace.push((to_aws, pkt.clone()));
        if to_aws {
            assert!(self.aws.handle_packet(self.now, &pkt), "aws refused a packet from us");
        } else {
            assert!(self.us.handle_packet(self.now, &pkt), "us refused a packet from aws");
        }
    }

    /// Advances the virtual clock timer by timer until `until`, pumping packets after each step.
    fn run_until(&mut self, until: Duration) {
        self.pump();
        loop {
            let next = [self.us.poll_timeout(), self.aws.poll_timeout()].into_iter().flatten().min();
            let Some(next) = next.filter(|t| *t <= until) else { break };
            self.now = self.now.max(next);
            self.us.handle_timeout(self.now);
            self.aws.handle_timeout(self.now);
            self.pump();
        }
        self.now = until;
        self.us.handle_timeout(self.now);
        self.aws.handle_timeout(self.now);
        self.pump();
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }
}

fn learned(s: &Session) -> Vec<Ipv4Cidr> {
    s.speaker().routes().iter().map(|r| r.prefix).collect()
}

#[test]
fn establishes_over_tcp_and_exchanges_routes() {
    let mut t = Tunnel::new(1);
    t.run_for(Duration::from_secs(1));
    assert_eq!(t.us.state(), State::Established);
    assert_eq!(t.aws.state(), State::Established);
    assert_eq!(t.us.link_state(), LinkState::Established);
    assert_eq!(learned(&t.us), vec![p("100.64.0.0/16")]);
    assert_eq!(learned(&t.aws), vec![p("100.127.0.1/32")]);
    // The first packet is our SYN to AWS's port 179 from our inside address.
    let (to_aws, syn) = &t.trace[0];
    assert!(to_aws);
    assert_eq!(&syn[12..16], &US.octets());
    assert_eq!(&syn[16..20], &AWS.octets());
    assert_eq!(syn[9], PROTO_TCP);
    let ihl = usize::from(syn[0] & 0x0f) * 4;
    assert_eq!(u16::from_be_bytes([syn[ihl + 2], syn[ihl + 3]]), 179);
    assert_eq!(syn[ihl + 13] & 0x02, 0x02, "SYN flag");
    assert!(t.us_events.iter().any(|e| matches!(e, Event::Established { peer_as: 64512, .. })));
    // Keepalives keep it up for far longer than the hold time.
    t.run_for(Duration::from_secs(300));
    assert_eq!(t.us.state(), State::Established);
    assert_eq!(t.us.speaker().counters().sessions_established, 1);
    assert!(t.us.link_counters().packets_out > 10);
}

#[test]
fn packet_loss_is_recovered_by_tcp() {
    let mut t = Tunnel::new(2);
    // Every third packet is lost, in both directions, SYNs and OPENs included.
    t.loss = |n| n % 3 == 0;
    t.run_for(Duration::from_secs(60));
    assert_eq!(t.us.state(), State::Established);
    assert_eq!(learned(&t.us), vec![p("100.64.0.0/16")]);
    assert_eq!(learned(&t.aws), vec![p("100.127.0.1/32")]);
    assert_eq!(t.us.speaker().counters().malformed_messages, 0);
}

#[test]
fn tunnel_down_ends_the_session_and_withdraws_then_it_comes_back() {
    let mut t = Tunnel::new(3);
    t.run_for(Duration::from_secs(1));
    assert_eq!(t.us.state(), State::Established);
    t.us_events.clear();
    // The tunnel dies: the relay stops the session at once, the learned routes are withdrawn.
    t.cut = true;
    let now = t.now;
    t.us.stop(now);
    assert!(t.us.poll_packet().is_none(), "nothing queued for a dead tunnel");
    t.pump();
    assert_eq!(t.us.state(), State::Idle);
    assert!(learned(&t.us).is_empty());
    assert!(
        t.us_events
            .iter()
            .any(|e| matches!(e, Event::RoutesChanged { withdrawn, .. } if withdrawn == &[p("100.64.0.0/16")]))
    );
    // AWS notices only by its hold timer (30 s after the last octet).
    t.run_for(Duration::from_secs(31));
    assert_eq!(t.aws.state(), State::Active);
    // The tunnel is back: a new connection and session.
    t.cut = false;
    let now = t.now;
    t.us.start(now);
    t.run_for(Duration::from_secs(1));
    assert_eq!(t.us.state(), State::Established, "{:?} {:?}", t.aws.link_state(), t.us.link_state());
    assert_eq!(learned(&t.us), vec![p("100.64.0.0/16")]);
    assert_eq!(t.us.speaker().counters().sessions_established, 2);
}

#[test]
fn silent_peer_hold_timer_then_reconnect() {
    let mut t = Tunnel::new(4);
    t.run_for(Duration::from_secs(1));
    assert_eq!(t.us.state(), State::Established);
    // The last octet from AWS arrived about a second ago (its OPEN, KEEPALIVE and UPDATE).
    t.cut = true;
    t.run_for(Duration::from_secs(28));
    assert_eq!(t.us.state(), State::Established, "hold time is 30 s");
    t.run_for(Duration::from_secs(2));
    assert_ne!(t.us.state(), State::Established);
    assert!(learned(&t.us).is_empty());
    t.cut = false;
    t.run_for(Duration::from_secs(200));
    assert_eq!(t.us.state(), State::Established, "reconnected after the backoff");
    assert_eq!(learned(&t.us), vec![p("100.64.0.0/16")]);
}

#[test]
fn announcements_move_with_prepends() {
    let mut t = Tunnel::new(5);
    t.run_for(Duration::from_secs(1));
    let now = t.now;
    t.us.set_announce(now, Announce { prefixes: vec![p("100.127.0.1/32")], prepend: 2, med: None }).unwrap();
    t.pump();
    let r = t.aws.speaker().routes().get(&p("100.127.0.1/32")).unwrap().clone();
    assert_eq!(r.as_path, vec![65000, 65000, 65000]);
    assert_eq!(r.next_hop, US);
}

/// A raw TCP peer (a [`TcpLink`] listening on AWS's port 179) that sends garbage instead of an OPEN: we answer
/// with NOTIFICATION Message Header Error / Connection Not Synchronized, close, and connect again later.
#[test]
fn garbage_over_tcp_is_answered_with_notification() {
    let mut us = Session::new(us_config(), AWS, 30, MTU, 6, T0).unwrap();
    let mut raw = TcpLink::new(AWS, 30, US, MTU, 7, T0);
    assert!(raw.listen());
    us.start(T0);
    let mut now = T0;
    let mut received = Vec::new();
    let mut sent_garbage = false;
    for _ in 0..200 {
        while let Some(pkt) = us.poll_packet() {
            raw.handle_packet(&pkt);
        }
        raw.poll(now);
        raw.recv(|b| received.extend_from_slice(b));
        if raw.state() == LinkState::Established && !sent_garbage {
            // 19 octets that are not a BGP header (the marker is wrong).
            assert_eq!(raw.send(&[0u8; 19]), 19);
            sent_garbage = true;
            raw.poll(now);
        }
        while let Some(pkt) = raw.poll_packet() {
            us.handle_packet(now, &pkt);
        }
        now += Duration::from_millis(50);
        us.handle_timeout(now);
    }
    assert!(sent_garbage);
    // What we sent on the raw connection: our OPEN, then a NOTIFICATION, then FIN.
    let open_len = usize::from(u16::from_be_bytes([received[16], received[17]]));
    assert!(matches!(Message::parse(&received[..open_len]), Ok(Message::Open(_))));
    match Message::parse(&received[open_len..]) {
        Ok(Message::Notification(n)) => {
            assert_eq!((n.code, n.subcode), (err::MESSAGE_HEADER, 1), "Connection Not Synchronized");
        }
        other => panic!("expected a NOTIFICATION after the OPEN, got {other:?}"),
    }
    assert_eq!(us.speaker().counters().malformed_messages, 1);
    assert_ne!(us.state(), State::Established);
    assert!(matches!(raw.state(), LinkState::Closing | LinkState::Closed), "we closed the connection");
    // Later: a new connection attempt (SYN) after the backoff.
    let before = us.speaker().counters().connect_attempts;
    us.handle_timeout(now + Duration::from_secs(10));
    assert_eq!(us.speaker().counters().connect_attempts, before + 1);
    assert!(us.poll_packet().is_some(), "a new SYN");
}

#[test]
fn inbound_filter_and_queue_bound() {
    let mut us = Session::new(us_config(), AWS, 30, MTU, 8, T0).unwrap();
    // Not from the peer: refused before the stack.
    let mut pkt = vec![0u8; 40];
    pkt[0] = 0x45;
    pkt[9] = PROTO_TCP;
    pkt[12..16].copy_from_slice(&[169, 254, 10, 40]);
    pkt[16..20].copy_from_slice(&US.octets());
    assert!(!us.handle_packet(T0, &pkt));
    // UDP from the peer: refused too.
    pkt[12..16].copy_from_slice(&AWS.octets());
    pkt[9] = PROTO_UDP;
    assert!(!us.handle_packet(T0, &pkt));
    assert!(!us.handle_packet(T0, &[0x45]));
    assert_eq!(us.link_counters().not_for_us, 3);
    // TCP from the peer is taken (the stack then drops it: bad checksum); the queue never holds more than its bound.
    pkt[9] = PROTO_TCP;
    for _ in 0..RX_QUEUE * 3 {
        assert!(us.handle_packet(T0, &pkt));
    }
    assert_eq!(us.link_counters().packets_in, (RX_QUEUE * 3) as u64);
    assert_eq!(us.link_counters().rx_queue_full, 0, "each call drains the queue");
}

#[test]
fn same_seeds_same_packets() {
    let run = |seed| {
        let mut t = Tunnel::new(seed);
        t.run_for(Duration::from_secs(40));
        t.trace
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10), "the seed picks ports and sequence numbers");
}
