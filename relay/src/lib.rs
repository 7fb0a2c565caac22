//! iotrelay-relay: the sans-IO UDP NAT relay (forwards, allow-lists, sessions, idle expiry, drop accounting).
//!
//! No sockets and no clock: the caller (the sidecar) passes `now` (any monotonic [`Duration`], e.g. since start)
//! and the bytes it received, and gets back what to send. See `relay/README.md` for the wiring.
//!
//! - [`Relay::on_client_datagram`]: a datagram from a client on a forward's listen port → allow-list check,
//!   session lookup/creation, and the inner IPv4/UDP packet (insideAddress:insidePort → target) written into a
//!   caller buffer, ready for fragmentation/ESP.
//! - [`Relay::on_inner_packet`]: a decrypted inner packet from the tunnel → the forward, the client to send the
//!   payload to, and the payload (a sub-slice of the packet: no copy).
//! - [`Relay::expire`] / [`Relay::next_expiry`]: idle sessions.
//! - [`Relay::stats`]: per-forward counters as in `status.forwards[]`; [`Relay::record_drop`] for drops the
//!   sidecar detects (`noTunnel`, `tooBig` after fragmentation refused).
//!
//! ## NAT behaviour
//! A session maps `(forward, client addr:port)` to an *inside port* on `insideAddress`. The inside port is the
//! client's own source port when no other session holds it, otherwise the next free port scanning upwards from
//! it (wrapping within 1024..=65535): deterministic, so tests and packet captures are reproducible. Inside ports
//! are unique per relay (not per forward), so a reply's destination port alone finds the session; the reply must
//! also come from the forward's target `addr:port`, else it is dropped (`noSession`).
//!
//! ## Bounded table
//! At most `max_sessions` sessions (default [`DEFAULT_MAX_SESSIONS`]) across all forwards, allocated up front:
//! no allocation per packet. When the table is full, idle sessions are expired first; if it is still full the
//! NEW client's datagram is dropped and counted as `queueFull`. We prefer this to evicting the least recently
//! used session: an allowed source sending from many ports must not be able to cut off established sessions
//! (their replies would otherwise be dropped as `noSession`), and a full table frees itself after `idleTimeout`.

use iotrelay_esp::ipv4::{self, Ipv4Error};
use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;
use std::time::Duration;

/// Default bound on the session table (all forwards together).
pub const DEFAULT_MAX_SESSIONS: usize = 4096;
/// Lowest inside port picked when the client's own port is taken.
pub const FIRST_DYNAMIC_PORT: u16 = 1024;

/// An IPv4 prefix, e.g. `203.0.113.0/24`. Host bits are ignored by [`Ipv4Cidr::contains`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// `None` if `prefix_len > 32`.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Option<Self> {
        (prefix_len <= 32).then_some(Ipv4Cidr { addr, prefix_len })
    }
    fn mask(self) -> u32 {
        if self.prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix_len.min(32))) }
    }
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) ^ u32::from(self.addr)) & self.mask() == 0
    }
}

/// Why a CIDR string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IPv4 CIDR (expected a.b.c.d/len)")]
pub struct CidrParseError;

impl FromStr for Ipv4Cidr {
    type Err = CidrParseError;
    /// `a.b.c.d/len`; a bare address means `/32`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = s.split_once('/').unwrap_or((s, "32"));
        let addr = a.parse().map_err(|_| CidrParseError)?;
        let len = l.parse().map_err(|_| CidrParseError)?;
        Ipv4Cidr::new(addr, len).ok_or(CidrParseError)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// One UDP forward (`spec.forwards[]`): the same field names as `iotrelay_api::ValidatedForward`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    pub name: String,
    pub listen_port: u16,
    pub allowed_sources: Vec<Ipv4Cidr>,
    pub target: SocketAddrV4,
    pub idle_timeout: Duration,
}

/// A forward's handle, stable across [`Relay::set_forwards`] as long as a forward of that name exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ForwardId(pub usize);

