//! IKE responder throughput: how many IKE SAs (IKE_SA_INIT + IKE_AUTH with the first CHILD_SA,
//! aes128-sha256-ecp256, ESP aes128gcm16) one `Datapath` in the responder role completes per second of its own
//! CPU time, on one core. The responder holds BENCH_N tunnels, one per peer address (as an AWS endpoint holds one
//! per VPN connection); fresh initiator `Datapath`s connect to it one after the other, in memory (no sockets),
//! and only the responder's calls are timed, in the thread's on-CPU time (`/proc/thread-self/schedstat`), so
//! other processes on a busy machine do not count. Prints the median over BENCH_ROUNDS rounds.
//!
//! `cargo bench -p iotrelay-sidecar --bench ike_responder` (part of `make bench`). Environment: BENCH_N (tunnels
//! per round, default 200, at most 500), BENCH_ROUNDS (default 5).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use iotrelay_crypto::SeededRandom;
use iotrelay_ikev2::{StartupAction, TunnelState};
use iotrelay_sidecar::datapath::{Datapath, Out, TunnelPlan};

#[path = "../tests/common/mod.rs"]
mod common;
use common::{AWS, Capture, config};

/// The i-th initiator's address: 198.51.100.1.. then 203.0.113.1.. (documentation ranges).
fn peer(i: usize) -> Ipv4Addr {
    let (net, host) = if i < 250 { ([198, 51, 100], i + 1) } else { ([203, 0, 113], i - 249) };
    Ipv4Addr::new(net[0], net[1], net[2], host as u8)
}

/// This thread's time on a CPU so far (the scheduler's own account, in ns).
fn on_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("/proc/thread-self/schedstat");
    Duration::from_nanos(s.split_whitespace().next().and_then(|v| v.parse().ok()).expect("schedstat"))
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One round: N initiators establish with one responder; returns the responder's on-CPU time.
fn round(n: usize, rng: &mut SeededRandom) -> Duration {
    let now = Duration::ZERO;
    let plans = (0..n)
        .map(|i| TunnelPlan { name: format!("p{i}"), peer: peer(i), config: config(StartupAction::Add, AWS) })
        .collect();
    let mut responder = Datapath::new(Ipv4Addr::new(100, 64, 255, 1), 1024, AWS, plans, vec![], now, rng);
    let mut busy = Duration::ZERO;
    for i in 0..n {
        let me = peer(i);
        let plan = vec![TunnelPlan { name: "t".into(), peer: AWS, config: config(StartupAction::Start, me) }];
        let mut initiator = Datapath::new(Ipv4Addr::new(100, 127, 0, 1), 1024, me, plan, vec![], now, rng);
        for _ in 0..20 {
            let mut to_responder = Capture::default();
            initiator.drain(&mut to_responder);
            let mut to_initiator = Capture::default();
            let t0 = on_cpu();
            for (out, mut data) in to_responder.0 {
                let Out::Outside { local_port, .. } = out else { continue };
                let from = SocketAddr::new(me.into(), local_port);
                if local_port == 4500 {
                    responder.handle_udp4500(now, from, &mut data, &mut Capture::default());
                } else {
                    responder.handle_udp500(now, from, &data);
                }
            }
            responder.drain(&mut to_initiator);
            busy += on_cpu() - t0;
            if to_initiator.0.is_empty() {
                break;
            }
            for (out, mut data) in to_initiator.0 {
                let Out::Outside { local_port, .. } = out else { continue };
                let from = SocketAddr::new(AWS.into(), local_port);
                if local_port == 4500 {
                    initiator.handle_udp4500(now, from, &mut data, &mut Capture::default());
                } else {
                    initiator.handle_udp500(now, from, &data);
                }
            }
        }
        assert!(initiator.snapshot().0[0].active, "initiator {i} has no CHILD_SA");
    }
    let established = responder.snapshot().0.iter().filter(|t| t.engine.state == TunnelState::Established).count();
    assert_eq!(established, n, "the responder established {established} of {n} tunnels");
    busy
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo test --benches asks for the list of tests
    }
    let (n, rounds) = (env("BENCH_N", 200).clamp(1, 500), env("BENCH_ROUNDS", 5).max(1));
    let mut rng = SeededRandom::new(13);
    let mut rates: Vec<f64> = (0..rounds).map(|_| n as f64 / round(n, &mut rng).as_secs_f64()).collect();
    rates.sort_by(f64::total_cmp);
    println!(
        "ike responder: {n} IKE SAs + CHILD_SAs per round (aes128-sha256-ecp256), {rounds} rounds: median {:.0} \
         per second of the responder's CPU (min {:.0}, max {:.0})",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1]
    );
}
