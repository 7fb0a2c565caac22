//! The engine's public contract, used by the sidecar (which owns sockets, the clock and the OS RNG).
//!
//! One [`Tunnel`] per configured AWS tunnel (peer address). It owns at most one IKE SA and exactly one
//! CHILD_SA at a time (plus, briefly after a rekey, the previous inbound SA), and speaks quinn-proto style:
//! input through `handle_*`, output through `poll_*`, commands as plain methods. Time is a [`Duration`] since an
//! arbitrary origin chosen by the caller; randomness is the tunnel's own, seeded by the caller through
//! [`crate::Tunnel::new`] and [`crate::Tunnel::reseed`].

use iotrelay_crypto::kdf::KeyMaterial;
use iotrelay_crypto::proposal::{EspProposal, IkeProposal};
use iotrelay_crypto::{Encr, Integ};
use std::net::SocketAddr;
use std::time::Duration;
use zeroize::Zeroizing;

/// Traffic selectors are IPv4 networks (`0.0.0.0/0` by default on both sides); the identity, the startup action
/// (`Start`: we initiate, and re-initiate after a failure; `Add`: we wait for the peer) and the tunnel's state
/// are the types the spec and the status use too.
pub use iotrelay_types::{Identity, Ipv4Cidr, StartupAction, TunnelState};

/// Retransmission of requests: timeout `initial * multiplier^n`, capped at `max_timeout`, at most `max_tries`
/// sends in all; then the exchange (and the IKE SA) is given up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetransmitConfig {
    pub initial: Duration,
    pub multiplier: f64,
    pub max_timeout: Duration,
    pub max_tries: u32,
}

/// Everything one tunnel needs. The PSK is zeroized on drop and never printed.
#[derive(Clone)]
pub struct Config {
    pub local_id: Identity,
    /// If set, the peer's IDi/IDr must match it.
    pub remote_id: Option<Identity>,
    pub psk: Zeroizing<Vec<u8>>,
    pub ike_proposals: Vec<IkeProposal>,
    pub esp_proposals: Vec<EspProposal>,
    pub ike_lifetime: Duration,
    pub child_lifetime: Duration,
    /// Rekey this long before the lifetime ends (minus up to `rekey_fuzz` more, drawn from the RNG).
    pub ike_rekey_margin: Duration,
    pub child_rekey_margin: Duration,
    pub rekey_fuzz: Duration,
    /// Send an empty INFORMATIONAL if nothing was received from the peer for this long.
    pub dpd_interval: Duration,
    /// Declare the peer dead when a DPD (or any request) stays unanswered this long.
    pub dpd_timeout: Duration,
    pub retransmit: RetransmitConfig,
    pub local_ts: Vec<Ipv4Cidr>,
    pub remote_ts: Vec<Ipv4Cidr>,
    pub startup: StartupAction,
    /// Fake NAT detection so both sides move to UDP 4500 and ESP is always UDP-encapsulated (RFC 7296 §2.23).
    pub force_encap: bool,
    /// Responder: from this many half-open IKE SAs on (counted across every tunnel sharing a
    /// [`crate::HalfOpenCount`], i.e. relay-wide in the sidecar), a new IKE_SA_INIT must return a COOKIE first
    /// (RFC 7296 §2.6). A sender spoofing the AWS endpoint's address cannot, so it creates no state.
    pub cookie_threshold: usize,
    /// Responder: at most this many half-open IKE SAs per tunnel, i.e. from the tunnel's one peer address (as
    /// strongSwan's `block_threshold`); further IKE_SA_INIT requests are dropped until one completes or expires.
    pub half_open_limit: usize,
    /// Send INITIAL_CONTACT in the first IKE_AUTH (the relay started fresh).
    pub initial_contact: bool,
    /// How long the previous inbound CHILD_SA keeps accepting after a rekey.
    pub old_inbound_grace: Duration,
    /// Largest encrypted IKE message sent in one datagram (octets of the IKE message, without IP and UDP headers
    /// and the non-ESP marker). Larger ones go out as RFC 7383 fragments when the peer announced support.
    pub fragment_size: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("local_id", &self.local_id)
            .field("remote_id", &self.remote_id)
            .field("psk", &"<redacted>")
            .field("ike_proposals", &self.ike_proposals)
            .field("esp_proposals", &self.esp_proposals)
            .finish_non_exhaustive()
    }
}

