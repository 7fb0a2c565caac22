//! The relay seeds each tunnel's IKE engine from its random source when it builds the datapath (the OS in the
//! relay), and mixes fresh octets from it into the engine before the engine's timers run: what the engine draws
//! after that (a reconnect's SPI, nonce and key share) depends on the relay's random source, not on the first seed
//! alone.

mod common;

use common::{Capture, RELAY, RELAY_INSIDE, config};
use iotrelay_crypto::SeededRandom;
use iotrelay_ikev2::StartupAction;
use iotrelay_sidecar::datapath::{Datapath, Out, TunnelPlan};
use std::net::Ipv4Addr;
use std::time::Duration;

/// A peer that never answers.
const SILENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);

/// The initiator SPIs of the IKE_SA_INIT requests a relay sends to a silent peer over two minutes (it gives up on
/// each attempt and reconnects): the datapath built from `seed`, its timers run with `timer_seed`.
fn init_spis(seed: u64, timer_seed: u64) -> Vec<u64> {
    let plan = TunnelPlan { name: "tunnel1".into(), peer: SILENT, config: config(StartupAction::Start, RELAY) };
    let mut dp =
        Datapath::new(RELAY_INSIDE, 1024, RELAY, vec![plan], vec![], Duration::ZERO, &mut SeededRandom::new(seed));
    let mut timer_rng = SeededRandom::new(timer_seed);
    let mut sent = Capture::default();
    dp.drain(&mut sent);
    let mut now = Duration::ZERO;
    while let Some(at) = dp.poll_timeout().filter(|at| *at < Duration::from_secs(120)) {
        now = now.max(at);
        dp.handle_timeout(now, &mut timer_rng, &mut sent);
        dp.drain(&mut sent);
    }
    let mut spis: Vec<u64> = Vec::new();
    for (out, data) in &sent.0 {
        // IKE on port 500: the IKE header first, the initiator's SPI in its first 8 octets.
        if let (Out::Outside { local_port: 500, .. }, Some(spi)) = (out, data.get(..8)) {
            let spi = u64::from_be_bytes(spi.try_into().expect("8 octets"));
            if spis.last() != Some(&spi) {
                spis.push(spi);
            }
        }
    }
    spis
}

#[test]
fn the_relay_randomness_reaches_the_engine_at_its_timers() {
    let once = init_spis(1, 2);
    assert!(once.len() >= 3, "a silent peer makes the relay reconnect: {once:x?}");
    assert_eq!(once, init_spis(1, 2), "the same random sources give the same SPIs");
    let reseeded = init_spis(1, 3);
    assert_eq!(once[0], reseeded[0], "the first attempt is drawn from the seed the datapath was built with");
    assert!(
        once[1..].iter().zip(&reseeded[1..]).all(|(a, b)| a != b),
        "every later attempt takes in what the timers' random source gave: {once:x?} vs {reseeded:x?}"
    );
}
