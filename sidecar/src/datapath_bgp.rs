//! Dynamic routing in the [`Datapath`] (`spec.bgp`): one BGP [`Session`] per tunnel, over the userspace TCP
//! stack inside that tunnel. Inner packets from AWS's inside address to ours go to the tunnel's session; what the
//! session sends is sealed on that tunnel's own outbound SA (never on another tunnel). A session runs while its
//! tunnel has a CHILD_SA and stops (routes withdrawn) when it loses it. The preferred tunnel (the one carrying
//! outbound traffic, chosen here with failback damping: [`Datapath::bgp_preferred`]) is announced plain, the others
//! with `standbyPrepend` prepends, so AWS returns traffic on the tunnel we send on. The learned prefixes are the
//! relay's remote subnets: a forward whose target lies in none of them is dropped and counted (`noRoute`).

use std::net::Ipv4Addr;
use std::time::Duration;

use iotrelay_api::ValidatedSpec;
use iotrelay_bgp::{Announce, Config, ConnectMode, DownReason, Event, Ipv4Cidr, Route, Session, State};
use iotrelay_crypto::RandomSource;
use iotrelay_esp::ipv4;

use super::{Datapath, NATT_PORT, Notice, Out, Sink};

/// Inner MTU of the TCP stack: below every suite's tunnel MTU (AWS allows at most 1446), so BGP segments are never
/// fragmented.
const BGP_MTU: usize = 1400;
/// Learned prefixes listed per tunnel in the status (the count covers all).
pub const STATUS_PREFIXES: usize = 32;

/// The BGP side of one tunnel: its inside addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BgpTunnelPlan {
    /// Our inside address (the TCP source, the BGP identifier, the next hop we announce).
    pub local: Ipv4Addr,
    /// The peer's inside address (TCP port 179 there).
    pub peer: Ipv4Addr,
}

/// What the relay needs to run BGP on its tunnels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpPlan {
    pub local_as: u32,
    pub peer_as: u32,
    pub hold_time: u16,
    pub announce: Vec<Ipv4Cidr>,
    pub standby_prepend: u8,
    /// How long a tunnel that was lost must be usable again before it is preferred again (`failbackDelay`).
    pub failback_delay: Duration,
    /// Per tunnel, in spec order; `None`: no session on that tunnel.
    pub tunnels: Vec<Option<BgpTunnelPlan>>,
    /// Wait for the peer to connect (the AWS side: [`BgpRole::AwsSide`]) instead of connecting.
    pub passive: bool,
}

/// Which end of each tunnel's BGP session the relay plays. `spec.bgp` and `insideCidr` describe the VPN
/// connection (the customer gateway's ASN `localAsn`, AWS's `awsAsn`, AWS on the first host of the /30), the same
/// on both ends; the role says which end this relay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BgpRole {
    /// The customer gateway (what the relay is against AWS): the second host, AS `localAsn`, connects; the
    /// preferred tunnel plain, the others prepended.
    #[default]
    CustomerGateway,
    /// AWS's end (`iotrelay-sidecar standalone --bgp-aws-side`, standing in for AWS in a lab or benchmark): the
    /// first host, AS `awsAsn`, waits for the customer gateway (AS `localAsn`) to connect, and announces the same
    /// on every tunnel (`standbyPrepend` and `failbackDelay` do not apply), as AWS does.
    AwsSide,
}

impl BgpPlan {
    /// From `spec.bgp` and the tunnels' inside CIDRs (AWS's address is the first host, the customer gateway's the
    /// second), for the end `role` says.
    pub fn from_spec(spec: &ValidatedSpec, role: BgpRole) -> Option<BgpPlan> {
        let b = spec.bgp.as_ref()?;
        let aws = role == BgpRole::AwsSide;
        let (local_as, peer_as) = if aws { (b.aws_asn, b.local_asn) } else { (b.local_asn, b.aws_asn) };
        Some(BgpPlan {
            local_as,
            peer_as,
            hold_time: u16::try_from(b.hold_time.as_secs()).unwrap_or(u16::MAX),
            announce: b.announce.clone(),
            // AWS announces the same on every tunnel and prefers none: no prepends, no failback damping.
            standby_prepend: if aws { 0 } else { b.standby_prepend },
            failback_delay: if aws { Duration::ZERO } else { b.failback_delay },
            tunnels: spec
                .tunnels
                .iter()
                .map(|t| {
                    t.inside.map(|i| match role {
                        BgpRole::CustomerGateway => BgpTunnelPlan { local: i.local, peer: i.aws },
                        BgpRole::AwsSide => BgpTunnelPlan { local: i.aws, peer: i.local },
                    })
                })
                .collect(),
            passive: aws,
        })
    }
}

