//! `kubectl iotrelay`: a kubectl plugin (kubectl runs `kubectl-iotrelay` from PATH). The thin API layer: it reads
//! IotRelays, their Deployment, pods and Events, and writes only the `iotrelay.dev/rekey` annotation; what it
//! prints and decides comes from `iotrelay_operator::plugin`. Uses the kubeconfig as kubectl does (`KUBECONFIG`,
//! current context and its namespace).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use iotrelay_api::{IotRelay, REKEY_ANNOTATION, RekeyRequest, RekeyResult};
use iotrelay_operator::plugin::{diagnose, table};
use iotrelay_operator::render::{RELAY_LABEL, child_name};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};

#[derive(Parser)]
#[command(name = "kubectl iotrelay", version, about = "Status, rekey and diagnosis of iotrelay IotRelays")]
struct Cli {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Tunnels (state, SA ages, rekeys, IKE messages from AWS), forwards and drops by reason, from `.status`.
    Status {
        /// One IotRelay; all in the namespace when omitted.
        name: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Ask the relay for a rekey through the API (the `iotrelay.dev/rekey` annotation; needs `patch` on the IotRelay).
    Rekey {
        name: String,
        /// Only this tunnel (default: every established tunnel).
        #[arg(long)]
        tunnel: Option<String>,
        /// Rekey the IKE SA instead of the CHILD_SA.
        #[arg(long)]
        ike: bool,
        /// Request id (default: generated). The relay acts on an id once: repeating it is a no-op.
        #[arg(long)]
        id: Option<String>,
        /// Seconds to wait for the relay to record the request in status (0: do not wait).
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// Walk the path from the IotRelay to traffic; say what to check next. Exit status 1 when unhealthy.
    Diagnose { name: String },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = Client::try_default().await.context("reading the kubeconfig")?;
    let ns = cli.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    let relays: Api<IotRelay> = Api::namespaced(client.clone(), &ns);
    match cli.command {
        Cmd::Status { name, all_namespaces } => {
            let list = match (&name, all_namespaces) {
                (Some(n), _) => vec![relays.get(n).await.with_context(|| format!("reading IotRelay {ns}/{n}"))?],
                (None, true) => Api::<IotRelay>::all(client).list(&ListParams::default()).await?.items,
                (None, false) => relays.list(&ListParams::default()).await?.items,
            };
            if list.is_empty() {
                let where_ = if all_namespaces { "any namespace".to_string() } else { format!("namespace {ns}") };
                println!("No IotRelays found in {where_}.");
            } else {
                print!("{}", table::render_status(&list, all_namespaces && name.is_none(), Timestamp::now()));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Rekey { name, tunnel, ike, id, wait } => rekey(&relays, &name, tunnel, ike, id, wait).await,
        Cmd::Diagnose { name } => {
            let relay = relays.get(&name).await.with_context(|| format!("reading IotRelay {ns}/{name}"))?;
            let child = child_name(&name);
            let deployment = Api::<Deployment>::namespaced(client.clone(), &ns).get_opt(&child).await?;
            let pods = Api::<Pod>::namespaced(client.clone(), &ns)
                .list(&ListParams::default().labels(&format!("{RELAY_LABEL}={child}")))
                .await?
                .items;
            let events = Api::<Event>::namespaced(client, &ns)
                .list(
                    &ListParams::default()
                        .fields(&format!("involvedObject.kind=IotRelay,involvedObject.name={name},type=Warning")),
                )
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            let report = diagnose::diagnose(&diagnose::Observed {
                relay: &relay,
                deployment: deployment.as_ref(),
                pods: &pods,
                warnings: &recent_warnings(events),
            });
            print!("{}", report.render());
            Ok(if report.healthy() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}

/// The three newest Warning Events as `reason: message (xN)`.
fn recent_warnings(mut events: Vec<Event>) -> Vec<String> {
    let when = |e: &Event| {
        e.last_timestamp.as_ref().or(e.first_timestamp.as_ref()).map(|t| t.0).or(e.event_time.as_ref().map(|t| t.0))
    };
    events.sort_by_key(|e| std::cmp::Reverse(when(e)));
    events
        .iter()
        .take(3)
        .map(|e| {
            let n = e.count.filter(|n| *n > 1).map(|n| format!(" (x{n})")).unwrap_or_default();
            format!("{}: {}{n}", e.reason.as_deref().unwrap_or("-"), e.message.as_deref().unwrap_or_default())
        })
        .collect()
}

async fn rekey(
    relays: &Api<IotRelay>,
    name: &str,
    tunnel: Option<String>,
    ike: bool,
    id: Option<String>,
    wait: u64,
) -> anyhow::Result<ExitCode> {
    let id = id.unwrap_or_else(|| {
        let now = Timestamp::now();
        format!(
            "{}-{:04x}",
            now.strftime("%Y%m%dT%H%M%SZ"),
            (now.subsec_nanosecond() as u32 ^ std::process::id()) & 0xffff
        )
    });
    let request = RekeyRequest { id, tunnel, ike };
    let value = request.to_annotation();
    // The relay parses it the same way; refuse here what it would refuse.
    RekeyRequest::parse(&value).map_err(|e| anyhow::anyhow!("invalid request: {e}"))?;
    let patch = serde_json::json!({"metadata": {"annotations": {REKEY_ANNOTATION: value}}});
    relays
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("annotating IotRelay {name} (needs patch on iotrelays)"))?;
    println!("rekey requested: {REKEY_ANNOTATION}={value}");
    if wait == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let r = relays.get(name).await?;
        if let Some(h) = r.status.and_then(|s| s.last_rekey_request).filter(|h| h.id == request.id) {
            println!("{:?}: {}", h.result, h.message);
            return Ok(if h.result == RekeyResult::Started { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        if tokio::time::Instant::now() >= deadline {
            eprintln!("the relay did not record request {} within {wait} s (is its pod running?)", request.id);
            return Ok(ExitCode::from(1));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
