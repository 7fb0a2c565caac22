//! One BGP session's finite state machine (RFC 4271 §8) as far as a customer gateway needs it.
//!
//! Call contract (the caller owns the TCP connection, the clock and the OS RNG):
//! 1. [`Speaker::new`] with a seed for the connect-retry jitter, then [`Speaker::start`].
//! 2. After every call, drain [`Speaker::poll_output`] (connect / send / close, in order) and
//!    [`Speaker::poll_event`], and re-arm a timer for [`Speaker::poll_timeout`]; when it passes, call
//!    [`Speaker::handle_timeout`].
//! 3. Report the connection: [`Speaker::connection_up`] (connected or accepted), [`Speaker::handle_bytes`] (any
//!    chunk of the received stream), [`Speaker::connection_down`] (closed, reset or failed).
//!
//! Errors are answered with the RFC's NOTIFICATION, then [`Output::Close`], the session goes to Idle, the
//! learned routes are withdrawn and (in active mode) a reconnect is scheduled with exponential backoff.

use crate::config::{Announce, Config, ConfigError, ConnectMode};
use crate::events::{Counters, DownReason, Event, Output, State};
use crate::reassembler::Reassembler;
use crate::rib::{Insert, Rib, Route};
use crate::wire::codes::{AFI_IPV4, SAFI_UNICAST, cease, err, fsm, open};
use crate::wire::{AsPathSegment, Capability, MAX_MESSAGE_LEN, Message, Open, PathAttributes};
use crate::wire::{RouteRefresh, Update, WireError};
use iotrelay_types::Ipv4Cidr;
use std::collections::{BTreeSet, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

/// What we learned about the peer from its OPEN.
#[derive(Debug, Clone, Copy)]
struct Peer {
    asn: u32,
    id: Ipv4Addr,
    route_refresh: bool,
}

/// A sans-IO BGP speaker for one session.
#[derive(Debug)]
pub struct Speaker {
    config: Config,
    state: State,
    started: bool,
    reassembler: Reassembler,
    out: VecDeque<Output>,
    events: VecDeque<Event>,
    connect_retry_at: Option<Duration>,
    hold_at: Option<Duration>,
    keepalive_at: Option<Duration>,
    /// Negotiated hold time (0: no hold timer and no keepalives).
    hold: Duration,
    peer: Option<Peer>,
    rib: Rib,
    /// Prefixes the peer currently has from us.
    announced: BTreeSet<Ipv4Cidr>,
    /// Connect attempts that failed since the last stable session (the backoff exponent).
    failures: u32,
    rng: u64,
    established_at: Option<Duration>,
    last_down: Option<DownReason>,
    last_error: Option<String>,
    counters: Counters,
}

impl Speaker {
    /// A stopped speaker. `seed` feeds the connect-retry jitter (any value; the caller draws it from its RNG).
    pub fn new(config: Config, seed: u64) -> Result<Speaker, ConfigError> {
        config.validate()?;
        Ok(Speaker {
            rib: Rib::new(config.max_learned_routes),
            config,
            state: State::Idle,
            started: false,
            reassembler: Reassembler::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            connect_retry_at: None,
            hold_at: None,
            keepalive_at: None,
            hold: Duration::ZERO,
            peer: None,
            announced: BTreeSet::new(),
            failures: 0,
            rng: seed | 1,
            established_at: None,
            last_down: None,
            last_error: None,
            counters: Counters::default(),
        })
    }

    /// Starts the session: active mode connects at once, passive mode waits for the peer.
    pub fn start(&mut self, now: Duration) {
        if self.started {
            return;
        }
        self.started = true;
        match self.config.mode {
            ConnectMode::Active => self.connect_retry_at = Some(now),
            ConnectMode::Passive => self.state = State::Active,
        }
    }

    /// Stops the session: NOTIFICATION Cease / Administrative Shutdown if connected, then Idle until `start`.
    pub fn stop(&mut self, now: Duration) {
        self.started = false;
        match self.state {
            s if s.is_connected() => {
                self.send_notification(&WireError::new(err::CEASE, cease::ADMINISTRATIVE_SHUTDOWN, "stopped"));
                self.out.push_back(Output::Close);
                self.down(now, DownReason::Stopped);
            }
            State::Connect => {
                self.out.push_back(Output::Close);
                self.down(now, DownReason::Stopped);
            }
            _ => {}
        }
        self.state = State::Idle;
        self.connect_retry_at = None;
    }

    /// A TCP connection came up (ours completed, or the peer's was accepted). `false`: we expect none now, and
    /// the caller closes that connection without touching the current one.
    pub fn connection_up(&mut self, now: Duration) -> bool {
        match (self.state, self.config.mode) {
            (State::Connect, ConnectMode::Active) | (State::Active, ConnectMode::Passive) => {
                self.connect_retry_at = None;
                self.reassembler.reset();
                let open = Open::new(self.config.local_as, self.config.hold_time, self.config.router_id);
                self.send(now, &Message::Open(open));
                self.state = State::OpenSent;
                self.hold_at = Some(now + self.config.open_hold_time);
                true
            }
            _ => false,
        }
    }

    /// The TCP connection closed, was reset, or (in Connect) failed.
    pub fn connection_down(&mut self, now: Duration) {
        match self.state {
            State::Connect => self.down(now, DownReason::ConnectFailed),
            s if s.is_connected() => self.down(now, DownReason::ConnectionClosed),
            _ => {}
        }
    }

    /// Octets received on the connection, in any chunking. Ignored unless connected.
    pub fn handle_bytes(&mut self, now: Duration, mut data: &[u8]) {
        while self.state.is_connected() {
            let raw = match self.reassembler.next_message(&mut data) {
                None => return,
                Some(Ok(raw)) => raw,
                Some(Err(e)) => return self.malformed(now, e),
            };
            self.counters.messages_received += 1;
            match Message::parse(&raw) {
                Ok(m) => self.on_message(now, m),
                Err(e) => return self.malformed(now, e),
            }
        }
    }

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.connect_retry_at.is_some_and(|t| t <= now) {
            self.connect_retry_at = None;
            match self.state {
                State::Idle if self.started => {
                    self.state = State::Connect;
                    self.counters.connect_attempts += 1;
                    self.out.push_back(Output::Connect);
                    self.connect_retry_at = Some(now + self.config.connect_timeout);
                }
                State::Connect => {
                    self.out.push_back(Output::Close);
                    self.down(now, DownReason::ConnectFailed);
                }
                _ => {}
            }
        }
        if self.hold_at.is_some_and(|t| t <= now) && self.state.is_connected() {
            self.send_notification(&WireError::new(err::HOLD_TIMER_EXPIRED, 0, "hold timer expired"));
            self.out.push_back(Output::Close);
            self.down(now, DownReason::HoldTimerExpired);
        }
        if self.keepalive_at.is_some_and(|t| t <= now) {
            self.send(now, &Message::Keepalive);
        }
    }

    /// The earliest timer deadline, if any.
    pub fn poll_timeout(&self) -> Option<Duration> {
        [self.connect_retry_at, self.hold_at, self.keepalive_at].into_iter().flatten().min()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Replaces what we announce; if Established, withdraws what was dropped and announces what is new (all of
    /// it if the prepend or MED changed).
    pub fn set_announce(&mut self, now: Duration, announce: Announce) -> Result<(), ConfigError> {
        announce.validate()?;
        let attrs_changed =
            announce.prepend != self.config.announce.prepend || announce.med != self.config.announce.med;
        self.config.announce = announce;
        if self.state != State::Established {
            return Ok(());
        }
        let wanted: BTreeSet<Ipv4Cidr> = self.config.announce.prefixes.iter().copied().collect();
        let gone: Vec<Ipv4Cidr> = self.announced.difference(&wanted).copied().collect();
        let new: Vec<Ipv4Cidr> = if attrs_changed {
            wanted.iter().copied().collect()
        } else {
            wanted.difference(&self.announced).copied().collect()
        };
        self.send_updates(now, gone, new);
        self.announced = wanted;
        Ok(())
    }

    /// Asks the peer to send its routes again (RFC 2918), if it supports that. `false` if not sent.
    pub fn request_refresh(&mut self, now: Duration) -> bool {
        if self.state != State::Established || !self.peer.is_some_and(|p| p.route_refresh) {
            return false;
        }
        let rr = RouteRefresh { afi: AFI_IPV4, subtype: 0, safi: SAFI_UNICAST };
        self.send(now, &Message::RouteRefresh(rr));
        true
    }

    pub fn state(&self) -> State {
        self.state
    }
    /// The learned-route table.
    pub fn routes(&self) -> &Rib {
        &self.rib
    }
    /// Prefixes the peer currently has from us.
    pub fn announced(&self) -> impl Iterator<Item = &Ipv4Cidr> {
        self.announced.iter()
    }
    pub fn established_at(&self) -> Option<Duration> {
        self.established_at
    }
    /// Negotiated hold time while connected past OPEN.
    pub fn hold_time(&self) -> Option<Duration> {
        self.peer.map(|_| self.hold)
    }
    pub fn peer_id(&self) -> Option<Ipv4Addr> {
        self.peer.map(|p| p.id)
    }
    pub fn last_down_reason(&self) -> Option<&DownReason> {
        self.last_down.as_ref()
    }
    /// The last failure or treated-as-withdraw UPDATE, for status.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
    pub fn counters(&self) -> Counters {
        Counters { routes_dropped_by_bound: self.rib.dropped_by_bound(), ..self.counters }
    }
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn on_message(&mut self, now: Duration, m: Message) {
        let unexpected = |subcode| WireError::new(err::FSM, subcode, "unexpected message");
        match (self.state, m) {
            (_, Message::Notification(n)) => {
                self.counters.notifications_received += 1;
                self.out.push_back(Output::Close);
                self.down(now, DownReason::NotificationReceived { code: n.code, subcode: n.subcode });
            }
            (State::OpenSent, Message::Open(o)) => self.on_open(now, o),
            (State::OpenSent, _) => self.fail(now, unexpected(fsm::UNEXPECTED_IN_OPEN_SENT)),
            (State::OpenConfirm, Message::Keepalive) => {
                self.state = State::Established;
                self.established_at = Some(now);
                self.counters.sessions_established += 1;
                self.restart_hold(now);
                if let Some(p) = self.peer {
                    let hold_time = self.hold.as_secs() as u16;
                    self.events.push_back(Event::Established { peer_as: p.asn, peer_id: p.id, hold_time });
                }
                let all: Vec<Ipv4Cidr> =
                    self.config.announce.prefixes.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
                self.announced = all.iter().copied().collect();
                self.send_updates(now, Vec::new(), all);
            }
            (State::OpenConfirm, _) => self.fail(now, unexpected(fsm::UNEXPECTED_IN_OPEN_CONFIRM)),
            (State::Established, Message::Keepalive) => self.restart_hold(now),
            (State::Established, Message::Update(u)) => {
                self.restart_hold(now);
                self.on_update(u);
            }
            (State::Established, Message::RouteRefresh(rr)) => {
                self.restart_hold(now);
                // RFC 2918 §4: only for a family we negotiated; other subtypes need enhanced route refresh.
                if rr.afi == AFI_IPV4 && rr.safi == SAFI_UNICAST && rr.subtype == 0 {
                    let all: Vec<Ipv4Cidr> = self.announced.iter().copied().collect();
                    self.send_updates(now, Vec::new(), all);
                }
            }
            (State::Established, Message::Open(_)) => self.fail(now, unexpected(fsm::UNEXPECTED_IN_ESTABLISHED)),
            _ => {}
        }
    }

    fn on_open(&mut self, now: Duration, o: Open) {
        if o.asn() != self.config.peer_as {
            return self
                .fail(now, WireError::new(err::OPEN_MESSAGE, open::BAD_PEER_AS, "peer AS not the configured one"));
        }
        if o.four_octet_as().is_none() {
            // RFC 5492 §5: the data lists the capabilities we need and the peer lacks.
            let mut data = vec![crate::wire::codes::cap::FOUR_OCTET_AS, 4];
            data.extend_from_slice(&self.config.local_as.to_be_bytes());
            return self.fail(
                now,
                WireError::with_data(err::OPEN_MESSAGE, open::UNSUPPORTED_CAPABILITY, data, "no 4-octet AS capability"),
            );
        }
        let mp = o.capabilities.iter().filter(|c| matches!(c, Capability::Multiprotocol { .. }));
        if mp.clone().count() > 0 && !mp.clone().any(|c| *c == Capability::IPV4_UNICAST) {
            let data = vec![crate::wire::codes::cap::MULTIPROTOCOL, 4, 0, 1, 0, 1];
            return self.fail(
                now,
                WireError::with_data(err::OPEN_MESSAGE, open::UNSUPPORTED_CAPABILITY, data, "no IPv4 unicast"),
            );
        }
        self.hold = Duration::from_secs(u64::from(self.config.hold_time.min(o.hold_time)));
        self.peer = Some(Peer {
            asn: o.asn(),
            id: o.bgp_id,
            route_refresh: o.capabilities.contains(&Capability::RouteRefresh),
        });
        self.state = State::OpenConfirm;
        self.send(now, &Message::Keepalive);
        self.restart_hold(now);
    }

    fn on_update(&mut self, u: Update) {
        self.counters.updates_received += 1;
        self.counters.attributes_discarded += u.attributes.discarded.len() as u64;
        let mut withdrawn: Vec<Ipv4Cidr> = u.withdrawn.iter().copied().filter(|p| self.rib.remove(p)).collect();
        let a = &u.attributes;
        let mut reject = u.treat_as_withdraw;
        if reject.is_none() && !u.nlri.is_empty() && a.first_as() != Some(self.config.peer_as) {
            // RFC 4271 §6.3 / RFC 7606 §7.2: an external peer's AS_PATH starts with its own AS.
            reject = Some("AS_PATH does not start with the peer's AS");
        }
        if let Some(why) = reject {
            self.counters.updates_treated_as_withdraw += 1;
            self.last_error = Some(format!("UPDATE treated as withdraw: {why}"));
        }
        let looped = reject.is_none() && a.as_path_asns().any(|asn| asn == self.config.local_as);
        if looped {
            self.counters.routes_rejected_loop += u.nlri.len() as u64;
        }
        let mut learned = Vec::new();
        for p in &u.nlri {
            match (reject.is_some() || looped, a.next_hop) {
                (false, Some(next_hop)) => {
                    let route = Route {
                        prefix: *p,
                        next_hop,
                        as_path: a.as_path_asns().collect(),
                        origin: a.origin.unwrap_or(2),
                        med: a.med,
                    };
                    if self.rib.insert(route) != Insert::DroppedByBound {
                        learned.push(*p);
                        withdrawn.retain(|w| w != p);
                    }
                }
                _ => {
                    if self.rib.remove(p) {
                        withdrawn.push(*p);
                    }
                }
            }
        }
        self.routes_changed(learned, withdrawn);
    }

    fn routes_changed(&mut self, learned: Vec<Ipv4Cidr>, withdrawn: Vec<Ipv4Cidr>) {
        if learned.is_empty() && withdrawn.is_empty() {
            return;
        }
        if let Some(Event::RoutesChanged { learned: l, withdrawn: w }) = self.events.back_mut() {
            for p in withdrawn {
                l.retain(|x| *x != p);
                if !w.contains(&p) {
                    w.push(p);
                }
            }
            for p in learned {
                w.retain(|x| *x != p);
                if !l.contains(&p) {
                    l.push(p);
                }
            }
            return;
        }
        self.events.push_back(Event::RoutesChanged { learned, withdrawn });
    }

    /// UPDATEs withdrawing `gone` and announcing `new` with our attributes, each within 4096 octets.
    fn send_updates(&mut self, now: Duration, gone: Vec<Ipv4Cidr>, new: Vec<Ipv4Cidr>) {
        let per = |base: usize| ((MAX_MESSAGE_LEN - base) / 5).max(1);
        let empty = Update::default();
        for chunk in gone.chunks(per(empty.wire_len())) {
            self.send(now, &Message::Update(Update { withdrawn: chunk.to_vec(), ..Update::default() }));
        }
        let a = &self.config.announce;
        let attributes = PathAttributes {
            origin: Some(0),
            as_path: Some(vec![AsPathSegment::sequence(vec![self.config.local_as; 1 + usize::from(a.prepend)])]),
            next_hop: Some(self.config.local_address),
            med: a.med,
            ..PathAttributes::default()
        };
        let with_attrs = Update { attributes, ..Update::default() };
        for chunk in new.chunks(per(with_attrs.wire_len())) {
            self.send(now, &Message::Update(Update { nlri: chunk.to_vec(), ..with_attrs.clone() }));
        }
    }

    fn send(&mut self, now: Duration, m: &Message) {
        self.counters.messages_sent += 1;
        self.out.push_back(Output::Send(m.to_bytes()));
        let restarts = matches!(m, Message::Keepalive | Message::Update(_));
        if restarts && matches!(self.state, State::OpenConfirm | State::Established) {
            // RFC 4271 §8.2.2: the KeepaliveTimer restarts with every KEEPALIVE or UPDATE sent.
            self.keepalive_at = (!self.hold.is_zero()).then(|| now + self.hold / 3);
        }
    }

    fn send_notification(&mut self, e: &WireError) {
        self.counters.messages_sent += 1;
        self.counters.notifications_sent += 1;
        self.out.push_back(Output::Send(Message::Notification(e.notification()).to_bytes()));
    }

    fn restart_hold(&mut self, now: Duration) {
        self.hold_at = (!self.hold.is_zero()).then(|| now + self.hold);
    }

    fn malformed(&mut self, now: Duration, e: WireError) {
        self.counters.malformed_messages += 1;
        self.fail(now, e);
    }

    /// Answers an error with its NOTIFICATION, closes the connection and ends the session.
    fn fail(&mut self, now: Duration, e: WireError) {
        self.send_notification(&e);
        self.out.push_back(Output::Close);
        self.down(now, DownReason::NotificationSent { code: e.code, subcode: e.subcode, what: e.what });
    }

    /// Back to Idle: timers off, learned routes withdrawn, and in active mode a reconnect after the backoff.
    fn down(&mut self, now: Duration, reason: DownReason) {
        // A session that stayed up longer than the longest backoff resets it.
        let stable = self.established_at.is_some_and(|t| now.saturating_sub(t) >= self.config.connect_retry_max);
        self.failures = if stable { 1 } else { self.failures.saturating_add(1) };
        self.state = State::Idle;
        self.hold_at = None;
        self.keepalive_at = None;
        self.connect_retry_at = None;
        self.hold = Duration::ZERO;
        self.peer = None;
        self.established_at = None;
        self.announced.clear();
        self.reassembler.reset();
        let withdrawn: Vec<Ipv4Cidr> = self.rib.iter().map(|r| r.prefix).collect();
        self.rib.clear();
        self.routes_changed(Vec::new(), withdrawn);
        if reason != DownReason::Stopped {
            self.last_error = Some(reason.to_string());
        }
        self.last_down = Some(reason.clone());
        self.events.push_back(Event::Down { reason });
        if self.started {
            match self.config.mode {
                ConnectMode::Active => self.connect_retry_at = Some(now + self.backoff()),
                ConnectMode::Passive => self.state = State::Active,
            }
        }
    }

    /// `initial * 2^(failures-1)`, capped at the maximum, times a random factor in [0.75, 1] (RFC 4271 §10).
    fn backoff(&mut self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(16);
        let base = self.config.connect_retry_initial.saturating_mul(1 << exp).min(self.config.connect_retry_max);
        // xorshift64*: jitter needs no cryptographic quality, only a seed the caller chose.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56; // 0..=255
        base.mul_f64(0.75 + 0.25 * (r as f64) / 255.0)
    }
}
