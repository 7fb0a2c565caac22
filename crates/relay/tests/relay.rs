use iotrelay_esp::ipv4;
use iotrelay_relay::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

const INSIDE: Ipv4Addr = Ipv4Addr::new(100, 127, 0, 1);
const TARGET: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(100, 64, 1, 10), 7000);

fn fwd(name: &str, port: u16, allowed: &[&str], target: SocketAddrV4, idle: u64) -> ForwardConfig {
    ForwardConfig {
        name: name.into(),
        listen_port: port,
        allowed_sources: allowed.iter().map(|s| s.parse().unwrap()).collect(),
        target,
        idle_timeout: Duration::from_secs(idle),
    }
}

fn client(last: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, last), port)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The reply the target would send to `inside_port`.
fn reply(from: SocketAddrV4, inside_port: u16, payload: &[u8]) -> Vec<u8> {
    ipv4::build_udp_vec(*from.ip(), from.port(), INSIDE, inside_port, payload)
}

fn relay() -> (Relay, ForwardId) {
    let r = Relay::new(INSIDE, vec![fwd("admin", 7000, &["203.0.113.0/28"], TARGET, 60)]);
    let id = r.forward_id("admin").unwrap();
    (r, id)
}

#[test]
fn allow_list_drops_and_counts() {
    let (mut r, id) = relay();
    let mut out = [0u8; 1500];
    assert_eq!(r.on_client_datagram(secs(0), id, client(16, 5000), b"x", &mut out), Err(DropReason::SourceNotAllowed));
    assert_eq!(r.on_client_datagram(secs(0), id, client(200, 5000), b"x", &mut out), Err(DropReason::SourceNotAllowed));
    let s = r.stats(id).unwrap();
    assert_eq!((s.drops.source_not_allowed, s.packets_in, s.sessions), (2, 0, 0));
    assert!(r.on_client_datagram(secs(0), id, client(1, 5000), b"x", &mut out).is_ok());
}

#[test]
fn source_allowed_counts_nothing() {
    let (mut r, id) = relay();
    assert!(r.source_allowed(id, client(15, 1)));
    assert!(!r.source_allowed(id, client(16, 1)));
    assert!(!r.source_allowed(ForwardId(99), client(1, 1)), "unknown forward");
    r.record_drop(id, DropReason::NoTunnel);
    let s = r.stats(id).unwrap();
    assert_eq!((s.drops.source_not_allowed, s.drops.no_tunnel, s.packets_in, s.sessions), (0, 1, 0, 0));
}

#[test]
fn inner_packet_is_correct_and_session_reused() {
    let (mut r, id) = relay();
    let mut out = [0xa5u8; 1500];
    let n = r.on_client_datagram(secs(1), id, client(1, 5000), b"hello", &mut out).unwrap();
    let p = ipv4::parse_udp(&out[..n]).unwrap();
    assert_eq!((p.src, p.sport, p.dst, p.dport, p.payload), (INSIDE, 5000, *TARGET.ip(), 7000, &b"hello"[..]));
    let n = r.on_client_datagram(secs(2), id, client(1, 5000), b"again", &mut out).unwrap();
    assert_eq!(ipv4::parse_udp(&out[..n]).unwrap().sport, 5000, "same session, same inside port");
    let s = r.stats(id).unwrap();
    assert_eq!((s.sessions, s.packets_in), (1, 2));
}

#[test]
fn port_collision_picks_next_free_port_deterministically() {
    let (mut r, id) = relay();
    let mut out = [0u8; 1500];
    let port = |r: &mut Relay, c, out: &mut [u8]| {
        let n = r.on_client_datagram(secs(0), id, c, b"p", out).unwrap();
        ipv4::parse_udp(&out[..n]).unwrap().sport
    };
    assert_eq!(port(&mut r, client(1, 5000), &mut out), 5000);
    assert_eq!(port(&mut r, client(2, 5000), &mut out), 5001);
    assert_eq!(port(&mut r, client(3, 5000), &mut out), 5002);
    assert_eq!(port(&mut r, client(4, 5001), &mut out), 5003);
    assert_eq!(port(&mut r, client(5, 65535), &mut out), 65535);
    assert_eq!(port(&mut r, client(6, 65535), &mut out), 1024, "wraps into the dynamic range");
    assert_eq!(port(&mut r, client(7, 0), &mut out), 1025, "port 0 is never used");
    assert_eq!(r.stats(id).unwrap().sessions, 7);
    // Each reply reaches its own client.
    for (inside, c) in
        [(5000, client(1, 5000)), (5001, client(2, 5000)), (5003, client(4, 5001)), (1024, client(6, 65535))]
    {
        let pkt = reply(TARGET, inside, b"r");
        let d = r.on_inner_packet(secs(1), &pkt).unwrap();
        assert_eq!((d.forward, d.client, d.listen_port, d.payload), (id, c, 7000, &b"r"[..]));
    }
}