/// Why a datagram was not relayed. Each maps to one `status.forwards[].drops` counter, except
/// [`DropReason::Malformed`] (an inner packet that is not valid IPv4/UDP: count it in `datapath.drops.malformed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// `sourceNotAllowed`: the client is outside every `allowedSources` prefix.
    #[error("source not allowed")]
    SourceNotAllowed,
    /// `noTunnel`: no established CHILD_SA (reported by the sidecar via [`Relay::record_drop`]).
    #[error("no tunnel")]
    NoTunnel,
    /// `noSession`: a packet from the tunnel that matches no session.
    #[error("no session")]
    NoSession,
    /// `tooBig`: the packet does not fit (output buffer, 64 KiB IPv4 limit, or DF set and larger than the MTU).
    #[error("too big")]
    TooBig,
    /// `queueFull`: the session table is full.
    #[error("session table full")]
    QueueFull,
    /// Not a valid IPv4/UDP packet for this relay (no forward counter).
    #[error("malformed inner packet")]
    Malformed,
}

/// `status.forwards[].drops`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardDrops {
    pub source_not_allowed: u64,
    pub no_tunnel: u64,
    pub no_session: u64,
    pub too_big: u64,
    pub queue_full: u64,
}

/// `status.forwards[]` counters of one forward (`listening` is the sidecar's to report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardStats {
    /// Live sessions now.
    pub sessions: u64,
    /// Datagrams from allowed sources relayed into the tunnel.
    pub packets_in: u64,
    /// Replies relayed back to clients.
    pub packets_out: u64,
    pub drops: ForwardDrops,
}

/// The result of [`Relay::on_inner_packet`]: send `payload` from the forward's listen socket to `client`.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivery<'a> {
    pub forward: ForwardId,
    pub listen_port: u16,
    pub client: SocketAddrV4,
    pub payload: &'a [u8],
}

/// A drop of an inner packet: the forward it is counted against, when one could be attributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InnerDrop {
    pub forward: Option<ForwardId>,
    pub reason: DropReason,
}

#[derive(Debug, Clone, Copy)]
struct Session {
    forward: ForwardId,
    client: SocketAddrV4,
    last_seen: Duration,
}

#[derive(Debug)]
struct Forward {
    config: ForwardConfig,
    stats: ForwardStats,
}

/// The relay: forwards, sessions and counters. See the crate docs.
#[derive(Debug)]
pub struct Relay {
    inside: Ipv4Addr,
    forwards: Vec<Option<Forward>>,
    /// inside port → session.
    by_port: HashMap<u16, Session>,
    /// (forward, client) → inside port.
    by_client: HashMap<(ForwardId, SocketAddrV4), u16>,
    max_sessions: usize,
    ip_id: u16,
}

impl Relay {
    /// A relay whose inner packets come from `inside_address`, with [`DEFAULT_MAX_SESSIONS`].
    pub fn new(inside_address: Ipv4Addr, forwards: Vec<ForwardConfig>) -> Self {
        Self::with_max_sessions(inside_address, forwards, DEFAULT_MAX_SESSIONS)
    }

    /// As [`Relay::new`], with the session table bounded at `max_sessions` (at least 1), allocated now.
    pub fn with_max_sessions(inside_address: Ipv4Addr, forwards: Vec<ForwardConfig>, max_sessions: usize) -> Self {
        let max_sessions = max_sessions.clamp(1, 65536 - usize::from(FIRST_DYNAMIC_PORT));
        let mut r = Relay {
            inside: inside_address,
            forwards: Vec::new(),
            by_port: HashMap::with_capacity(max_sessions),
            by_client: HashMap::with_capacity(max_sessions),
            max_sessions,
            ip_id: 0,
        };
        r.set_forwards(forwards);
        r
    }

    pub fn inside_address(&self) -> Ipv4Addr {
        self.inside
    }

