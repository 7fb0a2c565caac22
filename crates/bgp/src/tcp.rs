//! One TCP connection between a tunnel's inside addresses, on a userspace TCP/IP stack (smoltcp) that exchanges
//! raw IPv4 packets with its caller instead of a network device: the caller hands in the inner packets that ESP
//! delivered for our inside address and takes out the packets to seal into the tunnel. No sockets, no clock, no
//! global RNG: time is an argument, the stack's randomness (initial sequence numbers, ephemeral ports) a seed.
//!
//! What this module owns: the bounded packet queues between the caller and the stack (with their drop counters),
//! the conversion of time, and the connection's lifecycle (connect to the peer's port 179, or listen on it; close;
//! abort). The BGP session on top is [`crate::Session`]'s.

use iotrelay_types::ipv4::PROTO_TCP;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp::{Socket as TcpSocket, SocketBuffer, State as TcpState};
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpCidr};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

/// The BGP port (RFC 4271 §8.2.1).
pub const BGP_PORT: u16 = 179;
/// Inbound packets waiting for the stack; more are dropped and counted (`rx_queue_full`). The stack drains the
/// queue on every call, so it only fills if one call brings more than this.
pub const RX_QUEUE: usize = 32;
/// Outbound packets waiting for the caller; when full the stack keeps the data in its send buffer and sends later.
pub const TX_QUEUE: usize = 32;
/// Receive and send buffer of the connection: four maximum-size BGP messages each way.
pub const SOCKET_BUFFER: usize = 16 * 1024;
/// A connection on which nothing is acknowledged for this long is reset (BGP's hold timer normally ends it first).
const TCP_TIMEOUT: Duration = Duration::from_secs(90);

/// Counters of the packet queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Packets handed to the stack.
    pub packets_in: u64,
    /// Packets the stack produced.
    pub packets_out: u64,
    /// Inbound packets dropped because [`RX_QUEUE`] was full.
    pub rx_queue_full: u64,
    /// Inbound packets refused before the stack: not IPv4 TCP to our inside address.
    pub not_for_us: u64,
}

/// The stack's "network device": two bounded queues of whole IPv4 packets.
struct Queues {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    mtu: usize,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl smoltcp::phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0u8; len];
        let r = f(&mut packet);
        self.0.push_back(packet);
        r
    }
}

impl Device for Queues {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        // A reply (RST, ACK) needs room too; without it the packet waits.
        if self.tx.len() >= TX_QUEUE {
            return None;
        }
        let p = self.rx.pop_front()?;
        Some((Rx(p), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        (self.tx.len() < TX_QUEUE).then_some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

fn instant(now: Duration) -> Instant {
    Instant::from_micros(i64::try_from(now.as_micros()).unwrap_or(i64::MAX))
}

/// splitmix64: spreads the caller's seed over the values we draw (ephemeral ports).
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Where the connection stands, as the session needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No connection (never opened, reset, or fully closed).
    Closed,
    /// Listening on port 179 for the peer.
    Listening,
    /// Our SYN is out, or the peer's SYN was answered.
    Opening,
    /// Data flows both ways.
    Established,
    /// The peer closed its side (FIN), or we closed ours: the connection is ending.
    Closing,
}

/// One TCP connection from `local` to `peer` (port 179), or accepted on `local:179`, over the userspace stack.
pub struct TcpLink {
    iface: Interface,
    dev: Queues,
    sockets: SocketSet<'static>,
    handle: SocketHandle,
    local: Ipv4Addr,
    peer: Ipv4Addr,
    rng: u64,
    counters: LinkCounters,
}

impl std::fmt::Debug for TcpLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpLink")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("state", &self.state())
            .field("counters", &self.counters)
            .finish()
    }
}

impl TcpLink {
    /// A closed link from `local` (inside a `/prefix_len` that also holds `peer`) with inner MTU `mtu`.
    pub fn new(local: Ipv4Addr, prefix_len: u8, peer: Ipv4Addr, mtu: usize, seed: u64, now: Duration) -> TcpLink {
        let mut rng = seed;
        let mut dev = Queues { rx: VecDeque::new(), tx: VecDeque::new(), mtu: mtu.clamp(576, 65535) };
        let mut config = IfaceConfig::new(HardwareAddress::Ip);
        config.random_seed = next(&mut rng);
        let mut iface = Interface::new(config, &mut dev, instant(now));
        iface.update_ip_addrs(|addrs| {
            // One address on a fresh interface always fits.
            let _ = addrs.push(IpCidr::new(local.into(), prefix_len.min(32)));
        });
        let mut socket =
            TcpSocket::new(SocketBuffer::new(vec![0u8; SOCKET_BUFFER]), SocketBuffer::new(vec![0u8; SOCKET_BUFFER]));
        // BGP writes whole messages; waiting for an ACK before sending a small one only delays KEEPALIVEs.
        socket.set_nagle_enabled(false);
        socket.set_timeout(Some(smoltcp::time::Duration::from_micros(TCP_TIMEOUT.as_micros() as u64)));
        let mut sockets = SocketSet::new(Vec::with_capacity(1));
        let handle = sockets.add(socket);
        TcpLink { iface, dev, sockets, handle, local, peer, rng, counters: LinkCounters::default() }
    }

