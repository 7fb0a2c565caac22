//! The I/O shell: sockets, the clock, signals, and the single owner task that drives [`Datapath`].
//!
//! Reader tasks receive datagrams in batches (quinn-udp), classify each (`demux`: datagrams from no peer, keepalives
//! and forward datagrams from outside `allowedSources` are dropped and counted right there) and queue a copy of
//! its exact length in a lane of the [`Ingress`] (bounded by bytes; a full lane drops and counts; for forwards it is
//! also the forward's `queueFull`). The owner task serves the lanes by priority (established ESP/IKE, then
//! forwards, then handshakes), a bounded number per pass. The owner task queues what it
//! sends in an [`Outbox`] and sends it at the end of each pass, in GSO batches where consecutive datagrams share
//! socket, destination and size; sends are non-blocking, so it never waits on a socket.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use iotrelay_api::validate::ValidatedForward;
use iotrelay_api::{IotRelayStatus, ValidatedSpec};
use iotrelay_crypto::RandomSource;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::admin::{Command, Published, Shared};
use crate::datapath::{Datapath, IKE_PORT, NATT_PORT, Notice, Out, Sink, TunnelPlan, allowed_cidrs};
use crate::demux::{EarlyDrop, Known, Verdict, classify_forward, classify_outside};
use crate::ingress::{BUDGETS, Datagram, Ingress, QUOTAS, Source};
use crate::status::{Owner, Place, WallClock, build_status};
use crate::tun::{GatewayDevice, TUN_BATCH, TUN_BUF};
use iotrelay_relay::{DropReason, Ipv4Cidr};

/// Receive buffer size: any UDP payload (or a GRO batch of them).
const BUF_LEN: usize = 65536;
/// How long shutdown waits for DELETE answers.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

/// The OS random generator.
pub struct OsRandom;
impl RandomSource for OsRandom {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if getrandom::fill(dest).is_err() {
            // The kernel RNG does not fail on Linux once initialized; refuse to continue with weak randomness.
            tracing::error!("OS random generator failed");
            std::process::abort();
        }
    }
}

/// Default outside address: the source address the kernel routes to `peer` from.
pub fn route_source(peer: Ipv4Addr) -> std::io::Result<Ipv4Addr> {
    let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    s.connect((peer, IKE_PORT))?;
    match s.local_addr()? {
        SocketAddr::V4(a) => Ok(*a.ip()),
        SocketAddr::V6(_) => Err(std::io::Error::other("no IPv4 route to the peer")),
    }
}

/// Datagrams per receive call (recvmmsg).
const BATCH: usize = quinn_udp::BATCH_SIZE;

/// What a forward's reader dropped, for the owner to count on the forward.
#[derive(Default)]
struct ReaderDrops {
    queue_full: AtomicU64,
    source_not_allowed: AtomicU64,
}

/// How a reader classifies what it receives.
#[derive(Clone)]
enum Filter {
    /// UDP 500 (`natt` false) or 4500, against what the owner task last published.
    Outside { natt: bool, known: Arc<RwLock<Known>> },
    /// A forward's listen port, against its allow-list.
    Forward { allowed: Arc<RwLock<Vec<Ipv4Cidr>>>, drops: Arc<ReaderDrops> },
}

