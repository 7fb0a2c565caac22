//! The owner of all protocol state: the IKE tunnels, the ESP SA tables and the UDP relay (sessions, allow-lists,
//! idle expiry and per-forward counters are `iotrelay_relay::Relay`'s; this module only wires it to ESP). No
//! sockets and no clock here: the owner loop (`run.rs`, over the sockets of `sockets/`) feeds datagrams and the
//! time in, and gets datagrams out through a [`Sink`]. That keeps the 4500 demux, the SA switching and the relay
//! testable without a network. A forward is known everywhere by its relay [`ForwardId`] (dense, one index).
//! The packet paths are in files of their own: ESP traffic (client datagrams out, replies in) `datapath_esp.rs`,
//! gateway mode `datapath_gateway.rs`, BGP `datapath_bgp.rs` (and its gateway routes `datapath_bgp_routes.rs`); this file holds the state, the tunnels' IKE side,
//! SA installation, timers and the status snapshot.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use iotrelay_api::DatapathDrops;
use iotrelay_api::validate::ValidatedForward;
use iotrelay_crypto::{ChaChaRandom, RandomSource, SaCipher};
use iotrelay_esp::{Demux, InboundSa, OutboundSa, ipv4};
use iotrelay_ikev2::{ChildSa, Config, DownReason, Event, HalfOpenCount, Ipv4Cidr, StartupAction, Tunnel, TunnelState};
pub use iotrelay_relay::ForwardId;
use iotrelay_relay::{DropReason, ForwardConfig, Relay};
use zeroize::Zeroizing;

use crate::demux::{Known, NATT_KEEPALIVE, frame_ike};
use crate::gateway::{GatewayConfig, GatewayCounters};
use crate::status::{ChildCounters, ForwardSnapshot, TunnelSnapshot};

pub const IKE_PORT: u16 = 500;
pub const NATT_PORT: u16 = 4500;
/// RFC 3948 §2.3: keep NAT mappings alive.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// Outer MTU assumed for ESP-in-UDP datagrams (Ethernet).
pub const OUTER_MTU: usize = 1500;
/// After a rekey, the new outbound SA is used at the latest this long after it was negotiated.
const OUTBOUND_SWITCH_MAX_WAIT: Duration = Duration::from_secs(1);
/// Scratch buffer size: an inner packet of up to 64 KiB plus ESP overhead.
const SCRATCH: usize = 65536 + 512;

/// Fragmented replies reassembled at once (64 KiB each, allocated up front); the oldest is dropped for a new one.
const REASSEMBLY_SLOTS: usize = 4;
/// A fragmented reply not completed this long after its first fragment is dropped.
const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(15);

/// Where a datagram leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// From local port 500 or 4500 to the peer.
    Outside { local_port: u16, remote: SocketAddr },
    /// From forward `forward`'s listen socket back to a client.
    Forward { forward: ForwardId, client: SocketAddrV4 },
    /// Into the gateway's TUN device (gateway mode): an inner packet from the tunnel, or an ICMP error.
    Tun,
}

/// Receives outgoing datagrams. Returns false when the datagram could not be queued (counted as a drop).
pub trait Sink {
    fn send(&mut self, out: Out, data: &[u8]) -> bool;
    /// [`Sink::send`] of an ESP packet carrying a datagram of forward `forward`'s client: a sink that sends later
    /// (batching) reports a failed send of it against that forward (`queueFull`).
    fn send_for(&mut self, forward: ForwardId, out: Out, data: &[u8]) -> bool {
        let _ = forward;
        self.send(out, data)
    }
}

/// Something that happened, for logs, Events and status refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    SaEstablished {
        tunnel: String,
    },
    SaLost {
        tunnel: String,
        reason: DownReason,
    },
    ChildRekeyed {
        tunnel: String,
    },
    /// The IKE SA went down after the CHILD_SA was due for a rekey.
    RekeyFailed {
        tunnel: String,
    },
    /// The tunnel's BGP session became Established.
    BgpEstablished {
        tunnel: String,
    },
    /// The tunnel's BGP session went down (`reason`: `bgp::DownReason::reason`).
    BgpDown {
        tunnel: String,
        reason: &'static str,
    },
}

