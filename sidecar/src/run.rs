//! The owner loop: the single task that owns the [`Datapath`] and drives it from the sockets, the clock, signals,
//! admin commands and live reconfiguration. Each pass takes a bounded batch from the [`Ingress`] (established
//! ESP/IKE, then forwards, then handshakes), runs the timers that are due, sends what the pass produced (the
//! [`Outbox`], GSO batches) and republishes the status when something changed (`publish`). The sockets, their
//! readers and the send side are `sockets`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use iotrelay_api::validate::ValidatedForward;
use iotrelay_api::{IotRelayStatus, ValidatedSpec};
use iotrelay_crypto::RandomSource;
use k8s_openapi::jiff::Timestamp;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::admin::{Command, Shared};
use crate::datapath::{Datapath, IKE_PORT, NATT_PORT, Notice, TunnelPlan};
use crate::demux::Known;
use crate::gateway::GatewayDrop;
use crate::ingress::{BUDGETS, Datagram, Ingress, QUOTAS, Source};
use crate::publish::Publisher;
use crate::sockets::outbox::TunSide;
use crate::sockets::{Outbox, SocketSink, Sockets};
use crate::status::{Owner, Place, WallClock};
use crate::tun::{GatewayDevice, TunIo, TunReader};
use crate::tun_gro::TunOutbox;
use iotrelay_relay::DropReason;

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
    /// Which end of the BGP sessions the relay plays (`--bgp-aws-side` in standalone mode).
    pub bgp_role: crate::datapath::BgpRole,
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
    sockets.start_outside_readers(&ingress, &known);
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
                local: spec.gateway_local(),
            }));
            Some(GatewayDevice::open(g, spec.inside_address).await?)
        }
        None => None,
    };
    if let Some(plan) = crate::datapath::BgpPlan::from_spec(spec, rs.bgp_role) {
        dp.set_bgp(plan, &mut rng).map_err(anyhow::Error::msg).context("setting up BGP")?;
    }
    let (mut routes_version, mut routes_failed) = (0u64, false);
    // Gateway mode's device I/O: its buffers are taken once, here (nothing is allocated per packet).
    let mut tun_rx = TunReader::default();
    let mut tun_tx = TunOutbox::new(tun.as_ref().is_some_and(GatewayDevice::vnet))
        .with_uso(tun.as_ref().is_some_and(|t| t.io_mode().uso));
    let mut tun_io = tun.as_ref().map_or_else(TunIo::default, GatewayDevice::io_mode);
    let mut tun_failed = 0u64;
    macro_rules! tun_side {
        () => {
            tun.as_ref().map(|dev| TunSide { dev, outbox: &mut tun_tx, io: &mut tun_io, failed: &mut tun_failed })
        };
    }
    dp.set_max_sessions_per_source(spec.max_sessions_per_source);
    sockets.bind_forwards(&mut dp, &ingress).await;
    {
        let mut sink = SocketSink::new(&sockets, &mut outbox);
        dp.drain(&mut sink);
        publish_known(&dp, &known, &mut known_gen);
        sink.flush();
    }

    let public_identity = match spec.local_identity {
        Some(iotrelay_api::Identity::Ipv4(a)) => Some(a),
        _ => None,
    };
    let place = Place { node_name: rs.node_name.clone(), outside_address: local, public_identity };
    let mut publisher = Publisher::new(place, rs.owner, rs.generation, wall, ingress.clone());
    publisher.publish(&dp, &sockets, &shared, hooks.as_ref().map(|h| &h.status), true);

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    loop {
        let next = dp.poll_timeout().map(|d| origin + d);
        let tick = publisher.next_tick();
        let deadline = next.map_or(tick, |n| n.min(tick));
        tokio::select! {
            biased;
            _ = sigterm.recv() => { tracing::info!("SIGTERM: closing tunnels"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: closing tunnels"); break; }
            Some(cmd) = commands.recv() => match cmd {
                Command::Rekey { tunnel, ike, reply } => {
                    let r = match dp.tunnel_index(&tunnel) {
                        Some(i) => { dp.rekey(i, ike, now()); Ok(()) }
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
                        sockets.bind_forwards(&mut dp, &ingress).await;
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
                        publisher.publish(&dp, &sockets, &shared, hooks.as_ref().map(|h| &h.status), true);
                    }
                }
            }
            _ = ingress.ready() => {
                // A bounded batch, established lane first; timers and sends run after it (end_pass).
                let mut sink = SocketSink::new(&sockets, &mut outbox).with_tun(tun_side!());
                let t = now();
                ingress.pop_batch(&mut batch, QUOTAS);
                for d in &mut batch {
                    handle_input(&mut dp, t, d, &mut sink);
                }
                ingress.recycle(&mut batch);
            }
            Ok(()) = async { match tun.as_ref() { Some(t) => t.readable().await, None => std::future::pending().await } } => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
        // One pass's datagrams leave together (GSO runs); failed sends count as queueFull on their forward.
        let mut refused = 0;
        let mut sink = SocketSink::new(&sockets, &mut outbox).with_tun(tun_side!());
        if let Some(t) = tun.as_ref() {
            // Gateway: a bounded batch of reads from the device each pass (non-blocking, into reused buffers; a
            // super-packet's segments one by one), encrypted into the pass's batched sends.
            let at = now();
            let mut rx_io = TunIo::default();
            refused = tun_rx.read_batch(t, &mut rx_io, &mut |p| dp.handle_tun(at, p, &mut sink));
            tun_io.reads += rx_io.reads;
            tun_io.packets_read += rx_io.packets_read;
            sink = SocketSink::new(&sockets, &mut outbox).with_tun(tun_side!());
        }
        end_pass(&mut dp, now(), &mut rng, &mut sink, &known, &mut known_gen);
        if tun.is_some() {
            dp.count_gateway_drops(GatewayDrop::NotIpv4, refused);
            dp.count_gateway_drops(GatewayDrop::SendFailed, std::mem::take(&mut tun_failed));
            dp.set_tun_io(tun_io);
        }
        for i in outbox.take_failed() {
            dp.count_forward_drops(i, DropReason::QueueFull, 1);
        }
        for (id, queue_full, source_not_allowed) in sockets.take_reader_drops() {
            dp.count_forward_drops(id, DropReason::QueueFull, queue_full);
            dp.count_forward_drops(id, DropReason::SourceNotAllowed, source_not_allowed);
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
        // Gateway mode with BGP: the learned prefixes are the device's routes, as they come and go.
        if let (Some(t), Some((v, routes))) = (tun.as_mut(), dp.gateway_bgp_routes())
            && (v != routes_version || routes_failed)
        {
            let wanted = routes.to_vec();
            routes_version = v;
            let failed = t.sync_routes(&wanted).await;
            routes_failed = failed > 0;
            dp.count_gateway_route_errors(failed);
        }
        publisher.publish(&dp, &sockets, &shared, hooks.as_ref().map(|h| &h.status), false);
    }

    // Shutdown: DELETE for every IKE SA, wait briefly for the answers.
    dp.close_all(now());
    {
        let mut sink = SocketSink::new(&sockets, &mut outbox);
        dp.drain(&mut sink);
        sink.flush();
    }
    let until = Instant::now() + SHUTDOWN_WAIT;
    while dp.closing() && Instant::now() < until {
        let next = dp.poll_timeout().map_or(until, |d| (origin + d).min(until));
        tokio::select! {
            _ = ingress.ready() => {
                let mut sink = SocketSink::new(&sockets, &mut outbox);
                let t = now();
                ingress.pop_batch(&mut batch, QUOTAS);
                for d in &mut batch {
                    handle_input(&mut dp, t, d, &mut sink);
                }
                ingress.recycle(&mut batch);
            }
            _ = tokio::time::sleep_until(next) => {}
        }
        let mut sink = SocketSink::new(&sockets, &mut outbox);
        end_pass(&mut dp, now(), &mut rng, &mut sink, &known, &mut known_gen);
    }
    publisher.publish(&dp, &sockets, &shared, hooks.as_ref().map(|h| &h.status), true);
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

/// One datagram from the ingress, to the datapath.
fn handle_input(dp: &mut Datapath, now: Duration, d: &mut Datagram, sink: &mut SocketSink<'_>) {
    match d.source {
        Source::Ike => dp.handle_udp500(now, d.from, &d.data),
        Source::NatT => dp.handle_udp4500(now, d.from, &mut d.data, sink),
        Source::Forward(id) => {
            if let SocketAddr::V4(client) = d.from {
                dp.handle_forward(now, id, client, &d.data, sink);
            }
        }
    }
}
