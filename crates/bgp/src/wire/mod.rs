//! BGP-4 wire format (RFC 4271 §4): the message header, OPEN with capabilities (RFC 5492, RFC 6793, RFC 2918,
//! RFC 4760), UPDATE for IPv4 unicast, KEEPALIVE, NOTIFICATION and ROUTE-REFRESH.
//!
//! Every parser reads through [`Reader`], whose `take` checks the remaining length before it slices, so no input
//! can make a parser panic. A parse error is a [`WireError`], which is exactly the NOTIFICATION RFC 4271 §6 (and
//! RFC 7606, RFC 7313) says to send for it: code, subcode and data. UPDATE attribute errors that RFC 7606 handles
//! by "treat-as-withdraw" or "attribute discard" are not errors: they are reported in [`Update::treat_as_withdraw`]
//! and [`PathAttributes::discarded`], and the session stays up.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

pub mod codes;
mod message;
mod open;
mod update;

pub use message::{Header, Message, Notification, RouteRefresh};
pub use open::{Capability, Open};
pub use update::{AsPathSegment, AttributeFlags, PathAttributes, RawAttribute, Update};

/// Length of the message header (RFC 4271 §4.1).
pub const HEADER_LEN: usize = 19;
/// Largest BGP message (RFC 4271 §4.1).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The 2-octet placeholder ASN for 4-octet ASNs (RFC 6793 §9).
pub const AS_TRANS: u16 = 23456;

/// A parse error: the NOTIFICATION to answer it with (RFC 4271 §6), plus a short description for logs and status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({what})", codes::describe(*code, *subcode))]
pub struct WireError {
    pub code: u8,
    pub subcode: u8,
    /// The NOTIFICATION's data field, as the RFC defines it for this error (often empty).
    pub data: Vec<u8>,
    pub what: &'static str,
}

impl WireError {
    pub fn new(code: u8, subcode: u8, what: &'static str) -> WireError {
        WireError { code, subcode, data: Vec::new(), what }
    }
    pub fn with_data(code: u8, subcode: u8, data: Vec<u8>, what: &'static str) -> WireError {
        WireError { code, subcode, data, what }
    }
    /// The NOTIFICATION message that reports this error.
    pub fn notification(&self) -> Notification {
        Notification { code: self.code, subcode: self.subcode, data: self.data.clone() }
    }
}

/// A length-checked cursor over a byte slice: every read either succeeds or returns the caller's error.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data }
    }
    pub fn remaining(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn rest(&self) -> &'a [u8] {
        self.data
    }
    /// The next `n` octets, or `err` if fewer remain.
    pub fn take(&mut self, n: usize, err: impl FnOnce() -> WireError) -> Result<&'a [u8], WireError> {
        if n > self.data.len() {
            return Err(err());
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }
    pub fn u8(&mut self, err: impl FnOnce() -> WireError) -> Result<u8, WireError> {
        Ok(self.take(1, err)?[0])
    }
    pub fn u16(&mut self, err: impl FnOnce() -> WireError) -> Result<u16, WireError> {
        let b = self.take(2, err)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self, err: impl FnOnce() -> WireError) -> Result<u32, WireError> {
        let b = self.take(4, err)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// An IPv4 prefix as carried in NLRI and withdrawn routes (RFC 4271 §4.3). Host bits are always zero: the
/// constructor clears them (the RFC says the trailing bits on the wire are irrelevant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Prefix {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Prefix {
    /// `None` if `len > 32`. Host bits of `addr` are cleared.
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Ipv4Prefix> {
        if len > 32 {
            return None;
        }
        Some(Ipv4Prefix { addr: Ipv4Addr::from(u32::from(addr) & Self::mask(len)), len })
    }
    /// A `/32` for one address.
    pub fn host(addr: Ipv4Addr) -> Ipv4Prefix {
        Ipv4Prefix { addr, len: 32 }
    }
    fn mask(len: u8) -> u32 {
        if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) }
    }
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }
    pub fn prefix_len(&self) -> u8 {
        self.len
    }
    /// True for `0.0.0.0/0`.
    pub fn is_default(&self) -> bool {
        self.len == 0
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.len) == u32::from(self.addr)
    }
    /// Octets on the wire: the length octet and the significant address octets.
    pub fn wire_len(&self) -> usize {
        1 + usize::from(self.len).div_ceil(8)
    }
    pub(crate) fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.len);
        out.extend_from_slice(&self.addr.octets()[..usize::from(self.len).div_ceil(8)]);
    }
    /// Parses one prefix; `err` is the error for a length above 32 or a truncated address.
    pub(crate) fn parse(r: &mut Reader<'_>, err: impl Fn() -> WireError) -> Result<Ipv4Prefix, WireError> {
        let len = r.u8(&err)?;
        if len > 32 {
            return Err(err());
        }
        let bytes = r.take(usize::from(len).div_ceil(8), &err)?;
        let mut a = [0u8; 4];
        a[..bytes.len()].copy_from_slice(bytes);
        Ipv4Prefix::new(Ipv4Addr::from(a), len).ok_or_else(err)
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Parses `a.b.c.d/len`; host bits must be zero (a configuration typo should not be silently widened).
impl FromStr for Ipv4Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a.b.c.d/len"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("{s:?}: bad IPv4 address"))?;
        let len: u8 = l.parse().map_err(|_| format!("{s:?}: bad prefix length"))?;
        let p = Ipv4Prefix::new(addr, len).ok_or_else(|| format!("{s:?}: prefix length above 32"))?;
        if p.addr != addr {
            return Err(format!("{s:?}: host bits set (did you mean {p}?)"));
        }
        Ok(p)
    }
}