#[test]
fn reply_routing_and_no_session() {
    let (mut r, id) = relay();
    let mut out = [0u8; 1500];
    r.on_client_datagram(secs(0), id, client(1, 5000), b"q", &mut out).unwrap();
    // Wrong port, wrong source port, wrong destination address: noSession counted on the forward.
    assert_eq!(r.on_inner_packet(secs(1), &reply(TARGET, 5001, b"r")).unwrap_err().reason, DropReason::NoSession);
    let other = SocketAddrV4::new(*TARGET.ip(), 7001);
    let e = r.on_inner_packet(secs(1), &reply(other, 5000, b"r")).unwrap_err();
    assert_eq!((e.forward, e.reason), (None, DropReason::NoSession), "not from any target: counted nowhere");
    let wrong_dst = ipv4::build_udp_vec(*TARGET.ip(), 7000, Ipv4Addr::new(100, 127, 0, 2), 5000, b"r");
    assert_eq!(r.on_inner_packet(secs(1), &wrong_dst).unwrap_err().forward, Some(id));
    let e = r.on_inner_packet(secs(1), &[0x45, 0, 0]).unwrap_err();
    assert_eq!(e.reason, DropReason::Malformed);
    let s = r.stats(id).unwrap();
    assert_eq!((s.drops.no_session, s.packets_out), (2, 0));
    let ok = reply(TARGET, 5000, b"ok");
    let d = r.on_inner_packet(secs(1), &ok).unwrap();
    assert_eq!((d.client, d.payload), (client(1, 5000), &b"ok"[..]));
    assert_eq!(r.stats(id).unwrap().packets_out, 1);
}

/// `claims` (gateway mode: a forward's reply, or the host's?) looks at the headers only: a reply to a session's
/// port with a broken checksum is still claimed, and the full parse behind it drops it as malformed, so the drop
/// is counted by the relay instead of being handed to the host.
#[test]
fn claims_by_headers_and_the_parse_behind_it_drops_a_bad_checksum() {
    let (mut r, id) = relay();
    let mut out = [0u8; 1500];
    r.on_client_datagram(secs(0), id, client(1, 5000), b"q", &mut out).unwrap();
    let ok = reply(TARGET, 5000, b"ok");
    assert!(r.claims(&ok));
    assert!(!r.claims(&reply(TARGET, 5001, b"ok")), "no session on that port: the host's");
    let other_dst = ipv4::build_udp_vec(*TARGET.ip(), 7000, Ipv4Addr::new(100, 127, 0, 2), 5000, b"r");
    assert!(!r.claims(&other_dst), "another address: the host's");
    let mut bad = ok.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert!(r.claims(&bad));
    assert_eq!(r.on_inner_packet(secs(1), &bad).unwrap_err().reason, DropReason::Malformed);
    assert_eq!(r.stats(id).unwrap().packets_out, 0);
}

#[test]
fn idle_expiry_refreshed_by_traffic_both_ways() {
    let (mut r, id) = relay();
    let mut out = [0u8; 1500];
    r.on_client_datagram(secs(0), id, client(1, 5000), b"q", &mut out).unwrap();
    assert_eq!(r.next_expiry(), Some(secs(60)));
    r.on_inner_packet(secs(50), &reply(TARGET, 5000, b"r")).unwrap();
    assert_eq!(r.next_expiry(), Some(secs(110)), "a reply refreshes the session");
    assert_eq!(r.expire(secs(109)), 0);
    assert_eq!(r.stats(id).unwrap().sessions, 1);
    assert_eq!(r.expire(secs(110)), 1);
    assert_eq!(r.stats(id).unwrap().sessions, 0);
    assert_eq!(r.next_expiry(), None);
    assert_eq!(r.on_inner_packet(secs(111), &reply(TARGET, 5000, b"r")).unwrap_err().reason, DropReason::NoSession);
    // Idle but not yet expired: a reply is refused all the same.
    r.on_client_datagram(secs(200), id, client(1, 5000), b"q", &mut out).unwrap();
    assert!(r.on_inner_packet(secs(260), &reply(TARGET, 5000, b"r")).is_err());
}

