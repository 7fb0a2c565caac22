//! One initiator: a source address with its own two UDP sockets (500 and 4500) and the engine's current IKE SA,
//! cycled connect -> first CHILD_SA installed -> DELETE answered -> connect again with a fresh engine. Lost
//! datagrams are the engine's business: its retransmission timers run on real time through [`Slot::on_time`].

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use iotrelay_ikev2::{Config, Event, Tunnel};

/// RFC 3948: IKE on port 4500 carries four zero octets before the header; a lone 0xff is a NAT-T keepalive.
const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// What all slots did, summed.
#[derive(Default)]
pub struct Stats {
    /// Handshakes whose first CHILD_SA was installed while the run was measuring.
    pub completed: u64,
    /// Each handshake's time from IKE_SA_INIT sent to CHILD_SA installed, in ms.
    pub times_ms: Vec<f64>,
    /// Handshakes that failed (the engine gave up or reported an error) or did not finish in time.
    pub failures: u64,
    pub last_failure: Option<String>,
    /// DELETEs not answered in time (the next handshake starts anyway).
    pub close_timeouts: u64,
    pub sent: u64,
    pub received: u64,
    pub send_errors: u64,
}

impl Stats {
    /// A handshake given up; counted while the run is measuring.
    fn failed(&mut self, running: bool, why: &str) {
        if running {
            self.failures += 1;
            self.last_failure = Some(why.into());
        }
    }
}

enum Phase {
    Connecting,
    Closing,
    Idle,
}

pub struct Slot {
    addr: Ipv4Addr,
    peer: Ipv4Addr,
    config: Config,
    pub ike: UdpSocket,
    pub natt: UdpSocket,
    tunnel: Tunnel,
    phase: Phase,
    /// When the current phase began (engine time).
    since: Duration,
}

/// 32 octets from the OS for a fresh engine.
fn seed() -> [u8; 32] {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s).expect("OS random generator");
    s
}

fn bind(addr: Ipv4Addr, port: u16) -> anyhow::Result<UdpSocket> {
    let s = UdpSocket::bind((addr, port)).map_err(|e| anyhow::anyhow!("bind {addr}:{port}: {e}"))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

impl Slot {
    /// Binds `addr`:500 and `addr`:4500 and starts the first handshake towards `peer`.
    pub fn new(addr: Ipv4Addr, peer: Ipv4Addr, config: Config, now: Duration) -> anyhow::Result<Slot> {
        let (ike, natt) = (bind(addr, 500)?, bind(addr, 4500)?);
        let tunnel = Self::engine(addr, peer, &config, now);
        Ok(Slot { addr, peer, config, ike, natt, tunnel, phase: Phase::Connecting, since: now })
    }

    fn engine(addr: Ipv4Addr, peer: Ipv4Addr, config: &Config, now: Duration) -> Tunnel {
        let local = SocketAddr::new(addr.into(), 500);
        let mut t = Tunnel::new(config.clone(), local, SocketAddr::new(peer.into(), 500), now, &seed());
        t.connect(now);
        t
    }

    pub fn idle(&self) -> bool {
        matches!(self.phase, Phase::Idle)
    }

    /// A fresh engine and handshake while `running`, else nothing more.
    fn restart(&mut self, now: Duration, running: bool) {
        if running {
            self.tunnel = Self::engine(self.addr, self.peer, &self.config, now);
            self.phase = Phase::Connecting;
        } else {
            self.phase = Phase::Idle;
        }
        self.since = now;
    }

    /// Reads everything queued on both sockets into the engine.
    pub fn receive(&mut self, now: Duration, buf: &mut [u8], st: &mut Stats) {
        for port in [500u16, 4500] {
            loop {
                let sock = if port == 500 { &self.ike } else { &self.natt };
                let (n, from) = match sock.recv_from(buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                };
                st.received += 1;
                let data = &buf[..n];
                if port == 500 {
                    self.tunnel.handle_datagram(now, 500, from, data);
                } else if let Some(msg) = data.strip_prefix(&NON_ESP_MARKER) {
                    self.tunnel.handle_datagram(now, 4500, from, msg);
                } // else a keepalive or ESP: nothing to do for a handshake
            }
        }
    }

    /// The engine's timers and this slot's own limits: a handshake not done within `limit`, or a DELETE not
    /// answered within it, is given up and a new one started (while `running`).
    pub fn on_time(&mut self, now: Duration, limit: Duration, running: bool, st: &mut Stats) {
        if self.tunnel.poll_timeout().is_some_and(|at| now >= at) {
            self.tunnel.handle_timeout(now);
        }
        if now >= self.since + limit {
            match self.phase {
                Phase::Connecting => {
                    st.failed(running, "timeout");
                    self.tunnel.close(now);
                    self.restart(now, running);
                }
                Phase::Closing => {
                    st.close_timeouts += 1;
                    self.restart(now, running);
                }
                Phase::Idle => {}
            }
        }
    }

    /// When [`Slot::on_time`] is next due.
    pub fn next_due(&mut self, limit: Duration) -> Option<Duration> {
        if self.idle() {
            return None;
        }
        let own = self.since + limit;
        Some(self.tunnel.poll_timeout().map_or(own, |t| t.min(own)))
    }

    /// Sends what the engine queued and follows its events: a CHILD_SA installed completes the handshake (counted
    /// while `running`) and closes the IKE SA; the DELETE answered starts the next one (while `running`).
    pub fn pump(&mut self, now: Duration, running: bool, st: &mut Stats) {
        loop {
            self.flush(st);
            let mut changed = false;
            while let Some(ev) = self.tunnel.poll_event() {
                match (ev, &self.phase) {
                    (Event::ChildSaInstalled(_), Phase::Connecting) => {
                        if running {
                            st.completed += 1;
                            st.times_ms.push((now - self.since).as_secs_f64() * 1e3);
                        }
                        self.tunnel.close(now);
                        self.phase = Phase::Closing;
                        self.since = now;
                        changed = true;
                    }
                    (Event::IkeSaDown { reason }, Phase::Connecting) => {
                        st.failed(running, reason.reason());
                        self.tunnel.close(now);
                        self.restart(now, running);
                        changed = true;
                    }
                    _ => {}
                }
            }
            if matches!(self.phase, Phase::Closing) && self.tunnel.poll_timeout().is_none() {
                self.restart(now, running);
                changed = true;
            }
            if !changed {
                return;
            }
        }
    }

    fn flush(&mut self, st: &mut Stats) {
        let mut framed = Vec::new();
        while let Some(tx) = self.tunnel.poll_transmit() {
            let sent = if tx.local_port == 4500 {
                framed.clear();
                framed.extend_from_slice(&NON_ESP_MARKER);
                framed.extend_from_slice(&tx.data);
                self.natt.send_to(&framed, tx.remote)
            } else {
                self.ike.send_to(&tx.data, tx.remote)
            };
            match sent {
                Ok(_) => st.sent += 1,
                Err(_) => st.send_errors += 1,
            }
        }
    }
}
