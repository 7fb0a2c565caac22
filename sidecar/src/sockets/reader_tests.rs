//! The socket readers against real loopback sockets: a flood from a source outside the
//! allow-list never reaches the ingress queues while an allowed client's datagrams all do, and a flood from an
//! allowed source fills its lane only up to the byte budget, every excess datagram counted.

use std::time::Duration;

use tokio::net::UdpSocket;

use super::*;
use crate::demux::Lane;
use crate::ingress::{BUDGETS, Budget, QUOTAS};

async fn forward_reader(budgets: [Budget; 3], allowed: &str) -> (Arc<Ingress>, Arc<ReaderDrops>, SocketAddr) {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = socket.local_addr().unwrap();
    let sock = Sock::new(socket).unwrap();
    let ingress = Arc::new(Ingress::new(budgets));
    let drops = Arc::new(ReaderDrops::default());
    let filter = Arc::new(RwLock::new(ForwardFilter { id: ForwardId(0), allowed: vec![allowed.parse().unwrap()] }));
    spawn_reader(&sock, ingress.clone(), Filter::Forward { filter, drops: drops.clone() });
    (ingress, drops, addr)
}

/// Waits (bounded) for `cond`, polling.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_flood_never_queues_and_allowed_datagrams_pass() {
    let (ingress, drops, addr) = forward_reader(BUDGETS, "127.0.0.2/32").await;
    let attacker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let client = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    let flood = vec![0x41u8; 1400];
    let mut sent = 0u64;
    let mut got = Vec::new();
    for round in 0..10u8 {
        // A burst from the disallowed source (small enough for the socket buffer: the kernel drops nothing), all of
        // it seen and dropped by the reader, then one admin datagram from the allowed source.
        for _ in 0..50 {
            attacker.send_to(&flood, addr).unwrap();
            sent += 1;
        }
        wait_for("the reader to drop the burst", || drops.source_not_allowed.load(Ordering::Relaxed) == sent).await;
        client.send_to(&[b'A', round], addr).unwrap();
        wait_for("the admin datagram", || {
            let mut out = Vec::new();
            ingress.pop_batch(&mut out, QUOTAS);
            got.extend(out.into_iter().map(|d| d.data.to_vec()));
            got.len() > usize::from(round)
        })
        .await;
        // Nothing of the flood is ever queued: the lanes hold no bytes beyond what was just taken.
        assert!(ingress.stats().iter().all(|s| s.bytes == 0), "flood datagrams were queued");
    }
    assert_eq!(got, (0..10u8).map(|r| vec![b'A', r]).collect::<Vec<_>>(), "10 of 10 admin datagrams");
    assert_eq!(ingress.early.source_not_allowed.load(Ordering::Relaxed), sent);
    assert_eq!(ingress.stats()[Lane::Forward as usize].queued_total, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_flood_is_bounded_by_the_byte_budget() {
    let budget = Budget { bytes: 64 << 10, datagrams: 4096 };
    let (ingress, drops, addr) = forward_reader([budget; 3], "127.0.0.0/8").await;
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let big = vec![0x42u8; 1400];
    for _ in 0..2000 {
        let _ = sender.send_to(&big, addr);
    }
    // Nobody consumes: the lane fills to its byte budget (30 datagrams in 2048-octet buffers + overhead), the rest is counted
    // as queueFull on the forward.
    let per = crate::ingress::charge(1400);
    wait_for("the lane to fill", || ingress.stats()[Lane::Forward as usize].depth == budget.bytes / per).await;
    wait_for("the excess to be counted", || drops.queue_full.load(Ordering::Relaxed) > 0).await;
    let s = ingress.stats()[Lane::Forward as usize];
    assert!(s.bytes <= budget.bytes, "{} bytes queued over a {} budget", s.bytes, budget.bytes);
    assert_eq!(s.dropped_full, drops.queue_full.load(Ordering::Relaxed));
}
