//! The socket readers: one task per socket receives datagrams in batches (quinn-udp), classifies each (`demux`:
//! datagrams from no peer, keepalives and forward datagrams from outside `allowedSources` are dropped and counted
//! right there) and queues a copy of its exact length in a lane of the [`Ingress`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use iotrelay_relay::{ForwardId, Ipv4Cidr};
use tokio::io::Interest;
use tokio::task::JoinHandle;

use super::Sock;
use crate::demux::{EarlyDrop, Known, Verdict, classify_forward, classify_outside};
use crate::ingress::{Ingress, Source};

/// Receive buffer size: any UDP payload (or a GRO batch of them).
pub(crate) const BUF_LEN: usize = 65536;
/// Datagrams per receive call (recvmmsg).
const BATCH: usize = quinn_udp::BATCH_SIZE;

/// What a forward's reader dropped, for the owner to count on the forward.
#[derive(Default)]
pub(crate) struct ReaderDrops {
    pub(crate) queue_full: AtomicU64,
    pub(crate) source_not_allowed: AtomicU64,
}

/// What a forward's reader knows of the forward it serves; replaced on live reconfiguration (a socket stays with
/// its listen port, so a renamed forward's socket gets the new id).
#[derive(Clone)]
pub(crate) struct ForwardFilter {
    pub(crate) id: ForwardId,
    pub(crate) allowed: Vec<Ipv4Cidr>,
}

/// How a reader classifies what it receives.
#[derive(Clone)]
pub(crate) enum Filter {
    /// UDP 500 (`natt` false) or 4500, against what the owner task last published.
    Outside { natt: bool, known: Arc<RwLock<Known>> },
    /// A forward's listen port, against its allow-list.
    Forward { filter: Arc<RwLock<ForwardFilter>>, drops: Arc<ReaderDrops> },
}

/// Receives with quinn-udp (recvmmsg; GRO where the kernel has it: one buffer may hold several datagrams of
/// `stride` octets) into buffers reused across calls, classifies each datagram and queues a copy of its exact
/// length in its [`Ingress`] lane.
pub(crate) fn spawn_reader(sock: &Sock, ingress: Arc<Ingress>, filter: Filter) -> JoinHandle<()> {
    let (socket, state) = (sock.socket.clone(), sock.state.clone());
    tokio::spawn(async move {
        let mut bufs: [Vec<u8>; BATCH] = std::array::from_fn(|_| vec![0u8; BUF_LEN]);
        let mut meta = [quinn_udp::RecvMeta::default(); BATCH];
        loop {
            if socket.readable().await.is_err() {
                return;
            }
            let n = {
                let mut iovs = bufs.each_mut().map(|b| std::io::IoSliceMut::new(b.as_mut_slice()));
                match socket.try_io(Interest::READABLE, || state.recv((&*socket).into(), &mut iovs, &mut meta)) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => {
                        // ICMP errors surface as recv errors on Linux; keep going.
                        tracing::debug!(error = %e, "recv error");
                        continue;
                    }
                }
            };
            for (m, buf) in meta.iter().zip(bufs.iter()).take(n) {
                let len = m.len.min(buf.len());
                let stride = if m.stride == 0 { len.max(1) } else { m.stride };
                let datagrams = buf[..len].chunks(stride);
                let alive = match &filter {
                    Filter::Outside { natt, known } => outside(&ingress, known, *natt, m.addr, datagrams),
                    Filter::Forward { filter, drops } => forward(&ingress, filter, drops, m.addr, datagrams),
                };
                if !alive {
                    return;
                }
            }
        }
    })
}

/// Queues the datagrams of one receive on UDP 500 or 4500; false if the owner's state is poisoned.
fn outside<'a>(
    ingress: &Ingress,
    known: &RwLock<Known>,
    natt: bool,
    from: SocketAddr,
    datagrams: impl Iterator<Item = &'a [u8]>,
) -> bool {
    let Ok(known) = known.read() else { return false };
    let source = if natt { Source::NatT } else { Source::Ike };
    for d in datagrams {
        match classify_outside(&known, from, d, natt) {
            Verdict::Queue(lane) => {
                ingress.push(lane, source, from, d);
            }
            Verdict::Drop(EarlyDrop::NotPeer) => {
                ingress.early.not_peer.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Drop(_) => {}
        }
    }
    true
}

/// Queues the datagrams of one receive on a forward's listen port, tagged with the forward's id; false if the
/// owner's state is poisoned.
fn forward<'a>(
    ingress: &Ingress,
    filter: &RwLock<ForwardFilter>,
    drops: &ReaderDrops,
    from: SocketAddr,
    datagrams: impl Iterator<Item = &'a [u8]>,
) -> bool {
    let (id, verdict) = match filter.read() {
        Ok(f) => (f.id, classify_forward(&f.allowed, from)),
        Err(_) => return false,
    };
    for d in datagrams {
        match verdict {
            Verdict::Queue(lane) => {
                if !ingress.push(lane, Source::Forward(id), from, d) {
                    drops.queue_full.fetch_add(1, Ordering::Relaxed);
                }
            }
            Verdict::Drop(_) => {
                drops.source_not_allowed.fetch_add(1, Ordering::Relaxed);
                ingress.early.source_not_allowed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    true
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