/// One tunnel's session and what the datapath keeps about it.
pub(super) struct BgpTunnel {
    pub(super) session: Session,
    plan: BgpTunnelPlan,
    /// The session runs (the tunnel has a CHILD_SA).
    pub(super) running: bool,
    prepend: u8,
    last_error: Option<String>,
    /// Since when the tunnel is usable (CHILD_SA and session Established) without interruption.
    usable_since: Option<Duration>,
    /// The tunnel was usable once and then lost it: it must stay usable for `failback_delay` before it is
    /// preferred again.
    was_lost: bool,
}

impl BgpTunnel {
    /// Whether the tunnel may take traffic back from a tunnel later in order at `now`.
    fn eligible(&self, now: Duration, delay: Duration) -> bool {
        self.usable_since.is_some_and(|t| !self.was_lost || now >= t + delay)
    }
    /// When it becomes eligible, if it is usable and waiting for the failback delay.
    fn eligible_at(&self, delay: Duration) -> Option<Duration> {
        self.usable_since.filter(|_| self.was_lost).map(|t| t + delay)
    }
}

/// All sessions of the relay.
pub(super) struct BgpState {
    pub(super) tunnels: Vec<Option<BgpTunnel>>,
    announce: Vec<Ipv4Cidr>,
    standby_prepend: u8,
    failback_delay: Duration,
    /// The tunnel announced plain and carrying traffic; `None` while no tunnel is usable.
    preferred: Option<usize>,
    /// Gateway mode: the learned prefixes routed through the TUN device, and their version.
    pub(super) gateway_routes: Vec<Ipv4Cidr>,
    pub(super) gateway_routes_version: u64,
}

/// What status needs from one tunnel's session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpSnapshot {
    pub state: String,
    pub established: bool,
    pub established_at: Option<Duration>,
    pub prefixes_received: u64,
    pub prefixes_announced: u64,
    pub prepend: u8,
    /// The tunnel lost its session or CHILD_SA and is usable again: it is preferred again at this time.
    pub failback_at: Option<Duration>,
    pub received: Vec<String>,
    pub sessions_established: u64,
    pub last_error: Option<String>,
    pub notifications_sent: u64,
    pub notifications_received: u64,
    pub malformed_messages: u64,
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Idle => "Idle",
        State::Connect => "Connect",
        State::Active => "Active",
        State::OpenSent => "OpenSent",
        State::OpenConfirm => "OpenConfirm",
        State::Established => "Established",
    }
}

fn seed(rng: &mut dyn RandomSource) -> u64 {
    let mut b = [0u8; 8];
    rng.fill_bytes(&mut b);
    u64::from_le_bytes(b)
}