    fn socket(&self) -> &TcpSocket<'static> {
        self.sockets.get::<TcpSocket>(self.handle)
    }

    fn socket_mut(&mut self) -> &mut TcpSocket<'static> {
        self.sockets.get_mut::<TcpSocket>(self.handle)
    }

    pub fn local(&self) -> Ipv4Addr {
        self.local
    }

    pub fn peer(&self) -> Ipv4Addr {
        self.peer
    }

    pub fn counters(&self) -> LinkCounters {
        self.counters
    }

    pub fn state(&self) -> LinkState {
        match self.socket().state() {
            TcpState::Closed | TcpState::TimeWait => LinkState::Closed,
            TcpState::Listen => LinkState::Listening,
            TcpState::SynSent | TcpState::SynReceived => LinkState::Opening,
            TcpState::Established => LinkState::Established,
            TcpState::FinWait1 | TcpState::FinWait2 | TcpState::CloseWait | TcpState::Closing | TcpState::LastAck => {
                LinkState::Closing
            }
        }
    }

    /// Opens a new connection to the peer's port 179 from a random ephemeral port, resetting any current one.
    pub fn connect(&mut self) -> bool {
        self.socket_mut().abort();
        let port = 49152 + (next(&mut self.rng) % 16384) as u16;
        let (peer, local) = (self.peer, self.local);
        let cx = self.iface.context();
        let socket = self.sockets.get_mut::<TcpSocket>(self.handle);
        socket.connect(cx, (peer, BGP_PORT), (local, port)).is_ok()
    }

    /// Waits for the peer on port 179 (resetting any current connection).
    pub fn listen(&mut self) -> bool {
        let local = self.local;
        let socket = self.socket_mut();
        socket.abort();
        socket.listen((local, BGP_PORT)).is_ok()
    }

    /// Closes our side after what was written (FIN).
    pub fn close(&mut self) {
        self.socket_mut().close();
    }

    /// Resets the connection (RST at the next poll) and forgets queued packets.
    pub fn abort(&mut self) {
        self.socket_mut().abort();
    }

    /// Drops every queued packet in both directions (the tunnel that carried them is gone).
    pub fn clear_queues(&mut self) {
        self.dev.rx.clear();
        self.dev.tx.clear();
    }

    /// An inner IPv4 packet from the tunnel. Only TCP to our inside address is taken (`false` otherwise, counted);
    /// the stack checks everything else (checksums, ports, sequence numbers) when it is polled.
    pub fn handle_packet(&mut self, packet: &[u8]) -> bool {
        let ours = packet.len() >= 20
            && packet[0] >> 4 == 4
            && packet[9] == PROTO_TCP
            && packet[16..20] == self.local.octets()
            && packet[12..16] == self.peer.octets();
        if !ours {
            self.counters.not_for_us += 1;
            return false;
        }
        if self.dev.rx.len() >= RX_QUEUE {
            self.counters.rx_queue_full += 1;
            return false;
        }
        self.counters.packets_in += 1;
        self.dev.rx.push_back(packet.to_vec());
        true
    }

    /// Runs the stack at `now`: takes queued inbound packets, runs retransmission timers, queues outbound packets.
    pub fn poll(&mut self, now: Duration) {
        self.iface.poll(instant(now), &mut self.dev, &mut self.sockets);
    }

    /// When the stack needs [`TcpLink::poll`] again at the latest (retransmission, delayed ACK, TIME-WAIT).
    pub fn poll_at(&mut self, now: Duration) -> Option<Duration> {
        let at = self.iface.poll_at(instant(now), &self.sockets)?;
        Some(Duration::from_micros(u64::try_from(at.total_micros()).unwrap_or(0)).max(now))
    }

    /// Whether packets wait for [`TcpLink::poll_packet`].
    pub fn has_packets(&self) -> bool {
        !self.dev.tx.is_empty()
    }

    /// The next packet to seal into the tunnel.
    pub fn poll_packet(&mut self) -> Option<Vec<u8>> {
        let p = self.dev.tx.pop_front()?;
        self.counters.packets_out += 1;
        Some(p)
    }

    /// Writes as much of `data` as the send buffer takes; returns how much.
    pub fn send(&mut self, data: &[u8]) -> usize {
        self.socket_mut().send_slice(data).unwrap_or(0)
    }

    /// Hands every received octet to `f`, in order, in the chunks the receive buffer holds them.
    pub fn recv(&mut self, mut f: impl FnMut(&[u8])) {
        let socket = self.socket_mut();
        while socket.can_recv() {
            let taken = socket.recv(|b| {
                f(b);
                (b.len(), b.len())
            });
            if !matches!(taken, Ok(n) if n > 0) {
                break;
            }
        }
    }
}