    /// Replaces the forward list at runtime. A forward keeps its [`ForwardId`], counters and sessions when a
    /// forward of the same name is still present and its `target` and `listen_port` are unchanged (allow-list
    /// and idle timeout changes apply to existing sessions; sessions whose client is no longer allowed are
    /// dropped). Forwards that are gone lose their sessions and ids; new names get new ids (never reused).
    pub fn set_forwards(&mut self, forwards: Vec<ForwardConfig>) {
        let mut keep = vec![false; self.forwards.len()];
        for cfg in forwards {
            let existing = self.forwards.iter().position(|f| f.as_ref().is_some_and(|f| f.config.name == cfg.name));
            match existing {
                Some(i) if !keep[i] => {
                    keep[i] = true;
                    let Some(f) = self.forwards[i].as_mut() else { continue };
                    let same_path = f.config.target == cfg.target && f.config.listen_port == cfg.listen_port;
                    f.config = cfg;
                    if !same_path {
                        self.remove_sessions(|s| s.forward == ForwardId(i));
                    }
                }
                Some(_) => {} // duplicate name in the new list: the first one wins
                None => {
                    self.forwards.push(Some(Forward { config: cfg, stats: ForwardStats::default() }));
                    keep.push(true);
                }
            }
        }
        for (i, k) in keep.iter().enumerate() {
            if !k && self.forwards[i].is_some() {
                self.forwards[i] = None;
                self.remove_sessions(|s| s.forward == ForwardId(i));
            }
        }
        let forwards = &self.forwards;
        remove_sessions(&mut self.by_port, &mut self.by_client, |s| {
            match forwards.get(s.forward.0).and_then(Option::as_ref) {
                Some(f) => !f.config.allowed_sources.iter().any(|c| c.contains(*s.client.ip())),
                None => true,
            }
        });
        self.recount();
    }

    fn remove_sessions(&mut self, gone: impl FnMut(&Session) -> bool) {
        remove_sessions(&mut self.by_port, &mut self.by_client, gone);
    }
}

fn remove_sessions(
    by_port: &mut HashMap<u16, Session>,
    by_client: &mut HashMap<(ForwardId, SocketAddrV4), u16>,
    mut gone: impl FnMut(&Session) -> bool,
) {
    {
        by_port.retain(|_, s| {
            let g = gone(s);
            if g {
                by_client.remove(&(s.forward, s.client));
            }
            !g
        });
    }
}

impl Relay {
    fn recount(&mut self) {
        for f in self.forwards.iter_mut().flatten() {
            f.stats.sessions = 0;
        }
        for s in self.by_port.values() {
            if let Some(Some(f)) = self.forwards.get_mut(s.forward.0) {
                f.stats.sessions += 1;
            }
        }
    }

    /// The id of the forward named `name`.
    pub fn forward_id(&self, name: &str) -> Option<ForwardId> {
        self.forwards().find(|(_, c)| c.name == name).map(|(id, _)| id)
    }

    /// The id of the forward listening on `port`.
    pub fn forward_by_port(&self, port: u16) -> Option<ForwardId> {
        self.forwards().find(|(_, c)| c.listen_port == port).map(|(id, _)| id)
    }

    /// The current forwards with their ids, in id order.
    pub fn forwards(&self) -> impl Iterator<Item = (ForwardId, &ForwardConfig)> {
        self.forwards.iter().enumerate().filter_map(|(i, f)| f.as_ref().map(|f| (ForwardId(i), &f.config)))
    }

    /// Counters of one forward (`None` for an unknown id).
    pub fn stats(&self, forward: ForwardId) -> Option<ForwardStats> {
        self.forward(forward).map(|f| f.stats)
    }

    /// Total live sessions.
    pub fn session_count(&self) -> usize {
        self.by_port.len()
    }

    fn forward(&self, id: ForwardId) -> Option<&Forward> {
        self.forwards.get(id.0).and_then(Option::as_ref)
    }

