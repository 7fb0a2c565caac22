//! A BGP session over its own TCP connection inside a tunnel: the [`Speaker`] driven over a [`TcpLink`], as one
//! sans-IO object that takes inner IPv4 packets and the time, and yields inner IPv4 packets, timer deadlines and
//! the speaker's events. The relay keeps one per tunnel.
//!
//! Call contract: [`Session::start`] when the tunnel can carry packets, [`Session::stop`] when it no longer can;
//! [`Session::handle_packet`] for every inner packet to our inside address from the peer's; after every call
//! drain [`Session::poll_packet`] (seal each into the tunnel) and [`Session::poll_event`], and call
//! [`Session::handle_timeout`] when [`Session::poll_timeout`] passes.

use crate::config::{Announce, Config, ConfigError, ConnectMode};
use crate::events::{Event, Output, State};
use crate::speaker::Speaker;
use crate::tcp::{LinkCounters, LinkState, TcpLink};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Octets written by the speaker that the TCP send buffer could not take yet; a peer that stops reading for
/// longer than this is reset (its hold timer would end the session soon anyway).
pub const MAX_PENDING: usize = 64 * 1024;
/// Rounds of "stack, then speaker" per call: each round moves one step (connection up, bytes in, answer out).
const ROUNDS: usize = 8;

/// One BGP session with its TCP connection.
#[derive(Debug)]
pub struct Session {
    speaker: Speaker,
    link: TcpLink,
    /// The speaker was told `connection_up` and not yet that the connection is gone.
    up: bool,
    /// The speaker asked for a connection that has not come up or failed yet.
    connecting: bool,
    pending: VecDeque<u8>,
    /// Connections reset because `pending` overflowed.
    send_overflows: u64,
    now: Duration,
}

impl Session {
    /// A stopped session from `config.local_address` to `peer` (both inside a `/prefix_len`) with inner MTU `mtu`.
    pub fn new(
        config: Config,
        peer: Ipv4Addr,
        prefix_len: u8,
        mtu: usize,
        seed: u64,
        now: Duration,
    ) -> Result<Session, ConfigError> {
        let link = TcpLink::new(config.local_address, prefix_len, peer, mtu, seed.rotate_left(17), now);
        let speaker = Speaker::new(config, seed)?;
        Ok(Session { speaker, link, up: false, connecting: false, pending: VecDeque::new(), send_overflows: 0, now })
    }

    /// The tunnel can carry packets: the speaker connects (or, passive, the link listens).
    pub fn start(&mut self, now: Duration) {
        self.now = self.now.max(now);
        self.speaker.start(now);
        if self.speaker.config().mode == ConnectMode::Passive {
            self.link.listen();
        }
        self.drive(now);
    }

    /// The tunnel is gone: the session ends at once (no packet can reach the peer), the learned routes are
    /// withdrawn (`RoutesChanged`), and nothing queued is sent later.
    pub fn stop(&mut self, now: Duration) {
        self.now = self.now.max(now);
        if self.up || self.connecting {
            self.up = false;
            self.connecting = false;
            self.speaker.connection_down(now);
        }
        self.speaker.stop(now);
        while self.speaker.poll_output().is_some() {}
        self.link.abort();
        self.link.poll(now);
        self.link.clear_queues();
        self.pending.clear();
    }

    /// An inner packet for our inside address. `false`: not TCP from the peer, or the queue was full (counted).
    pub fn handle_packet(&mut self, now: Duration, packet: &[u8]) -> bool {
        self.now = self.now.max(now);
        let taken = self.link.handle_packet(packet);
        if taken {
            self.drive(now);
        }
        taken
    }

    /// Runs what is due at `now` (speaker timers, TCP retransmissions).
    pub fn handle_timeout(&mut self, now: Duration) {
        self.now = self.now.max(now);
        if self.speaker.poll_timeout().is_some_and(|t| t <= now) {
            self.speaker.handle_timeout(now);
        }
        self.drive(now);
    }

    /// The earliest time [`Session::handle_timeout`] is due: the last time seen while packets wait for
    /// [`Session::poll_packet`], so a caller that drains packets only from its timer path still sends them.
    pub fn poll_timeout(&mut self) -> Option<Duration> {
        if self.link.has_packets() {
            return Some(self.now);
        }
        let link = self.link.poll_at(self.now);
        [self.speaker.poll_timeout(), link].into_iter().flatten().min()
    }

