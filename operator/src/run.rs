//! The operator process: configuration from the environment, JSON logs, admin HTTP server, leader election,
//! controller, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use futures::StreamExt;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{error, info, warn};

use iotrelay_api::IotRelay;

use crate::cache::{Caches, relay_change, trim_relay};
use crate::leader::{self, LeaseConfig};
use crate::metrics::Metrics;
use crate::reconcile::{Context, error_policy, reconcile};
use crate::render::RenderConfig;

/// Settings, read from the environment (the chart sets them).
#[derive(Debug, Clone)]
pub struct Settings {
    pub render: RenderConfig,
    /// `IOTRELAY_ADMIN_ADDR`, default `0.0.0.0:8080`: `/metrics`, `/healthz`, `/readyz`.
    pub admin_addr: SocketAddr,
    /// `IOTRELAY_LEADER_ELECTION` (default true).
    pub leader_election: bool,
    /// `POD_NAMESPACE`: where the Lease lives.
    pub namespace: String,
    /// `POD_NAME`: this replica's identity.
    pub identity: String,
    /// `IOTRELAY_WATCH_NAMESPACE`: only this namespace (default: all).
    pub watch_namespace: Option<String>,
    /// `IOTRELAY_LOG_FORMAT`: `json` (default) or `text`.
    pub log_json: bool,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Settings from `get` (the environment in production). Relay-related variables:
    /// `IOTRELAY_RELAY_IMAGE`, `IOTRELAY_RELAY_IMAGE_PULL_POLICY`, `IOTRELAY_RELAY_IMAGE_PULL_SECRETS` (comma list),
    /// `IOTRELAY_ALLOW_IMAGE_OVERRIDE` and `IOTRELAY_ALLOW_PRIVILEGED` (`true`/`false`, default false),
    /// `IOTRELAY_RELAY_METRICS_ADDR` (the relays' metrics listener; unset: 0.0.0.0:9465; empty: none),
    /// `IOTRELAY_RELAY_RESOURCES` (JSON ResourceRequirements for relays without `spec.resources`),
    /// `IOTRELAY_RELAY_PRIORITY_CLASS` (priorityClassName of relay pods).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let var = |k: &str| get(k).filter(|v| !v.is_empty());
        let flag = |k: &str| -> anyhow::Result<bool> {
            match var(k).as_deref() {
                None | Some("false") => Ok(false),
                Some("true") => Ok(true),
                Some(v) => Err(anyhow::anyhow!("{k}={v:?}: expected true or false")),
            }
        };
        let defaults = RenderConfig::default();
        Ok(Settings {
            render: RenderConfig {
                relay_image: var("IOTRELAY_RELAY_IMAGE").unwrap_or(defaults.relay_image),
                image_pull_policy: var("IOTRELAY_RELAY_IMAGE_PULL_POLICY").unwrap_or(defaults.image_pull_policy),
                image_pull_secrets: var("IOTRELAY_RELAY_IMAGE_PULL_SECRETS")
                    .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                    .unwrap_or_default(),
                allow_image_override: flag("IOTRELAY_ALLOW_IMAGE_OVERRIDE")?,
                allow_privileged: flag("IOTRELAY_ALLOW_PRIVILEGED")?,
                metrics_addr: match var("IOTRELAY_RELAY_METRICS_ADDR") {
                    None => defaults.metrics_addr,
                    Some(v) => v
                        .parse()
                        .map_err(|e| anyhow::anyhow!("IOTRELAY_RELAY_METRICS_ADDR={v:?}: {e} (want IP:PORT)"))?,
                },
                default_resources: match var("IOTRELAY_RELAY_RESOURCES") {
                    None => None,
                    Some(v) => {
                        Some(serde_json::from_str(&v).map_err(|e| {
                            anyhow::anyhow!("IOTRELAY_RELAY_RESOURCES: {e} (want JSON requests/limits)")
                        })?)
                    }
                },
                priority_class_name: var("IOTRELAY_RELAY_PRIORITY_CLASS"),
            },
            admin_addr: var("IOTRELAY_ADMIN_ADDR").unwrap_or_else(|| "0.0.0.0:8080".into()).parse()?,
            leader_election: var("IOTRELAY_LEADER_ELECTION").is_none_or(|v| v != "false"),
            namespace: var("POD_NAMESPACE").unwrap_or_else(|| "default".into()),
            identity: var("POD_NAME").unwrap_or_else(|| format!("iotrelay-operator-{}", std::process::id())),
            watch_namespace: var("IOTRELAY_WATCH_NAMESPACE"),
            log_json: var("IOTRELAY_LOG_FORMAT").is_none_or(|v| v != "text"),
        })
    }
}

/// Name of the leader-election Lease in the operator's namespace.
pub const LEASE_NAME: &str = "iotrelay-operator-leader";

/// Reconcile passes running at once. Unbounded (kube's default), a start with 1000 IotRelays ran 1000 passes at
/// once, each with its own connections to the API server; a pass is mostly waiting for the API server, so a few
/// dozen keep it busy without that.
pub const CONCURRENCY: u16 = 32;

/// How often the memory of deleted IotRelays and expired Secret reads are dropped.
pub const MEMORY_SWEEP: Duration = Duration::from_secs(60);