impl Datapath {
    /// Turns dynamic routing on: a stopped session per tunnel that has inside addresses. Refused (with the
    /// reason) if the plan does not validate; the spec's validation makes that unreachable from a user's YAML.
    pub fn set_bgp(&mut self, plan: BgpPlan, rng: &mut dyn RandomSource) -> Result<(), String> {
        let mut tunnels = Vec::with_capacity(self.tunnels.len());
        for ti in 0..self.tunnels.len() {
            let Some(tp) = plan.tunnels.get(ti).copied().flatten() else {
                tunnels.push(None);
                continue;
            };
            let mut c = Config::aws(plan.local_as, plan.peer_as, tp.local);
            c.hold_time = plan.hold_time;
            c.mode = if plan.passive { ConnectMode::Passive } else { ConnectMode::Active };
            c.announce = Announce { prefixes: plan.announce.clone(), prepend: plan.standby_prepend, med: None };
            let session = Session::new(c, tp.peer, 30, BGP_MTU, seed(rng), self.now)
                .map_err(|e| format!("tunnel {}: {e}", self.tunnels[ti].name))?;
            tunnels.push(Some(BgpTunnel {
                session,
                plan: tp,
                running: false,
                prepend: plan.standby_prepend,
                last_error: None,
                usable_since: None,
                was_lost: false,
            }));
        }
        self.bgp = Some(BgpState {
            tunnels,
            announce: plan.announce,
            standby_prepend: plan.standby_prepend,
            failback_delay: plan.failback_delay,
            preferred: None,
            gateway_routes: Vec::new(),
            gateway_routes_version: 0,
        });
        self.generation += 1;
        self.bgp_sync();
        Ok(())
    }

    pub fn bgp_on(&self) -> bool {
        self.bgp.is_some()
    }

    /// Replaces what every session announces (live reconfiguration of `spec.bgp.announce`); each keeps its
    /// prepend.
    pub fn set_bgp_announce(&mut self, prefixes: Vec<Ipv4Cidr>) {
        let now = self.now;
        let Some(b) = self.bgp.as_mut() else { return };
        b.announce = prefixes;
        for bt in b.tunnels.iter_mut().flatten() {
            let a = Announce { prefixes: b.announce.clone(), prepend: bt.prepend, med: None };
            if let Err(e) = bt.session.set_announce(now, a) {
                tracing::warn!(error = %e, "BGP announcement refused");
            }
        }
        self.generation += 1;
    }

    /// The routes tunnel `ti`'s session learned (empty without a session there).
    pub fn bgp_routes(&self, ti: usize) -> Vec<Route> {
        self.bgp
            .as_ref()
            .and_then(|b| b.tunnels.get(ti))
            .and_then(Option::as_ref)
            .map(|bt| bt.session.speaker().routes().iter().cloned().collect())
            .unwrap_or_default()
    }

    /// An inner packet from tunnel `ti`: taken (`true`) when it is for that tunnel's BGP session (from AWS's
    /// inside address to ours), whatever the session then does with it.
    pub(super) fn bgp_inbound(&mut self, ti: usize, now: Duration, inner: &[u8]) -> bool {
        let Some(b) = self.bgp.as_mut().and_then(|b| b.tunnels.get_mut(ti)).and_then(Option::as_mut) else {
            return false;
        };
        if inner.len() < 20 || inner[16..20] != b.plan.local.octets() || inner[12..16] != b.plan.peer.octets() {
            return false;
        }
        if b.running {
            b.session.handle_packet(now, inner);
        }
        true
    }

    /// Whether a forward may send to `target`: always without BGP; with it, only inside a prefix some
    /// Established session has learned.
    pub(super) fn bgp_route_to(&self, target: Ipv4Addr) -> bool {
        let Some(b) = self.bgp.as_ref() else { return true };
        b.tunnels
            .iter()
            .flatten()
            .any(|t| t.session.state() == State::Established && t.session.speaker().routes().lookup(target).is_some())
    }

    /// The earliest time a session needs `handle_timeout`: now when it has packets to send (they are sealed
    /// there, where the RNG is at hand).
    pub(super) fn bgp_poll_timeout(&mut self) -> Option<Duration> {
        let now = self.now;
        let b = self.bgp.as_mut()?;
        let delay = b.failback_delay;
        let failback = b.tunnels[..b.preferred.unwrap_or(0)]
            .iter()
            .flatten()
            .filter_map(|t| t.eligible_at(delay))
            .filter(|&at| at > now)
            .min();
        let sessions =
            b.tunnels.iter_mut().flatten().filter_map(|t| t.session.poll_timeout().map(|d| d.max(now))).min();
        sessions.into_iter().chain(failback).min()
    }

