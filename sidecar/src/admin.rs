//! Admin HTTP (axum). Two servers, so only what scraping and probes need is reachable from the network:
//! - the admin server (`--admin-addr`, loopback by default): `/healthz`, `/readyz`, `/status`, `/metrics`, and
//!   `POST /rekey?tunnel=NAME&sa=child|ike` only when a token file is configured and the request carries
//!   `Authorization: Bearer <token>` (compared in constant time);
//! - the metrics server (`--metrics-addr`, optional): `/metrics`, `/healthz`, `/readyz` only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use iotrelay_api::IotRelayStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use crate::status::{ForwardSnapshot, TunnelSnapshot, readiness};

/// A command for the owner task.
#[derive(Debug)]
pub enum Command {
    Rekey { tunnel: String, ike: bool, reply: oneshot::Sender<Result<(), String>> },
}

/// What the owner task publishes for the admin server.
#[derive(Default)]
pub struct Published {
    pub status: IotRelayStatus,
    pub tunnels: Vec<TunnelSnapshot>,
    pub forwards: Vec<ForwardSnapshot>,
    pub datapath: iotrelay_api::DatapathDrops,
    /// The ingress lanes (`ingress::Lane::ALL` order).
    pub ingress: [crate::ingress::LaneStats; 3],
    /// Datagrams on 500/4500 from no tunnel's peer, dropped by the readers.
    pub not_peer: u64,
    /// Notices (Kubernetes Events) dropped because the writer's queue was full.
    pub notices_dropped: u64,
    /// Fragmented replies from the tunnel dropped incomplete.
    pub reassembly_dropped: u64,
    /// Gateway mode's counters (`None`: gateway mode off).
    pub gateway: Option<crate::gateway::GatewayCounters>,
    /// Datagrams the kernel dropped on each socket because its receive queue was full.
    pub socket_drops: Vec<(crate::sockets::SocketName, u64)>,
}

pub struct Shared {
    pub published: Mutex<Published>,
    pub commands: mpsc::Sender<Command>,
    /// `POST /rekey` is enabled only with a token file; the token is read from it on every request (a mounted
    /// Secret may be rotated) and never logged.
    pub rekey_token_file: Option<PathBuf>,
}

/// Where the admin HTTP servers listen, and whether `POST /rekey` is enabled.
#[derive(Debug, Clone)]
pub struct AdminOptions {
    pub admin_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub rekey_token_file: Option<PathBuf>,
}

/// The full admin server: probes, status, metrics, and the token-guarded `POST /rekey`.
pub fn router(shared: Arc<Shared>) -> Router {
    probe_routes().route("/status", get(status)).route("/rekey", post(rekey)).with_state(shared)
}

/// The scrape/probe server: `/metrics`, `/healthz`, `/readyz`; nothing that reveals SPIs or starts anything.
pub fn metrics_router(shared: Arc<Shared>) -> Router {
    probe_routes().with_state(shared)
}

fn probe_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Reads and checks the token file (non-empty after trimming whitespace).
pub fn read_token(path: &std::path::Path) -> Result<Zeroizing<String>, String> {
    let raw = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| format!("reading the rekey token file {}: {e}", path.display()))?,
    );
    let token = Zeroizing::new(raw.trim().to_string());
    if token.is_empty() {
        return Err(format!("the rekey token file {} is empty", path.display()));
    }
    Ok(token)
}

/// Binds the admin server (and the metrics server if configured) and serves them in the background. The token
/// file, if any, must be readable now: a typo fails at start, not at the first rekey.
pub async fn start(opts: &AdminOptions, shared: Arc<Shared>) -> anyhow::Result<()> {
    if let Some(path) = &opts.rekey_token_file {
        read_token(path).map_err(|e| anyhow::anyhow!(e))?;
    }
    if opts.metrics_addr.is_some_and(|m| m.port() == opts.admin_addr.port()) {
        anyhow::bail!(
            "the admin address {} and the metrics address {} use the same port",
            opts.admin_addr,
            opts.metrics_addr.map(|m| m.to_string()).unwrap_or_default()
        );
    }
    let bind = |addr: SocketAddr, what: &'static str| async move {
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("binding the {what} address {addr}: {e}"))
    };
    let admin = bind(opts.admin_addr, "admin").await?;
    let metrics = match opts.metrics_addr {
        Some(a) => Some(bind(a, "metrics").await?),
        None => None,
    };
    let rekey = if opts.rekey_token_file.is_some() { "enabled (bearer token)" } else { "disabled" };
    tracing::info!(admin_addr = %opts.admin_addr, rekey, "admin HTTP listening");
    let r = router(shared.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(admin, r).await {
            tracing::error!(error = %e, "admin HTTP server failed");
        }
    });
    if let Some(l) = metrics {
        tracing::info!(metrics_addr = ?opts.metrics_addr, "metrics HTTP listening (/metrics, /healthz, /readyz)");
        let r = metrics_router(shared);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, r).await {
                tracing::error!(error = %e, "metrics HTTP server failed");
            }
        });
    }
    Ok(())
}

