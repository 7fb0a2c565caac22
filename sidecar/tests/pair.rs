//! Two sans-IO `Datapath`s (relay = initiator, "AWS" = responder) over an in-memory link with a virtual clock:
//! IKE over 500 then 4500 with the non-ESP marker, CHILD_SA install, a relayed packet and its reply, a CHILD_SA
//! rekey with traffic on both sides of it, DELETE on close, and hostile datagrams on 4500.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use iotrelay_crypto::SeededRandom;
use iotrelay_sidecar::datapath::{Datapath, ForwardId, Out};

mod common;
use common::{AWS, Capture, RELAY, relay_and_device};

struct Pair {
    relay: Datapath,
    aws: Datapath,
    rng: SeededRandom,
    now: Duration,
    /// Datagrams relay -> its forward clients.
    relay_clients: Vec<(SocketAddrV4, Vec<u8>)>,
}

impl Pair {
    fn new() -> Pair {
        let mut rng = SeededRandom::new(7);
        let now = Duration::ZERO;
        // The "AWS" side plays the device; its client's datagrams come back as replies to CLIENT's session.
        let (relay, aws) = relay_and_device("aes128gcm16", "203.0.113.10/32", CLIENT.port(), now, &mut rng);
        Pair { relay, aws, rng, now, relay_clients: Vec::new() }
    }

    /// Moves datagrams both ways until both sides are quiet.
    fn pump(&mut self) {
        for _ in 0..50 {
            let mut a = Capture::default();
            self.relay.drain(&mut a);
            let mut b = Capture::default();
            self.aws.drain(&mut b);
            if a.0.is_empty() && b.0.is_empty() {
                return;
            }
            self.deliver(a, true);
            self.deliver(b, false);
        }
        panic!("link never went quiet");
    }

    fn deliver(&mut self, c: Capture, from_relay: bool) {
        let (src_ip, dst) = if from_relay { (RELAY, &mut self.aws) } else { (AWS, &mut self.relay) };
        for (out, mut data) in c.0 {
            match out {
                Out::Outside { local_port, remote } => {
                    let want = if from_relay { AWS } else { RELAY };
                    assert_eq!(remote.ip(), want);
                    let from = SocketAddr::new(src_ip.into(), local_port);
                    let mut sink = Capture::default();
                    if local_port == 4500 {
                        dst.handle_udp4500(self.now, from, &mut data, &mut sink);
                    } else {
                        dst.handle_udp500(self.now, from, &data);
                    }
                    assert!(sink.0.iter().all(|(o, _)| matches!(o, Out::Forward { .. })));
                    if !from_relay {
                        for (o, d) in sink.0 {
                            if let Out::Forward { client, .. } = o {
                                self.relay_clients.push((client, d));
                            }
                        }
                    }
                }
                Out::Forward { client, .. } if !from_relay => {
                    panic!("aws side answered a client {client}")
                }
                Out::Forward { client, .. } => self.relay_clients.push((client, data)),
                Out::Tun => panic!("a TUN packet without gateway mode"),
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        let mut a = Capture::default();
        self.relay.handle_timeout(self.now, &mut self.rng, &mut a);
        let mut b = Capture::default();
        self.aws.handle_timeout(self.now, &mut self.rng, &mut b);
        self.deliver(a, true);
        self.deliver(b, false);
        self.pump();
    }

    /// A client datagram into the relay's forward; returns what was sent to the outside.
    fn client_to_relay(&mut self, client: SocketAddrV4, payload: &[u8]) {
        let mut c = Capture::default();
        self.relay.handle_forward(self.now, ForwardId(0), client, payload, &mut c);
        self.deliver(c, true);
        self.pump();
    }

    /// The device answers from port 7000 (the aws side keeps the client port as the inside source port).
    fn device_reply(&mut self, payload: &[u8]) {
        let mut c = Capture::default();
        self.aws.handle_forward(
            self.now,
            ForwardId(0),
            SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 50), 7000),
            payload,
            &mut c,
        );
        self.deliver(c, false);
        self.pump();
    }
}

fn established(d: &Datapath) -> bool {
    let (t, _, _) = d.snapshot();
    t.iter().all(|t| t.engine.state == iotrelay_ikev2::TunnelState::Established && t.active)
}

const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 5555);

