//! IKEv2 wire format (RFC 7296 §3, RFC 7383 for SKF): code points, the message header, payloads.
//!
//! Parsing checks every length once, up front; no input can make a parser panic. Unknown non-critical payloads
//! are kept as [`Payload::Unknown`] (and skipped by the engine); an unknown payload with the critical bit set
//! yields [`WireError::UnsupportedCriticalPayload`] so the engine can answer UNSUPPORTED_CRITICAL_PAYLOAD.

use std::net::IpAddr;

mod codec;
mod codepoints;
pub mod fragment;
pub mod packet;
pub use codepoints::*;

/// Length of the fixed IKE header (RFC 7296 §3.1).
pub const HEADER_LEN: usize = 28;
/// Length of a generic payload header (RFC 7296 §3.2).
pub const GENERIC_HEADER_LEN: usize = 4;
/// Length of the fragment number and total that follow an SKF payload's generic header (RFC 7383 §2.5).
pub const SKF_FIELDS_LEN: usize = 4;

/// Octets of an SK payload's (RFC 7296 §3.14) or, with a fragment, an SKF payload's header: what precedes the IV
/// and is authenticated with the IKE header.
pub const fn encrypted_header_len(fragment: bool) -> usize {
    if fragment { GENERIC_HEADER_LEN + SKF_FIELDS_LEN } else { GENERIC_HEADER_LEN }
}

/// Writes an SK payload's header, or with `fragment` (number, total) an SKF payload's, into `out`
/// ([`encrypted_header_len`] octets): `first` is the type of the first inner payload, `payload_len` the length of
/// the whole payload (this header, IV, ciphertext and ICV). The payload is always the last of its message.
pub fn emit_encrypted_header(out: &mut [u8], first: PayloadType, payload_len: u16, fragment: Option<(u16, u16)>) {
    out[0] = first.0;
    out[1] = 0;
    out[2..4].copy_from_slice(&payload_len.to_be_bytes());
    if let Some((number, total)) = fragment {
        out[4..6].copy_from_slice(&number.to_be_bytes());
        out[6..8].copy_from_slice(&total.to_be_bytes());
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated: {0}")]
    Truncated(&'static str),
    #[error("invalid length field: {0}")]
    BadLength(&'static str),
    #[error("invalid syntax: {0}")]
    InvalidSyntax(&'static str),
    #[error("unsupported major version {0}")]
    InvalidMajorVersion(u8),
    #[error("unsupported critical payload type {0}")]
    UnsupportedCriticalPayload(u8),
}

/// Header flag bits (RFC 7296 §3.1).
pub mod flags {
    pub const INITIATOR: u8 = 0x08;
    pub const VERSION: u8 = 0x10;
    pub const RESPONSE: u8 = 0x20;
}

/// The IKE header (RFC 7296 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub spi_i: u64,
    pub spi_r: u64,
    pub next_payload: PayloadType,
    /// Major version (2) in the high nibble, minor (0) in the low one, as on the wire: 0x20.
    pub version: u8,
    pub exchange: ExchangeType,
    pub flags: u8,
    pub message_id: u32,
    /// Total message length including the header.
    pub length: u32,
}

impl Header {
    /// Parses the first 28 octets of `data` (which may be longer). Checks the major version is 2 and that
    /// `length` is at least 28; it does not compare `length` with `data.len()` (see [`Message::parse`]).
    pub fn parse(data: &[u8]) -> Result<Header, WireError> {
        codec::parse_header(data)
    }
    /// Writes the header into `out[..28]`. Panics only if `out` is shorter than 28 (a caller bug, not input).
    pub fn emit(&self, out: &mut [u8]) {
        codec::emit_header(self, out)
    }
    pub fn is_response(&self) -> bool {
        self.flags & flags::RESPONSE != 0
    }
    pub fn is_initiator(&self) -> bool {
        self.flags & flags::INITIATOR != 0
    }
}

/// A transform (RFC 7296 §3.3.2). Only the Key Length attribute (14) is understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    pub ty: TransformType,
    pub id: u16,
    pub key_length: Option<u16>,
    /// True if the transform carried an attribute other than Key Length: such a transform must not be chosen.
    pub unknown_attributes: bool,
    /// Those other attributes, raw, so they survive a round trip (emitted after Key Length).
    pub extra_attributes: Vec<u8>,
}

impl Transform {
    /// A transform with an optional Key Length and no other attributes.
    pub fn new(ty: TransformType, id: u16, key_length: Option<u16>) -> Transform {
        Transform { ty, id, key_length, unknown_attributes: false, extra_attributes: Vec::new() }
    }
}

/// A proposal substructure (RFC 7296 §3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub number: u8,
    pub protocol: ProtocolId,
    /// Empty (IKE_SA_INIT), 4 octets (ESP) or 8 octets (IKE SA rekey).
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

/// A traffic selector (RFC 7296 §3.13.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSelector {
    pub ts_type: TsType,
    /// 0 = any.
    pub ip_protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
    pub start_addr: IpAddr,
    pub end_addr: IpAddr,
}

/// Identification payload body (RFC 7296 §3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identification {
    pub id_type: IdType,
    pub data: Vec<u8>,
}

/// Notify payload (RFC 7296 §3.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// 0 when no SPI is given.
    pub protocol: ProtocolId,
    pub spi: Vec<u8>,
    pub ty: NotifyType,
    pub data: Vec<u8>,
}

/// Delete payload (RFC 7296 §3.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub protocol: ProtocolId,
    /// Each SPI is `spi_size` octets (0 for IKE, 4 for ESP).
    pub spi_size: u8,
    pub spis: Vec<Vec<u8>>,
}

