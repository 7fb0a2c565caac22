//! Code points: message types (RFC 4271 §4.1, RFC 2918), NOTIFICATION error codes and subcodes (RFC 4271 §4.5
//! and §6, RFC 5492, RFC 4486, RFC 6608, RFC 7313), path attribute types (RFC 4271 §5), capability codes.

/// Message types.
pub mod msg {
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    /// RFC 2918.
    pub const ROUTE_REFRESH: u8 = 5;
}

/// NOTIFICATION error codes.
pub mod err {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    /// RFC 7313 §5.
    pub const ROUTE_REFRESH_MESSAGE: u8 = 7;
}

/// Message Header Error subcodes (RFC 4271 §6.1).
pub mod header {
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;
}

/// OPEN Message Error subcodes (RFC 4271 §6.2, RFC 5492 §5).
pub mod open {
    pub const UNSPECIFIC: u8 = 0;
    pub const UNSUPPORTED_VERSION_NUMBER: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
}

/// UPDATE Message Error subcodes (RFC 4271 §6.3).
pub mod update {
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// Finite State Machine Error subcodes (RFC 6608 §3).
pub mod fsm {
    pub const UNEXPECTED_IN_OPEN_SENT: u8 = 1;
    pub const UNEXPECTED_IN_OPEN_CONFIRM: u8 = 2;
    pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
}

/// Cease subcodes (RFC 4486 §4).
pub mod cease {
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
}

/// ROUTE-REFRESH Message Error subcodes (RFC 7313 §5).
pub mod route_refresh {
    pub const INVALID_MESSAGE_LENGTH: u8 = 1;
}

/// Path attribute type codes (RFC 4271 §5, RFC 4760, RFC 6793).
pub mod attr {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
}

/// Capability codes (RFC 5492 §4 registry).
pub mod cap {
    /// RFC 4760.
    pub const MULTIPROTOCOL: u8 = 1;
    /// RFC 2918.
    pub const ROUTE_REFRESH: u8 = 2;
    /// RFC 6793.
    pub const FOUR_OCTET_AS: u8 = 65;
}

/// Address family and subsequent address family for IPv4 unicast (RFC 4760).
pub const AFI_IPV4: u16 = 1;
pub const SAFI_UNICAST: u8 = 1;

/// The RFC's name for a NOTIFICATION code/subcode pair, e.g. `UPDATE Message Error / Malformed AS_PATH`.
pub fn describe(code: u8, subcode: u8) -> String {
    let c = match code {
        err::MESSAGE_HEADER => "Message Header Error",
        err::OPEN_MESSAGE => "OPEN Message Error",
        err::UPDATE_MESSAGE => "UPDATE Message Error",
        err::HOLD_TIMER_EXPIRED => "Hold Timer Expired",
        err::FSM => "Finite State Machine Error",
        err::CEASE => "Cease",
        err::ROUTE_REFRESH_MESSAGE => "ROUTE-REFRESH Message Error",
        _ => return format!("error code {code} subcode {subcode}"),
    };
    let s = match (code, subcode) {
        (_, 0) => return c.to_string(),
        (err::MESSAGE_HEADER, 1) => "Connection Not Synchronized",
        (err::MESSAGE_HEADER, 2) => "Bad Message Length",
        (err::MESSAGE_HEADER, 3) => "Bad Message Type",
        (err::OPEN_MESSAGE, 1) => "Unsupported Version Number",
        (err::OPEN_MESSAGE, 2) => "Bad Peer AS",
        (err::OPEN_MESSAGE, 3) => "Bad BGP Identifier",
        (err::OPEN_MESSAGE, 4) => "Unsupported Optional Parameter",
        (err::OPEN_MESSAGE, 6) => "Unacceptable Hold Time",
        (err::OPEN_MESSAGE, 7) => "Unsupported Capability",
        (err::UPDATE_MESSAGE, 1) => "Malformed Attribute List",
        (err::UPDATE_MESSAGE, 2) => "Unrecognized Well-known Attribute",
        (err::UPDATE_MESSAGE, 3) => "Missing Well-known Attribute",
        (err::UPDATE_MESSAGE, 4) => "Attribute Flags Error",
        (err::UPDATE_MESSAGE, 5) => "Attribute Length Error",
        (err::UPDATE_MESSAGE, 6) => "Invalid ORIGIN Attribute",
        (err::UPDATE_MESSAGE, 8) => "Invalid NEXT_HOP Attribute",
        (err::UPDATE_MESSAGE, 9) => "Optional Attribute Error",
        (err::UPDATE_MESSAGE, 10) => "Invalid Network Field",
        (err::UPDATE_MESSAGE, 11) => "Malformed AS_PATH",
        (err::FSM, 1) => "Receive Unexpected Message in OpenSent State",
        (err::FSM, 2) => "Receive Unexpected Message in OpenConfirm State",
        (err::FSM, 3) => "Receive Unexpected Message in Established State",
        (err::CEASE, 1) => "Maximum Number of Prefixes Reached",
        (err::CEASE, 2) => "Administrative Shutdown",
        (err::CEASE, 3) => "Peer De-configured",
        (err::CEASE, 4) => "Administrative Reset",
        (err::CEASE, 5) => "Connection Rejected",
        (err::CEASE, 6) => "Other Configuration Change",
        (err::CEASE, 7) => "Connection Collision Resolution",
        (err::CEASE, 8) => "Out of Resources",
        (err::ROUTE_REFRESH_MESSAGE, 1) => "Invalid Message Length",
        _ => return format!("{c} / subcode {subcode}"),
    };
    format!("{c} / {s}")
}