#[test]
fn round_trip_rekey_and_close() {
    let mut p = Pair::new();
    // No tunnel yet: counted as noTunnel.
    p.client_to_relay(CLIENT, b"too early");
    p.pump();
    assert!(established(&p.relay), "relay tunnel not established");
    assert!(established(&p.aws));
    let (_, f, _) = p.relay.snapshot();
    assert_eq!(f[0].drops.no_tunnel, 1);

    // A relayed packet reaches the device side (which has no session for it: counted there as noSession,
    // proving it was decrypted and parsed), and the device's reply comes back to the client.
    p.client_to_relay(CLIENT, b"hello");
    let (_, af, adp) = p.aws.snapshot();
    assert_eq!(af[0].drops.no_session, 1, "aws side did not decrypt the relayed packet");
    assert_eq!(adp, Default::default());
    p.device_reply(b"hello back");
    assert_eq!(p.relay_clients, vec![(CLIENT, b"hello back".to_vec())]);
    let (t, f, _) = p.relay.snapshot();
    assert_eq!((f[0].packets_in, f[0].packets_out, f[0].sessions), (1, 1, 1));
    assert_eq!((t[0].child.packets_out, t[0].child.packets_in), (1, 1));

    // Source outside allowedSources.
    p.client_to_relay(SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 11), 1), b"x");
    assert_eq!(p.relay.snapshot().1[0].drops.source_not_allowed, 1);

    // CHILD_SA rekey: new SPIs, traffic continues in both directions, old inbound deleted after the grace time.
    let old = p.relay.snapshot().0[0].engine.child_inbound_spi();
    p.relay.rekey(0, false, p.now);
    p.pump();
    let new = p.relay.snapshot().0[0].engine.child_inbound_spi();
    assert!(new.is_some() && new != old, "CHILD_SA not rekeyed");
    p.client_to_relay(CLIENT, b"after rekey");
    // The aws side decrypted it on the new SA (ESP packets in: 2).
    assert_eq!(p.aws.snapshot().0[0].child.packets_in, 2);
    p.device_reply(b"reply after rekey");
    assert_eq!(p.relay_clients.len(), 2);
    p.advance(Duration::from_secs(6));
    p.client_to_relay(CLIENT, b"later");
    p.device_reply(b"later reply");
    assert_eq!(p.relay_clients.len(), 3);
    assert_eq!(p.aws.snapshot().0[0].child.packets_in, 3);
    assert_ne!(p.relay.snapshot().0[0].engine.child_outbound_spi(), None);
    let (_, _, dp) = p.relay.snapshot();
    assert_eq!(dp, Default::default(), "datapath drops on the relay: {dp:?}");

    // Close: DELETE is answered, both sides end without SAs.
    p.relay.close_all(p.now);
    p.pump();
    assert!(!p.relay.closing(), "DELETE not acknowledged");
    assert!(p.aws.snapshot().0[0].engine.child_inbound_spi().is_none(), "aws side kept the CHILD_SA");
}

#[test]
fn hostile_datagrams_on_4500_are_counted() {
    let mut p = Pair::new();
    p.pump();
    assert!(established(&p.relay));
    let from = SocketAddr::new(AWS.into(), 4500);
    let mut sink = Capture::default();
    // Keepalive: ignored, not counted.
    p.relay.handle_udp4500(p.now, from, &mut [0xff], &mut sink);
    // Garbage: too short.
    p.relay.handle_udp4500(p.now, from, &mut [1, 2, 3], &mut sink);
    // Unknown SPI.
    p.relay.handle_udp4500(p.now, from, &mut [0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1, 0, 0, 0, 0], &mut sink);
    // Known SPI, bad ICV.
    let spi = p.relay.snapshot().0[0].engine.child_inbound_spi().unwrap();
    let mut forged = spi.to_be_bytes().to_vec();
    forged.extend_from_slice(&[0, 0, 0, 1]);
    forged.extend_from_slice(&[0x55; 64]);
    p.relay.handle_udp4500(p.now, from, &mut forged, &mut sink);
    // IKE garbage behind the marker: the engine drops it.
    p.relay.handle_udp4500(p.now, from, &mut [0, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9], &mut sink);
    assert!(sink.0.is_empty());
    let (t, _, dp) = p.relay.snapshot();
    assert_eq!((dp.malformed, dp.unknown_spi, dp.integrity, dp.replay), (1, 1, 1, 0));
    assert!(t[0].engine.counters.invalid_messages >= 1);
    assert!(established(&p.relay), "hostile input took the tunnel down");
}

#[test]
fn idle_sessions_expire_through_the_timers() {
    let mut p = Pair::new();
    p.pump();
    p.client_to_relay(CLIENT, b"q");
    p.device_reply(b"r");
    assert_eq!(p.relay.snapshot().1[0].sessions, 1);
    assert!(p.relay.poll_timeout().is_some_and(|t| t <= p.now + Duration::from_secs(60)));
    // idleTimeout is 60 s: the timers remove the session, and a late reply finds none.
    p.advance(Duration::from_secs(61));
    assert_eq!(p.relay.snapshot().1[0].sessions, 0, "idle session not expired");
    p.device_reply(b"too late");
    assert_eq!(p.relay_clients.len(), 1);
    let f = &p.relay.snapshot().1[0];
    assert_eq!((f.drops.no_session, f.packets_out), (1, 1));
}