struct TunnelSlot {
    name: String,
    peer: Ipv4Addr,
    engine: Tunnel,
    /// The current outbound SA and the inner MTU of its suite.
    outbound: Option<(OutboundSa, usize)>,
    /// After a rekey: the new outbound SA, its inbound partner's SPI, and when it takes over at the latest. It
    /// replaces `outbound` (one assignment) when the peer first uses the new inbound SA, when the old SA is
    /// deleted, or at the deadline: the peer may not have installed it yet when it initiated the rekey (strongSwan
    /// waits the same way as a rekey responder).
    next_outbound: Option<(OutboundSa, usize, u32, Duration)>,
    /// Where ESP goes: the peer's 4500 address as the engine last authenticated it (the peer's port may be
    /// NAT-mapped); see `handle_udp4500`.
    esp_remote: SocketAddr,
    counters: ChildCounters,
    next_keepalive: Duration,
    /// When the installed CHILD_SA is due for a rekey (to tell a failed rekey from other losses).
    child_rekey_at: Option<Duration>,
    /// The installed CHILD_SA's negotiated traffic selectors (ours, the peer's); empty before the first one.
    selectors: (Vec<Ipv4Cidr>, Vec<Ipv4Cidr>),
    /// The tunnel's CBC IVs (16 unpredictable octets per ESP packet): a ChaCha20 CSPRNG seeded from the relay's
    /// random source when the tunnel is created, instead of a `getrandom` syscall per packet.
    iv_rng: ChaChaRandom,
}

/// A forward in spec order (the order of the status) and its handle in the relay, the dense id every other place
/// knows it by (ingress, sockets, [`Out::Forward`]).
struct ForwardSlot {
    spec: ValidatedForward,
    id: ForwardId,
    listening: bool,
}

fn forward_config(f: &ValidatedForward) -> ForwardConfig {
    ForwardConfig {
        name: f.name.clone(),
        listen_port: f.listen_port,
        allowed_sources: f.allowed_sources.clone(),
        target: f.target,
        idle_timeout: f.idle_timeout,
    }
}

/// 32 octets from `rng` (the OS in the relay) to seed or reseed a tunnel's engine; cleared when dropped.
fn fresh_seed(rng: &mut dyn RandomSource) -> Zeroizing<[u8; 32]> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(&mut seed[..]);
    seed
}

/// Makes the staged outbound SA the current one (one assignment).
fn promote(t: &mut TunnelSlot) {
    if let Some((sa, mtu, _, _)) = t.next_outbound.take() {
        t.outbound = Some((sa, mtu));
    }
}

/// All protocol state of one relay.
pub struct Datapath {
    replay_window: u32,
    tunnels: Vec<TunnelSlot>,
    forwards: Vec<ForwardSlot>,
    inbound: HashMap<u32, (usize, InboundSa)>,
    relay: Relay,
    drops: DatapathDrops,
    notices: Vec<Notice>,
    /// The latest time seen in any input.
    now: Duration,
    /// Bumped on every state change (SA install/delete, tunnel up/down): status must be refreshed.
    pub generation: u64,
    scratch: Box<[u8]>,
    scratch2: Box<[u8]>,
    /// Fragmented replies from devices in progress ([`REASSEMBLY_SLOTS`] datagrams, allocated here), and the
    /// last one completed.
    reassembly: ipv4::Reassembler,
    reassembled: Vec<u8>,
    /// Gateway mode (`spec.gateway`), and its counters.
    gateway: Option<GatewayConfig>,
    gw: GatewayCounters,
    /// Dynamic routing (`spec.bgp`): a BGP session per tunnel.
    bgp: Option<bgp_path::BgpState>,
}

/// One tunnel to create: name, peer and engine configuration.
pub struct TunnelPlan {
    pub name: String,
    pub peer: Ipv4Addr,
    pub config: Config,
}