#[test]
fn bounded_table_drops_new_clients_and_frees_idle_ones() {
    let mut r = Relay::with_max_sessions(INSIDE, vec![fwd("a", 7000, &["0.0.0.0/0"], TARGET, 10)], 3);
    let id = r.forward_id("a").unwrap();
    let mut out = [0u8; 1500];
    for k in 1..=3 {
        r.on_client_datagram(secs(0), id, client(k, 4000), b"q", &mut out).unwrap();
    }
    assert_eq!(r.on_client_datagram(secs(5), id, client(9, 4000), b"q", &mut out), Err(DropReason::QueueFull));
    assert!(r.on_client_datagram(secs(5), id, client(1, 4000), b"q", &mut out).is_ok(), "existing sessions work");
    assert_eq!(r.stats(id).unwrap().drops.queue_full, 1);
    // At 10 s clients 2 and 3 are idle: a new client gets a slot.
    assert!(r.on_client_datagram(secs(10), id, client(9, 4000), b"q", &mut out).is_ok());
    assert_eq!(r.session_count(), 2);
    assert_eq!(r.stats(id).unwrap().sessions, 2);
}

#[test]
fn too_big_and_no_tunnel_counted() {
    let (mut r, id) = relay();
    let mut small = [0u8; 40];
    assert_eq!(r.on_client_datagram(secs(0), id, client(1, 1), &[0; 13], &mut small), Err(DropReason::TooBig));
    assert!(r.on_client_datagram(secs(0), id, client(1, 1), &[0; 12], &mut small).is_ok());
    r.record_drop(id, DropReason::NoTunnel);
    let d = r.stats(id).unwrap().drops;
    assert_eq!((d.too_big, d.no_tunnel), (1, 1));
}

#[test]
fn set_forwards_keeps_unchanged_forwards_undisturbed() {
    let t2 = SocketAddrV4::new(Ipv4Addr::new(100, 64, 1, 11), 53);
    let mut r =
        Relay::new(INSIDE, vec![fwd("a", 7000, &["0.0.0.0/0"], TARGET, 60), fwd("b", 7001, &["0.0.0.0/0"], t2, 60)]);
    let (a, b) = (r.forward_id("a").unwrap(), r.forward_id("b").unwrap());
    let mut out = [0u8; 1500];
    r.on_client_datagram(secs(0), a, client(1, 5000), b"q", &mut out).unwrap();
    r.on_client_datagram(secs(0), b, client(1, 5001), b"q", &mut out).unwrap();
    // Remove b, add c, change a's idle timeout only.
    r.set_forwards(vec![fwd("a", 7000, &["0.0.0.0/0"], TARGET, 30), fwd("c", 7002, &["0.0.0.0/0"], t2, 60)]);
    assert_eq!(r.forward_id("a"), Some(a));
    assert_eq!(r.forward_id("b"), None);
    let c = r.forward_id("c").unwrap();
    assert!(c != a && c != b, "ids are not reused");
    assert_eq!(r.stats(a).unwrap().sessions, 1);
    assert_eq!(r.stats(a).unwrap().packets_in, 1, "counters survive");
    assert_eq!(r.stats(b), None);
    assert!(r.on_inner_packet(secs(1), &reply(TARGET, 5000, b"r")).is_ok(), "a's session survives");
    assert!(r.on_inner_packet(secs(1), &reply(t2, 5001, b"r")).is_err(), "b's session is gone");
    assert_eq!(r.forward_by_port(7002), Some(c));
    // Narrowing a's allow-list drops sessions of clients no longer allowed; changing the target drops all.
    r.set_forwards(vec![fwd("a", 7000, &["192.0.2.0/24"], TARGET, 30)]);
    assert_eq!(r.stats(a).unwrap().sessions, 0);
    r.set_forwards(vec![fwd("a", 7000, &["0.0.0.0/0"], TARGET, 30)]);
    r.on_client_datagram(secs(2), a, client(1, 5000), b"q", &mut out).unwrap();
    r.set_forwards(vec![fwd("a", 7000, &["0.0.0.0/0"], t2, 30)]);
    assert_eq!(r.session_count(), 0);
}