    /// The tunnel that carries outbound traffic: with BGP the preferred one (see [`Datapath::bgp_sync`]) while it
    /// has a CHILD_SA; otherwise, and without BGP, the first tunnel with a CHILD_SA.
    pub(super) fn bgp_preferred(&self) -> Option<usize> {
        let p = self.bgp.as_ref().and_then(|b| b.preferred).filter(|&p| self.tunnels[p].outbound.is_some());
        p.or_else(|| self.tunnels.iter().position(|t| t.outbound.is_some()))
    }

    /// Session timers, then every packet the sessions queued, sealed on their own tunnels.
    pub(super) fn bgp_timeout(&mut self, now: Duration, sink: &mut dyn Sink) {
        let Some(b) = self.bgp.as_mut() else { return };
        for t in b.tunnels.iter_mut().flatten() {
            if t.session.poll_timeout().is_some_and(|d| d <= now) {
                t.session.handle_timeout(now);
            }
        }
        self.bgp_sync();
        self.bgp_send(sink);
    }

    /// Seals what the sessions queued on their tunnels' current outbound SAs.
    fn bgp_send(&mut self, sink: &mut dyn Sink) {
        let Some(b) = self.bgp.as_mut() else { return };
        for (ti, slot) in b.tunnels.iter_mut().enumerate() {
            let Some(bt) = slot.as_mut() else { continue };
            let t = &mut self.tunnels[ti];
            while let Some(pkt) = bt.session.poll_packet() {
                let Some((sa, mtu)) = t.outbound.as_mut() else { continue };
                let remote = t.esp_remote;
                let (counters, iv_rng, scratch) = (&mut t.counters, &mut t.iv_rng, &mut self.scratch2);
                let mut seal = |p: &[u8]| {
                    if let Ok(len) = sa.seal(p, iv_rng, scratch)
                        && sink.send(Out::Outside { local_port: NATT_PORT, remote }, &scratch[..len])
                    {
                        counters.packets_out += 1;
                        counters.bytes_out += p.len() as u64;
                    }
                };
                if pkt.len() <= *mtu {
                    seal(&pkt);
                } else {
                    // The stack's MTU is below every suite's, so this is not expected; TCP retransmits if it fails.
                    let mtu = *mtu;
                    ipv4::fragment(&pkt, mtu, seal);
                }
            }
        }
    }

