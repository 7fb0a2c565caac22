//! The message header (RFC 4271 §4.1), the dispatch on the message type with the per-type length checks, and the
//! small fixed messages: KEEPALIVE (§4.4), NOTIFICATION (§4.5), ROUTE-REFRESH (RFC 2918 §3).

use super::codes::{err, header, msg, route_refresh};
use super::{HEADER_LEN, MAX_MESSAGE_LEN, Open, Reader, Update, WireError};

/// The fixed header: 16 octets of marker (all ones), length, type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Total message length including the header, 19..=4096 once parsed.
    pub length: u16,
    pub msg_type: u8,
}

impl Header {
    /// Parses and checks the first 19 octets of `data` (which may be longer or hold only the header): the
    /// marker (Connection Not Synchronized), the length within 19..=4096 (Bad Message Length, data = the length
    /// field) and a known type (Bad Message Type, data = the type). The per-type length rules are
    /// [`Message::parse`]'s.
    pub fn parse(data: &[u8]) -> Result<Header, WireError> {
        let mut r = Reader::new(data);
        let trunc = || WireError::new(err::MESSAGE_HEADER, header::BAD_MESSAGE_LENGTH, "truncated header");
        let marker = r.take(16, trunc)?;
        if marker.iter().any(|&b| b != 0xff) {
            return Err(WireError::new(
                err::MESSAGE_HEADER,
                header::CONNECTION_NOT_SYNCHRONIZED,
                "marker not all ones",
            ));
        }
        let length = r.u16(trunc)?;
        let msg_type = r.u8(trunc)?;
        if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&usize::from(length)) {
            return Err(bad_length(length, "message length outside 19..4096"));
        }
        if !(msg::OPEN..=msg::ROUTE_REFRESH).contains(&msg_type) {
            return Err(WireError::with_data(
                err::MESSAGE_HEADER,
                header::BAD_MESSAGE_TYPE,
                vec![msg_type],
                "unknown message type",
            ));
        }
        Ok(Header { length, msg_type })
    }
}

fn bad_length(length: u16, what: &'static str) -> WireError {
    WireError::with_data(err::MESSAGE_HEADER, header::BAD_MESSAGE_LENGTH, length.to_be_bytes().to_vec(), what)
}

/// NOTIFICATION (RFC 4271 §4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

/// ROUTE-REFRESH (RFC 2918 §3): the AFI/SAFI whose routes the peer asks us to send again. The octet between
/// them is reserved (RFC 7313 calls it the message subtype; 0 = a plain refresh request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub afi: u16,
    pub subtype: u8,
    pub safi: u8,
}

/// One BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

impl Message {
    /// Parses exactly one message: `data` must be the whole message, header included, and nothing more.
    pub fn parse(data: &[u8]) -> Result<Message, WireError> {
        let h = Header::parse(data)?;
        if usize::from(h.length) != data.len() {
            return Err(bad_length(h.length, "length field differs from the message size"));
        }
        let body = &data[HEADER_LEN..];
        let min = match h.msg_type {
            msg::OPEN => 29,
            msg::UPDATE => 23,
            msg::NOTIFICATION => 21,
            _ => HEADER_LEN,
        };
        if data.len() < min || (h.msg_type == msg::KEEPALIVE && data.len() != HEADER_LEN) {
            return Err(bad_length(h.length, "length not valid for the message type"));
        }
        match h.msg_type {
            msg::OPEN => Open::parse(body).map(Message::Open),
            msg::UPDATE => Update::parse(body).map(Message::Update),
            msg::NOTIFICATION => {
                Ok(Message::Notification(Notification { code: body[0], subcode: body[1], data: body[2..].to_vec() }))
            }
            msg::KEEPALIVE => Ok(Message::Keepalive),
            _ => {
                // RFC 7313 §5: a ROUTE-REFRESH whose body is not 4 octets; the data is the whole message.
                if body.len() != 4 {
                    return Err(WireError::with_data(
                        err::ROUTE_REFRESH_MESSAGE,
                        route_refresh::INVALID_MESSAGE_LENGTH,
                        data.to_vec(),
                        "ROUTE-REFRESH body not 4 octets",
                    ));
                }
                Ok(Message::RouteRefresh(RouteRefresh {
                    afi: u16::from_be_bytes([body[0], body[1]]),
                    subtype: body[2],
                    safi: body[3],
                }))
            }
        }
    }

    pub fn msg_type(&self) -> u8 {
        match self {
            Message::Open(_) => msg::OPEN,
            Message::Update(_) => msg::UPDATE,
            Message::Notification(_) => msg::NOTIFICATION,
            Message::Keepalive => msg::KEEPALIVE,
            Message::RouteRefresh(_) => msg::ROUTE_REFRESH,
        }
    }

    /// The message on the wire. An UPDATE is the caller's to keep within 4096 octets
    /// ([`Update::wire_len`]); a NOTIFICATION's data is cut to fit.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0xff; 16];
        out.extend_from_slice(&[0, 0, self.msg_type()]);
        match self {
            Message::Open(o) => o.emit(&mut out),
            Message::Update(u) => u.emit(&mut out),
            Message::Notification(n) => {
                out.extend_from_slice(&[n.code, n.subcode]);
                let room = MAX_MESSAGE_LEN - HEADER_LEN - 2;
                out.extend_from_slice(&n.data[..n.data.len().min(room)]);
            }
            Message::Keepalive => {}
            Message::RouteRefresh(r) => {
                out.extend_from_slice(&r.afi.to_be_bytes());
                out.extend_from_slice(&[r.subtype, r.safi]);
            }
        }
        let len = u16::try_from(out.len()).unwrap_or(u16::MAX);
        out[16..18].copy_from_slice(&len.to_be_bytes());
        out
    }
}