impl Datapath {
    pub fn new(
        inside: Ipv4Addr,
        replay_window: u32,
        local: Ipv4Addr,
        tunnels: Vec<TunnelPlan>,
        forwards: Vec<ValidatedForward>,
        now: Duration,
        rng: &mut dyn RandomSource,
    ) -> Datapath {
        // Half-open IKE SAs are counted across the relay for the cookie threshold (RFC 7296 §2.6).
        let half_open = HalfOpenCount::new();
        let tunnels = tunnels
            .into_iter()
            .map(|p| {
                let start = p.config.startup == StartupAction::Start;
                let mut engine = Tunnel::new(
                    p.config,
                    SocketAddr::new(local.into(), IKE_PORT),
                    SocketAddr::new(p.peer.into(), IKE_PORT),
                    now,
                    &fresh_seed(rng),
                );
                engine.share_half_open(half_open.clone());
                if start {
                    engine.connect(now);
                }
                TunnelSlot {
                    name: p.name,
                    peer: p.peer,
                    engine,
                    outbound: None,
                    next_outbound: None,
                    esp_remote: SocketAddr::new(p.peer.into(), NATT_PORT),
                    counters: ChildCounters::default(),
                    next_keepalive: now + KEEPALIVE_INTERVAL,
                    child_rekey_at: None,
                    selectors: (Vec::new(), Vec::new()),
                    iv_rng: ChaChaRandom::seeded_from(rng),
                }
            })
            .collect();
        let mut d = Datapath {
            replay_window,
            tunnels,
            forwards: Vec::new(),
            inbound: HashMap::new(),
            relay: Relay::new(inside, Vec::new()),
            drops: DatapathDrops::default(),
            notices: Vec::new(),
            now,
            generation: 1,
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            scratch2: vec![0u8; SCRATCH].into_boxed_slice(),
            reassembly: ipv4::Reassembler::new(REASSEMBLY_SLOTS, usize::from(u16::MAX), REASSEMBLY_TIMEOUT),
            reassembled: Vec::new(),
            gateway: None,
            gw: GatewayCounters::default(),
            bgp: None,
        };
        d.set_forwards(forwards);
        d
    }

    /// `spec.maxSessionsPerSource` (live reconfiguration): the relay's bound on the sessions of one client IP.
    pub fn set_max_sessions_per_source(&mut self, n: usize) {
        self.relay.set_max_sessions_per_source(n);
    }

    /// Replaces the forward list (live reconfiguration); tunnels are untouched. The relay keeps the sessions and
    /// counters of forwards whose name survives (sessions only if listen port and target are unchanged too, and
    /// only for clients still allowed): see `Relay::set_forwards`.
    pub fn set_forwards(&mut self, forwards: Vec<ValidatedForward>) {
        self.relay.set_forwards(forwards.iter().map(forward_config).collect());
        let old = std::mem::take(&mut self.forwards);
        self.forwards = forwards
            .into_iter()
            .filter_map(|spec| {
                // Names are unique after validation; a duplicate would share the first one's relay forward.
                let id = self.relay.forward_id(&spec.name)?;
                let listening = old.iter().any(|o| o.id == id && o.listening);
                Some(ForwardSlot { spec, id, listening })
            })
            .collect();
        self.generation += 1;
    }

    /// The forwards in spec order, with their ids.
    pub fn forwards(&self) -> impl Iterator<Item = (ForwardId, &ValidatedForward)> {
        self.forwards.iter().map(|f| (f.id, &f.spec))
    }

    /// Whether forward `id`'s listen socket is bound (reported in the status).
    pub fn set_listening(&mut self, id: ForwardId, listening: bool) {
        if let Some(f) = self.forwards.iter_mut().find(|f| f.id == id) {
            if f.listening != listening {
                self.generation += 1;
            }
            f.listening = listening;
        }
    }

    /// Counts `n` datagrams of forward `id` dropped outside the datapath: by its reader (`sourceNotAllowed`
    /// before queueing, `queueFull` when the ingress lane was full) or by a failed send (`queueFull`). Unknown ids
    /// (a forward removed meanwhile) count nothing.
    pub fn count_forward_drops(&mut self, id: ForwardId, reason: DropReason, n: u64) {
        if n > 0 {
            self.relay.record_drops(id, reason, n);
        }
    }

    /// What the socket readers need to classify datagrams: the peers, our inbound SPIs, our IKE SAs' SPIs.
    pub fn known(&self) -> Known {
        Known {
            peers: self.tunnels.iter().map(|t| t.peer).collect(),
            esp_spis: self.inbound.keys().copied().collect(),
            ike_spis: self.tunnels.iter().filter_map(|t| t.engine.status().ike_local_spi()).collect(),
        }
    }

