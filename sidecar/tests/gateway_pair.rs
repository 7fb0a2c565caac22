//! Gateway mode between two sans-IO `Datapath`s over an in-memory link (relay = initiator, "AWS" = an iotrelay
//! responder in gateway mode, `startupAction: Add`): packets the host writes to one side's TUN come out of the
//! other side's TUN unchanged; forwards keep working next to it; selectors, anti-spoofing, PMTU (ICMP
//! "fragmentation needed" with DF, fragmentation without) and MSS clamping, each with its counter.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use iotrelay_crypto::proposal::EspProposal;
use iotrelay_esp::ipv4::{self, FLAG_DF, PROTO_ICMP, PROTO_TCP, PROTO_UDP, TCP_SYN};
use iotrelay_ikev2::{Ipv4Cidr, StartupAction};
use iotrelay_sidecar::datapath::{Datapath, ForwardId, Out, TunnelPlan};
use iotrelay_sidecar::gateway::{GatewayConfig, GatewayDrop};

mod common;
use common::{AWS, Capture, CountingRandom, DEVICE, RELAY, RELAY_INSIDE, admin_forward, config};

/// The AWS side's own address inside its VPC (its TUN address).
const AWS_INSIDE: Ipv4Addr = Ipv4Addr::new(100, 64, 255, 1);
const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 40000);

struct Pair {
    relay: Datapath,
    aws: Datapath,
    /// Every random octet both sides take (counted: the per-packet paths must take none).
    rng: CountingRandom,
    now: Duration,
    /// What each side wrote to its TUN device.
    relay_tun: Vec<Vec<u8>>,
    aws_tun: Vec<Vec<u8>>,
    relay_clients: Vec<(SocketAddrV4, Vec<u8>)>,
}

impl Pair {
    /// `aws_local_ts`: what the AWS side's selectors allow on its side (the relay's TSr is narrowed to it).
    fn new(aws_local_ts: Vec<Ipv4Cidr>) -> Pair {
        Pair::with_esp(aws_local_ts, "aes128gcm16")
    }

    /// As [`Pair::new`], with ESP proposal `esp` on both ends.
    fn with_esp(aws_local_ts: Vec<Ipv4Cidr>, esp: &str) -> Pair {
        let mut rng = CountingRandom::new(12);
        let now = Duration::ZERO;
        let forward = admin_forward();
        let esp = vec![EspProposal::parse(esp).expect("proposal")];
        let mut relay_cfg = config(StartupAction::Start, RELAY);
        relay_cfg.esp_proposals = esp.clone();
        let mut relay = Datapath::new(
            RELAY_INSIDE,
            1024,
            RELAY,
            vec![TunnelPlan { name: "tunnel1".into(), peer: AWS, config: relay_cfg }],
            vec![forward],
            now,
            &mut rng,
        );
        relay.set_gateway(Some(GatewayConfig {
            mtu: None,
            remote_subnets: vec!["100.64.0.0/16".parse().unwrap()],
            local: None,
        }));
        let mut aws_cfg = config(StartupAction::Add, AWS);
        aws_cfg.local_ts = aws_local_ts;
        aws_cfg.esp_proposals = esp;
        let mut aws = Datapath::new(
            AWS_INSIDE,
            1024,
            AWS,
            vec![TunnelPlan { name: "relay".into(), peer: RELAY, config: aws_cfg }],
            vec![],
            now,
            &mut rng,
        );
        aws.set_gateway(Some(GatewayConfig {
            mtu: None,
            remote_subnets: vec!["100.127.0.0/16".parse().unwrap()],
            local: None,
        }));
        let mut p = Pair { relay, aws, rng, now, relay_tun: vec![], aws_tun: vec![], relay_clients: vec![] };
        p.pump();
        assert!(p.relay.gateway_mtu().is_some(), "CHILD_SA installed");
        p
    }

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
        for (out, mut data) in c.0 {
            match out {
                Out::Outside { local_port, .. } => {
                    let (src, dst) = if from_relay { (RELAY, &mut self.aws) } else { (AWS, &mut self.relay) };
                    let from = SocketAddr::new(src.into(), local_port);
                    let mut sink = Capture::default();
                    if local_port == 4500 {
                        dst.handle_udp4500(self.now, from, &mut data, &mut sink);
                    } else {
                        dst.handle_udp500(self.now, from, &data);
                    }
                    // What the receiving side emitted: to its TUN or its forward clients.
                    self.deliver(sink, !from_relay);
                }
                Out::Tun if from_relay => self.relay_tun.push(data),
                Out::Tun => self.aws_tun.push(data),
                Out::Forward { client, .. } => self.relay_clients.push((client, data)),
            }
        }
    }

    /// The host on the relay side writes `packet` to the relay's TUN device.
    fn relay_host_sends(&mut self, mut packet: Vec<u8>) {
        let mut c = Capture::default();
        self.relay.handle_tun(self.now, &mut packet, &mut c);
        self.deliver(c, true);
        self.pump();
    }

    /// A host in the AWS side's VPC sends `packet` (routed into the AWS side's TUN device).
    fn vpc_sends(&mut self, mut packet: Vec<u8>) {
        let mut c = Capture::default();
        self.aws.handle_tun(self.now, &mut packet, &mut c);
        self.deliver(c, false);
        self.pump();
    }
}

