//! The IKEv2 state machine for one tunnel (RFC 7296), sans-IO.
//!
//! Layout (one file per concern, in the manner of quinn-proto's `connection/`):
//! - `mod.rs` (here): the [`Tunnel`], its public methods, and the demultiplexing of a datagram to an IKE SA by SPIs;
//! - `sa.rs`: the state of an IKE SA (an enum whose variants carry what exists only in that state) and of the
//!   CHILD_SA; `lifecycle.rs`: the current IKE SA established, replaced by a rekey, or ended; `window.rs`:
//!   requests in flight (window size 1) with retransmission, and the cached last response; `protect.rs`: SK/SKF
//!   encryption and decryption;
//! - `negotiate.rs`: proposals and traffic selectors; `message.rs`: payload helpers;
//! - the exchanges: `ike_init.rs` (initiator's IKE_SA_INIT and IKE_AUTH), `half_open.rs` and `cookie.rs`
//!   (responder's), `rekey.rs` (CREATE_CHILD_SA), `collision.rs` (simultaneous rekeys), `informational.rs`
//!   (DELETE, DPD);
//! - `timer.rs`: every deadline; `drop_reason.rs`: why a message is dropped or answered with an error;
//! - `random.rs`: the tunnel's own generator (seeded by [`Tunnel::new`], refreshed by [`Tunnel::reseed`]), from
//!   which every SPI, nonce, DH secret, cookie secret, IV and jitter is drawn; no method takes a random source.
//!
//! The path of one peer request: [`Tunnel::handle_datagram`] (here) finds the SA, `protect.rs` decrypts it, the
//! exchange's file acts on it, `window.rs` answers it.
//!
//! Call order (the contract with the I/O shell): feed input with `handle_datagram` / `handle_timeout` /
//! commands (`connect`, `rekey_*`, `close`), then drain `poll_transmit` and `poll_event` until `None`, then ask
//! `poll_timeout` for the next deadline and call `handle_timeout` once it has passed. Any order of inputs is
//! safe; output is only ever appended, so draining after each input keeps events in order.
//!
//! Fault classification (rustls style): `drop_reason.rs` decides whether a problem with a peer message earns an
//! error notify or a silent drop; only authenticated or IKE_SA_INIT messages are ever answered.
//!
//! The rule for hostile input (the relay's address is public, and anyone can send IKE datagrams with the AWS
//! endpoint's source address): *unauthenticated input can create or drop only half-open state; it never
//! changes, replaces or deletes an established or authenticating SA, and never moves the peer's address.* The
//! structure enforces it:
//! - An IKE_SA_INIT request only ever reaches `half_open.rs`, which answers it statelessly or adds an entry to the
//!   bounded half-open table; nothing there can reach `self.ike`, `self.child` or `self.remote`, except promotion
//!   after the peer's AUTH verified (`Tunnel::respond_auth`).
//! - Every other message is matched to an SA by its SPIs and decrypted with that SA's keys before anything looks
//!   at its content; the current SA accepts requests only once established (the peer's AUTH verified), and the
//!   peer's address is followed only on messages authenticated by an established SA.
//! - An IKE_SA_INIT response is only looked at while our own IKE_SA_INIT (with that initiator SPI) is in flight,
//!   and its COOKIE / INVALID_KE_PAYLOAD retries are bounded.
//! - A tunnel that is down always has a reconnect scheduled (`Tunnel::check_invariants`).

use crate::api::*;
use crate::wire::fragment::Reassembler;
use crate::wire::{self, *};
use iotrelay_crypto::kdf::{self, IkeSaKeys};
use iotrelay_crypto::proposal::{EspProposal, IkeProposal};
use iotrelay_crypto::{DhGroup, DhSecret, Encr, Integ, Prf, RandomSource, SaCipher};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use zeroize::Zeroizing;

use collision::*;
use cookie::{CookieJar, DhBudget};
pub use half_open::HalfOpenCount;
use half_open::HalfOpenTable;
use message::*;
use negotiate::*;
use protect::*;
use random::EngineRandom;
use sa::*;
use timer::*;
use window::*;

const IKE_PORT: u16 = 500;
const NATT_PORT: u16 = 4500;

/// Which IKE SA an encrypted message belongs to.
#[derive(Debug, Clone, Copy)]
enum Which {
    Current,
    Retiring(usize),
    Collision,
}