    pub fn set_psk(&mut self, index: usize, psk: zeroize::Zeroizing<Vec<u8>>) {
        if let Some(t) = self.tunnels.get_mut(index) {
            t.engine.set_psk(psk);
        }
    }

    /// Fragmented replies dropped incomplete (timed out, evicted for a newer one, or inconsistent).
    pub fn reassembly_dropped(&self) -> u64 {
        self.reassembly.dropped()
    }

    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// A datagram on UDP 500: IKE without a marker.
    pub fn handle_udp500(&mut self, now: Duration, from: SocketAddr, data: &[u8]) {
        self.now = self.now.max(now);
        if let Some(i) = self.tunnel_for(from) {
            self.tunnels[i].counters.ike_messages_in += 1;
            self.tunnels[i].engine.handle_datagram(now, IKE_PORT, from, data);
        }
    }

    /// A datagram on UDP 4500: keepalive, IKE (marker stripped here) or ESP.
    pub fn handle_udp4500(&mut self, now: Duration, from: SocketAddr, data: &mut [u8], sink: &mut dyn Sink) {
        self.now = self.now.max(now);
        match iotrelay_esp::classify(data) {
            Demux::Keepalive => {} // keeps NAT state; never liveness
            Demux::Malformed => self.drops.malformed += 1,
            Demux::Ike(msg) => {
                if let Some(i) = self.tunnel_for(from) {
                    let t = &mut self.tunnels[i];
                    t.counters.ike_messages_in += 1;
                    t.engine.handle_datagram(now, NATT_PORT, from, msg);
                    // RFC 7296 §2.23: follow the peer's port only when the engine does, i.e. on an authenticated
                    // message; a spoofed or replayed datagram from another port leaves ESP where it was.
                    if t.engine.peer_address() == from {
                        t.esp_remote = from;
                    }
                }
            }
            Demux::Esp { spi } => self.handle_esp(now, spi, data, sink),
        }
    }

    /// Timers: engine timeouts, NAT-T keepalives, session expiry. `rng` (the OS in the relay) reseeds an engine
    /// before its timers run (connects, rekeys, DPD: where new SPIs, nonces and DH secrets are drawn), so an
    /// engine's generator takes in fresh entropy at least every DPD interval while it is up.
    pub fn handle_timeout(&mut self, now: Duration, rng: &mut dyn RandomSource, sink: &mut dyn Sink) {
        self.now = self.now.max(now);
        for t in &mut self.tunnels {
            if t.engine.poll_timeout().is_some_and(|at| now >= at) {
                t.engine.reseed(&fresh_seed(rng));
                t.engine.handle_timeout(now);
            }
            if now >= t.next_keepalive {
                t.next_keepalive = now + KEEPALIVE_INTERVAL;
                if t.engine.status().state == TunnelState::Established {
                    sink.send(Out::Outside { local_port: NATT_PORT, remote: t.esp_remote }, &NATT_KEEPALIVE);
                }
            }
        }
        if self.relay.next_expiry().is_some_and(|at| now >= at) {
            self.relay.expire(now);
        }
        self.bgp_timeout(now, sink);
    }

    /// The earliest time `handle_timeout` is due.
    pub fn poll_timeout(&mut self) -> Option<Duration> {
        let bgp = self.bgp_poll_timeout();
        let mut t: Option<Duration> = None;
        let mut consider = |d: Duration| t = Some(t.map_or(d, |x: Duration| x.min(d)));
        for s in &self.tunnels {
            if let Some(d) = s.engine.poll_timeout() {
                consider(d);
            }
            consider(s.next_keepalive);
        }
        if let Some(d) = self.relay.next_expiry() {
            consider(d);
        }
        if let Some(d) = bgp {
            consider(d);
        }
        t
    }

