//! Shared by the datapath pair test and the relay send bench: addresses of the two-`Datapath` lab, a sink that
//! captures what a `Datapath` sends, and the IKE configuration both ends use.
#![allow(dead_code)] // each user takes what it needs

use std::net::Ipv4Addr;

use iotrelay_crypto::proposal::{EspProposal, IkeProposal};
use iotrelay_ikev2::{Config, Identity, StartupAction};
use iotrelay_sidecar::datapath::{Out, Sink};
use zeroize::Zeroizing;

pub const RELAY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const AWS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const RELAY_INSIDE: Ipv4Addr = Ipv4Addr::new(100, 127, 0, 1);
pub const DEVICE: Ipv4Addr = Ipv4Addr::new(100, 64, 1, 10);

/// Everything a `Datapath` sends, in order.
#[derive(Default)]
pub struct Capture(pub Vec<(Out, Vec<u8>)>);
impl Sink for Capture {
    fn send(&mut self, out: Out, data: &[u8]) -> bool {
        self.0.push((out, data.to_vec()));
        true
    }
}

/// One end's IKE configuration (aes128-sha256-ecp256, ESP aes128gcm16) with identity `me`.
pub fn config(startup: StartupAction, me: Ipv4Addr) -> Config {
    let mut c = Config::aws_defaults(Zeroizing::new(b"pair_test_psk_123".to_vec()), Identity::Ipv4(me));
    c.ike_proposals = vec![IkeProposal::parse("aes128-sha256-ecp256").expect("proposal")];
    c.esp_proposals = vec![EspProposal::parse("aes128gcm16").expect("proposal")];
    c.startup = startup;
    c
}