    fn forward_mut(&mut self, id: ForwardId) -> Option<&mut Forward> {
        self.forwards.get_mut(id.0).and_then(Option::as_mut)
    }

    /// Whether `client` may use `forward` (inside one of its `allowedSources`). Counts nothing: for a caller that
    /// must decide between [`DropReason::SourceNotAllowed`] and its own reason (e.g. [`DropReason::NoTunnel`]) before
    /// calling [`Relay::on_client_datagram`], so `packetsIn` only counts datagrams that go into the tunnel.
    pub fn source_allowed(&self, forward: ForwardId, client: SocketAddrV4) -> bool {
        self.forward(forward).is_some_and(|f| f.config.allowed_sources.iter().any(|c| c.contains(*client.ip())))
    }

    /// Counts a drop the sidecar detected (e.g. [`DropReason::NoTunnel`] when no CHILD_SA is up, or
    /// [`DropReason::TooBig`] when fragmentation refused a DF packet). [`DropReason::Malformed`] and unknown ids are
    /// ignored.
    pub fn record_drop(&mut self, forward: ForwardId, reason: DropReason) {
        if let Some(f) = self.forward_mut(forward) {
            let d = &mut f.stats.drops;
            match reason {
                DropReason::SourceNotAllowed => d.source_not_allowed += 1,
                DropReason::NoTunnel => d.no_tunnel += 1,
                DropReason::NoSession => d.no_session += 1,
                DropReason::TooBig => d.too_big += 1,
                DropReason::QueueFull => d.queue_full += 1,
                DropReason::Malformed => {}
            }
        }
    }

