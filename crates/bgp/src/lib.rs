//! iotrelay-bgp: a sans-IO BGP-4 speaker (RFC 4271) for the BGP session AWS runs inside each dynamic-routing
//! Site-to-Site VPN tunnel.
//!
//! What this crate owns: the wire codec ([`wire`]: OPEN with the 4-octet-ASN, route-refresh and IPv4-unicast
//! multiprotocol capabilities, UPDATE for IPv4 unicast with RFC 7606 error handling, KEEPALIVE, NOTIFICATION,
//! ROUTE-REFRESH), the reassembly of messages from a TCP byte stream ([`Reassembler`], bounded to one message),
//! the session's finite state machine with its hold, keepalive and connect-retry timers ([`Speaker`]), what we
//! announce ([`Announce`]) and the bounded table of routes learned from the peer ([`Rib`]).
//!
//! The TCP connection runs on a userspace TCP/IP stack ([`tcp`], smoltcp) that exchanges raw inner IPv4
//! packets with the caller; [`Session`] drives a speaker over it, so the relay feeds a session the packets ESP
//! delivered for the tunnel's inside address and seals what comes out into the tunnel.
//!
//! What it does not own: the tunnel itself. There are no sockets, no clock reads and no global RNG here:
//! received packets (or stream bytes) and the current time (a [`std::time::Duration`] since an origin the caller picks) come
//! in as arguments, randomness as a seed; bytes to write, connect/close requests, timer deadlines and events come
//! out through `poll_*` methods (quinn-proto style). See `docs/bgp.md` for the design and what is still to come.

pub mod wire;

mod config;
mod events;
mod reassembler;
mod rib;
mod session;
mod speaker;
pub mod tcp;

pub use config::{Announce, Config, ConfigError, ConnectMode, MAX_ANNOUNCED_PREFIXES, MAX_PREPEND};
pub use events::{Counters, DownReason, Event, Output, State};
pub use iotrelay_types::Ipv4Cidr;
pub use reassembler::Reassembler;
pub use rib::Insert;
pub use rib::{Rib, Route};
pub use session::{MAX_PENDING, Session};
pub use speaker::Speaker;