/// The wake-up queue as a stream.
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<ObjectRef<IotRelay>>,
) -> impl futures::Stream<Item = ObjectRef<IotRelay>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Installs the tracing subscriber (JSON lines by default; filter from `RUST_LOG`, default `info`).
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).with_current_span(false).init();
    } else {
        builder.init();
    }
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.encode())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs the operator until SIGTERM (Ok) or lost leadership (Err, so the pod restarts as a candidate).
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    let stopped = {
        let rx = stop_rx.clone();
        move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|v| *v).await;
            }
        }
    };

    let app = axum::Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(metrics.clone());
    let listener = tokio::net::TcpListener::bind(settings.admin_addr).await?;
    info!(addr = %settings.admin_addr, "admin server listening");
    let server_stop = stopped();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(server_stop).await {
            error!(error = %e, "admin server failed");
        }
    });

    let client = Client::try_default().await?;
    let lease = LeaseConfig::new(settings.namespace.clone(), LEASE_NAME.into(), settings.identity.clone());
    if settings.leader_election {
        info!(identity = %lease.identity, "waiting for leadership");
        tokio::select! {
            _ = leader::acquire(&client, &lease) => {}
            _ = stopped() => return Ok(()),
        }
        metrics.leader.set(1);
        info!(identity = %lease.identity, "became leader");
    }

    let relays: Api<IotRelay> = match &settings.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (caches, wake) = Caches::start(&client, settings.watch_namespace.as_deref());
    let (relay_store, relay_writer) = reflector::store();
    // Status writes that change no condition (the relay's traffic counters) do not start a pass.
    let relay_stream = watcher(relays, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(trim_relay)
        .reflect(relay_writer)
        .applied_objects()
        .predicate_filter(relay_change, Default::default())
        .filter({
            // The event of the operator's own status write: the pass that wrote it already knows.
            let memory = caches.memory.clone();
            move |r| {
                let ours = r.as_ref().is_ok_and(|r| {
                    relay_change(r).is_some_and(|k| memory.left_by_own_status(&ObjectRef::from_obj(r), k))
                });
                std::future::ready(!ours)
            }
        });
    let reporter = Reporter { controller: "iotrelay-operator".into(), instance: Some(settings.identity.clone()) };
    let ctx =
        Arc::new(Context::new(client.clone(), settings.render.clone(), metrics.clone(), reporter, caches.clone()));
    // Forget deleted IotRelays (their backoff and what was written for them) and expired Secret reads.
    {
        let (ctx, store) = (ctx.clone(), relay_store.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(MEMORY_SWEEP).await;
                ctx.memory.retain(|r| store.get(r).is_some());
                ctx.secrets.sweep(tokio::time::Instant::now());
            }
        });
    }
    // Reconciling before the caches are complete would take an unlisted pod for a missing one.
    tokio::select! {
        r = caches.ready() => r?,
        _ = stopped() => return Ok(()),
    }
    let controller = Controller::for_stream(relay_stream, relay_store)
        .with_config(controller::Config::default().concurrency(CONCURRENCY))
        .reconcile_on(tokio_stream_from(wake))
        .graceful_shutdown_on(stopped())
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "controller event");
            }
        });

    let lost = async {
        if settings.leader_election {
            leader::hold(&client, &lease).await;
        } else {
            futures::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        _ = controller => Ok(()),
        _ = lost => Err(anyhow::anyhow!("lost leadership")),
    };
    if settings.leader_election
        && result.is_ok()
        && let Err(e) = leader::release(&client, &lease).await
    {
        warn!(error = %e, "releasing the lease failed");
    }
    metrics.leader.set(0);
    info!("stopped");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_vars(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn relay_policy_from_the_chart() {
        let s = settings(&[]).unwrap();
        assert!(!s.render.allow_image_override && !s.render.allow_privileged);
        assert_eq!(s.render.metrics_addr.to_string(), "0.0.0.0:9465");
        let s = settings(&[
            ("IOTRELAY_ALLOW_IMAGE_OVERRIDE", "true"),
            ("IOTRELAY_ALLOW_PRIVILEGED", "false"),
            ("IOTRELAY_RELAY_METRICS_ADDR", "127.0.0.1:9999"),
        ])
        .unwrap();
        assert!(s.render.allow_image_override && !s.render.allow_privileged);
        assert_eq!(s.render.metrics_addr.to_string(), "127.0.0.1:9999");
        // A typo must not silently mean "allowed" or "not allowed".
        assert!(settings(&[("IOTRELAY_ALLOW_PRIVILEGED", "yes")]).is_err());
        assert!(settings(&[("IOTRELAY_RELAY_METRICS_ADDR", "9465")]).is_err());
        assert!(s.render.default_resources.is_none() && s.render.priority_class_name.is_none());
    }

    #[test]
    fn relay_resources_and_priority_from_the_chart() {
        let s = settings(&[
            ("IOTRELAY_RELAY_RESOURCES", r#"{"requests":{"cpu":"50m","memory":"64Mi"},"limits":{"memory":"256Mi"}}"#),
            ("IOTRELAY_RELAY_PRIORITY_CLASS", "iot-critical"),
        ])
        .unwrap();
        let r = s.render.default_resources.unwrap();
        assert_eq!(r.requests.unwrap()["memory"].0, "64Mi");
        assert_eq!(r.limits.unwrap()["memory"].0, "256Mi");
        assert_eq!(s.render.priority_class_name.as_deref(), Some("iot-critical"));
        assert!(settings(&[("IOTRELAY_RELAY_RESOURCES", "cpu: 1")]).is_err(), "not JSON");
    }
}
