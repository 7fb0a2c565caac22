//! The session's configuration and what we announce, with validation: AWS's limits (at most 100 prefixes
//! accepted from a customer gateway), RFC 4271's (hold time 0 or at least 3 s, a non-zero BGP identifier) and ours
//! (external peering only, a bounded learned-route table, a bounded AS-path prepend).

use crate::wire::AS_TRANS;
use iotrelay_types::Ipv4Cidr;
use std::net::Ipv4Addr;
use std::time::Duration;

/// AWS accepts at most 100 prefixes from a customer gateway per BGP session; more would be refused by AWS.
pub const MAX_ANNOUNCED_PREFIXES: usize = 100;
/// Largest AS-path prepend count we accept (enough to make a tunnel clearly less preferred).
pub const MAX_PREPEND: u8 = 10;

/// Who opens the TCP connection. Exactly one side connects, so there are never two connections to resolve
/// (RFC 4271 §6.8 collision detection is not needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectMode {
    /// We connect to the peer's port 179, and reconnect with backoff after a failure.
    Active,
    /// We wait for the peer to connect (used by tests that wire two speakers together).
    Passive,
}

/// What we announce to the peer: prefixes with our inside address as next hop, an AS_PATH of our ASN repeated
/// `1 + prepend` times (the standby tunnel is announced with prepends, the active one plain), and an optional
/// MULTI_EXIT_DISC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announce {
    pub prefixes: Vec<Ipv4Cidr>,
    pub prepend: u8,
    pub med: Option<u32>,
}

/// One BGP session's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Our AS number (AWS's default for the customer gateway: 65000); 4-octet ASNs are allowed.
    pub local_as: u32,
    /// The peer's AS number (AWS's default: 64512); an OPEN naming another is refused with Bad Peer AS.
    pub peer_as: u32,
    /// Our BGP identifier; iotrelay uses the tunnel's inside address.
    pub router_id: Ipv4Addr,
    /// Our inside address: the NEXT_HOP of every route we announce.
    pub local_address: Ipv4Addr,
    /// Proposed hold time in seconds (AWS: 30); the session uses the smaller of ours and the peer's.
    pub hold_time: u16,
    pub mode: ConnectMode,
    /// First delay before reconnecting after a failure; doubles with each further failure up to
    /// `connect_retry_max`, each delay multiplied by a random factor in [0.75, 1] (RFC 4271 §10).
    pub connect_retry_initial: Duration,
    pub connect_retry_max: Duration,
    /// How long a TCP connect may take before the attempt counts as failed.
    pub connect_timeout: Duration,
    /// Hold timer while waiting for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 minutes).
    pub open_hold_time: Duration,
    /// Bound of the learned-route table; prefixes beyond it are dropped and counted.
    pub max_learned_routes: usize,
    pub announce: Announce,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("AS number 0 is reserved")]
    ZeroAs,
    #[error("AS number 23456 (AS_TRANS) cannot be used as a real AS number")]
    AsTrans,
    #[error("our AS {0} equals the peer's: only external BGP (a different AS) is supported")]
    SameAs(u32),
    #[error("hold time {0} s: must be 0 or at least 3 seconds")]
    HoldTime(u16),
    #[error("the BGP identifier must not be 0.0.0.0")]
    RouterId,
    #[error("{0} prefixes to announce: AWS accepts at most 100")]
    TooManyPrefixes(usize),
    #[error("AS-path prepend {0}: at most 10")]
    Prepend(u8),
    #[error("the learned-route bound must be at least 1")]
    MaxLearned,
    #[error("connect-retry delays: initial must be non-zero and at most the maximum")]
    ConnectRetry,
}

impl Config {
    /// AWS's defaults around the given inside address and ASNs: hold time 30 s, we connect, reconnect after 5 s
    /// doubling to 120 s, at most 1000 learned routes, announce `inside/32`.
    pub fn aws(local_as: u32, peer_as: u32, inside: Ipv4Addr) -> Config {
        Config {
            local_as,
            peer_as,
            router_id: inside,
            local_address: inside,
            hold_time: 30,
            mode: ConnectMode::Active,
            connect_retry_initial: Duration::from_secs(5),
            connect_retry_max: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(30),
            open_hold_time: Duration::from_secs(240),
            max_learned_routes: 1000,
            announce: Announce { prefixes: vec![Ipv4Cidr::host(inside)], prepend: 0, med: None },
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for asn in [self.local_as, self.peer_as] {
            if asn == 0 {
                return Err(ConfigError::ZeroAs);
            }
            if asn == u32::from(AS_TRANS) {
                return Err(ConfigError::AsTrans);
            }
        }
        if self.local_as == self.peer_as {
            return Err(ConfigError::SameAs(self.local_as));
        }
        if self.hold_time == 1 || self.hold_time == 2 {
            return Err(ConfigError::HoldTime(self.hold_time));
        }
        if self.router_id.is_unspecified() {
            return Err(ConfigError::RouterId);
        }
        if self.max_learned_routes == 0 {
            return Err(ConfigError::MaxLearned);
        }
        if self.connect_retry_initial.is_zero() || self.connect_retry_initial > self.connect_retry_max {
            return Err(ConfigError::ConnectRetry);
        }
        self.announce.validate()
    }
}

impl Announce {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.prefixes.len() > MAX_ANNOUNCED_PREFIXES {
            return Err(ConfigError::TooManyPrefixes(self.prefixes.len()));
        }
        if self.prepend > MAX_PREPEND {
            return Err(ConfigError::Prepend(self.prepend));
        }
        Ok(())
    }
}
