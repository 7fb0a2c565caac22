//! iotrelay-types: the vocabulary every other crate shares, one type per concept: an IPv4 network
//! ([`Ipv4Cidr`]), a tunnel's state ([`TunnelState`]), who starts the IKE SA ([`StartupAction`]), the local IKE
//! identity ([`Identity`]), a forward's drop counters ([`ForwardDrops`]) and the IPv4 protocol numbers
//! ([`ipv4`]).
//!
//! The engine (`ikev2`), the relay (`relay`), the API (`api`) and the sidecar use these types themselves, so a
//! value travels from the spec to the engine and from the engine to the status without being copied field by
//! field. The `serde` feature adds the serde and JSON Schema derives the CRD and the status need; the
//! protocol crates build without it. No I/O, no dependencies beyond `thiserror`.

#![forbid(unsafe_code)]

mod cidr;
pub mod ipv4;

pub use cidr::{CidrError, Ipv4Cidr};

use std::net::Ipv4Addr;

#[cfg(feature = "serde")]
use schemars::JsonSchema;
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

/// State of a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, JsonSchema))]
pub enum TunnelState {
    /// IKE/CHILD SA negotiation in progress.
    #[default]
    Connecting,
    /// IKE SA and CHILD_SA established.
    Established,
    /// Not established and not trying right now (backoff, or failed permanently).
    Down,
}

/// Who initiates the IKE SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, JsonSchema))]
pub enum StartupAction {
    /// The relay initiates and keeps the tunnel up (recommended).
    #[default]
    Start,
    /// The relay waits for AWS to initiate (AWS tunnel option "startup action: start").
    Add,
}

/// The IKE identity (RFC 7296 §3.5). AWS expects ID_IPV4_ADDR of the customer gateway's public address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// ID_IPV4_ADDR.
    Ipv4(Ipv4Addr),
    /// ID_FQDN.
    Fqdn(String),
    /// ID_KEY_ID (the spec has no way to set it; a peer may send it).
    KeyId(Vec<u8>),
}

/// Drop counters of a forward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, JsonSchema), serde(rename_all = "camelCase"))]
pub struct ForwardDrops {
    /// Sender not in `allowedSources`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub source_not_allowed: u64,
    /// No tunnel established.
    #[cfg_attr(feature = "serde", serde(default))]
    pub no_tunnel: u64,
    /// Reply with no matching session.
    #[cfg_attr(feature = "serde", serde(default))]
    pub no_session: u64,
    /// Packet larger than the tunnel can carry.
    #[cfg_attr(feature = "serde", serde(default))]
    pub too_big: u64,
    /// Internal queue full (also: the relay's session table full).
    #[cfg_attr(feature = "serde", serde(default))]
    pub queue_full: u64,
    /// New session refused: the sender's IP address already holds `maxSessionsPerSource` sessions.
    #[cfg_attr(feature = "serde", serde(default))]
    pub source_session_limit: u64,
    /// Dynamic routing (`spec.bgp`) only: the target is in no prefix AWS currently announces on an established
    /// BGP session (not yet learned, or withdrawn).
    #[cfg_attr(feature = "serde", serde(default))]
    pub no_route: u64,
}