    /// A datagram `payload` from `client` arrived on `forward`'s listen port at `now`. On success the inner
    /// IPv4/UDP packet (insideAddress:insidePort → target, checksums set, DF clear) is written to the start of
    /// `out` and its length returned; hand `&out[..n]` to fragmentation + ESP. Every `Err` has been counted
    /// already (except an unknown `forward`, reported as [`DropReason::NoSession`] and counted nowhere).
    ///
    /// Counting: `packetsIn` is incremented here. If the sidecar then cannot send (no tunnel), it should call
    /// [`Relay::record_drop`] with [`DropReason::NoTunnel`]; `packetsIn` still counts the datagram as accepted.
    pub fn on_client_datagram(
        &mut self,
        now: Duration,
        forward: ForwardId,
        client: SocketAddrV4,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, DropReason> {
        let Some(f) = self.forward(forward) else { return Err(DropReason::NoSession) };
        if !f.config.allowed_sources.iter().any(|c| c.contains(*client.ip())) {
            self.record_drop(forward, DropReason::SourceNotAllowed);
            return Err(DropReason::SourceNotAllowed);
        }
        let target = f.config.target;
        let needed = ipv4::IPV4_HEADER_LEN + ipv4::UDP_HEADER_LEN + payload.len();
        if needed > out.len() || needed > usize::from(u16::MAX) {
            self.record_drop(forward, DropReason::TooBig);
            return Err(DropReason::TooBig);
        }
        let port = match self.by_client.get(&(forward, client)).copied() {
            Some(p) => p,
            None => match self.create_session(now, forward, client) {
                Some(p) => p,
                None => {
                    self.record_drop(forward, DropReason::QueueFull);
                    return Err(DropReason::QueueFull);
                }
            },
        };
        if let Some(s) = self.by_port.get_mut(&port) {
            s.last_seen = now;
        }
        self.ip_id = self.ip_id.wrapping_add(1);
        let n = match ipv4::build_udp(self.inside, port, *target.ip(), target.port(), payload, self.ip_id, out) {
            Ok(n) => n,
            Err(Ipv4Error::BufferTooSmall) | Err(_) => {
                self.record_drop(forward, DropReason::TooBig);
                return Err(DropReason::TooBig);
            }
        };
        if let Some(f) = self.forward_mut(forward) {
            f.stats.packets_in += 1;
        }
        Ok(n)
    }

    fn create_session(&mut self, now: Duration, forward: ForwardId, client: SocketAddrV4) -> Option<u16> {
        if self.by_port.len() >= self.max_sessions {
            self.expire(now);
            if self.by_port.len() >= self.max_sessions {
                return None;
            }
        }
        let port = self.free_port(client.port())?;
        self.by_port.insert(port, Session { forward, client, last_seen: now });
        self.by_client.insert((forward, client), port);
        if let Some(f) = self.forward_mut(forward) {
            f.stats.sessions += 1;
        }
        Some(port)
    }

    /// The client's port if free (and not 0), else the next free one upwards, wrapping within 1024..=65535.
    fn free_port(&self, wanted: u16) -> Option<u16> {
        if wanted != 0 && !self.by_port.contains_key(&wanted) {
            return Some(wanted);
        }
        let lo = u32::from(FIRST_DYNAMIC_PORT);
        let span = 65536 - lo;
        let start = u32::from(wanted.max(FIRST_DYNAMIC_PORT)) - lo;
        (1..=span).map(|k| ((start + k) % span + lo) as u16).find(|p| !self.by_port.contains_key(p))
    }

    /// A decrypted inner packet from the tunnel. If it is a valid IPv4/UDP packet to insideAddress:port, from the
    /// target of the forward owning the session on that port, the session is refreshed, `packetsOut` counted,
    /// and the returned [`Delivery`] says where to send the payload (a sub-slice of `packet`).
    pub fn on_inner_packet<'a>(&mut self, now: Duration, packet: &'a [u8]) -> Result<Delivery<'a>, InnerDrop> {
        let malformed = InnerDrop { forward: None, reason: DropReason::Malformed };
        let p = ipv4::parse_udp(packet).map_err(|_| malformed)?;
        let from = SocketAddrV4::new(p.src, p.sport);
        // The forward this packet claims to belong to, for counting a miss.
        let by_target = self.forwards().find(|(_, c)| c.target == from).map(|(id, _)| id);
        let miss = |relay: &mut Relay| {
            if let Some(id) = by_target {
                relay.record_drop(id, DropReason::NoSession);
            }
            InnerDrop { forward: by_target, reason: DropReason::NoSession }
        };
        if p.dst != self.inside {
            return Err(miss(self));
        }
        let Some(s) = self.by_port.get(&p.dport).copied() else { return Err(miss(self)) };
        let Some(f) = self.forward(s.forward) else { return Err(miss(self)) };
        if f.config.target != from || now.saturating_sub(s.last_seen) >= f.config.idle_timeout {
            return Err(miss(self));
        }
        let listen_port = f.config.listen_port;
        if let Some(s) = self.by_port.get_mut(&p.dport) {
            s.last_seen = now;
        }
        if let Some(f) = self.forward_mut(s.forward) {
            f.stats.packets_out += 1;
        }
        Ok(Delivery { forward: s.forward, listen_port, client: s.client, payload: p.payload })
    }

    /// Removes sessions idle for at least their forward's `idleTimeout` at `now`; returns how many.
    pub fn expire(&mut self, now: Duration) -> usize {
        let before = self.by_port.len();
        let forwards = &self.forwards;
        remove_sessions(&mut self.by_port, &mut self.by_client, |s| {
            match forwards.get(s.forward.0).and_then(Option::as_ref) {
                Some(f) => now.saturating_sub(s.last_seen) >= f.config.idle_timeout,
                None => true,
            }
        });
        let removed = before - self.by_port.len();
        if removed > 0 {
            self.recount();
        }
        removed
    }

    /// When the next session expires (call [`Relay::expire`] then); `None` without sessions. O(sessions).
    pub fn next_expiry(&self) -> Option<Duration> {
        self.by_port
            .values()
            .filter_map(|s| self.forward(s.forward).map(|f| s.last_seen.saturating_add(f.config.idle_timeout)))
            .min()
    }
}