    /// Drains every tunnel's transmits and events (call after every input).
    pub fn drain(&mut self, sink: &mut dyn Sink) {
        for ti in 0..self.tunnels.len() {
            while let Some(tx) = self.tunnels[ti].engine.poll_transmit() {
                if tx.local_port == NATT_PORT {
                    let Some(n) = frame_ike(&tx.data, &mut self.scratch) else { continue };
                    sink.send(Out::Outside { local_port: NATT_PORT, remote: tx.remote }, &self.scratch[..n]);
                } else {
                    sink.send(Out::Outside { local_port: tx.local_port, remote: tx.remote }, &tx.data);
                }
            }
            while let Some(ev) = self.tunnels[ti].engine.poll_event() {
                self.handle_event(ti, ev);
            }
        }
        self.bgp_sync();
    }

    fn handle_event(&mut self, ti: usize, ev: Event) {
        self.generation += 1;
        let name = self.tunnels[ti].name.clone();
        match ev {
            Event::IkeSaEstablished { local_spi, remote_spi, proposal } => {
                tracing::info!(tunnel = %name, local_spi = %format!("{local_spi:016x}"),
                    remote_spi = %format!("{remote_spi:016x}"), %proposal, "IKE SA established");
            }
            Event::IkeSaRekeyed { local_spi, remote_spi, .. } => {
                tracing::info!(tunnel = %name, local_spi = %format!("{local_spi:016x}"),
                    remote_spi = %format!("{remote_spi:016x}"), "IKE SA rekeyed");
            }
            Event::IkeSaDown { reason } => {
                let err = self.tunnels[ti].engine.status().last_error.unwrap_or_default();
                if reason == DownReason::Closed {
                    tracing::info!(tunnel = %name, "IKE SA closed");
                } else {
                    tracing::warn!(tunnel = %name, reason = reason.reason(), error = %err, "IKE SA down");
                }
                let t = &mut self.tunnels[ti];
                if t.child_rekey_at.take().is_some_and(|at| self.now >= at) && reason != DownReason::Closed {
                    self.notices.push(Notice::RekeyFailed { tunnel: name.clone() });
                }
                self.notices.push(Notice::SaLost { tunnel: name, reason });
            }
            Event::ChildSaInstalled(sa) => {
                tracing::info!(tunnel = %name, inbound_spi = %format!("{:08x}", sa.inbound_spi),
                    outbound_spi = %format!("{:08x}", sa.outbound_spi), proposal = %sa.proposal,
                    local_ts = %crate::gateway::selectors_text(&sa.local_ts),
                    remote_ts = %crate::gateway::selectors_text(&sa.remote_ts), "CHILD_SA installed");
                self.install(ti, sa, false);
                self.notices.push(Notice::SaEstablished { tunnel: name });
            }
            Event::ChildSaRekeyed { old_inbound_spi, old_outbound_spi, new } => {
                tracing::info!(tunnel = %name, old_inbound_spi = %format!("{old_inbound_spi:08x}"),
                    old_outbound_spi = %format!("{old_outbound_spi:08x}"),
                    inbound_spi = %format!("{:08x}", new.inbound_spi),
                    outbound_spi = %format!("{:08x}", new.outbound_spi), "CHILD_SA rekeyed");
                // install() stages the new outbound SA; the switch is one assignment (atomic for the loop).
                self.install(ti, new, true);
                self.notices.push(Notice::ChildRekeyed { tunnel: name });
            }
            Event::ChildSaDeleted { inbound_spi, outbound_spi } => {
                tracing::info!(tunnel = %name, inbound_spi = %format!("{inbound_spi:08x}"),
                    outbound_spi = %format!("{outbound_spi:08x}"), "CHILD_SA deleted");
                if self.inbound.get(&inbound_spi).is_some_and(|(t, _)| *t == ti) {
                    self.inbound.remove(&inbound_spi);
                }
                let t = &mut self.tunnels[ti];
                if t.outbound.as_ref().is_some_and(|(sa, _)| sa.spi() == outbound_spi) {
                    t.outbound = None;
                    promote(t);
                }
                if t.next_outbound.as_ref().is_some_and(|n| n.0.spi() == outbound_spi) {
                    t.next_outbound = None;
                }
            }
        }
    }