/// A datagram to send. The sidecar prepends the 4-octet non-ESP marker when `local_port` is 4500.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// 500 or 4500.
    pub local_port: u16,
    pub remote: SocketAddr,
    pub data: Vec<u8>,
}

/// An installed CHILD_SA's parameters and keys, for the ESP datapath.
pub struct ChildSa {
    /// SPI the peer puts on packets it sends us (lowercase hex in status, as strongSwan prints).
    pub inbound_spi: u32,
    /// SPI we put on packets we send.
    pub outbound_spi: u32,
    pub encr: Encr,
    pub integ: Option<Integ>,
    pub inbound_keys: KeyMaterial,
    pub outbound_keys: KeyMaterial,
    /// e.g. `AES_CBC-128/HMAC_SHA1_96` (plus `/MODP_1024` when PFS was used), as strongSwan prints it.
    pub proposal: String,
    pub local_ts: Vec<Ipv4Cidr>,
    pub remote_ts: Vec<Ipv4Cidr>,
    pub established_at: Duration,
    pub rekey_at: Duration,
}

impl std::fmt::Debug for ChildSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSa")
            .field("inbound_spi", &format_args!("{:08x}", self.inbound_spi))
            .field("outbound_spi", &format_args!("{:08x}", self.outbound_spi))
            .field("proposal", &self.proposal)
            .finish_non_exhaustive()
    }
}

/// Why an IKE SA went down or could not be established. `reason()` gives the status condition reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// The peer rejected our AUTH, or we rejected the peer's.
    AuthenticationFailed {
        by_peer: bool,
    },
    NoProposalChosen {
        by_peer: bool,
    },
    TsUnacceptable {
        by_peer: bool,
    },
    /// The peer sent an error notify we do not handle specially.
    PeerError {
        notify: u16,
    },
    /// A malformed message from the peer ended the exchange.
    InvalidSyntax,
    /// DPD or another request went unanswered for `dpd_timeout` / the retransmit bound.
    DeadPeer,
    /// The peer deleted the IKE SA.
    DeletedByPeer,
    /// The peer sent INITIAL_CONTACT on a new IKE SA: the old one is gone.
    ReplacedByPeer,
    /// We closed it (shutdown or reconfiguration).
    Closed,
}

impl DownReason {
    /// CamelCase reason for status conditions and events, e.g. `AuthenticationFailed`.
    pub fn reason(&self) -> &'static str {
        match self {
            DownReason::AuthenticationFailed { .. } => "AuthenticationFailed",
            DownReason::NoProposalChosen { .. } => "NoProposalChosen",
            DownReason::TsUnacceptable { .. } => "TsUnacceptable",
            DownReason::PeerError { .. } => "PeerError",
            DownReason::InvalidSyntax => "InvalidSyntax",
            DownReason::DeadPeer => "DeadPeer",
            DownReason::DeletedByPeer => "DeletedByPeer",
            DownReason::ReplacedByPeer => "ReplacedByPeer",
            DownReason::Closed => "Closed",
        }
    }
    /// True when retrying cannot help without a configuration change (kstatus `Stalled`).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            DownReason::AuthenticationFailed { .. }
                | DownReason::NoProposalChosen { .. }
                | DownReason::TsUnacceptable { .. }
        )
    }
}

/// What happened, for the datapath and status. Drained with [`crate::Tunnel::poll_event`].
#[derive(Debug)]
pub enum Event {
    IkeSaEstablished {
        local_spi: u64,
        remote_spi: u64,
        proposal: String,
    },
    /// The IKE SA was rekeyed (CREATE_CHILD_SA); the CHILD_SA is unaffected.
    IkeSaRekeyed {
        local_spi: u64,
        remote_spi: u64,
        proposal: String,
    },
    IkeSaDown {
        reason: DownReason,
    },
    /// The first CHILD_SA of an IKE SA: install inbound and outbound.
    ChildSaInstalled(ChildSa),
    /// A rekey completed: install the new inbound SA and switch outbound to `new` atomically; keep the old inbound
    /// SA (`old_inbound_spi`) until [`Event::ChildSaDeleted`] names it.
    ChildSaRekeyed {
        old_inbound_spi: u32,
        old_outbound_spi: u32,
        new: ChildSa,
    },
    /// Remove this inbound SA (and its outbound partner, if still installed).
    ChildSaDeleted {
        inbound_spi: u32,
        outbound_spi: u32,
    },
}

