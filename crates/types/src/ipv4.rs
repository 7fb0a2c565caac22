//! IPv4 protocol numbers (header octet 9), defined once for every crate that reads inner packets: `esp`
//! re-exports them with its other header constants, `bgp` checks with them what its userspace TCP takes.

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
