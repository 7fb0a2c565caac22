//! BGP-4 wire format (RFC 4271 §4): the message header, OPEN with capabilities (RFC 5492, RFC 6793, RFC 2918,
//! RFC 4760), UPDATE for IPv4 unicast, KEEPALIVE, NOTIFICATION and ROUTE-REFRESH.
//!
//! Every parser reads through [`Reader`], whose `take` checks the remaining length before it slices, so no input
//! can make a parser panic. A parse error is a [`WireError`], which is exactly the NOTIFICATION RFC 4271 §6 (and
//! RFC 7606, RFC 7313) says to send for it: code, subcode and data. UPDATE attribute errors that RFC 7606 handles
//! by "treat-as-withdraw" or "attribute discard" are not errors: they are reported in [`Update::treat_as_withdraw`]
//! and [`PathAttributes::discarded`], and the session stays up.

use iotrelay_types::Ipv4Cidr;
use std::net::Ipv4Addr;

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

/// A prefix in NLRI and withdrawn routes (RFC 4271 §4.3) is an [`Ipv4Cidr`], the network type the whole project
/// uses: these functions are its wire form, a length octet and the significant address octets.
pub(crate) fn prefix_wire_len(p: &Ipv4Cidr) -> usize {
    1 + usize::from(p.prefix_len()).div_ceil(8)
}

pub(crate) fn emit_prefix(p: &Ipv4Cidr, out: &mut Vec<u8>) {
    out.push(p.prefix_len());
    out.extend_from_slice(&p.addr().octets()[..usize::from(p.prefix_len()).div_ceil(8)]);
}

/// Parses one prefix; `err` is the error for a length above 32 or a truncated address. Trailing bits after the
/// prefix length are irrelevant (RFC 4271 §4.3): they are cleared, not refused, so a peer that sets them loses
/// nothing and the route is stored under its canonical network.
pub(crate) fn parse_prefix(r: &mut Reader<'_>, err: impl Fn() -> WireError) -> Result<Ipv4Cidr, WireError> {
    let len = r.u8(&err)?;
    if len > 32 {
        return Err(err());
    }
    let bytes = r.take(usize::from(len).div_ceil(8), &err)?;
    let mut a = [0u8; 4];
    a[..bytes.len()].copy_from_slice(bytes);
    Ipv4Cidr::truncating(Ipv4Addr::from(a), len).ok_or_else(err)
}
