//! Admin HTTP (axum): `/healthz`, `/readyz`, `/status`, `/metrics`, `POST /rekey?tunnel=NAME&sa=child|ike`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use iotrelay_api::IotRelayStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

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
}

pub struct Shared {
    pub published: Mutex<Published>,
    pub commands: mpsc::Sender<Command>,
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/rekey", post(rekey))
        .with_state(shared)
}

pub async fn serve(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "admin HTTP listening");
    axum::serve(listener, router(shared)).await
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    let r = match s.published.lock() {
        Ok(p) => readiness(&p.status),
        Err(_) => Err("internal error".into()),
    };
    match r {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    let body = match s.published.lock() {
        Ok(p) => serde_json::to_string_pretty(&p.status).unwrap_or_default(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[derive(Deserialize)]
struct RekeyQuery {
    tunnel: String,
    #[serde(default)]
    sa: Option<String>,
}

async fn rekey(State(s): State<Arc<Shared>>, Query(q): Query<RekeyQuery>) -> Response {
    let ike = match q.sa.as_deref() {
        None | Some("child") => false,
        Some("ike") => true,
        Some(_) => return (StatusCode::BAD_REQUEST, "sa must be child or ike\n").into_response(),
    };
    let (tx, rx) = oneshot::channel();
    if s.commands.send(Command::Rekey { tunnel: q.tunnel, ike, reply: tx }).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match rx.await {
        Ok(Ok(())) => (StatusCode::ACCEPTED, "rekey started\n").into_response(),
        Ok(Err(e)) => (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
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
struct ReasonLabels {
    reason: &'static str,
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

    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
        out.clear();
    }
    out
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let body = match s.published.lock() {
        Ok(p) => render_metrics(&p),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}
