//! The socket layer: UDP 500 and 4500 on the outside address and one listen socket per forward, each with a
//! reader task (`reader.rs`: receive in batches, classify, queue in the [`Ingress`]), and the send side
//! ([`outbox`]: GSO batches at the end of each owner pass). Forward sockets are kept by [`ForwardId`], the
//! forward's dense id, so finding the socket of a reply is one index; a socket stays bound to its listen port
//! across live reconfigurations (a renamed forward keeps it).

pub mod outbox;
pub(crate) mod reader;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use iotrelay_relay::{ForwardId, Ipv4Cidr};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::datapath::Datapath;
use crate::demux::Known;
use crate::ingress::Ingress;
pub use outbox::{Outbox, SocketSink};
use reader::{Filter, ForwardFilter, ReaderDrops, spawn_reader};

/// A bound socket and its quinn-udp state (which knows whether the kernel takes UDP GSO on it), shared by the
/// socket's reader and the owner task.
pub struct Sock {
    socket: Arc<UdpSocket>,
    state: Arc<quinn_udp::UdpSocketState>,
}

impl Sock {
    pub fn new(socket: Arc<UdpSocket>) -> std::io::Result<Sock> {
        let state = quinn_udp::UdpSocketState::new((&*socket).into())?;
        // quinn-udp forbids IPv4 fragmentation (IP_PMTUDISC_PROBE: larger than the link MTU fails with EMSGSIZE).
        // Back to the kernel default, as before quinn-udp: a reply to a client or an IKE message larger than the
        // MTU is fragmented locally, and ESP sized for a 1500 MTU still leaves on a smaller link.
        rustix::net::sockopt::set_ip_mtu_discover(&*socket, rustix::net::sockopt::Ipv4PathMtuDiscovery::WANT)?;
        Ok(Sock { socket, state: Arc::new(state) })
    }

    /// The datagrams the kernel dropped on this socket because its receive queue was full, since it was opened:
    /// the socket's `sk_drops`, the counter `SO_RXQ_OVFL` reports with each datagram, read here once per status
    /// publication with `getsockopt(SO_MEMINFO)` (quinn-udp's receive path does not pass that control message
    /// on). `None` where the kernel does not report it.
    pub fn receive_queue_drops(&self) -> Option<u64> {
        receive_queue_drops(self.socket.as_fd())
    }

    /// Most datagrams one `send` may carry.
    fn max_segments(&self) -> usize {
        self.state.max_gso_segments().clamp(1, outbox::GSO_MAX_SEGMENTS)
    }

    /// One non-blocking sendmsg: one datagram, or with `segment` several of that size back to back (the last may
    /// be shorter) that the kernel splits (UDP GSO).
    ///
    /// Straight to the kernel, not through tokio's readiness (`try_io`): a socket the runtime has not polled yet
    /// counts as not writable there, so the first datagram after a bind (a relay's first IKE_SA_INIT) was refused
    /// with WouldBlock without reaching the kernel, and the tunnel came up one retransmission (1 s) late. The
    /// socket is non-blocking: a full send buffer is still WouldBlock, from the kernel.
    fn send(&self, to: SocketAddr, contents: &[u8], segment: Option<usize>) -> std::io::Result<()> {
        let t = quinn_udp::Transmit { destination: to, ecn: None, contents, segment_size: segment, src_ip: None };
        self.state.try_send((&*self.socket).into(), &t)
    }
}

#[allow(unsafe_code)] // one getsockopt: the kernel fills a fixed array whose size we pass
fn receive_queue_drops(fd: BorrowedFd<'_>) -> Option<u64> {
    const DROPS: usize = libc::SK_MEMINFO_DROPS as usize;
    let mut info = [0u32; DROPS + 1];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is valid for writes of `len` octets and the kernel writes at most `len`; `fd` is a live
    // socket for the duration of the call.
    let r = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_MEMINFO, info.as_mut_ptr().cast(), &mut len)
    };
    (r == 0 && len as usize == std::mem::size_of_val(&info)).then(|| u64::from(info[DROPS]))
}

/// Which socket a kernel receive-queue drop count belongs to (the `socket` and `forward` labels of
/// `iotrelay_socket_receive_drops`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketName {
    /// UDP 500.
    Ike,
    /// UDP 4500 (ESP and IKE after NAT-T).
    NatT,
    /// A forward's listen socket.
    Forward(String),
}

/// A forward's listen socket and its reader.
struct ForwardSocket {
    port: u16,
    sock: Sock,
    task: JoinHandle<()>,
    drops: Arc<ReaderDrops>,
    /// The reader's copy of the forward's id and allow-list (replaced on live reconfiguration).
    filter: Arc<RwLock<ForwardFilter>>,
}

/// Which socket a datagram leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SockKey {
    Ike,
    NatT,
    Forward(ForwardId),
}