/// Where the relay sends ESP now: the outside destination of a freshly relayed client datagram.
fn esp_destination(p: &mut Pair) -> SocketAddr {
    let mut c = Capture::default();
    p.relay.handle_forward(p.now, ForwardId(0), CLIENT, b"where to?", &mut c);
    let dst = c.0.iter().find_map(|(o, _)| match o {
        Out::Outside { local_port: 4500, remote } => Some(*remote),
        _ => None,
    });
    p.deliver(c, true);
    p.pump();
    dst.expect("no ESP sent")
}

/// RFC 7296 §2.23: datagrams on 4500 from the peer's IP but another port, unauthenticated IKE
/// behind the non-ESP marker, a replayed IKE request, or a genuine ESP packet re-sent from another port, never move
/// where ESP goes; an authenticated IKE message from a new port (a NAT rebinding) does.
#[test]
fn only_authenticated_ike_moves_the_peer_port() {
    let mut p = Pair::new();
    p.pump();
    assert!(established(&p.relay));
    let home = SocketAddr::new(AWS.into(), 4500);
    assert_eq!(esp_destination(&mut p), home);
    let spoofed = SocketAddr::new(AWS.into(), 31337);
    let st = p.relay.snapshot().0[0].engine.clone();
    let (spi_i, spi_r) = (st.ike_local_spi().unwrap(), st.ike_remote_spi().unwrap());

    // 1. IKE with the SA's real SPIs (INFORMATIONAL request, next message id) but a garbage SK payload.
    let mut forged = vec![0u8; 4];
    forged.extend_from_slice(&spi_i.to_be_bytes());
    forged.extend_from_slice(&spi_r.to_be_bytes());
    forged.extend_from_slice(&[46, 0x20, 37, 0x00]); // next SK, v2.0, INFORMATIONAL, request (we were initiator)
    forged.extend_from_slice(&0u32.to_be_bytes());
    let len = 28 + 4 + 48;
    forged.extend_from_slice(&(len as u32).to_be_bytes());
    forged.extend_from_slice(&[0, 0, 0, 52]);
    forged.extend_from_slice(&[0x77; 48]);
    let mut sink = Capture::default();
    p.relay.handle_udp4500(p.now, spoofed, &mut forged, &mut sink);
    assert_eq!(esp_destination(&mut p), home, "unauthenticated IKE moved the ESP destination");

    // 2. A genuine IKE request from the peer (a CHILD_SA rekey) is answered, then replayed from another port: the
    // engine answers the replay from its cache without authenticating it, and nothing moves.
    p.aws.rekey(0, false, p.now);
    let mut c = Capture::default();
    p.aws.drain(&mut c);
    let request = c.0.first().map(|(_, d)| d.clone()).expect("no rekey request");
    p.deliver(c, false);
    p.pump();
    let mut replay = request.clone();
    let mut sink = Capture::default();
    p.relay.handle_udp4500(p.now, spoofed, &mut replay, &mut sink);
    p.relay.drain(&mut sink);
    assert_eq!(esp_destination(&mut p), home, "a replayed IKE request moved the ESP destination");

    // 3. A genuine ESP packet from the peer, delivered from another port (an on-path race): accepted, but ESP
    // keeps going home.
    let mut c = Capture::default();
    p.aws.handle_forward(p.now, ForwardId(0), SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 50), 7000), b"r", &mut c);
    for (o, mut d) in c.0 {
        if let Out::Outside { local_port: 4500, .. } = o {
            let mut sink = Capture::default();
            p.relay.handle_udp4500(p.now, spoofed, &mut d, &mut sink);
        }
    }
    assert_eq!(esp_destination(&mut p), home, "ESP from another port moved the ESP destination");
    assert!(established(&p.relay), "hostile input took the tunnel down");

    // 4. A NAT rebinding: the peer's next authenticated request comes from a new port; ESP follows it.
    p.aws.rekey(0, false, p.now);
    let mut c = Capture::default();
    p.aws.drain(&mut c);
    let mut answers = Capture::default();
    for (o, mut d) in c.0 {
        if let Out::Outside { local_port: 4500, .. } = o {
            p.relay.handle_udp4500(p.now, spoofed, &mut d, &mut answers);
        }
    }
    assert_eq!(esp_destination(&mut p), spoofed, "an authenticated IKE message did not move the ESP destination");
}