    /// The next inner IPv4 packet to send into the tunnel.
    pub fn poll_packet(&mut self) -> Option<Vec<u8>> {
        self.link.poll_packet()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.speaker.poll_event()
    }

    /// Replaces what we announce (see [`Speaker::set_announce`]).
    pub fn set_announce(&mut self, now: Duration, announce: Announce) -> Result<(), ConfigError> {
        self.now = self.now.max(now);
        self.speaker.set_announce(now, announce)?;
        self.drive(now);
        Ok(())
    }

    pub fn speaker(&self) -> &Speaker {
        &self.speaker
    }

    pub fn state(&self) -> State {
        self.speaker.state()
    }

    pub fn link_state(&self) -> LinkState {
        self.link.state()
    }

    pub fn link_counters(&self) -> LinkCounters {
        self.link.counters()
    }

    /// Connections reset because the peer did not take what we wrote ([`MAX_PENDING`]).
    pub fn send_overflows(&self) -> u64 {
        self.send_overflows
    }

    /// Alternates the stack and the speaker until neither has anything left to do at `now`.
    fn drive(&mut self, now: Duration) {
        for _ in 0..ROUNDS {
            self.link.poll(now);
            let mut progress = self.connection_changes(now);
            if self.up {
                let speaker = &mut self.speaker;
                self.link.recv(|b| speaker.handle_bytes(now, b));
            }
            while let Some(o) = self.speaker.poll_output() {
                progress = true;
                self.carry_out(o);
            }
            progress |= self.flush_pending(now);
            if !progress {
                break;
            }
        }
        self.link.poll(now);
    }

    /// Tells the speaker what happened to the connection; `true` if anything did.
    fn connection_changes(&mut self, now: Duration) -> bool {
        let state = self.link.state();
        if !self.up && state == LinkState::Established {
            self.connecting = false;
            if self.speaker.connection_up(now) {
                self.up = true;
            } else {
                self.link.abort();
            }
            return true;
        }
        if self.up && matches!(state, LinkState::Closed | LinkState::Closing) {
            // Whatever arrived before the FIN is the peer's last word (often a NOTIFICATION).
            let speaker = &mut self.speaker;
            self.link.recv(|b| speaker.handle_bytes(now, b));
            if self.up && self.speaker.state().is_connected() {
                self.speaker.connection_down(now);
            }
            self.up = false;
            self.link.close();
            self.pending.clear();
            return true;
        }
        if self.connecting && state == LinkState::Closed {
            self.connecting = false;
            self.speaker.connection_down(now);
            return true;
        }
        // Passive (a test peer standing in for AWS): one socket, so the old connection is dropped once its last
        // segment (NOTIFICATION, FIN) is out, and the socket listens again.
        if self.speaker.config().mode == ConnectMode::Passive
            && self.speaker.state() == State::Active
            && matches!(state, LinkState::Closed | LinkState::Closing)
        {
            self.link.listen();
            return true;
        }
        false
    }

    fn carry_out(&mut self, o: Output) {
        match o {
            Output::Connect => {
                self.pending.clear();
                self.connecting = self.link.connect();
                if !self.connecting {
                    self.speaker.connection_down(self.now);
                }
            }
            Output::Send(bytes) => {
                if self.pending.len() + bytes.len() > MAX_PENDING {
                    self.send_overflows += 1;
                    self.pending.clear();
                    self.link.abort();
                    return;
                }
                self.pending.extend(bytes);
            }
            Output::Close => {
                // The speaker is already down; what it queued before (a NOTIFICATION) goes out before the FIN.
                self.up = false;
                self.connecting = false;
                let (a, b) = self.pending.as_slices();
                let n = self.link.send(a);
                if n == a.len() {
                    self.link.send(b);
                }
                self.pending.clear();
                self.link.close();
            }
        }
    }

    /// Moves pending octets into the TCP send buffer; `true` if any moved.
    fn flush_pending(&mut self, _now: Duration) -> bool {
        if !self.up || self.pending.is_empty() {
            return false;
        }
        let (a, _) = self.pending.as_slices();
        let n = self.link.send(a);
        self.pending.drain(..n);
        n > 0
    }
}