/// Receives with quinn-udp (recvmmsg; GRO where the kernel has it: one buffer may hold several datagrams of
/// `stride` octets) into buffers reused across calls, classifies each datagram and queues a copy of its exact
/// length in its [`Ingress`] lane.
fn spawn_reader(sock: &Sock, source: Source, ingress: Arc<Ingress>, filter: Filter) -> JoinHandle<()> {
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
                match &filter {
                    Filter::Outside { natt, known } => {
                        let Ok(known) = known.read() else { return };
                        for d in datagrams {
                            match classify_outside(&known, m.addr, d, *natt) {
                                Verdict::Queue(lane) => {
                                    ingress.push(lane, source, m.addr, d);
                                }
                                Verdict::Drop(EarlyDrop::NotPeer) => {
                                    ingress.early.not_peer.fetch_add(1, Ordering::Relaxed);
                                }
                                Verdict::Drop(_) => {}
                            }
                        }
                    }
                    Filter::Forward { allowed, drops } => {
                        let verdict = match allowed.read() {
                            Ok(a) => classify_forward(&a, m.addr),
                            Err(_) => return,
                        };
                        for d in datagrams {
                            match verdict {
                                Verdict::Queue(lane) => {
                                    if !ingress.push(lane, source, m.addr, d) {
                                        drops.queue_full.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                Verdict::Drop(_) => {
                                    drops.source_not_allowed.fetch_add(1, Ordering::Relaxed);
                                    ingress.early.source_not_allowed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

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

    /// Most datagrams one `send` may carry.
    fn max_segments(&self) -> usize {
        self.state.max_gso_segments().clamp(1, GSO_MAX_SEGMENTS)
    }

    /// One non-blocking sendmsg: one datagram, or with `segment` several of that size back to back (the last may
    /// be shorter) that the kernel splits (UDP GSO).
    fn send(&self, to: SocketAddr, contents: &[u8], segment: Option<usize>) -> std::io::Result<()> {
        let t = quinn_udp::Transmit { destination: to, ecn: None, contents, segment_size: segment, src_ip: None };
        self.socket.try_io(Interest::WRITABLE, || self.state.try_send((&*self.socket).into(), &t))
    }
}

struct ForwardSocket {
    sock: Sock,
    task: JoinHandle<()>,
    drops: Arc<ReaderDrops>,
    /// The reader's copy of the forward's allow-list (replaced on live reconfiguration).
    allowed: Arc<RwLock<Vec<Ipv4Cidr>>>,
}

/// The relay's sockets: UDP 500 and 4500 on the outside address, and one per forward listen port.
pub struct Sockets {
    ike: Sock,
    natt: Sock,
    /// By listen port.
    forwards: HashMap<u16, ForwardSocket>,
}

impl Sockets {
    /// The outside sockets; forward sockets are added as forwards are configured.
    pub fn new(ike: Arc<UdpSocket>, natt: Arc<UdpSocket>) -> std::io::Result<Sockets> {
        Ok(Sockets { ike: Sock::new(ike)?, natt: Sock::new(natt)?, forwards: HashMap::new() })
    }

    fn get(&self, key: SockKey) -> Option<&Sock> {
        match key {
            SockKey::Ike => Some(&self.ike),
            SockKey::NatT => Some(&self.natt),
            SockKey::Forward(port) => self.forwards.get(&port).map(|f| &f.sock),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SockKey {
    Ike,
    NatT,
    Forward(u16),
}

/// Most datagrams in one GSO send (the kernel's UDP_MAX_SEGMENTS is 64 before Linux 6.9).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most octets in one GSO send: the whole must fit one IPv4 datagram (65535 minus headers).
const GSO_MAX_BYTES: usize = 65000;
/// Queued octets beyond which the outbox sends what it holds before taking more.
const OUTBOX_BYTES: usize = 1 << 20;

/// Consecutive queued datagrams from one socket to one destination, all `segment` octets long except possibly a
/// shorter last one: one sendmsg.
#[derive(Debug, Clone, Copy)]
struct Run {
    key: SockKey,
    to: SocketAddr,
    /// Octets `start..end` of the outbox buffer.
    start: usize,
    end: usize,
    segment: usize,
    /// Datagrams in the run; the first is `Outbox::tags[first]`.
    count: usize,
    first: usize,
    /// A shorter datagram ended it (GSO allows only the last segment to be short).
    closed: bool,
}

/// Outgoing datagrams of one pass of the owner loop, sent when the pass ends ([`SocketSink::flush`]). Consecutive
/// datagrams from the same socket to the same destination with the same length (a burst of relayed packets
/// sealed for one peer, or replies to one client) leave in one sendmsg with UDP GSO (quinn-udp) instead of one
/// syscall each. Order is kept: runs are sent in the order they were queued. With `batched` false every datagram
/// is sent at once with its own syscall (the baseline the bench compares against).
pub struct Outbox {
    batched: bool,
    buf: Vec<u8>,
    runs: Vec<Run>,
    /// For each queued datagram, the forward to count it against (`queueFull`) if its send fails.
    tags: Vec<Option<usize>>,
    /// Forward indices of datagrams whose send failed, one entry each.
    failed: Vec<usize>,
}

impl Outbox {
    pub fn new(batched: bool) -> Outbox {
        Outbox {
            batched,
            buf: Vec::with_capacity(if batched { OUTBOX_BYTES + BUF_LEN } else { 0 }),
            runs: Vec::new(),
            tags: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// Forward indices of datagrams whose send failed at the last flushes (one entry each).
    pub fn take_failed(&mut self) -> std::vec::Drain<'_, usize> {
        self.failed.drain(..)
    }

    fn push(&mut self, sockets: &Sockets, key: SockKey, to: SocketAddr, data: &[u8], tag: Option<usize>) -> bool {
        let Some(sock) = sockets.get(key) else { return false };
        if !self.batched {
            // The path before batching, kept as the bench's baseline: one sendto per datagram.
            return match sock.socket.try_send_to(data, to) {
                Ok(_) => true,
                Err(e) => {
                    tracing::debug!(error = %e, %to, "send failed");
                    false
                }
            };
        }
        if self.buf.len() + data.len() > OUTBOX_BYTES {
            self.flush(sockets);
        }
        let max_segments = sock.max_segments();
        let start = self.buf.len();
        self.buf.extend_from_slice(data);
        self.tags.push(tag);
        if let Some(r) = self.runs.last_mut()
            && r.key == key
            && r.to == to
            && !r.closed
            && r.count < max_segments
            && !data.is_empty()
            && data.len() <= r.segment
            && r.end - r.start + data.len() <= GSO_MAX_BYTES
        {
            r.end += data.len();
            r.count += 1;
            r.closed = data.len() < r.segment;
            return true;
        }
        let first = self.tags.len() - 1;
        let closed = data.is_empty();
        self.runs.push(Run { key, to, start, end: self.buf.len(), segment: data.len(), count: 1, first, closed });
        true
    }

    /// Sends everything queued, in order; failed datagrams are noted for [`Outbox::take_failed`].
    fn flush(&mut self, sockets: &Sockets) {
        let Outbox { buf, runs, tags, failed, .. } = self;
        let mut fail = |first: usize, count: usize| {
            failed.extend(tags[first..first + count].iter().flatten());
        };
        for r in runs.drain(..) {
            let Some(sock) = sockets.get(r.key) else {
                fail(r.first, r.count);
                continue;
            };
            let data = &buf[r.start..r.end];
            let segment = (r.count > 1).then_some(r.segment);
            match sock.send(r.to, data, segment) {
                Ok(()) => {}
                Err(e) if segment.is_some() && e.kind() != std::io::ErrorKind::WouldBlock => {
                    // GSO refused (quinn-udp stops offering it on this socket after EIO/EINVAL): one by one.
                    tracing::debug!(error = %e, to = %r.to, "GSO send failed; sending the datagrams one by one");
                    for (k, d) in data.chunks(r.segment).enumerate() {
                        if let Err(e) = sock.send(r.to, d, None) {
                            tracing::debug!(error = %e, to = %r.to, "send failed");
                            fail(r.first + k, 1);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, to = %r.to, datagrams = r.count, "send failed");
                    fail(r.first, r.count);
                }
            }
        }
        buf.clear();
        tags.clear();
    }
}

/// The datapath's [`Sink`] onto the sockets, through an [`Outbox`].
pub struct SocketSink<'a> {
    sockets: &'a Sockets,
    /// Forward index -> listen port.
    ports: &'a [u16],
    outbox: &'a mut Outbox,
    /// Gateway mode's TUN device: inner packets are written to it at once (one write each, non-blocking).
    tun: Option<&'a GatewayDevice>,
}

impl<'a> SocketSink<'a> {
    pub fn new(sockets: &'a Sockets, ports: &'a [u16], outbox: &'a mut Outbox) -> Self {
        SocketSink { sockets, ports, outbox, tun: None }
    }

    /// With gateway mode's device.
    pub fn with_tun(mut self, tun: Option<&'a GatewayDevice>) -> Self {
        self.tun = tun;
        self
    }

    /// Sends what the outbox holds.
    pub fn flush(&mut self) {
        self.outbox.flush(self.sockets);
    }

    fn queue(&mut self, out: Out, data: &[u8], tag: Option<usize>) -> bool {
        let (key, to) = match out {
            Out::Outside { local_port: NATT_PORT, remote } => (SockKey::NatT, remote),
            Out::Outside { remote, .. } => (SockKey::Ike, remote),
            Out::Forward { index, client } => {
                let Some(port) = self.ports.get(index) else { return false };
                (SockKey::Forward(*port), SocketAddr::V4(client))
            }
            Out::Tun => return self.tun.is_some_and(|t| t.try_send(data)),
        };
        self.outbox.push(self.sockets, key, to, data, tag)
    }
}

impl Sink for SocketSink<'_> {
    fn send(&mut self, out: Out, data: &[u8]) -> bool {
        let tag = match out {
            Out::Forward { index, .. } => Some(index),
            Out::Outside { .. } | Out::Tun => None,
        };
        self.queue(out, data, tag)
    }

    fn send_for(&mut self, forward: usize, out: Out, data: &[u8]) -> bool {
        self.queue(out, data, Some(forward))
    }
}

/// Live changes from the in-cluster watcher.
pub enum Reconfigure {
    Forwards(Vec<ValidatedForward>),
    /// `spec.maxSessionsPerSource`.
    SessionsPerSource(usize),
    Psk {
        tunnel: String,
        psk: Zeroizing<Vec<u8>>,
    },
    /// The IotRelay generation now applied (the relay's conditions report it as `observedGeneration`).
    Generation(Option<i64>),
}

/// Everything the owner task needs.
pub struct RunSpec {
    pub spec: ValidatedSpec,
    pub psks: Vec<Zeroizing<Vec<u8>>>,
    pub generation: Option<i64>,
    pub owner: Owner,
    /// The Kubernetes node (downward API), for `status.nodeName`.
    pub node_name: Option<String>,
}

/// Hooks for the in-cluster mode: live reconfiguration in, status and notices out.
pub struct Hooks {
    pub reconfigure: mpsc::Receiver<Reconfigure>,
    pub status: watch::Sender<IotRelayStatus>,
    pub notices: mpsc::Sender<Notice>,
}

/// Runs the relay until SIGTERM/SIGINT, then closes the tunnels (DELETE) and returns.
pub async fn run(
    rs: RunSpec,
    shared: Arc<Shared>,
    mut commands: mpsc::Receiver<Command>,
    mut hooks: Option<Hooks>,
) -> anyhow::Result<()> {
    let spec = &rs.spec;
    let local = match spec.local_address {
        Some(a) => a,
        None => {
            let peer = spec.tunnels.first().map(|t| t.peer).context("no tunnel configured")?;
            let a = route_source(peer).with_context(|| format!("finding the source address of the route to {peer}"))?;
            tracing::info!(local_address = %a, "localAddress not set: using the route's source address");
            a
        }
    };
    let bind = |port: u16| async move {
        UdpSocket::bind((local, port)).await.with_context(|| format!("binding UDP {local}:{port}"))
    };
    let ike = Arc::new(bind(IKE_PORT).await?);
    let natt = Arc::new(bind(NATT_PORT).await?);
    let ingress = Arc::new(Ingress::new(BUDGETS));
    let known =
        Arc::new(RwLock::new(Known { peers: spec.tunnels.iter().map(|t| t.peer).collect(), ..Default::default() }));
    let mut sockets = Sockets::new(ike, natt).context("setting up the outside sockets")?;
    let outside = |natt| Filter::Outside { natt, known: known.clone() };
    spawn_reader(&sockets.ike, Source::Ike, ingress.clone(), outside(false));
    spawn_reader(&sockets.natt, Source::NatT, ingress.clone(), outside(true));
    let mut outbox = Outbox::new(true);
    let mut known_gen = 0;
    let mut batch: Vec<Datagram> = Vec::with_capacity(QUOTAS.iter().sum());

    let origin = Instant::now();
    let wall = WallClock { origin: Timestamp::now() };
    let now = || origin.elapsed();
    let mut rng = OsRandom;

    let plans: Vec<TunnelPlan> = spec
        .tunnels
        .iter()
        .zip(rs.psks.iter())
        .map(|(t, psk)| TunnelPlan {
            name: t.name.clone(),
            peer: t.peer,
            config: crate::config::ike_config(spec, psk.clone(), local),
        })
        .collect();
    let mut dp = Datapath::new(
        spec.inside_address,
        spec.esp.replay_window,
        local,
        plans,
        spec.forwards.clone(),
        now(),
        &mut rng,
    );
    let mut tun = match &spec.gateway {
        Some(g) => {
            dp.set_gateway(Some(crate::gateway::GatewayConfig {
                mtu: g.mtu,
                remote_subnets: spec.remote_subnets.clone(),
            }));
            Some(GatewayDevice::open(g, spec.inside_address).await?)
        }
        None => None,
    };
    if let Some(plan) = crate::datapath::BgpPlan::from_spec(spec) {
        dp.set_bgp(plan, &mut rng).map_err(anyhow::Error::msg).context("setting up BGP")?;
    }
    let mut tun_buf = vec![0u8; TUN_BUF];
    dp.set_max_sessions_per_source(spec.max_sessions_per_source);
    let mut ports: Vec<u16> = Vec::new();
    bind_forwards(&mut dp, &mut sockets, &mut ports, &ingress).await;
    {
        let mut sink = SocketSink::new(&sockets, &ports, &mut outbox);
        dp.drain(&mut sink);
        publish_known(&dp, &known, &mut known_gen);
        sink.flush();
    }

    let public_identity = match spec.local_identity {
        Some(iotrelay_api::validate::Identity::Ipv4(a)) => Some(a),
        _ => None,
    };
    let mut publisher = Publisher {
        place: Place { node_name: rs.node_name.clone(), outside_address: local, public_identity },
        owner: rs.owner,
        generation: rs.generation,
        wall,
        conditions: Vec::new(),
        published_gen: 0,
        last_publish: Instant::now(),
        ingress: ingress.clone(),
        notices_dropped: 0,
    };
    publisher.publish(&dp, &shared, hooks.as_ref(), true);

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let publish_every = Duration::from_secs(1);
    loop {
        let next = dp.poll_timeout().map(|d| origin + d);
        let tick = publisher.last_publish + publish_every;
        let deadline = next.map_or(tick, |n| n.min(tick));
        tokio::select! {
            biased;
            _ = sigterm.recv() => { tracing::info!("SIGTERM: closing tunnels"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: closing tunnels"); break; }
            Some(cmd) = commands.recv() => match cmd {
                Command::Rekey { tunnel, ike, reply } => {
                    let r = match dp.tunnel_index(&tunnel) {
                        Some(i) => { dp.rekey(i, ike, now(), &mut rng); Ok(()) }
                        None => Err(format!("no tunnel named {tunnel:?}")),
                    };
                    let _ = reply.send(r);
                }
            },
            Some(rc) = async { match hooks.as_mut() { Some(h) => h.reconfigure.recv().await, None => None } } => {
                match rc {
                    Reconfigure::Forwards(f) => {
                        tracing::info!(forwards = f.len(), "forwards changed");
                        dp.set_forwards(f);
                        bind_forwards(&mut dp, &mut sockets, &mut ports, &ingress).await;
                    }
                    Reconfigure::SessionsPerSource(n) => {
                        tracing::info!(max_sessions_per_source = n, "maxSessionsPerSource changed");
                        dp.set_max_sessions_per_source(n);
                    }
                    Reconfigure::Psk { tunnel, psk } => {
                        if let Some(i) = dp.tunnel_index(&tunnel) {
                            tracing::info!(%tunnel, "pre-shared key changed: used from the next IKE SA");
                            dp.set_psk(i, psk);
                        }
                    }
                    Reconfigure::Generation(g) => {
                        publisher.generation = g;
                        publisher.publish(&dp, &shared, hooks.as_ref(), true);
                    }
                }
            }
            _ = ingress.ready() => {
                // A bounded batch, established lane first; timers and sends run after it (end_pass).
                let mut sink = SocketSink::new(&sockets, &ports, &mut outbox).with_tun(tun.as_ref());
                let t = now();
                ingress.pop_batch(&mut batch, QUOTAS);
                for d in batch.drain(..) {
                    handle_input(&mut dp, t, &mut rng, &ports, d, &mut sink);
                }
            }
            Ok(()) = async { match tun.as_ref() { Some(t) => t.readable().await, None => std::future::pending().await } } => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
        // One pass's datagrams leave together (GSO runs); failed sends count as queueFull on their forward.
        let mut sink = SocketSink::new(&sockets, &ports, &mut outbox).with_tun(tun.as_ref());
        if let Some(t) = tun.as_ref() {
            // Gateway: a bounded batch from the device each pass (non-blocking reads into one reused buffer).
            let at = now();
            for _ in 0..TUN_BATCH {
                let Ok(n) = t.try_recv(&mut tun_buf) else { break };
                dp.handle_tun(at, &mut rng, &mut tun_buf[..n], &mut sink);
            }
        }
        end_pass(&mut dp, now(), &mut rng, &mut sink, &known, &mut known_gen);
        for i in outbox.take_failed() {
            dp.count_forward_drops(i, DropReason::QueueFull, 1);
        }
        for (port, f) in &sockets.forwards {
            if let Some(i) = ports.iter().position(|p| p == port) {
                dp.count_forward_drops(i, DropReason::QueueFull, f.drops.queue_full.swap(0, Ordering::Relaxed));
                let n = f.drops.source_not_allowed.swap(0, Ordering::Relaxed);
                dp.count_forward_drops(i, DropReason::SourceNotAllowed, n);
            }
        }
        for n in dp.take_notices() {
            if let Some(h) = hooks.as_ref()
                && h.notices.try_send(n).is_err()
            {
                publisher.notices_dropped += 1;
            }
        }
        // Without `gateway.mtu` the device takes the negotiated suite's MTU; with it, the device keeps what was
        // configured and the datapath enforces the suite's limit (ICMP "fragmentation needed" or fragmentation).
        if let (Some(t), Some(mtu), None) = (tun.as_mut(), dp.gateway_mtu(), spec.gateway.as_ref().and_then(|g| g.mtu))
        {
            t.set_mtu(mtu).await;
        }
        publisher.publish(&dp, &shared, hooks.as_ref(), false);
    }

    // Shutdown: DELETE for every IKE SA, wait briefly for the answers.
    dp.close_all(now(), &mut rng);
    {
        let mut sink = SocketSink::new(&sockets, &ports, &mut outbox);
        dp.drain(&mut sink);
        sink.flush();
    }
    let until = Instant::now() + SHUTDOWN_WAIT;
    while dp.closing() && Instant::now() < until {
        let next = dp.poll_timeout().map_or(until, |d| (origin + d).min(until));
        tokio::select! {
            _ = ingress.ready() => {
                let mut sink = SocketSink::new(&sockets, &ports, &mut outbox);
                let t = now();
                ingress.pop_batch(&mut batch, QUOTAS);
                for d in batch.drain(..) {
                    handle_input(&mut dp, t, &mut rng, &ports, d, &mut sink);
                }
            }
            _ = tokio::time::sleep_until(next) => {}
        }
        let mut sink = SocketSink::new(&sockets, &ports, &mut outbox);
        end_pass(&mut dp, now(), &mut rng, &mut sink, &known, &mut known_gen);
    }
    publisher.publish(&dp, &shared, hooks.as_ref(), true);
    tracing::info!(acknowledged = !dp.closing(), "tunnels closed");
    if let Some(t) = tun.take() {
        t.close().await;
    }
    Ok(())
}

/// The end of one pass of the owner loop: timers that are due, then everything the engines queued; the readers
/// learn the SPIs of SAs installed in this pass before the answers that complete them leave.
fn end_pass(
    dp: &mut Datapath,
    t: Duration,
    rng: &mut dyn RandomSource,
    sink: &mut SocketSink<'_>,
    known: &RwLock<Known>,
    known_gen: &mut u64,
) {
    if dp.poll_timeout().is_some_and(|d| t >= d) {
        dp.handle_timeout(t, rng, sink);
    }
    dp.drain(sink);
    publish_known(dp, known, known_gen);
    sink.flush();
}

/// Refreshes the readers' [`Known`] after a state change.
fn publish_known(dp: &Datapath, known: &RwLock<Known>, known_gen: &mut u64) {
    if dp.generation != *known_gen {
        *known_gen = dp.generation;
        let k = dp.known();
        if let Ok(mut w) = known.write() {
            *w = k;
        }
    }
}

fn handle_input(
    dp: &mut Datapath,
    now: Duration,
    rng: &mut OsRandom,
    ports: &[u16],
    mut d: Datagram,
    sink: &mut SocketSink<'_>,
) {
    match d.source {
        Source::Ike => dp.handle_udp500(now, rng, d.from, &d.data),
        Source::NatT => dp.handle_udp4500(now, rng, d.from, &mut d.data, sink),
        Source::Forward(port) => {
            if let (Some(i), SocketAddr::V4(client)) = (ports.iter().position(|p| *p == port), d.from) {
                dp.handle_forward(now, rng, i, client, &d.data, sink);
            }
        }
    }
}

/// Binds a socket for every forward's listen port not bound yet and closes the ones no forward uses.
async fn bind_forwards(dp: &mut Datapath, sockets: &mut Sockets, ports: &mut Vec<u16>, ingress: &Arc<Ingress>) {
    let wanted: Vec<u16> = dp.forwards().map(|f| f.listen_port).collect();
    let allow: Vec<Vec<Ipv4Cidr>> = dp.forwards().map(allowed_cidrs).collect();
    sockets.forwards.retain(|port, f| {
        let keep = wanted.contains(port);
        if !keep {
            f.task.abort();
            tracing::info!(port, "forward removed: socket closed");
        }
        keep
    });
    for (i, port) in wanted.iter().enumerate() {
        if !sockets.forwards.contains_key(port) {
            match UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, *port)).await {
                Ok(s) => {
                    let socket = Arc::new(s);
                    let sock = match Sock::new(socket.clone()) {
                        Ok(sock) => sock,
                        Err(e) => {
                            tracing::error!(port, error = %e, "cannot set up the forward listen socket");
                            dp.set_listening(i, false);
                            continue;
                        }
                    };
                    let drops = Arc::new(ReaderDrops::default());
                    let allowed = Arc::new(RwLock::new(allow[i].clone()));
                    let filter = Filter::Forward { allowed: allowed.clone(), drops: drops.clone() };
                    let task = spawn_reader(&sock, Source::Forward(*port), ingress.clone(), filter);
                    sockets.forwards.insert(*port, ForwardSocket { sock, task, drops, allowed });
                    tracing::info!(port, "forward listening");
                }
                Err(e) => tracing::error!(port, error = %e, "cannot bind forward listen port"),
            }
        }
        if let Some(f) = sockets.forwards.get(port)
            && let Ok(mut a) = f.allowed.write()
        {
            *a = allow[i].clone();
        }
        dp.set_listening(i, sockets.forwards.contains_key(port));
    }
    *ports = wanted;
}

struct Publisher {
    place: Place,
    owner: Owner,
    generation: Option<i64>,
    wall: WallClock,
    conditions: Vec<Condition>,
    published_gen: u64,
    last_publish: Instant,
    ingress: Arc<Ingress>,
    /// Notices (for Events) the in-cluster writer had no room for.
    notices_dropped: u64,
}

impl Publisher {
    /// Refreshes `/status` on every state change and once a second for counters; pushes to the in-cluster
    /// writer (which rate-limits counter-only updates itself).
    fn publish(&mut self, dp: &Datapath, shared: &Shared, hooks: Option<&Hooks>, force: bool) {
        let changed = dp.generation != self.published_gen;
        if !force && !changed && self.last_publish.elapsed() < Duration::from_secs(1) {
            return;
        }
        let (tunnels, forwards, drops) = dp.snapshot();
        let status = build_status(
            self.owner,
            self.generation,
            &self.place,
            &tunnels,
            &forwards,
            drops.clone(),
            &self.wall,
            Time(Timestamp::now()),
            &self.conditions,
        );
        self.conditions = status.conditions.clone();
        self.published_gen = dp.generation;
        self.last_publish = Instant::now();
        if let Some(h) = hooks {
            h.status.send_replace(status.clone());
        }
        if let Ok(mut p) = shared.published.lock() {
            *p = Published {
                status,
                tunnels,
                forwards,
                datapath: drops,
                ingress: self.ingress.stats(),
                not_peer: self.ingress.early.not_peer.load(Ordering::Relaxed),
                notices_dropped: self.notices_dropped,
                gateway: dp.gateway_on().then(|| dp.gateway_counters()),
            };
        }
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
