//! iotrelay-ikev2: a sans-IO IKEv2 (RFC 7296) engine for AWS Site-to-Site VPN tunnels.
//!
//! No sockets, no clock reads, no global RNG: datagrams, the current time and randomness come in as arguments,
//! transmissions, timers and events come out through `poll_*` methods.

pub mod wire;

mod api;
mod tunnel;
pub use api::*;
pub use tunnel::{HalfOpenCount, Tunnel};