/// Counters, monotonic over the tunnel's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub retransmits: u64,
    pub ike_rekeys: u64,
    pub child_rekeys: u64,
    pub dpd_misses: u64,
    /// Peer messages dropped (or answered only with an unprotected error) without being processed.
    pub invalid_messages: u64,
    /// `invalid_messages` by reason (they sum to it).
    pub dropped: DropCounts,
    /// Rekeys that collided with the peer's and were resolved by the nonces (RFC 7296 §2.8.1/§2.8.2).
    pub rekey_collisions: u64,
    /// IKE_SA_INIT requests answered with a COOKIE demand instead of a new half-open SA.
    pub cookies_sent: u64,
    /// IKE_SA_INIT requests dropped: the tunnel's half-open table was full, or its budget of unauthenticated
    /// Diffie-Hellman work was spent.
    pub half_open_refused: u64,
}

/// Why the engine dropped a peer message without processing it. Each drop counts in [`Counters::dropped`] (and
/// the total `invalid_messages`) and is a `tracing` debug event with [`DropReason::as_str`] as its `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// From an address other than the tunnel's peer.
    NotFromPeer,
    /// Does not parse, before or (authenticated) after decryption. An IKE_SA_INIT request among these is answered
    /// with INVALID_SYNTAX or UNSUPPORTED_CRITICAL_PAYLOAD; nothing else is.
    Malformed,
    /// Another major IKE version.
    UnsupportedVersion,
    /// For no IKE SA of this tunnel (its SPIs are unknown).
    UnknownSpi,
    /// A request outside the window, or a response to nothing in flight (RFC 7296 §2.3).
    UnexpectedMessageId,
    /// Fails the integrity check with the keys of the SA its SPIs name (forged or corrupted).
    Unauthenticated,
    /// An exchange the SA does not accept in its state: a request before the peer's AUTH verified, anything but
    /// IKE_AUTH on a half-open SA, an IKE_SA_INIT response while ours is not in flight, an IKE_SA_INIT request
    /// with a responder SPI or a message ID.
    UnexpectedExchange,
    /// An unauthenticated handshake refused (no acceptable proposal, AUTH failed) while the tunnel has an IKE SA:
    /// counted, but not reported as the tunnel's error.
    RefusedHandshake,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        DropReason::NotFromPeer,
        DropReason::Malformed,
        DropReason::UnsupportedVersion,
        DropReason::UnknownSpi,
        DropReason::UnexpectedMessageId,
        DropReason::Unauthenticated,
        DropReason::UnexpectedExchange,
        DropReason::RefusedHandshake,
    ];

    /// camelCase, for metrics labels and logs, e.g. `unknownSpi`.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NotFromPeer => "notFromPeer",
            DropReason::Malformed => "malformed",
            DropReason::UnsupportedVersion => "unsupportedVersion",
            DropReason::UnknownSpi => "unknownSpi",
            DropReason::UnexpectedMessageId => "unexpectedMessageId",
            DropReason::Unauthenticated => "unauthenticated",
            DropReason::UnexpectedExchange => "unexpectedExchange",
            DropReason::RefusedHandshake => "refusedHandshake",
        }
    }
}

/// Dropped peer messages by [`DropReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts([u64; DropReason::ALL.len()]);

impl DropCounts {
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }
    pub(crate) fn add(&mut self, reason: DropReason) {
        self.0[reason as usize] += 1;
    }
    /// Every reason with its count, in [`DropReason::ALL`]'s order.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.into_iter().map(|r| (r, self.get(r)))
    }
}