/// The whole sans-IO path the sidecar wires up: client datagram → relay → fragment → ESP seal → (tunnel) → ESP
/// open → reassembly → the "device" replies → ESP → relay → back to the client.
#[test]
fn end_to_end_through_esp_with_fragmentation() {
    use iotrelay_crypto::{Encr, Integ, SaCipher, SeededRandom};
    use iotrelay_esp::{InboundSa, OutboundSa, tunnel_mtu};
    let (encr, integ) = (Encr::AesCbc128, Some(Integ::HmacSha1_96));
    let c = || SaCipher::new(encr, integ, &[1; 16], &[2; 20]).unwrap();
    let (mut to_aws, mut from_aws) = (OutboundSa::new(0x100, c()), OutboundSa::new(0x200, c()));
    let (mut aws_in, mut relay_in) = (InboundSa::new(0x100, c(), 1024), InboundSa::new(0x200, c(), 1024));
    let mtu = tunnel_mtu(encr, integ, 1500);
    let mut rng = SeededRandom::new(1);
    let (mut r, id) = relay();
    let request: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();

    // Relay side: build, fragment, seal.
    let mut inner = vec![0u8; 65535];
    let n = r.on_client_datagram(secs(1), id, client(1, 5000), &request, &mut inner).unwrap();
    let mut wire = Vec::new();
    let mut f = ipv4::Fragmenter::new(&inner[..n], mtu).unwrap();
    let mut frag = vec![0u8; mtu];
    while let Some(len) = f.next_into(&mut frag).unwrap() {
        let mut esp = vec![0u8; 2000];
        let m = to_aws.seal(&frag[..len], &mut rng, &mut esp).unwrap();
        assert!(m + 28 <= 1500, "each ESP-in-UDP packet fits a 1500 MTU");
        wire.push(esp[..m].to_vec());
    }
    assert_eq!(wire.len(), 3);
    // "AWS" side: open, reassemble (reversed order), the device sees the request and answers.
    let mut reasm = ipv4::Reassembler::default();
    let mut got = None;
    for pkt in wire.iter_mut().rev() {
        let plain = aws_in.open(pkt).unwrap();
        if let Some(d) = reasm.push(secs(1), plain).unwrap() {
            got = Some(d.to_vec());
        }
    }
    let got = got.unwrap();
    let req = ipv4::parse_udp(&got).unwrap();
    assert_eq!((req.dst, req.dport, req.payload), (*TARGET.ip(), TARGET.port(), &request[..]));
    let answer = ipv4::build_udp_vec(req.dst, req.dport, req.src, req.sport, b"pong");
    let mut esp = vec![0u8; 2000];
    let m = from_aws.seal(&answer, &mut rng, &mut esp).unwrap();
    // Relay side again.
    let plain = relay_in.open(&mut esp[..m]).unwrap();
    let mut reasm = ipv4::Reassembler::default();
    let pkt = reasm.push(secs(2), plain).unwrap().unwrap();
    let d = r.on_inner_packet(secs(2), pkt).unwrap();
    assert_eq!((d.client, d.listen_port, d.payload), (client(1, 5000), 7000, &b"pong"[..]));
    let s = r.stats(id).unwrap();
    assert_eq!((s.packets_in, s.packets_out, s.sessions), (1, 1, 1));
}