/// The relay's sockets: UDP 500 and 4500 on the outside address, and one per forward listen port.
pub struct Sockets {
    ike: Sock,
    natt: Sock,
    /// Indexed by [`ForwardId`] (dense; `None` for ids of removed forwards and unbound ports).
    forwards: Vec<Option<ForwardSocket>>,
}

impl Sockets {
    /// The outside sockets; forward sockets are added by [`Sockets::bind_forwards`].
    pub fn new(ike: Arc<UdpSocket>, natt: Arc<UdpSocket>) -> std::io::Result<Sockets> {
        Ok(Sockets { ike: Sock::new(ike)?, natt: Sock::new(natt)?, forwards: Vec::new() })
    }

    /// Starts the readers of UDP 500 and 4500, which classify against `known` (what the owner task last published).
    pub fn start_outside_readers(&self, ingress: &Arc<Ingress>, known: &Arc<RwLock<Known>>) {
        for (sock, natt) in [(&self.ike, false), (&self.natt, true)] {
            spawn_reader(sock, ingress.clone(), Filter::Outside { natt, known: known.clone() });
        }
    }

    fn get(&self, key: SockKey) -> Option<&Sock> {
        match key {
            SockKey::Ike => Some(&self.ike),
            SockKey::NatT => Some(&self.natt),
            SockKey::Forward(id) => self.forward(id).map(|f| &f.sock),
        }
    }

    fn forward(&self, id: ForwardId) -> Option<&ForwardSocket> {
        self.forwards.get(id.0).and_then(Option::as_ref)
    }

    /// Each socket's kernel receive-queue drops ([`Sock::receive_queue_drops`]); forwards named as in `dp`.
    pub fn receive_queue_drops(&self, dp: &Datapath) -> Vec<(SocketName, u64)> {
        let mut out = Vec::with_capacity(2 + self.forwards.len());
        for (name, sock) in [(SocketName::Ike, &self.ike), (SocketName::NatT, &self.natt)] {
            out.extend(sock.receive_queue_drops().map(|n| (name, n)));
        }
        for (id, f) in dp.forwards() {
            if let Some(n) = self.forward(id).and_then(|s| s.sock.receive_queue_drops()) {
                out.push((SocketName::Forward(f.name.clone()), n));
            }
        }
        out
    }

    /// Takes what the forward readers dropped since the last call: (forward, `queueFull`, `sourceNotAllowed`).
    pub fn take_reader_drops(&self) -> impl Iterator<Item = (ForwardId, u64, u64)> + '_ {
        self.forwards.iter().enumerate().filter_map(|(i, f)| {
            let d = &f.as_ref()?.drops;
            Some((
                ForwardId(i),
                d.queue_full.swap(0, Ordering::Relaxed),
                d.source_not_allowed.swap(0, Ordering::Relaxed),
            ))
        })
    }

    /// Gives every forward of `dp` a listen socket: the one already bound to its port (with the forward's id and
    /// allow-list updated), or a new one; closes the sockets no forward uses; tells `dp` which forwards listen.
    pub async fn bind_forwards(&mut self, dp: &mut Datapath, ingress: &Arc<Ingress>) {
        let mut by_port: HashMap<u16, ForwardSocket> = self.forwards.drain(..).flatten().map(|f| (f.port, f)).collect();
        let wanted: Vec<(ForwardId, u16, Vec<Ipv4Cidr>)> =
            dp.forwards().map(|(id, f)| (id, f.listen_port, f.allowed_sources.clone())).collect();
        for (id, port, allowed) in wanted {
            let socket = match by_port.remove(&port) {
                Some(f) => {
                    if let Ok(mut w) = f.filter.write() {
                        *w = ForwardFilter { id, allowed };
                    }
                    Some(f)
                }
                None => bind_forward(port, ForwardFilter { id, allowed }, ingress).await,
            };
            dp.set_listening(id, socket.is_some());
            if let Some(f) = socket {
                if self.forwards.len() <= id.0 {
                    self.forwards.resize_with(id.0 + 1, || None);
                }
                self.forwards[id.0] = Some(f);
            }
        }
        for (port, f) in by_port {
            f.task.abort();
            tracing::info!(port, "forward removed: socket closed");
        }
    }
}

/// Binds a forward's listen socket and starts its reader; `None` (logged) if the port cannot be bound.
async fn bind_forward(port: u16, filter: ForwardFilter, ingress: &Arc<Ingress>) -> Option<ForwardSocket> {
    let socket = match UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(port, error = %e, "cannot bind forward listen port");
            return None;
        }
    };
    let sock = match Sock::new(socket) {
        Ok(sock) => sock,
        Err(e) => {
            tracing::error!(port, error = %e, "cannot set up the forward listen socket");
            return None;
        }
    };
    let drops = Arc::new(ReaderDrops::default());
    let filter = Arc::new(RwLock::new(filter));
    let task = spawn_reader(&sock, ingress.clone(), Filter::Forward { filter: filter.clone(), drops: drops.clone() });
    tracing::info!(port, "forward listening");
    Some(ForwardSocket { port, sock, task, drops, filter })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
