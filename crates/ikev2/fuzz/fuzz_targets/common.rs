//! What the engine fuzz targets with two real ends share: their addresses, the suite they negotiate, a tunnel
//! between them, and the check after every step (events drained, every engine invariant holds).

use iotrelay_crypto::proposal::{EspProposal, IkeProposal};
use iotrelay_ikev2::{Config, Identity, StartupAction, Tunnel};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use zeroize::Zeroizing;

pub const INITIATOR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const RESPONDER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// AWS's defaults with one cheap suite and DPD every 120 s (so the real ends keep talking over a few simulated
/// minutes). The initiator uses the first (cheapest) group, which keeps executions fast; modp1024 is the suite of
/// the original report and of the golden strongSwan IKE_SA_INIT requests in the seed corpus.
pub fn config(own: Ipv4Addr, startup: StartupAction) -> Config {
    let mut c = Config::aws_defaults(Zeroizing::new(b"fuzz-psk".to_vec()), Identity::Ipv4(own));
    c.ike_proposals = vec![IkeProposal::parse("aes128-sha1-curve25519-modp1024").expect("proposal")];
    c.esp_proposals = vec![EspProposal::parse("aes128-sha1").expect("proposal")];
    c.startup = startup;
    c.cookie_threshold = 2;
    c.dpd_interval = Duration::from_secs(120);
    c.dpd_timeout = Duration::from_secs(360);
    c
}

/// A tunnel from `own` to `peer` on port 500, its generator seeded from `seed` and its own address (so the two ends
/// of one execution draw differently, and the fuzzer's seed octet changes both).
pub fn tunnel(config: Config, own: Ipv4Addr, peer: Ipv4Addr, now: Duration, seed: u8) -> Tunnel {
    let mut s = [seed; 32];
    s[..4].copy_from_slice(&own.octets());
    Tunnel::new(config, SocketAddr::new(IpAddr::V4(own), 500), SocketAddr::new(IpAddr::V4(peer), 500), now, &s)
}

/// Drains the events (printed with `FUZZ_DEBUG` set) and panics if an engine invariant is broken.
pub fn settle(t: &mut Tunnel) {
    while let Some(e) = t.poll_event() {
        if std::env::var_os("FUZZ_DEBUG").is_some() {
            eprintln!("{e:?}");
        }
    }
    if let Err(e) = t.check_invariants() {
        panic!("engine invariant broken: {e}");
    }
    let _ = t.status();
}