/// `spec.maxSessionsPerSource`: one client IP from many ports gets that many sessions; the next is refused and
/// counted in the forward's status drops (`status.forwards[].drops.sourceSessionLimit`), its sessions keep working.
#[test]
fn per_source_session_limit_is_configurable_and_in_the_status_drops() {
    let mut p = Pair::new();
    p.pump();
    p.relay.set_max_sessions_per_source(2);
    for port in [5001, 5002, 5003, 5004] {
        p.client_to_relay(SocketAddrV4::new(*CLIENT.ip(), port), b"s");
    }
    let f = &p.relay.snapshot().1[0];
    assert_eq!((f.sessions, f.drops.source_session_limit, f.drops.queue_full), (2, 2, 0));
    // Raised live: the same source gets a third session.
    p.relay.set_max_sessions_per_source(3);
    p.client_to_relay(SocketAddrV4::new(*CLIENT.ip(), 5005), b"s");
    let f = &p.relay.snapshot().1[0];
    assert_eq!((f.sessions, f.drops.source_session_limit), (3, 2));
}

/// A device's reply larger than the tunnel's MTU arrives in IPv4 fragments (the aws side fragments it before
/// sealing, as a VPC host's stack does); the relay reassembles them and the client gets the whole datagram. A
/// reply whose last fragment never comes is held only until the reassembly timeout and then counted.
#[test]
fn fragmented_replies_are_reassembled() {
    let mut p = Pair::new();
    p.pump();
    assert!(established(&p.relay));
    p.client_to_relay(CLIENT, b"send me a lot");
    let big: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    p.device_reply(&big);
    assert!(p.aws.snapshot().0[0].child.packets_out >= 3, "the reply was not fragmented");
    assert_eq!(p.relay_clients.len(), 1, "the fragmented reply did not arrive");
    assert!(p.relay_clients[0] == (CLIENT, big.clone()), "the reply arrived altered");
    assert_eq!(p.relay.snapshot().2, Default::default(), "datapath drops on the relay");

    // Only the first fragment of a reply: nothing is delivered, and once the timeout passed the next fragmented
    // reply evicts it and it is counted.
    let mut c = Capture::default();
    let device = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 50), 7000);
    p.aws.handle_forward(p.now, ForwardId(0), device, &big, &mut c);
    let esp: Vec<_> = c.0.into_iter().filter(|(o, _)| matches!(o, Out::Outside { local_port: 4500, .. })).collect();
    assert!(esp.len() >= 3);
    let mut first = Capture::default();
    first.0.push(esp[0].clone());
    p.deliver(first, false);
    assert_eq!(p.relay_clients.len(), 1, "an incomplete reply was delivered");
    assert_eq!(p.relay.reassembly_dropped(), 0);
    p.advance(Duration::from_secs(16));
    p.device_reply(&big);
    assert_eq!(p.relay_clients.len(), 2);
    assert!(p.relay_clients[1].1 == big, "the second reply arrived altered");
    assert_eq!(p.relay.reassembly_dropped(), 1);
}

/// `status.tunnels[].ikeMessagesIn` counts IKE datagrams from the tunnel's peer on 500 and 4500 (what `kubectl
/// iotrelay diagnose` reads as "AWS answering"); keepalives, ESP and IKE from other addresses are not counted. A
/// CHILD_SA rekey adds the peer's answer and one completed rekey.
#[test]
fn ike_messages_from_the_peer_are_counted() {
    let mut p = Pair::new();
    p.pump();
    assert!(established(&p.relay));
    let ike_in = |p: &Pair| p.relay.snapshot().0[0].child.ike_messages_in;
    let answered = ike_in(&p);
    assert!(answered >= 2, "IKE_SA_INIT and IKE_AUTH answers: {answered}");
    let mut sink = Capture::default();
    p.relay.handle_udp4500(p.now, SocketAddr::new(AWS.into(), 4500), &mut [0xff], &mut sink);
    let stranger = SocketAddr::new(Ipv4Addr::new(192, 0, 2, 99).into(), 500);
    p.relay.handle_udp500(p.now, stranger, &[0; 28]);
    p.client_to_relay(CLIENT, b"esp");
    assert_eq!(ike_in(&p), answered, "only IKE from the peer counts");
    p.relay.handle_udp500(p.now, SocketAddr::new(AWS.into(), 500), &[0; 28]);
    assert_eq!(ike_in(&p), answered + 1, "IKE from the peer's address counts, authenticated or not");
    p.relay.rekey(0, false, p.now);
    p.pump();
    assert_eq!(ike_in(&p), answered + 2, "the CREATE_CHILD_SA answer");
    assert_eq!(p.relay.snapshot().0[0].engine.counters.child_rekeys, 1);
}