/// An IPv4 packet of `total` octets (protocol `proto`, payload filled with a pattern), DF as asked.
fn packet(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, total: usize, df: bool) -> Vec<u8> {
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    if df {
        p[6..8].copy_from_slice(&FLAG_DF.to_be_bytes());
    }
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = ipv4::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    for (i, b) in p[20..].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    if proto == PROTO_ICMP {
        p[20] = 8; // echo request
    }
    p
}

fn any() -> Vec<Ipv4Cidr> {
    vec![Ipv4Cidr::ANY]
}

#[test]
fn packets_cross_both_ways_unchanged_next_to_a_forward() {
    let mut p = Pair::new(any());
    let ping = packet(RELAY_INSIDE, DEVICE, PROTO_ICMP, 84, true);
    p.relay_host_sends(ping.clone());
    assert_eq!(p.aws_tun, vec![ping], "the AWS side's TUN gets the relay host's ping as it was sent");
    let pong = packet(DEVICE, RELAY_INSIDE, PROTO_ICMP, 84, true);
    p.vpc_sends(pong.clone());
    assert_eq!(p.relay_tun, vec![pong], "and the relay host gets the answer");
    assert_eq!((p.relay.gateway_counters().to_tunnel, p.relay.gateway_counters().to_device), (1, 1));

    // A forward next to it: the client's datagram reaches the VPC side as UDP from the inside address, and the
    // device's answer (through the AWS side's TUN) goes back to the client, not to the relay host's TUN.
    p.aws_tun.clear();
    p.relay_tun.clear();
    let mut c = Capture::default();
    p.relay.handle_forward(p.now, ForwardId(0), CLIENT, b"status?", &mut c);
    p.deliver(c, true);
    p.pump();
    assert_eq!(p.aws_tun.len(), 1);
    let udp = ipv4::parse_udp(&p.aws_tun[0]).expect("inner UDP");
    assert_eq!((udp.src, udp.dst, udp.dport, udp.payload), (RELAY_INSIDE, DEVICE, 7000, &b"status?"[..]));
    let reply = ipv4::build_udp_vec(DEVICE, 7000, RELAY_INSIDE, udp.sport, b"ok");
    p.vpc_sends(reply);
    assert_eq!(p.relay_clients, vec![(CLIENT, b"ok".to_vec())]);
    assert!(p.relay_tun.is_empty(), "a forward's reply is not the host's");
}