/// One AWS tunnel: the IKE SA (initiator or responder) and its CHILD_SA.
pub struct Tunnel {
    cfg: Config,
    local: SocketAddr,
    remote: SocketAddr,
    /// Local port for IKE: 500, then 4500 once floated (always with forced encapsulation).
    local_port: u16,
    ike: CurrentIke,
    /// After an IKE rekey: the replaced IKE SA (and after a collision, the redundant one) until its DELETE is
    /// answered or [`RETIRED_IKE_LINGER`] passes.
    retiring: Vec<Retiring>,
    child_collision: Option<ChildCollision>,
    ike_collision: Option<IkeCollision>,
    recent_rekey: Option<RecentRekey>,
    child: Option<Child>,
    old_inbound: Vec<OldInbound>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
    last_error: Option<String>,
    last_down: Option<DownReason>,
    ever_established: bool,
    reconnect_at: Option<Duration>,
    consecutive_failures: u32,
    closed: bool,
    last_recv: Duration,
    /// Responder IKE SAs between IKE_SA_INIT and a verified IKE_AUTH; apart from `ike` (see `half_open.rs`).
    half_open: HalfOpenTable,
    cookies: CookieJar,
    dh_budget: DhBudget,
    /// Outbound CHILD_SA SPIs the datapath holds, kept from the events as the datapath applies them.
    installed_outbound: Vec<u32>,
    /// Every random octet the engine uses (`random.rs`): seeded by [`Tunnel::new`], refreshed by
    /// [`Tunnel::reseed`].
    rng: EngineRandom,
}

impl Tunnel {
    /// `local`/`remote`: the outside addresses (IKE starts on port 500 and moves to 4500). `seed`: 32 octets
    /// from a cryptographically secure source (the OS in the sidecar; a constant in tests), the only randomness
    /// the engine ever gets besides [`Tunnel::reseed`]; the caller should clear its copy.
    pub fn new(config: Config, local: SocketAddr, remote: SocketAddr, now: Duration, seed: &[u8; 32]) -> Tunnel {
        Tunnel {
            cfg: config,
            local,
            remote: SocketAddr::new(remote.ip(), if remote.port() == 0 { IKE_PORT } else { remote.port() }),
            local_port: IKE_PORT,
            ike: CurrentIke::None,
            retiring: Vec::new(),
            child_collision: None,
            ike_collision: None,
            recent_rekey: None,
            child: None,
            old_inbound: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            last_error: None,
            last_down: None,
            ever_established: false,
            reconnect_at: None,
            consecutive_failures: 0,
            closed: false,
            last_recv: now,
            half_open: HalfOpenTable::new(),
            cookies: CookieJar::new(),
            dh_budget: DhBudget::new(now),
            installed_outbound: Vec::new(),
            rng: EngineRandom::from_seed(seed),
        }
    }

    /// Mixes 32 fresh octets (from the OS in the sidecar) into the tunnel's generator, so that its state, had it
    /// leaked, no longer predicts the SPIs, nonces and Diffie-Hellman secrets that follow (`random.rs`).
    pub fn reseed(&mut self, fresh: &[u8; 32]) {
        self.rng.reseed(fresh);
    }