/// A snapshot for `/status`, nested as the status is: the sidecar maps it, field for field.
#[derive(Debug, Clone)]
pub struct TunnelStatus {
    pub state: TunnelState,
    /// The established IKE SA; `None` while there is none (or it is still being negotiated).
    pub ike: Option<IkeSaInfo>,
    /// The installed CHILD_SA.
    pub child: Option<ChildSaInfo>,
    /// The last failure, e.g. `peer sent AUTHENTICATION_FAILED`; never contains secrets.
    pub last_error: Option<String>,
    pub last_down_reason: Option<DownReason>,
    pub counters: Counters,
}

/// The established IKE SA of a [`TunnelStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeSaInfo {
    pub local_spi: u64,
    pub remote_spi: u64,
    /// e.g. `AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024`, as strongSwan prints it.
    pub proposal: String,
    pub established_at: Duration,
    pub rekey_at: Duration,
    /// When its lifetime ends (established + configured lifetime): the peer deletes it then unless it was rekeyed.
    pub expires_at: Duration,
    /// Whether a NAT rewrites our address on the way to the peer (RFC 7296 §2.23).
    pub nat_detected: bool,
}

/// The installed CHILD_SA of a [`TunnelStatus`] (its keys go to the datapath through [`Event`], never here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSaInfo {
    pub inbound_spi: u32,
    pub outbound_spi: u32,
    /// e.g. `AES_CBC-128/HMAC_SHA1_96`.
    pub proposal: String,
    pub established_at: Duration,
    pub rekey_at: Duration,
    /// When its lifetime ends (established + configured lifetime): the peer deletes it then unless it was rekeyed.
    pub expires_at: Duration,
}

impl TunnelStatus {
    /// The SPIs that name the current SAs, for tests and logs: ours and the peer's IKE SPI, the CHILD_SA's
    /// inbound and outbound SPI.
    pub fn ike_local_spi(&self) -> Option<u64> {
        self.ike.as_ref().map(|s| s.local_spi)
    }
    pub fn ike_remote_spi(&self) -> Option<u64> {
        self.ike.as_ref().map(|s| s.remote_spi)
    }
    pub fn child_inbound_spi(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.inbound_spi)
    }
    pub fn child_outbound_spi(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.outbound_spi)
    }
}

impl Config {
    /// Defaults that match an AWS Site-to-Site VPN tunnel (docs/aws.md): AWS-compatible proposals, IKE 8 h /
    /// CHILD 1 h with rekey margins larger than AWS's 270 s (so we rekey first), DPD 10 s / 30 s, forced UDP
    /// encapsulation, `0.0.0.0/0` selectors, INITIAL_CONTACT.
    pub fn aws_defaults(psk: Zeroizing<Vec<u8>>, local_id: Identity) -> Config {
        Config {
            local_id,
            remote_id: None,
            psk,
            ike_proposals: IkeProposal::defaults(),
            esp_proposals: EspProposal::defaults(),
            ike_lifetime: Duration::from_secs(8 * 3600),
            child_lifetime: Duration::from_secs(3600),
            ike_rekey_margin: Duration::from_secs(15 * 60),
            child_rekey_margin: Duration::from_secs(9 * 60),
            rekey_fuzz: Duration::from_secs(60),
            dpd_interval: Duration::from_secs(10),
            dpd_timeout: Duration::from_secs(30),
            retransmit: RetransmitConfig {
                initial: Duration::from_secs(1),
                multiplier: 1.8,
                max_timeout: Duration::from_secs(10),
                max_tries: 5,
            },
            local_ts: vec![Ipv4Cidr::ANY],
            remote_ts: vec![Ipv4Cidr::ANY],
            startup: StartupAction::Start,
            force_encap: true,
            // The AWS endpoint has at most one IKE_SA_INIT of its own in flight per tunnel.
            cookie_threshold: 2,
            half_open_limit: 5,
            initial_contact: true,
            old_inbound_grace: Duration::from_secs(5),
            // 1280-octet IPv4 packets: minus 20 (IP), 8 (UDP) and 4 (non-ESP marker), as strongSwan's default.
            fragment_size: 1248,
        }
    }
}