#[test]
fn tun_packets_read_no_os_randomness_after_setup() {
    // AES-CBC: every packet needs a fresh IV. It comes from the tunnel's own generator (seeded once when the
    // tunnel is created), never from the relay's random source, which is the OS generator in the sidecar.
    let mut p = Pair::with_esp(any(), "aes128-sha1");
    let setup_reads = p.rng.reads;
    assert!(setup_reads > 0, "the counter counts (the IKE exchange took randomness)");
    let mut ivs = std::collections::HashSet::new();
    for i in 0..20u8 {
        let mut ping = packet(RELAY_INSIDE, DEVICE, PROTO_ICMP, 84 + usize::from(i), true);
        let mut c = Capture::default();
        p.relay.handle_tun(p.now, &mut ping, &mut c);
        let Some((Out::Outside { .. }, esp)) = c.0.first() else { panic!("packet {i} not sealed") };
        // ESP header (8 octets), then the 16-octet CBC IV.
        assert!(ivs.insert(esp[8..24].to_vec()), "IV of packet {i} repeated");
        p.deliver(c, true);
        p.vpc_sends(packet(DEVICE, RELAY_INSIDE, PROTO_ICMP, 84, true));
    }
    assert_eq!((p.aws_tun.len(), p.relay_tun.len()), (20, 20), "every packet crossed both ways");
    assert_eq!(p.rng.reads, setup_reads, "random source reads on the TUN path after setup");
}

#[test]
fn selectors_and_spoofed_sources_are_dropped_and_counted() {
    // The AWS side allows only 100.64.1.0/24 on its side: the relay's TSr is narrowed to it.
    let mut p = Pair::new(vec!["100.64.1.0/24".parse().unwrap()]);
    // Inside remoteSubnets but outside the negotiated selectors; and outside remoteSubnets altogether.
    p.relay_host_sends(packet(RELAY_INSIDE, Ipv4Addr::new(100, 64, 2, 5), PROTO_ICMP, 84, false));
    p.relay_host_sends(packet(RELAY_INSIDE, Ipv4Addr::new(198, 51, 100, 99), PROTO_ICMP, 84, false));
    assert!(p.aws_tun.is_empty(), "nothing outside the selectors is sent");
    assert_eq!(p.relay.gateway_counters().drops_of(GatewayDrop::OutsideSelectors), 2);
    assert_eq!(p.relay.gateway_counters().to_tunnel, 0);
    p.vpc_sends(packet(Ipv4Addr::new(100, 64, 1, 10), Ipv4Addr::new(100, 127, 0, 1), PROTO_ICMP, 84, false));
    assert_eq!(p.relay_tun.len(), 1, "a legitimate source still passes");
    // The AWS side's own rule: its packets to the relay must come from inside its selectors (100.64.1.0/24).
    p.vpc_sends(packet(Ipv4Addr::new(100, 64, 7, 7), RELAY_INSIDE, PROTO_ICMP, 84, false));
    assert_eq!(p.aws.gateway_counters().drops_of(GatewayDrop::OutsideSelectors), 1);
    assert_eq!(p.relay_tun.len(), 1);
    // Not IPv4 (an IPv6 packet the host wrote to the device).
    let mut v6 = vec![0x60u8; 60];
    let mut c = Capture::default();
    p.relay.handle_tun(p.now, &mut v6, &mut c);
    assert!(c.0.is_empty());
    assert_eq!(p.relay.gateway_counters().drops_of(GatewayDrop::NotIpv4), 1);
}

#[test]
fn spoofed_source_from_the_tunnel_is_dropped() {
    let mut p = Pair::new(any());
    // The AWS side sends what its VPC hands it; 10.9.9.9 is no source the relay routes to the tunnel.
    let mut spoof = packet(Ipv4Addr::new(100, 64, 1, 10), RELAY_INSIDE, PROTO_ICMP, 84, false);
    spoof[12..16].copy_from_slice(&[100, 63, 0, 1]);
    spoof[10..12].copy_from_slice(&[0, 0]);
    let c = ipv4::checksum(&spoof[..20]);
    spoof[10..12].copy_from_slice(&c.to_be_bytes());
    // The AWS side's TS is 0/0 and its remoteSubnets is the relay's 100.127.0.0/16 (the destination): it sends.
    p.vpc_sends(spoof);
    assert!(p.relay_tun.is_empty(), "spoofed source written to the host");
    assert_eq!(p.relay.gateway_counters().drops_of(GatewayDrop::SpoofedSource), 1);
}