/// One payload, owned. Emission sets every next-payload and length field itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Sa(Vec<Proposal>),
    Ke {
        group: u16,
        data: Vec<u8>,
    },
    IdI(Identification),
    IdR(Identification),
    /// CERT: kept raw (iotrelay authenticates with PSK only).
    Cert {
        encoding: u8,
        data: Vec<u8>,
    },
    /// CERTREQ: parsed, ignored.
    CertReq {
        encoding: u8,
        data: Vec<u8>,
    },
    Auth {
        method: AuthMethod,
        data: Vec<u8>,
    },
    Nonce(Vec<u8>),
    Notify(Notify),
    Delete(Delete),
    /// Vendor ID: parsed, ignored.
    VendorId(Vec<u8>),
    TsI(Vec<TrafficSelector>),
    TsR(Vec<TrafficSelector>),
    /// Configuration payload: kept raw, ignored.
    Cp {
        cfg_type: u8,
        data: Vec<u8>,
    },
    /// Encrypted and authenticated (RFC 7296 §3.14). Must be the last payload. `next_inner` is the type of the
    /// first payload inside; `body` is IV | ciphertext | ICV. `aad_len` (set by the parser, ignored when
    /// emitting) is the number of octets from the start of the message to the end of this payload's generic
    /// header: the additional data for AEAD (RFC 5282), and where the ICV-covered part begins.
    Sk {
        next_inner: PayloadType,
        body: Vec<u8>,
        aad_len: usize,
    },
    /// Encrypted fragment (RFC 7383 §2.5). Must be the last payload. `next_inner` is meaningful in fragment 1 only.
    /// `aad_len` as for `Sk` (it includes the 4 octets of fragment number and total).
    Skf {
        next_inner: PayloadType,
        number: u16,
        total: u16,
        body: Vec<u8>,
        aad_len: usize,
    },
    /// A payload type this implementation does not know; kept so it round-trips.
    Unknown {
        ty: PayloadType,
        critical: bool,
        body: Vec<u8>,
    },
}

impl Payload {
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::SA,
            Payload::Ke { .. } => PayloadType::KE,
            Payload::IdI(_) => PayloadType::IDI,
            Payload::IdR(_) => PayloadType::IDR,
            Payload::Cert { .. } => PayloadType::CERT,
            Payload::CertReq { .. } => PayloadType::CERTREQ,
            Payload::Auth { .. } => PayloadType::AUTH,
            Payload::Nonce(_) => PayloadType::NONCE,
            Payload::Notify(_) => PayloadType::NOTIFY,
            Payload::Delete(_) => PayloadType::DELETE,
            Payload::VendorId(_) => PayloadType::VENDOR_ID,
            Payload::TsI(_) => PayloadType::TSI,
            Payload::TsR(_) => PayloadType::TSR,
            Payload::Cp { .. } => PayloadType::CP,
            Payload::Sk { .. } => PayloadType::SK,
            Payload::Skf { .. } => PayloadType::SKF,
            Payload::Unknown { ty, .. } => *ty,
        }
    }
}

/// Walks a payload chain starting with type `first` over `data` (e.g. the decrypted SK contents, without the
/// padding). Every payload's length must fit; SK/SKF must be last; trailing octets after the chain's end
/// (next payload = NONE) are an error.
pub fn parse_payloads(first: PayloadType, data: &[u8]) -> Result<Vec<Payload>, WireError> {
    codec::parse_chain(first, data, 0)
}

/// Serializes a payload chain; returns the first payload's type (NONE for an empty chain) and the octets.
pub fn emit_payloads(payloads: &[Payload]) -> (PayloadType, Vec<u8>) {
    let mut out = Vec::with_capacity(256);
    let first = codec::emit_chain(payloads, &mut out);
    (first, out)
}

/// A whole IKE message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Parses a datagram (without the non-ESP marker). `header.length` must equal `data.len()`.
    pub fn parse(data: &[u8]) -> Result<Message, WireError> {
        let header = Header::parse(data)?;
        if header.length as usize != data.len() {
            return Err(WireError::BadLength("IKE header length differs from the datagram length"));
        }
        let payloads = codec::parse_chain(header.next_payload, &data[HEADER_LEN..], HEADER_LEN)?;
        Ok(Message { header, payloads })
    }
    /// Octets [`Message::emit`] produces.
    pub fn buffer_len(&self) -> usize {
        let mut c = codec::Counter(HEADER_LEN);
        codec::emit_chain(&self.payloads, &mut c);
        c.0
    }
    /// Serializes into `buf[..buffer_len()]` (whatever it held before) and returns the length; like
    /// [`Message::emit`] without an allocation. Errors if `buf` is shorter than [`Message::buffer_len`].
    pub fn emit_into(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let len = self.buffer_len();
        if buf.len() < len {
            return Err(WireError::BadLength("output buffer shorter than the message"));
        }
        let mut sink = codec::SliceSink { buf: &mut buf[..len], pos: HEADER_LEN };
        let first = codec::emit_chain(&self.payloads, &mut sink);
        let mut header = self.header;
        header.next_payload = first;
        header.length = len as u32;
        header.emit(&mut buf[..HEADER_LEN]);
        Ok(len)
    }
    /// Serializes; `header.next_payload` and `header.length` are computed, the other header fields are taken
    /// as they are.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = vec![0u8; HEADER_LEN];
        let first = codec::emit_chain(&self.payloads, &mut out);
        let mut header = self.header;
        header.next_payload = first;
        header.length = out.len() as u32;
        header.emit(&mut out[..HEADER_LEN]);
        out
    }
}
