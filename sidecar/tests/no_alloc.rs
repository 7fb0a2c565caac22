//! The steady-state ESP path of the `Datapath` allocates nothing per packet, with AES-GCM-128 and with
//! AES-CBC-128 + HMAC-SHA1: a client datagram relayed into the tunnel (`handle_forward`: session lookup, inner
//! packet built in place, CBC IV from the tunnel's CSPRNG, sealed in place, handed to the sink) and an ESP packet
//! from the peer relayed to the client (`handle_udp4500`: opened in place, session found, handed to the sink).
//! Counted with dhat's global allocator in testing mode; dhat counts every thread's allocations, so this test
//! runs without libtest (`harness = false` in Cargo.toml): no harness threads allocate while we measure.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use iotrelay_crypto::SeededRandom;
use iotrelay_sidecar::datapath::{ForwardId, Out, Sink};

mod common;
use common::{AWS, exchange, relay_and_device};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 5555);
const PACKETS: usize = 200;

/// A sink that keeps the last datagram in a buffer allocated up front (the real sink, the outbox, copies into
/// its own preallocated buffer the same way).
struct Keep {
    out: Option<Out>,
    buf: Vec<u8>,
    sent: usize,
}

impl Keep {
    fn new() -> Keep {
        Keep { out: None, buf: Vec::with_capacity(65536), sent: 0 }
    }
}

impl Sink for Keep {
    fn send(&mut self, out: Out, data: &[u8]) -> bool {
        self.out = Some(out);
        self.buf.clear();
        self.buf.extend_from_slice(data);
        self.sent += 1;
        true
    }
}

fn main() {
    for esp in ["aes128gcm16", "aes128-sha1"] {
        steady_state_esp_does_not_allocate(esp);
    }
    println!("no_alloc: 2 passed, 0 failed");
}

fn steady_state_esp_does_not_allocate(esp: &str) {
    let mut rng = SeededRandom::new(11);
    let now = Duration::from_secs(1);
    let (mut relay, mut aws) = relay_and_device(esp, "203.0.113.0/24", CLIENT.port(), now, &mut rng);
    exchange(&mut relay, &mut aws, now);
    // 1380 octets: the inner packet (1408) fits both suites' tunnel MTU, so nothing is fragmented.
    let payload = vec![0x5au8; 1380];
    let peer = SocketAddr::new(AWS.into(), 4500);

    // Warm-up (allocates): the client's session on the relay, then the device's replies sealed by the AWS side
    // (which plays the device: its forward's client at port 7000 becomes the inner source port 7000, its target
    // is the relay's inside address at the session port, which keeps the client's port).
    let mut sink = Keep::new();
    relay.handle_forward(now, ForwardId(0), CLIENT, &payload, &mut sink);
    assert!(matches!(sink.out, Some(Out::Outside { local_port: 4500, .. })), "{esp}: sealed into the tunnel");
    let device = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 50), 7000);
    let mut replies: Vec<Vec<u8>> = (0..=PACKETS)
        .map(|_| {
            let mut k = Keep::new();
            aws.handle_forward(now, ForwardId(0), device, &payload, &mut k);
            assert!(matches!(k.out, Some(Out::Outside { local_port: 4500, .. })), "{esp}: reply sealed");
            k.buf
        })
        .collect();
    relay.handle_udp4500(now, peer, &mut replies[0], &mut sink);
    assert!(
        matches!(sink.out, Some(Out::Forward { client: CLIENT, .. })),
        "{esp}: the reply reached the client: {:?} {:?}",
        sink.out,
        relay.snapshot()
    );
    let mut replies = replies.split_off(1);

    let _profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get();
    let sent = sink.sent;
    for r in replies.iter_mut() {
        relay.handle_forward(now, ForwardId(0), CLIENT, &payload, &mut sink);
        relay.handle_udp4500(now, peer, r, &mut sink);
    }
    let after = dhat::HeapStats::get();
    assert_eq!(sink.sent - sent, 2 * PACKETS, "{esp}: every packet went out");
    assert!(matches!(sink.out, Some(Out::Forward { client: CLIENT, .. })), "{esp}: replies reached the client");
    assert_eq!(
        after.total_blocks - before.total_blocks,
        0,
        "{esp}: {} allocations for {PACKETS} packets each way",
        after.total_blocks - before.total_blocks
    );
}