impl Shared {
    /// `f` of what the owner task published last; `None` if a writer panicked while holding it.
    pub fn read<T>(&self, f: impl FnOnce(&Published) -> T) -> Option<T> {
        self.published.lock().ok().map(|p| f(&p))
    }
}

/// A handler's answer: `body` as `content_type`, or 500 when the published state could not be read.
fn document(content_type: &'static str, body: Option<String>) -> Response {
    match body {
        Some(body) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    match s.read(|p| readiness(&p.status)).unwrap_or_else(|| Err("internal error".into())) {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    document("application/json", s.read(|p| serde_json::to_string_pretty(&p.status).unwrap_or_default()))
}

#[derive(Deserialize)]
struct RekeyQuery {
    tunnel: String,
    #[serde(default)]
    sa: Option<String>,
}

/// Why a `POST /rekey` is refused before anything happens; `None` lets it through.
///
/// Without a configured token file the endpoint does not exist (404). Browsers cannot attach an `Authorization`
/// header to a cross-site request without a CORS preflight (which this server never grants), so requiring it
/// stops CSRF; form content types and `Sec-Fetch-Site: cross-site` are refused as well, belt and braces.
pub fn refuse_rekey(headers: &HeaderMap, token: Option<&str>) -> Option<(StatusCode, &'static str)> {
    let Some(token) = token else { return Some((StatusCode::NOT_FOUND, "rekey is disabled (no token file)\n")) };
    if headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site" || v.as_bytes() == b"same-site") {
        return Some((StatusCode::FORBIDDEN, "cross-site request refused\n"));
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        let ct = ct.to_ascii_lowercase();
        if ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"].iter().any(|f| ct.starts_with(f))
        {
            return Some((StatusCode::UNSUPPORTED_MEDIA_TYPE, "form content types are refused\n"));
        }
    }
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        return Some((StatusCode::UNAUTHORIZED, "Authorization: Bearer <token> required\n"));
    };
    let presented = auth.as_bytes().strip_prefix(b"Bearer ").unwrap_or(b"");
    if presented.is_empty() || !bool::from(presented.ct_eq(token.as_bytes())) {
        return Some((StatusCode::FORBIDDEN, "wrong token\n"));
    }
    None
}

async fn rekey(State(s): State<Arc<Shared>>, headers: HeaderMap, Query(q): Query<RekeyQuery>) -> Response {
    match start_rekey(&s, &headers, q).await {
        Ok(()) => (StatusCode::ACCEPTED, "rekey started\n").into_response(),
        Err((code, why)) => (code, why).into_response(),
    }
}

