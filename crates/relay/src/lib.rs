//! iotrelay-relay: the sans-IO UDP NAT relay (forwards, allow-lists, sessions, idle expiry, drop accounting).
//!
//! No sockets and no clock: the caller (the sidecar) passes `now` (any monotonic [`Duration`], e.g. since start)
//! and the bytes it received, and gets back what to send. See `crates/relay/README.md` for the wiring.
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
//! At most `max_sessions` sessions (default [`DEFAULT_MAX_SESSIONS`]) across all forwards, and at most
//! `max_per_source` (default [`DEFAULT_MAX_SESSIONS_PER_SOURCE`]) per client IP across all forwards
//! ([`sessions::SessionTable`]). When a bound is reached, idle sessions are expired first (O(1) per forward: the
//! least recently used session of a forward is the first to expire); if it is still reached the NEW client's
//! datagram is dropped and counted: `queueFull` for a full table, `sourceSessionLimit` for a source at its quota.
//! We prefer this to evicting the least recently used session: an allowed source sending from many ports must
//! not be able to cut off established sessions (their replies would otherwise be dropped as `noSession`), and a
//! full table frees itself after `idleTimeout`. The per-source quota keeps one source from filling the table.

pub mod sessions;

use iotrelay_esp::ipv4::{self, Ipv4Error};
pub use iotrelay_types::{ForwardDrops, Ipv4Cidr};
use sessions::{Refused, SessionTable};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// Default bound on the session table (all forwards together).
pub const DEFAULT_MAX_SESSIONS: usize = 4096;
/// Default bound on the sessions of one client IP (all forwards together): an eighth of the table.
pub const DEFAULT_MAX_SESSIONS_PER_SOURCE: usize = DEFAULT_MAX_SESSIONS / 8;
/// Lowest inside port picked when the client's own port is taken.
pub const FIRST_DYNAMIC_PORT: u16 = 1024;

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
    /// `sourceSessionLimit`: the client's IP already holds its quota of sessions.
    #[error("per-source session limit")]
    SourceLimit,
    /// `noRoute`: dynamic routing is on and no BGP session has a route to the forward's target (reported by the
    /// sidecar via [`Relay::record_drop`]).
    #[error("no route to the target")]
    NoRoute,
    /// Not a valid IPv4/UDP packet for this relay (no forward counter).
    #[error("malformed inner packet")]
    Malformed,
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
    sessions: SessionTable,
    ip_id: u16,
}

impl Relay {
    /// A relay whose inner packets come from `inside_address`, with [`DEFAULT_MAX_SESSIONS`].
    pub fn new(inside_address: Ipv4Addr, forwards: Vec<ForwardConfig>) -> Self {
        Self::with_max_sessions(inside_address, forwards, DEFAULT_MAX_SESSIONS)
    }

    /// As [`Relay::new`], with the session table bounded at `max_sessions` (at least 1) and the per-source quota
    /// at [`DEFAULT_MAX_SESSIONS_PER_SOURCE`] (at most `max_sessions`).
    pub fn with_max_sessions(inside_address: Ipv4Addr, forwards: Vec<ForwardConfig>, max_sessions: usize) -> Self {
        Self::with_limits(inside_address, forwards, max_sessions, DEFAULT_MAX_SESSIONS_PER_SOURCE)
    }