    fn install(&mut self, ti: usize, sa: ChildSa, rekey: bool) {
        let inbound = SaCipher::new(sa.encr, sa.integ, &sa.inbound_keys.encr_key, &sa.inbound_keys.integ_key);
        let outbound = SaCipher::new(sa.encr, sa.integ, &sa.outbound_keys.encr_key, &sa.outbound_keys.integ_key);
        let (Ok(inbound), Ok(outbound)) = (inbound, outbound) else {
            tracing::error!(tunnel = %self.tunnels[ti].name, "CHILD_SA keys rejected by the cipher; SA not installed");
            return;
        };
        self.inbound.insert(sa.inbound_spi, (ti, InboundSa::new(sa.inbound_spi, inbound, self.replay_window)));
        let mtu = iotrelay_esp::tunnel_mtu(sa.encr, sa.integ, OUTER_MTU);
        self.tunnels[ti].child_rekey_at = Some(sa.rekey_at);
        let t = &mut self.tunnels[ti];
        t.selectors = (sa.local_ts.clone(), sa.remote_ts.clone());
        let out = OutboundSa::new(sa.outbound_spi, outbound);
        if rekey && t.outbound.is_some() {
            t.next_outbound = Some((out, mtu, sa.inbound_spi, self.now + OUTBOUND_SWITCH_MAX_WAIT));
        } else {
            t.outbound = Some((out, mtu));
            t.next_outbound = None;
        }
    }

    /// Promotes staged outbound SAs whose switch deadline passed; returns the tunnel carrying outbound traffic
    /// (the first, in spec order, with an installed CHILD_SA).
    fn active_outbound(&mut self, now: Duration) -> Option<usize> {
        for t in &mut self.tunnels {
            if t.next_outbound.as_ref().is_some_and(|n| now >= n.3) {
                promote(t);
            }
        }
        self.bgp_preferred()
    }

    fn tunnel_for(&self, from: SocketAddr) -> Option<usize> {
        match from {
            SocketAddr::V4(a) => self.tunnels.iter().position(|t| t.peer == *a.ip()),
            SocketAddr::V6(_) => None,
        }
    }

    /// Index of the tunnel with this name.
    pub fn tunnel_index(&self, name: &str) -> Option<usize> {
        self.tunnels.iter().position(|t| t.name == name)
    }

    pub fn rekey(&mut self, index: usize, ike: bool, now: Duration) {
        if let Some(t) = self.tunnels.get_mut(index) {
            if ike {
                t.engine.rekey_ike(now);
            } else {
                t.engine.rekey_child(now);
            }
        }
    }

    /// Sends DELETE on every tunnel (call `drain` afterwards).
    pub fn close_all(&mut self, now: Duration) {
        for t in &mut self.tunnels {
            t.engine.close(now);
        }
    }

    /// True while some tunnel still waits for the answer to its DELETE.
    pub fn closing(&self) -> bool {
        self.tunnels.iter().any(|t| t.engine.poll_timeout().is_some())
    }

    pub fn snapshot(&self) -> (Vec<TunnelSnapshot>, Vec<ForwardSnapshot>, DatapathDrops) {
        let active = self.bgp_preferred();
        let tunnels = self
            .tunnels
            .iter()
            .enumerate()
            .map(|(i, t)| TunnelSnapshot {
                name: t.name.clone(),
                engine: t.engine.status(),
                active: Some(i) == active,
                child: t.counters,
                bgp: self.bgp_snapshot(i),
            })
            .collect();
        let forwards = self
            .forwards
            .iter()
            .map(|f| {
                let s = self.relay.stats(f.id).unwrap_or_default();
                ForwardSnapshot {
                    name: f.spec.name.clone(),
                    listen_port: f.spec.listen_port,
                    listening: f.listening,
                    sessions: s.sessions,
                    packets_in: s.packets_in,
                    packets_out: s.packets_out,
                    drops: s.drops,
                }
            })
            .collect();
        (tunnels, forwards, self.drops.clone())
    }
}

#[path = "datapath_bgp.rs"]
mod bgp_path;
#[path = "datapath_bgp_routes.rs"]
mod bgp_routes;
#[path = "datapath_esp.rs"]
mod esp_path;
#[path = "datapath_gateway.rs"]
mod gateway_path;
pub use bgp_path::{BgpPlan, BgpRole, BgpSnapshot, BgpTunnelPlan};
pub use bgp_routes::{MAX_GATEWAY_BGP_ROUTES, gateway_routes};