/// `POST /rekey`: checked, then handed to the owner task; a refusal is a status code and a one-line reason.
async fn start_rekey(s: &Shared, headers: &HeaderMap, q: RekeyQuery) -> Result<(), (StatusCode, String)> {
    let shutting_down = || (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".to_string());
    let token = match s.rekey_token_file.as_deref().map(read_token) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "rekey refused: token file unreadable");
            return Err((StatusCode::SERVICE_UNAVAILABLE, "rekey token unavailable\n".into()));
        }
    };
    if let Some((code, why)) = refuse_rekey(headers, token.as_deref().map(String::as_str)) {
        return Err((code, why.into()));
    }
    let ike = match q.sa.as_deref() {
        None | Some("child") => false,
        Some("ike") => true,
        Some(_) => return Err((StatusCode::BAD_REQUEST, "sa must be child or ike\n".into())),
    };
    let (tx, rx) = oneshot::channel();
    s.commands.send(Command::Rekey { tunnel: q.tunnel, ike, reply: tx }).await.map_err(|_| shutting_down())?;
    rx.await.map_err(|_| shutting_down())?.map_err(|e| (StatusCode::NOT_FOUND, format!("{e}\n")))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TunnelLabels {
    tunnel: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TunnelDirLabels {
    tunnel: String,
    direction: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardLabels {
    forward: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardDirLabels {
    forward: String,
    direction: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardDropLabels {
    forward: String,
    reason: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaneLabels {
    lane: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SocketLabels {
    socket: &'static str,
    /// The forward's name for a forward's listen socket, empty otherwise.
    forward: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirLabels {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

/// Registers one counter `name` with the value `v`.
fn counter(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

/// Registers one gauge `name` with the value `v`.
fn gauge(reg: &mut Registry, name: &str, help: &str, v: i64) {
    let g = Gauge::<i64>::default();
    g.set(v);
    reg.register(name, help, g);
}

/// The BGP session metrics (dynamic routing only; no series for tunnels without a session).
fn register_bgp(reg: &mut Registry, p: &Published) {
    let established = Family::<TunnelLabels, Gauge>::default();
    let received = Family::<TunnelLabels, Gauge>::default();
    let announced = Family::<TunnelLabels, Gauge>::default();
    let sessions = Family::<TunnelLabels, Counter>::default();
    let notifications = Family::<TunnelDirLabels, Counter>::default();
    let malformed = Family::<TunnelLabels, Counter>::default();
    let mut any = false;
    for t in &p.tunnels {
        let Some(b) = &t.bgp else { continue };
        any = true;
        let l = TunnelLabels { tunnel: t.name.clone() };
        established.get_or_create(&l).set(i64::from(b.established));
        received.get_or_create(&l).set(b.prefixes_received as i64);
        announced.get_or_create(&l).set(b.prefixes_announced as i64);
        sessions.get_or_create(&l).inc_by(b.sessions_established);
        let dir = |d| TunnelDirLabels { tunnel: t.name.clone(), direction: d };
        notifications.get_or_create(&dir("in")).inc_by(b.notifications_received);
        notifications.get_or_create(&dir("out")).inc_by(b.notifications_sent);
        malformed.get_or_create(&l).inc_by(b.malformed_messages);
    }
    if !any {
        return;
    }
    reg.register("bgp_session_established", "1 when the tunnel's BGP session is Established", established);
    reg.register("bgp_prefixes_received", "Prefixes AWS announces on the tunnel's BGP session", received);
    reg.register("bgp_prefixes_announced", "Prefixes announced to AWS on the tunnel's BGP session", announced);
    reg.register("bgp_sessions_established", "Times the BGP session became Established (flaps)", sessions);
    reg.register("bgp_notifications", "BGP NOTIFICATIONs by direction (in: from AWS)", notifications);
    reg.register("bgp_malformed_messages", "BGP messages from the peer that did not parse", malformed);
}

/// Renders the Prometheus text format from the last published snapshot. Label values are bounded: tunnel and
/// forward names from the spec, fixed direction/reason sets.
pub fn render_metrics(p: &Published) -> String {
    let mut reg = Registry::with_prefix("iotrelay");
    let up = Family::<TunnelLabels, Gauge>::default();
    let active = Family::<TunnelLabels, Gauge>::default();
    let packets = Family::<TunnelDirLabels, Counter>::default();
    let bytes = Family::<TunnelDirLabels, Counter>::default();
    let retransmits = Family::<TunnelLabels, Counter>::default();
    let child_rekeys = Family::<TunnelLabels, Counter>::default();
    let ike_rekeys = Family::<TunnelLabels, Counter>::default();
    let dpd_misses = Family::<TunnelLabels, Counter>::default();
    let invalid = Family::<TunnelLabels, Counter>::default();
    let collisions = Family::<TunnelLabels, Counter>::default();
    let cookies = Family::<TunnelLabels, Counter>::default();
    let half_open_refused = Family::<TunnelLabels, Counter>::default();
    for t in &p.tunnels {
        let l = TunnelLabels { tunnel: t.name.clone() };
        up.get_or_create(&l).set(i64::from(t.engine.state == iotrelay_ikev2::TunnelState::Established));
        active.get_or_create(&l).set(i64::from(t.active));
        let dir = |d| TunnelDirLabels { tunnel: t.name.clone(), direction: d };
        packets.get_or_create(&dir("in")).inc_by(t.child.packets_in);
        packets.get_or_create(&dir("out")).inc_by(t.child.packets_out);
        bytes.get_or_create(&dir("in")).inc_by(t.child.bytes_in);
        bytes.get_or_create(&dir("out")).inc_by(t.child.bytes_out);
        let c = t.engine.counters;
        retransmits.get_or_create(&l).inc_by(c.retransmits);
        child_rekeys.get_or_create(&l).inc_by(c.child_rekeys);
        ike_rekeys.get_or_create(&l).inc_by(c.ike_rekeys);
        dpd_misses.get_or_create(&l).inc_by(c.dpd_misses);
        invalid.get_or_create(&l).inc_by(c.invalid_messages);
        collisions.get_or_create(&l).inc_by(c.rekey_collisions);
        cookies.get_or_create(&l).inc_by(c.cookies_sent);
        half_open_refused.get_or_create(&l).inc_by(c.half_open_refused);
    }
    reg.register("tunnel_up", "1 when the tunnel has an IKE SA and a CHILD_SA", up);
    reg.register("tunnel_active", "1 when the tunnel carries outbound traffic", active);
    reg.register("esp_packets", "ESP packets by direction", packets);
    reg.register("esp_inner_bytes", "Inner bytes carried by ESP, by direction", bytes);
    reg.register("ike_retransmits", "IKE request retransmissions", retransmits);
    reg.register("child_sa_rekeys", "CHILD_SA rekeys", child_rekeys);
    reg.register("ike_sa_rekeys", "IKE SA rekeys", ike_rekeys);
    reg.register("dpd_misses", "Dead peer detections", dpd_misses);
    reg.register("ike_invalid_messages", "IKE messages dropped as invalid", invalid);
    reg.register(
        "ike_rekey_collisions",
        "Rekeys that collided with the peer's, resolved by the lowest nonce (RFC 7296 2.8.1)",
        collisions,
    );
    reg.register("ike_cookies_sent", "IKE_SA_INIT requests answered with a COOKIE demand (RFC 7296 2.6)", cookies);
    reg.register(
        "ike_half_open_refused",
        "IKE_SA_INIT requests dropped: half-open table full or unauthenticated key-exchange budget spent",
        half_open_refused,
    );

    register_bgp(&mut reg, p);

    let sessions = Family::<ForwardLabels, Gauge>::default();
    let listening = Family::<ForwardLabels, Gauge>::default();
    let fpackets = Family::<ForwardDirLabels, Counter>::default();
    let fdrops = Family::<ForwardDropLabels, Counter>::default();
    for f in &p.forwards {
        let l = ForwardLabels { forward: f.name.clone() };
        sessions.get_or_create(&l).set(f.sessions as i64);
        listening.get_or_create(&l).set(i64::from(f.listening));
        let dir = |d| ForwardDirLabels { forward: f.name.clone(), direction: d };
        fpackets.get_or_create(&dir("in")).inc_by(f.packets_in);
        fpackets.get_or_create(&dir("out")).inc_by(f.packets_out);
        let d = &f.drops;
        for (reason, v) in [
            ("sourceNotAllowed", d.source_not_allowed),
            ("noTunnel", d.no_tunnel),
            ("noSession", d.no_session),
            ("tooBig", d.too_big),
            ("queueFull", d.queue_full),
            ("sourceSessionLimit", d.source_session_limit),
            ("noRoute", d.no_route),
        ] {
            fdrops.get_or_create(&ForwardDropLabels { forward: f.name.clone(), reason }).inc_by(v);
        }
    }
    reg.register("forward_sessions", "Live relay sessions", sessions);
    reg.register("forward_listening", "1 when the forward's UDP socket is bound", listening);
    reg.register("forward_packets", "Relayed packets (in: into the tunnel, out: replies to clients)", fpackets);
    reg.register("forward_drops", "Forward packets dropped, by reason", fdrops);

    let esp_drops = Family::<ReasonLabels, Counter>::default();
    let d = &p.datapath;
    for (reason, v) in
        [("malformed", d.malformed), ("replay", d.replay), ("integrity", d.integrity), ("unknownSpi", d.unknown_spi)]
    {
        esp_drops.get_or_create(&ReasonLabels { reason }).inc_by(v);
    }
    reg.register("esp_drops", "ESP packets dropped, by reason", esp_drops);
    crate::monitoring::register(&mut reg, &p.status, &p.tunnels);

    let lane_drops = Family::<LaneLabels, Counter>::default();
    let lane_queued = Family::<LaneLabels, Counter>::default();
    let lane_bytes = Family::<LaneLabels, Gauge>::default();
    let lane_budget = Family::<LaneLabels, Gauge>::default();
    for (lane, s) in crate::demux::Lane::ALL.iter().zip(p.ingress.iter()) {
        let l = LaneLabels { lane: lane.name() };
        lane_drops.get_or_create(&l).inc_by(s.dropped_full);
        lane_queued.get_or_create(&l).inc_by(s.queued_total);
        lane_bytes.get_or_create(&l).set(s.bytes as i64);
        lane_budget.get_or_create(&l).set(s.budget_bytes as i64);
    }
    reg.register("ingress_drops", "Received datagrams dropped because their ingress lane was full", lane_drops);
    reg.register("ingress_queued", "Received datagrams queued for the owner task, by lane", lane_queued);
    reg.register("ingress_queued_bytes", "Bytes waiting in the ingress lane now", lane_bytes);
    reg.register("ingress_budget_bytes", "Byte bound of the ingress lane", lane_budget);
    let socket_drops = Family::<SocketLabels, Counter>::default();
    for (name, n) in &p.socket_drops {
        let (socket, forward) = match name {
            crate::sockets::SocketName::Ike => ("udp500", String::new()),
            crate::sockets::SocketName::NatT => ("udp4500", String::new()),
            crate::sockets::SocketName::Forward(f) => ("forward", f.clone()),
        };
        socket_drops.get_or_create(&SocketLabels { socket, forward }).inc_by(*n);
    }
    reg.register(
        "socket_receive_drops",
        "Datagrams the kernel dropped on the relay's socket because its receive queue was full (SO_RXQ_OVFL)",
        socket_drops,
    );
    counter(&mut reg, "ingress_not_peer_drops", "Datagrams on UDP 500/4500 from no tunnel's peer, dropped", p.not_peer);
    counter(
        &mut reg,
        "events_dropped",
        "Notices for Kubernetes Events dropped because the writer's queue was full",
        p.notices_dropped,
    );
    counter(
        &mut reg,
        "reassembly_dropped",
        "Fragmented replies from the tunnel dropped incomplete (timed out, evicted, inconsistent)",
        p.reassembly_dropped,
    );

    if let Some(g) = &p.gateway {
        let gdrops = Family::<ReasonLabels, Counter>::default();
        for why in crate::gateway::GatewayDrop::ALL {
            gdrops.get_or_create(&ReasonLabels { reason: why.name() }).inc_by(g.drops_of(why));
        }
        reg.register("gateway_drops", "Gateway-mode packets dropped, by reason", gdrops);
        let gpackets = Family::<DirLabels, Counter>::default();
        gpackets.get_or_create(&DirLabels { direction: "toTunnel" }).inc_by(g.to_tunnel);
        gpackets.get_or_create(&DirLabels { direction: "toDevice" }).inc_by(g.to_device);
        reg.register("gateway_packets", "Gateway-mode packets: device to tunnel, tunnel to device", gpackets);
        counter(&mut reg, "gateway_fragmented", "Gateway packets fragmented before encryption (no DF)", g.fragmented);
        counter(&mut reg, "gateway_mss_clamped", "TCP SYNs whose MSS option the gateway lowered", g.mss_clamped);
        gauge(
            &mut reg,
            "gateway_bgp_routes",
            "Prefixes learned over BGP routed through the device now",
            i64::try_from(g.bgp_routes).unwrap_or(i64::MAX),
        );
        gauge(
            &mut reg,
            "gateway_bgp_routes_refused",
            "Learned prefixes not routed: beyond the bound or covering a tunnel peer",
            i64::try_from(g.bgp_routes_refused).unwrap_or(i64::MAX),
        );
        counter(
            &mut reg,
            "gateway_route_errors",
            "Route changes through the device the kernel refused",
            g.route_errors,
        );
        let d = &g.device;
        gauge(
            &mut reg,
            "gateway_tun_offload",
            "The TUN device's offloads: 0 none (a packet per system call), 1 TCP (TSO and coalesced writes), 2 TCP and UDP",
            i64::from(d.offload) + i64::from(d.offload && d.uso),
        );
        let syscalls = Family::<OpLabels, Counter>::default();
        syscalls.get_or_create(&OpLabels { op: "read" }).inc_by(d.reads);
        syscalls.get_or_create(&OpLabels { op: "write" }).inc_by(d.writes);
        reg.register("gateway_tun_syscalls", "Reads and writes on the TUN device", syscalls);
        let packets = Family::<OpLabels, Counter>::default();
        packets.get_or_create(&OpLabels { op: "read" }).inc_by(d.packets_read);
        packets.get_or_create(&OpLabels { op: "write" }).inc_by(d.packets_written);
        reg.register(
            "gateway_tun_packets",
            "IPv4 packets those reads and writes carried (after segmenting / before coalescing)",
            packets,
        );
    }

    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
        out.clear();
    }
    out
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    document("application/openmetrics-text; version=1.0.0; charset=utf-8", s.read(render_metrics))
}