    /// As [`Relay::new`], with both session bounds given (each at least 1).
    pub fn with_limits(
        inside_address: Ipv4Addr,
        forwards: Vec<ForwardConfig>,
        max_sessions: usize,
        max_per_source: usize,
    ) -> Self {
        let mut r = Relay {
            inside: inside_address,
            forwards: Vec::new(),
            sessions: SessionTable::new(max_sessions, max_per_source),
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
                        self.sessions.retain(ForwardId(i), |_| false);
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
                self.sessions.retain(ForwardId(i), |_| false);
            }
        }
        // Sessions of clients no longer allowed, and of forwards that are gone, end now.
        let with_sessions: Vec<ForwardId> = self.sessions.forwards().collect();
        for id in with_sessions {
            let allowed = self.forward(id).map(|f| f.config.allowed_sources.clone()).unwrap_or_default();
            self.sessions.retain(id, |c| allowed.iter().any(|a| a.contains(*c.ip())));
        }
        self.recount();
    }

    /// Sets every forward's `sessions` counter from the table (O(forwards)).
    fn recount(&mut self) {
        for (i, f) in self.forwards.iter_mut().enumerate() {
            if let Some(f) = f {
                f.stats.sessions = self.sessions.len_of(ForwardId(i)) as u64;
            }
        }
    }

    fn idle_of(forwards: &[Option<Forward>]) -> impl Fn(ForwardId) -> Option<Duration> + '_ {
        |id| forwards.get(id.0).and_then(Option::as_ref).map(|f| f.config.idle_timeout)
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

    /// The configuration of one forward (`None` for an unknown id). O(1).
    pub fn config(&self, forward: ForwardId) -> Option<&ForwardConfig> {
        self.forward(forward).map(|f| &f.config)
    }

    /// Counters of one forward (`None` for an unknown id).
    pub fn stats(&self, forward: ForwardId) -> Option<ForwardStats> {
        self.forward(forward).map(|f| f.stats)
    }

    /// Total live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Live sessions of one client IP (all forwards).
    pub fn sessions_of_source(&self, ip: Ipv4Addr) -> usize {
        self.sessions.len_of_source(ip)
    }

    /// The bounds: (whole table, per client IP).
    pub fn session_limits(&self) -> (usize, usize) {
        (self.sessions.max_sessions(), self.sessions.max_per_source())
    }

    /// Changes the per-client-IP bound (live reconfiguration; clamped to 1..=the table's bound). A source above a
    /// lowered bound keeps its sessions until they expire; it gets no new one until it is below the bound.
    pub fn set_max_sessions_per_source(&mut self, max_per_source: usize) {
        self.sessions.set_max_per_source(max_per_source);
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
        self.record_drops(forward, reason, 1);
    }

    /// [`Relay::record_drop`] `n` times at once (drops the sidecar counted in its readers).
    pub fn record_drops(&mut self, forward: ForwardId, reason: DropReason, n: u64) {
        if let Some(f) = self.forward_mut(forward) {
            let d = &mut f.stats.drops;
            let c = match reason {
                DropReason::SourceNotAllowed => &mut d.source_not_allowed,
                DropReason::NoTunnel => &mut d.no_tunnel,
                DropReason::NoSession => &mut d.no_session,
                DropReason::TooBig => &mut d.too_big,
                DropReason::QueueFull => &mut d.queue_full,
                DropReason::SourceLimit => &mut d.source_session_limit,
                DropReason::NoRoute => &mut d.no_route,
                DropReason::Malformed => return,
            };
            *c = c.saturating_add(n);
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
        let port = match self.sessions.touch_client(forward, client, now) {
            Some(p) => p,
            None => match self.sessions.insert(forward, client, now, Self::idle_of(&self.forwards)) {
                Ok(p) => {
                    self.recount();
                    p
                }
                Err(refused) => {
                    let why = match refused {
                        Refused::TableFull => DropReason::QueueFull,
                        Refused::SourceLimit => DropReason::SourceLimit,
                    };
                    self.recount();
                    self.record_drop(forward, why);
                    return Err(why);
                }
            },
        };
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

    /// Whether `packet` is IPv4/UDP to the inside address on a port a session holds, i.e. meant for a forward
    /// (hand it to [`Relay::on_inner_packet`], which verifies it and counts a bad one); anything else is for the
    /// host in gateway mode. Looks at the headers only (no checksum: the packet's taker verifies it once). Counts
    /// nothing.
    pub fn claims(&self, packet: &[u8]) -> bool {
        ipv4::peek_udp_dst(packet)
            .is_some_and(|(dst, port)| dst == self.inside && self.sessions.by_port(port).is_some())
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
        let Some((forward, client, last_seen)) = self.sessions.by_port(p.dport) else { return Err(miss(self)) };
        let Some(f) = self.forward(forward) else { return Err(miss(self)) };
        if f.config.target != from || now.saturating_sub(last_seen) >= f.config.idle_timeout {
            return Err(miss(self));
        }
        let listen_port = f.config.listen_port;
        self.sessions.touch_port(p.dport, now);
        if let Some(f) = self.forward_mut(forward) {
            f.stats.packets_out += 1;
        }
        Ok(Delivery { forward, listen_port, client, payload: p.payload })
    }

    /// Removes sessions idle for at least their forward's `idleTimeout` at `now`; returns how many.
    /// O(forwards + removed).
    pub fn expire(&mut self, now: Duration) -> usize {
        let removed = self.sessions.expire(now, Self::idle_of(&self.forwards));
        if removed > 0 {
            self.recount();
        }
        removed
    }

    /// When the next session expires (call [`Relay::expire`] then); `None` without sessions. O(forwards).
    pub fn next_expiry(&self) -> Option<Duration> {
        self.sessions.next_expiry(Self::idle_of(&self.forwards))
    }
}
