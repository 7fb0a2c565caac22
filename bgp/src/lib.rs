//! iotrelay-bgp: a sans-IO BGP-4 speaker (RFC 4271) for the BGP session AWS runs inside each dynamic-routing
//! Site-to-Site VPN tunnel.
//!
//! What this crate owns so far: the wire codec ([`wire`]: OPEN with the 4-octet-ASN, route-refresh and
//! IPv4-unicast multiprotocol capabilities, UPDATE for IPv4 unicast with RFC 7606 error handling, KEEPALIVE,
//! NOTIFICATION, ROUTE-REFRESH) and the reassembly of messages from a TCP byte stream ([`Reassembler`], bounded to
//! one message). No sockets, no clock reads, no global RNG.

pub mod wire;

mod reassembler;

pub use reassembler::Reassembler;
pub use wire::Ipv4Prefix;
