//! Relay send path: pushes N client datagrams through `Datapath::handle_forward` (relay session, inner IPv4/UDP,
//! ESP seal) and out of a real UDP socket over loopback, alternating two modes in the same run: `unbatched` (one
//! syscall per datagram, the path before the `Outbox`) and `batched` (`Outbox`: consecutive datagrams to one
//! peer with one size leave in one sendmsg with UDP GSO). The datapath is flushed every 256 datagrams, as the
//! owner loop does after at most 256 inputs. Prints datagrams/s per mode (median of the rounds) and the ratio
//! batched/unbatched, for same-size datagrams (`uniform`) and for sizes that never share a GSO run (`mixed`, the
//! batching's worst case: one syscall each plus a copy).
//!
//! Needs 192.0.2.1 and 192.0.2.2 on an up loopback, so run it through `bench/sidecar-send.sh`, which makes a
//! network namespace for it. Environment: BENCH_N (datagrams per round, default 100000), BENCH_ROUNDS (default
//! 5), BENCH_LEN (payload octets, default 1200).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iotrelay_crypto::SeededRandom;
use iotrelay_sidecar::datapath::{Datapath, ForwardId};
use iotrelay_sidecar::sockets::{Outbox, SocketSink, Sockets};
use tokio::net::UdpSocket;

#[path = "../tests/common/mod.rs"]
mod common;
use common::{AWS, RELAY, exchange, relay_and_device};

const FLUSH_EVERY: usize = 256;

/// IKE_SA_INIT + IKE_AUTH between the relay and an in-memory "AWS" side, so the relay has a CHILD_SA.
fn established_relay(rng: &mut SeededRandom) -> Datapath {
    let now = Duration::ZERO;
    let (mut relay, mut aws) = relay_and_device("aes128gcm16", "203.0.113.0/24", 1, now, rng);
    exchange(&mut relay, &mut aws, now);
    assert!(relay.snapshot().0[0].active, "no CHILD_SA between the in-memory peers");
    relay
}

/// Counts datagrams arriving at 192.0.2.2:4500 until `stop`.
fn receiver(stop: Arc<AtomicBool>, count: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    let sock = StdUdpSocket::bind((AWS, 4500)).expect("bind 192.0.2.2:4500 (run bench/sidecar-send.sh)");
    sock.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            if sock.recv(&mut buf).is_ok() {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo test --benches asks for the list of tests
    }
    let (n, rounds, len) = (env("BENCH_N", 100_000), env("BENCH_ROUNDS", 5), env("BENCH_LEN", 1200));
    let mut rng = SeededRandom::new(11);
    let mut dp = established_relay(&mut rng);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let natt =
            Arc::new(UdpSocket::bind((RELAY, 4500)).await.expect("bind 192.0.2.1:4500 (run bench/sidecar-send.sh)"));
        let ike = Arc::new(UdpSocket::bind((RELAY, 0)).await.expect("bind"));
        let sockets = Sockets::new(ike, natt.clone()).expect("sockets");
        let (stop, got) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let rx = receiver(stop.clone(), got.clone());
        let clients: Vec<SocketAddrV4> =
            (1..=16).map(|k| SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, k), 40000 + u16::from(k))).collect();
        let payload = vec![0x5au8; len + 256];
        println!(
            "relay send path: {n} datagrams/round, {rounds} rounds, payload {len} octets (mixed: {len}..{})",
            len + 252
        );
        for mixed in [false, true] {
            let mut rate = [Vec::new(), Vec::new()];
            let mut lost = [0u64, 0];
            for _ in 0..rounds {
                for (m, batched) in [false, true].into_iter().enumerate() {
                    let mut outbox = Outbox::new(batched);
                    let before = got.load(Ordering::Relaxed);
                    natt.writable().await.expect("writable");
                    let t0 = Instant::now();
                    for i in 0..n {
                        let l = if mixed { len + 4 * (i % 64) } else { len };
                        let mut sink = SocketSink::new(&sockets, &mut outbox);
                        dp.handle_forward(
                            Duration::from_secs(1),
                            ForwardId(0),
                            clients[i % 16],
                            &payload[..l],
                            &mut sink,
                        );
                        if i % FLUSH_EVERY == FLUSH_EVERY - 1 {
                            sink.flush();
                            natt.writable().await.expect("writable");
                        }
                    }
                    SocketSink::new(&sockets, &mut outbox).flush();
                    let dt = t0.elapsed();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    lost[m] += n as u64 - (got.load(Ordering::Relaxed) - before).min(n as u64);
                    rate[m].push(n as f64 / dt.as_secs_f64());
                }
            }
            let (u, b) = (median(rate[0].clone()), median(rate[1].clone()));
            let name = if mixed { "mixed  " } else { "uniform" };
            println!(
                "{name} unbatched {u:>10.0} datagrams/s   batched {b:>10.0} datagrams/s   ratio {:.2}   \
                 (lost at the counting receiver's socket buffer, which cannot keep up: {} / {})",
                b / u,
                lost[0],
                lost[1]
            );
        }
        let drops = &dp.snapshot().1[0].drops;
        println!("forward drops during the bench: queueFull {} tooBig {}", drops.queue_full, drops.too_big);
        stop.store(true, Ordering::Relaxed);
        let _ = rx.join();
    });
}