    /// An IKE datagram from the peer (on port 4500 without the non-ESP marker).
    pub fn handle_datagram(&mut self, now: Duration, local_port: u16, remote: SocketAddr, data: &[u8]) {
        if remote.ip() != self.remote.ip() {
            self.dropped(DropReason::NotFromPeer);
            return;
        }
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(e) => return self.malformed(&e, data, local_port, remote),
        };
        let h = msg.header;
        if h.exchange == ExchangeType::IKE_SA_INIT {
            if h.is_response() {
                self.handle_init_response(now, msg, data);
            } else {
                self.handle_init_request(now, msg, data, local_port, remote);
            }
            return;
        }
        // Encrypted exchanges: find the SA by SPIs. A half-open SA takes only requests (the peer's IKE_AUTH).
        let Some(which) = self.demux(&h) else {
            match self.half_open.position(h.spi_i, h.spi_r).filter(|_| !h.is_response()) {
                Some(i) => self.half_open_request(now, i, msg, data, local_port, remote),
                None => self.dropped(DropReason::UnknownSpi),
            }
            return;
        };
        if !self.in_window(which, &msg, local_port, remote) {
            return;
        }
        let Some(sa) = self.sa_mut(which) else { return };
        let decrypted = decrypt(sa, &msg, data);
        let Some(payloads) = self.whole_message(decrypted) else { return };
        let req = Request { h, local_port, remote };
        self.last_recv = now;
        // NAT may change the peer's port; follow it on messages authenticated by an established SA.
        if matches!(which, Which::Current) && self.ike.established().is_some() {
            self.remote = remote;
            self.local_port = local_port;
        }
        match which {
            Which::Current if h.is_response() => self.handle_response(now, payloads),
            Which::Current => self.handle_request(now, req, payloads),
            Which::Retiring(i) => self.handle_retiring(i, req, payloads),
            Which::Collision => self.handle_collision_sa(req, payloads),
        }
    }

    /// The IKE SA an encrypted message is for, by its SPIs, among those the tunnel holds besides the half-open
    /// ones (`half_open.rs`).
    fn demux(&self, h: &Header) -> Option<Which> {
        let matches = |s: &IkeSa| s.spi_i == h.spi_i && s.spi_r == h.spi_r;
        if self.ike.sa().is_some_and(matches) {
            Some(Which::Current)
        } else if let Some(i) = self.retiring.iter().position(|r| matches(&r.sa)) {
            Some(Which::Retiring(i))
        } else if self.ike_collision.as_ref().is_some_and(|c| matches(&c.sa)) {
            Some(Which::Collision)
        } else {
            None
        }
    }

    fn sa_mut(&mut self, which: Which) -> Option<&mut IkeSa> {
        self.sa_and_rng(which).map(|(sa, _)| sa)
    }

    /// The IKE SA `which` and the tunnel's generator, borrowed together (to encrypt on that SA).
    fn sa_and_rng(&mut self, which: Which) -> Option<(&mut IkeSa, &mut EngineRandom)> {
        let sa = match which {
            Which::Current => self.ike.sa_mut(),
            Which::Retiring(i) => self.retiring.get_mut(i).map(|r| &mut r.sa),
            Which::Collision => self.ike_collision.as_mut().map(|c| &mut c.sa),
        };
        sa.map(|sa| (sa, &mut self.rng))
    }

    /// The payloads of a decrypted message; None while it is one fragment of a larger message (authenticated:
    /// wait for the rest), or when it did not decrypt (counted as dropped).
    fn whole_message(&mut self, decrypted: Result<Decrypted, DropReason>) -> Option<Vec<Payload>> {
        match decrypted {
            Ok(Decrypted::Message(p)) => Some(p),
            Ok(Decrypted::Fragment) => None,
            Err(reason) => {
                self.dropped(reason);
                None
            }
        }
    }

    fn send_unprotected_error(
        &mut self,
        h: Header,
        ty: NotifyType,
        data: Vec<u8>,
        local_port: u16,
        remote: SocketAddr,
    ) {
        let header = Header { spi_r: 0, flags: flags::RESPONSE, length: 0, next_payload: PayloadType::NONE, ..h };
        let bytes = Message { header, payloads: vec![notify(ty, data)] }.emit();
        self.transmits.push_back(Transmit { local_port, remote, data: bytes });
    }
}

impl Tunnel {
    /// Queues an event, and keeps `installed_outbound` as the datapath will have it once the event is applied
    /// (install adds an outbound SA, a rekey switches from the old one to the new one, a delete removes it).
    fn emit(&mut self, e: Event) {
        match &e {
            Event::ChildSaInstalled(c) => self.installed_outbound.push(c.outbound_spi),
            Event::ChildSaRekeyed { old_outbound_spi, new, .. } => {
                self.installed_outbound.retain(|s| s != old_outbound_spi);
                self.installed_outbound.push(new.outbound_spi);
            }
            Event::ChildSaDeleted { outbound_spi, .. } => self.installed_outbound.retain(|s| s != outbound_spi),
            _ => {}
        }
        self.events.push_back(e);
    }
}

impl Tunnel {
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Rekey the CHILD_SA now (or as soon as the request window is free).
    pub fn rekey_child(&mut self, now: Duration) {
        if let Some(c) = self.child.as_mut() {
            c.rekey_at = now;
        }
        self.handle_timeout(now);
    }

    /// Rekey the IKE SA now (or as soon as the request window is free).
    pub fn rekey_ike(&mut self, now: Duration) {
        if let Some(l) = self.ike.sa_mut().and_then(|s| s.lifetime_mut()) {
            l.rekey_at = now;
        }
        self.handle_timeout(now);
    }

    /// Sends DELETE for the IKE SA (which takes the CHILD_SA with it) and stops. Poll transmits after calling.
    pub fn close(&mut self, now: Duration) {
        self.closed = true;
        self.reconnect_at = None;
        self.half_open.clear();
        let established = self.ike.established().is_some();
        if established {
            if let Some(s) = self.ike.sa_mut() {
                s.pending = None;
            }
            self.send_request(now, ExchangeType::INFORMATIONAL, vec![delete_ike()], Req::DeleteIke);
        } else {
            self.ike = CurrentIke::None;
        }
        self.forget_rekeys();
        self.drop_child();
        self.last_down = Some(DownReason::Closed);
        self.events.push_back(Event::IkeSaDown { reason: DownReason::Closed });
    }

    /// A new PSK (Secret changed): used from the next IKE SA on.
    pub fn set_psk(&mut self, psk: Zeroizing<Vec<u8>>) {
        self.cfg.psk = psk;
    }

