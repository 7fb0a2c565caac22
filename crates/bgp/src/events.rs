//! What the speaker tells its caller: the session state, outputs to carry out on the TCP connection, events for
//! status and the relay, why a session went down, and counters.

use crate::wire::codes;
use iotrelay_types::Ipv4Cidr;
use std::fmt;
use std::net::Ipv4Addr;

/// The RFC 4271 §8.2.2 session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started, or waiting out the connect-retry delay after a failure.
    Idle,
    /// Active mode: a TCP connect was requested ([`Output::Connect`]) and has not completed.
    Connect,
    /// Passive mode: waiting for the peer to connect.
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    /// A TCP connection is up and BGP messages flow on it.
    pub fn is_connected(self) -> bool {
        matches!(self, State::OpenSent | State::OpenConfirm | State::Established)
    }
}

/// Something for the caller to do on the TCP connection, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to the peer's port 179; report the result with `connection_up` or
    /// `connection_down`.
    Connect,
    /// Write these octets to the connection.
    Send(Vec<u8>),
    /// Close the connection (after writing what was queued before it).
    Close,
}

/// Why a session (or an attempt to set one up) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// The TCP connection did not come up within `connect_timeout`, or failed.
    ConnectFailed,
    /// The TCP connection closed without a NOTIFICATION.
    ConnectionClosed,
    /// Nothing arrived from the peer within the hold time; we sent NOTIFICATION Hold Timer Expired.
    HoldTimerExpired,
    /// We found an error (malformed message, refused OPEN, unexpected message) and sent this NOTIFICATION.
    NotificationSent { code: u8, subcode: u8, what: &'static str },
    /// The peer sent a NOTIFICATION.
    NotificationReceived { code: u8, subcode: u8 },
    /// We stopped the session (`stop`).
    Stopped,
}

impl DownReason {
    /// CamelCase reason for status and events.
    pub fn reason(&self) -> &'static str {
        match self {
            DownReason::ConnectFailed => "ConnectFailed",
            DownReason::ConnectionClosed => "ConnectionClosed",
            DownReason::HoldTimerExpired => "HoldTimerExpired",
            DownReason::NotificationSent { .. } => "NotificationSent",
            DownReason::NotificationReceived { .. } => "NotificationReceived",
            DownReason::Stopped => "Stopped",
        }
    }
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::ConnectFailed => f.write_str("TCP connection to the peer failed"),
            DownReason::ConnectionClosed => f.write_str("TCP connection closed without a NOTIFICATION"),
            DownReason::HoldTimerExpired => f.write_str("hold timer expired"),
            DownReason::NotificationSent { code, subcode, what } => {
                write!(f, "sent NOTIFICATION {} ({what})", codes::describe(*code, *subcode))
            }
            DownReason::NotificationReceived { code, subcode } => {
                write!(f, "peer sent NOTIFICATION {}", codes::describe(*code, *subcode))
            }
            DownReason::Stopped => f.write_str("stopped"),
        }
    }
}

/// Events, drained with `poll_event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Established {
        peer_as: u32,
        peer_id: Ipv4Addr,
        hold_time: u16,
    },
    Down {
        reason: DownReason,
    },
    /// The learned-route table changed: `learned` are now present (new or with new attributes), `withdrawn`
    /// are gone. Consecutive changes are merged while undrained; the table itself is `Speaker::routes`.
    RoutesChanged {
        learned: Vec<Ipv4Cidr>,
        withdrawn: Vec<Ipv4Cidr>,
    },
}

/// Counters, monotonic over the speaker's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub messages_received: u64,
    pub messages_sent: u64,
    pub updates_received: u64,
    pub notifications_sent: u64,
    pub notifications_received: u64,
    /// Messages that did not parse (each answered with a NOTIFICATION, then the session ended).
    pub malformed_messages: u64,
    /// UPDATEs whose NLRI was treated as withdrawn (RFC 7606).
    pub updates_treated_as_withdraw: u64,
    /// Attributes dropped on receipt (RFC 7606 attribute discard, repeats, LOCAL_PREF from AWS).
    pub attributes_discarded: u64,
    /// New prefixes refused because the learned-route table was full.
    pub routes_dropped_by_bound: u64,
    /// Prefixes ignored because their AS_PATH contains our own AS (RFC 4271 §9.1.2).
    pub routes_rejected_loop: u64,
    pub sessions_established: u64,
    pub connect_attempts: u64,
}