/// One allowed source opening sessions from thousands of ports fills only its own quota; the
/// other clients still get sessions, and every refusal is counted (`sourceSessionLimit`, then `queueFull` once the
/// whole table is taken).
#[test]
fn one_source_filling_its_quota_leaves_room_for_others() {
    let t2 = SocketAddrV4::new(Ipv4Addr::new(100, 64, 1, 11), 53);
    let mut r = Relay::with_limits(
        INSIDE,
        vec![fwd("a", 7000, &["203.0.113.0/24"], TARGET, 60), fwd("b", 7001, &["203.0.113.0/24"], t2, 60)],
        16,
        4,
    );
    let (a, b) = (r.forward_id("a").unwrap(), r.forward_id("b").unwrap());
    assert_eq!(r.session_limits(), (16, 4));
    let mut out = [0u8; 1500];
    // The flooder (203.0.113.66) across both forwards and 1000 ports: 4 sessions, the rest refused.
    let flooder = |port: u16| client(66, port);
    for p in 0..1000u16 {
        let id = if p % 2 == 0 { a } else { b };
        let _ = r.on_client_datagram(secs(1), id, flooder(20000 + p), b"x", &mut out);
    }
    assert_eq!(r.sessions_of_source(Ipv4Addr::new(203, 0, 113, 66)), 4);
    assert_eq!(r.session_count(), 4);
    let limited = r.stats(a).unwrap().drops.source_session_limit + r.stats(b).unwrap().drops.source_session_limit;
    assert_eq!(limited, 996);
    assert_eq!(r.stats(a).unwrap().drops.queue_full, 0);
    // Its existing sessions keep working.
    assert!(r.on_client_datagram(secs(2), a, flooder(20000), b"x", &mut out).is_ok());
    // Everyone else: the remaining 12 slots, one per client, then the table is full.
    for k in 1..=12u8 {
        assert!(r.on_client_datagram(secs(2), a, client(k, 5000), b"q", &mut out).is_ok(), "client {k} refused");
    }
    assert_eq!(r.session_count(), 16);
    assert_eq!(r.on_client_datagram(secs(2), a, client(13, 5000), b"q", &mut out), Err(DropReason::QueueFull));
    assert_eq!(r.stats(a).unwrap().drops.queue_full, 1);
    assert_eq!(r.stats(a).unwrap().sessions + r.stats(b).unwrap().sessions, 16);
    // Once the flooder's sessions idle out, its quota is free again (and expiry frees them without a timer).
    assert!(r.on_client_datagram(secs(62), a, flooder(40000), b"x", &mut out).is_ok());
    assert_eq!(r.sessions_of_source(Ipv4Addr::new(203, 0, 113, 66)), 1);
    assert_eq!(r.stats(a).unwrap().sessions + r.stats(b).unwrap().sessions, r.session_count() as u64);
}

/// Expiry and the next-expiry time follow each forward's least recently used session, also with two forwards of
/// different idle timeouts and a session refreshed by a reply.
#[test]
fn expiry_order_follows_use_per_forward() {
    let t2 = SocketAddrV4::new(Ipv4Addr::new(100, 64, 1, 11), 53);
    let mut r =
        Relay::new(INSIDE, vec![fwd("a", 7000, &["0.0.0.0/0"], TARGET, 60), fwd("b", 7001, &["0.0.0.0/0"], t2, 10)]);
    let (a, b) = (r.forward_id("a").unwrap(), r.forward_id("b").unwrap());
    let mut out = [0u8; 1500];
    r.on_client_datagram(secs(0), a, client(1, 5001), b"q", &mut out).unwrap();
    r.on_client_datagram(secs(1), a, client(2, 5002), b"q", &mut out).unwrap();
    r.on_client_datagram(secs(5), b, client(3, 5003), b"q", &mut out).unwrap();
    assert_eq!(r.next_expiry(), Some(secs(15)));
    // Client 1 is used again at 20 s: client 2 becomes a's oldest.
    r.on_client_datagram(secs(20), a, client(1, 5001), b"q", &mut out).unwrap();
    assert_eq!(r.expire(secs(15)), 1, "b's session expires at 15 s");
    assert_eq!(r.next_expiry(), Some(secs(61)));
    assert_eq!(r.expire(secs(61)), 1);
    assert_eq!(r.next_expiry(), Some(secs(80)));
    assert!(r.on_inner_packet(secs(70), &reply(TARGET, 5001, b"r")).is_ok());
    assert_eq!(r.next_expiry(), Some(secs(130)), "a reply refreshes the session");
    assert_eq!((r.stats(a).unwrap().sessions, r.stats(b).unwrap().sessions), (1, 0));
}