    /// The peer's address as the engine trusts it: the configured one, moved only by authenticated IKE messages
    /// (RFC 7296 §2.23). The I/O shell follows it for ESP; a datagram from another port never moves it.
    pub fn peer_address(&self) -> SocketAddr {
        self.remote
    }

    pub fn status(&self) -> TunnelStatus {
        let est = self.ike.sa().and_then(|s| Some((s, *s.lifetime()?)));
        let state = if est.is_some() && self.child.is_some() {
            TunnelState::Established
        } else if !self.ike.is_none()
            || (self.reconnect_at.is_some() && !self.closed)
            || (self.cfg.startup == StartupAction::Add && !self.closed)
        {
            TunnelState::Connecting
        } else {
            TunnelState::Down
        };
        TunnelStatus {
            state,
            ike: est.map(|(s, l)| IkeSaInfo {
                local_spi: s.local_spi(),
                remote_spi: s.remote_spi(),
                proposal: s.suite.name(),
                established_at: l.established_at,
                rekey_at: l.rekey_at,
                expires_at: l.established_at + self.cfg.ike_lifetime,
                nat_detected: s.nat_detected,
            }),
            child: self.child.as_ref().map(|c| ChildSaInfo {
                inbound_spi: c.inbound_spi,
                outbound_spi: c.outbound_spi,
                proposal: c.suite.name(),
                established_at: c.established_at,
                rekey_at: c.rekey_at,
                expires_at: c.established_at + self.cfg.child_lifetime,
            }),
            last_error: self.last_error.clone(),
            last_down_reason: self.last_down.clone(),
            counters: self.counters,
        }
    }

    /// Fuzzing only (`--cfg fuzzing`, set by cargo-fuzz): seals `plain`, inner payloads beginning with payload type
    /// `first`, as the peer would send it on the current IKE SA: a request with the message ID we expect next, or
    /// the response to our request in flight. Lets a fuzz target reach every handler with authenticated but
    /// arbitrary content. None while the IKE SA has no keys. The peer's IV is all zeros (it only has to decrypt).
    #[cfg(fuzzing)]
    pub fn seal_as_peer(&self, exchange: u8, response: bool, first: u8, plain: &[u8]) -> Option<Vec<u8>> {
        let sa = self.ike.sa()?;
        let id = if response { sa.pending.as_ref().map_or(0, |p| p.id) } else { sa.peer_next_id };
        let (ex, first) = (ExchangeType(exchange), PayloadType(first));
        struct ZeroIv;
        impl RandomSource for ZeroIv {
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                dest.fill(0);
            }
        }
        Some(seal(sa, Sender::Peer, ex, response, id, first, plain, None, &mut ZeroIv))
    }

    /// Number of outbound CHILD_SAs the datapath holds after applying every event so far (installed and not yet
    /// replaced by a rekey or deleted), whichever exchange (a rekey, a collision, a new IKE SA) installed them. The
    /// invariant says at most one. For tests, fuzzing and metrics.
    pub fn outbound_child_sas(&self) -> usize {
        self.installed_outbound.len()
    }

    /// Checks the engine's invariants; for tests and fuzzing (cheap: no crypto). Err names the first broken one.
    /// - at most one outbound CHILD_SA ([`Tunnel::outbound_child_sas`]), and it is the current CHILD_SA;
    /// - a tunnel that should be up but has no IKE SA has a reconnect scheduled (and so a timer);
    /// - the half-open table stays within its bound. (That the current IKE SA is never a half-open responder SA
    ///   is the types': a half-open SA (`HalfOpen`) has no `IkeState`, so it cannot be the current `IkeSa`.)
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.installed_outbound.len() > 1 {
            return Err(format!("{} outbound CHILD_SAs installed", self.installed_outbound.len()));
        }
        if self.installed_outbound.first() != self.child.as_ref().map(|c| &c.outbound_spi) {
            return Err("the installed outbound CHILD_SA is not the current CHILD_SA".into());
        }
        let should_run = self.cfg.startup == StartupAction::Start && !self.closed;
        if should_run && self.ike.is_none() && (self.reconnect_at.is_none() || self.poll_timeout().is_none()) {
            return Err("the tunnel is down and no reconnect is scheduled".into());
        }
        if self.half_open.len() > self.cfg.half_open_limit {
            return Err(format!("{} half-open IKE SAs (limit {})", self.half_open.len(), self.cfg.half_open_limit));
        }
        Ok(())
    }
}

mod collision;
#[cfg(test)]
mod collision_tests;
mod cookie;
mod drop_reason;
mod half_open;
#[cfg(test)]
mod hostile_tests;
mod ike_init;
mod informational;
mod lifecycle;
mod message;
mod negotiate;
mod protect;
mod random;
mod rekey;
mod sa;
mod timer;
mod window;