    /// Starts and stops sessions with their tunnels' CHILD_SAs, turns session events into logs and notices, picks
    /// the preferred tunnel and moves the prepends to it. Call after every input (from `drain`) and timer.
    ///
    /// A tunnel is *usable* while it has a CHILD_SA and its session is Established. The preferred tunnel stays
    /// preferred while it is usable; when it is not, the first usable tunnel in `tunnels` order takes over at once.
    /// A tunnel earlier in order takes the preference back only when it is eligible: usable, and, if it was lost
    /// before (failback), usable without interruption for `failback_delay`. A tunnel that flaps faster than that
    /// never takes traffic back. While no tunnel is usable, the first one with a CHILD_SA is announced plain.
    pub(super) fn bgp_sync(&mut self) {
        let now = self.now;
        let Some(b) = self.bgp.as_mut() else { return };
        let mut changed = false;
        for (ti, slot) in b.tunnels.iter_mut().enumerate() {
            let Some(bt) = slot.as_mut() else { continue };
            let name = &self.tunnels[ti].name;
            let up = self.tunnels[ti].outbound.is_some();
            if up && !bt.running {
                bt.running = true;
                bt.session.start(now);
                changed = true;
            } else if !up && bt.running {
                bt.running = false;
                bt.session.stop(now);
                bt.last_error = Some("tunnel down: session stopped".into());
                changed = true;
            }
            while let Some(ev) = bt.session.poll_event() {
                changed = true;
                match ev {
                    Event::Established { peer_as, peer_id, hold_time } => {
                        tracing::info!(tunnel = %name, peer_as, %peer_id, hold_time, "BGP session established");
                        self.notices.push(Notice::BgpEstablished { tunnel: name.clone() });
                    }
                    Event::Down { reason } => {
                        // A session stopped because its tunnel went down keeps "tunnel down" as its error.
                        if bt.running && reason != DownReason::Stopped {
                            bt.last_error = Some(reason.to_string());
                        }
                        tracing::warn!(tunnel = %name, reason = reason.reason(), error = %reason, "BGP session down");
                        self.notices.push(Notice::BgpDown { tunnel: name.clone(), reason: reason.reason() });
                    }
                    Event::RoutesChanged { learned, withdrawn } => {
                        tracing::info!(tunnel = %name, learned = ?learned, withdrawn = ?withdrawn, "BGP routes changed");
                    }
                }
            }
            let usable = bt.running && bt.session.state() == State::Established;
            match (usable, bt.usable_since) {
                (true, None) => bt.usable_since = Some(now),
                (false, Some(_)) => {
                    bt.usable_since = None;
                    bt.was_lost = true;
                }
                _ => {}
            }
        }
        let delay = b.failback_delay;
        let usable = |ti: usize| b.tunnels[ti].as_ref().is_some_and(|t| t.usable_since.is_some());
        let eligible = |ti: usize| b.tunnels[ti].as_ref().is_some_and(|t| t.eligible(now, delay));
        let preferred = match b.preferred.filter(|&p| usable(p)) {
            Some(p) => (0..p).find(|&ti| eligible(ti)).or(Some(p)),
            None => {
                (0..b.tunnels.len()).find(|&ti| eligible(ti)).or_else(|| (0..b.tunnels.len()).find(|&ti| usable(ti)))
            }
        };
        if preferred != b.preferred {
            let name = |p: Option<usize>| p.map(|p| self.tunnels[p].name.as_str());
            tracing::info!(from = ?name(b.preferred), to = ?name(preferred), "BGP: preferred tunnel changed");
            b.preferred = preferred;
            changed = true;
        }
        // Announced plain: the preferred tunnel; while no tunnel is usable, the first with a CHILD_SA.
        let plain = b.preferred.or_else(|| self.tunnels.iter().position(|t| t.outbound.is_some()));
        for (ti, slot) in b.tunnels.iter_mut().enumerate() {
            let Some(bt) = slot.as_mut() else { continue };
            let prepend = if Some(ti) == plain { 0 } else { b.standby_prepend };
            if prepend != bt.prepend {
                bt.prepend = prepend;
                let name = &self.tunnels[ti].name;
                let a = Announce { prefixes: b.announce.clone(), prepend, med: None };
                if let Err(e) = bt.session.set_announce(now, a) {
                    tracing::warn!(tunnel = %name, error = %e, "BGP announcement refused");
                }
                tracing::info!(tunnel = %name, prepend, "BGP announcements: AS-path prepends changed");
                changed = true;
            }
        }
        if changed {
            self.generation += 1;
            self.bgp_routes_update();
        }
    }

    /// The status of tunnel `ti`'s session (`None` without BGP on it).
    pub(super) fn bgp_snapshot(&self, ti: usize) -> Option<BgpSnapshot> {
        let bt = self.bgp.as_ref()?.tunnels.get(ti)?.as_ref()?;
        let sp = bt.session.speaker();
        let c = sp.counters();
        let established = sp.state() == State::Established;
        let last_error = bt.last_error.clone().or_else(|| sp.last_error().map(str::to_string));
        Some(BgpSnapshot {
            state: state_name(sp.state()).into(),
            established,
            established_at: if established { sp.established_at() } else { None },
            prefixes_received: sp.routes().len() as u64,
            prefixes_announced: sp.announced().count() as u64,
            prepend: bt.prepend,
            failback_at: {
                let b = self.bgp.as_ref()?;
                bt.eligible_at(b.failback_delay).filter(|&at| at > self.now && b.preferred.is_some_and(|p| p > ti))
            },
            received: sp.routes().iter().take(STATUS_PREFIXES).map(|r| r.prefix.to_string()).collect(),
            sessions_established: c.sessions_established,
            last_error,
            notifications_sent: c.notifications_sent,
            notifications_received: c.notifications_received,
            malformed_messages: c.malformed_messages,
        })
    }
}