#[test]
fn pmtu_frag_needed_with_df_fragments_without_and_mss_clamped() {
    let mut p = Pair::new(any());
    let mtu = p.relay.gateway_mtu().unwrap();
    let m = usize::from(mtu);
    // Exactly the MTU with DF: one packet, unchanged.
    let full = packet(RELAY_INSIDE, DEVICE, PROTO_UDP, m, true);
    p.relay_host_sends(full.clone());
    assert_eq!(p.aws_tun, vec![full]);
    // One more octet with DF: not sent; ICMP "fragmentation needed" with the MTU comes back to the host.
    p.aws_tun.clear();
    let big = packet(RELAY_INSIDE, DEVICE, PROTO_UDP, m + 1, true);
    p.relay_host_sends(big.clone());
    assert!(p.aws_tun.is_empty(), "a too-big DF packet was sent");
    assert_eq!(p.relay_tun.len(), 1);
    let icmp = &p.relay_tun[0];
    assert_eq!(ipv4::check_header(icmp).unwrap().1, icmp.len());
    assert_eq!((icmp[9], icmp[20], icmp[21]), (PROTO_ICMP, 3, 4), "ICMP type 3 code 4");
    assert_eq!(u16::from_be_bytes([icmp[26], icmp[27]]), mtu, "next-hop MTU");
    assert_eq!(&icmp[16..20], &RELAY_INSIDE.octets(), "to the sender");
    assert_eq!(&icmp[28..48], &big[..20], "quotes the packet's header");
    assert_eq!(p.relay.gateway_counters().drops_of(GatewayDrop::TooBig), 1);
    // Without DF: fragmented before encryption; the other side's host gets fragments that reassemble.
    let big = packet(RELAY_INSIDE, DEVICE, PROTO_UDP, 3000, false);
    p.relay_host_sends(big.clone());
    assert!(p.aws_tun.len() >= 3, "{} fragments", p.aws_tun.len());
    assert!(p.aws_tun.iter().all(|f| f.len() <= m));
    let mut r = ipv4::Reassembler::default();
    let mut whole = None;
    for f in &p.aws_tun {
        if let Some(w) = r.push(p.now, f).unwrap() {
            whole = Some(w.to_vec());
        }
    }
    assert_eq!(whole.as_deref(), Some(&big[..]), "the fragments reassemble to the packet");
    assert_eq!(p.relay.gateway_counters().fragmented, 1);
    // A TCP SYN offering MSS 1460 arrives with MSS = MTU - 40.
    p.aws_tun.clear();
    let mut syn = packet(RELAY_INSIDE, DEVICE, PROTO_TCP, 44, true);
    syn[20..40].fill(0);
    syn[32] = 6 << 4; // data offset 24
    syn[33] = TCP_SYN;
    syn[40..44].copy_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
    p.relay_host_sends(syn);
    assert_eq!(p.aws_tun.len(), 1);
    assert_eq!(u16::from_be_bytes([p.aws_tun[0][42], p.aws_tun[0][43]]), mtu - 40);
    assert_eq!(p.relay.gateway_counters().mss_clamped, 1);
}

#[test]
fn without_gateway_mode_nothing_reaches_a_device() {
    let mut p = Pair::new(any());
    p.relay.set_gateway(None);
    p.vpc_sends(packet(DEVICE, RELAY_INSIDE, PROTO_ICMP, 84, false));
    assert!(p.relay_tun.is_empty());
    p.relay_host_sends(packet(RELAY_INSIDE, DEVICE, PROTO_ICMP, 84, false));
    assert!(p.aws_tun.is_empty());
}
