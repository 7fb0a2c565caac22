//! iotrelay-ikev2: a sans-IO IKEv2 (RFC 7296) engine for AWS Site-to-Site VPN tunnels.
//!
//! No sockets, no clock reads, no global RNG: datagrams and the current time come in as arguments; randomness comes
//! in once, as the 32-octet seed of [`Tunnel::new`] (and, when the caller wants, more through [`Tunnel::reseed`]),
//! and the tunnel draws everything from its own generator (`tunnel/random.rs`). Transmissions, timers and events
//! come out through `poll_*` methods.
//!
//! - `api.rs`: the contract with the sidecar ([`Config`], [`Event`], [`TunnelStatus`], [`DropReason`]).
//! - `wire/`: the RFC 7296 / RFC 7383 codec (headers, payloads, fragments).
//! - `tunnel/`: the engine, one file per concern; its `mod.rs` lists them and states the `handle_*`/`poll_*` call
//!   order. One IKE datagram goes `tunnel/mod.rs` ([`Tunnel::handle_datagram`]: SA by SPIs) → `tunnel/protect.rs`
//!   (decrypt) → the exchange's file (`informational.rs`, `rekey.rs`, `ike_init.rs`, `half_open.rs`) →
//!   `tunnel/window.rs` (the answer, cached for retransmissions).

pub mod wire;

mod api;
mod tunnel;
pub use api::*;
pub use tunnel::{HalfOpenCount, Tunnel};
