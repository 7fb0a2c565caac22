//! `iotrelay-sidecar standalone --file relay.yaml`, `iotrelay-sidecar kube` and `iotrelay-sidecar import-aws`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand, ValueEnum};
use iotrelay_sidecar::admin::{AdminOptions, Published, Shared};
use iotrelay_sidecar::config::{UNSAFE_SHORT_LIFETIMES_ENV, has_short_lifetimes, tunnel_psks, validate_spec};
use iotrelay_sidecar::datapath::BgpRole;
use iotrelay_sidecar::run::{RunSpec, run};
use iotrelay_sidecar::status::Owner;
use tokio::sync::mpsc;

#[derive(Parser)]
#[command(name = "iotrelay-sidecar", version, about = "Userspace IKEv2/ESP relay to AWS Site-to-Site VPN")]
struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "IOTRELAY_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Mode {
    /// Run from a multi-document YAML file (an IotRelay and the Secrets it references), on a plain host.
    Standalone {
        /// The IotRelay + Secret YAML, as for `kubectl apply -f`.
        #[arg(long, short = 'f', env = "IOTRELAY_FILE")]
        file: PathBuf,
        /// Address of the admin HTTP server (/healthz, /readyz, /status, /metrics, POST /rekey).
        #[arg(long, env = "IOTRELAY_ADMIN_ADDR", default_value = "127.0.0.1:9464")]
        admin_addr: SocketAddr,
        /// Play AWS's end of every tunnel's BGP session (`spec.bgp`), for a lab or benchmark that stands in for
        /// AWS: the first host of each `insideCidr`, AS `awsAsn`, waiting for the customer gateway (AS `localAsn`)
        /// to connect. `spec.bgp` is written as for the customer gateway's end of the same connection.
        #[arg(long, env = "IOTRELAY_BGP_AWS_SIDE")]
        bgp_aws_side: bool,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Run inside Kubernetes: watch the own IotRelay and its Secrets, write status.
    Kube {
        /// Name of the IotRelay.
        #[arg(long, env = "IOTRELAY_NAME")]
        name: String,
        /// Namespace of the IotRelay.
        #[arg(long, env = "IOTRELAY_NAMESPACE")]
        namespace: String,
        /// Address of the admin HTTP server (/status, POST /rekey, and everything the metrics server has):
        /// loopback only by default.
        #[arg(long, env = "IOTRELAY_ADMIN_ADDR", default_value = "127.0.0.1:9465")]
        admin_addr: SocketAddr,
        /// Deprecated: the port of the metrics server (kept for operators that set it for the probes).
        #[arg(long, env = "IOTRELAY_ADMIN_PORT")]
        admin_port: Option<u16>,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Turn AWS's VPN connection configuration (XML or the "Generic" text) into an IotRelay + Secret (YAML on stdout).
    ImportAws(iotrelay_sidecar::import_aws::Args),
}

#[derive(clap::Args)]
struct HttpArgs {
    /// Address of the metrics server: only /metrics, /healthz, /readyz (for scraping and kubelet probes).
    /// Kube mode: default 0.0.0.0:9464. Standalone: none unless set.
    #[arg(long, env = "IOTRELAY_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// File holding the bearer token that enables POST /rekey (requests need `Authorization: Bearer <token>`).
    /// Without it /rekey answers 404.
    #[arg(long, env = "IOTRELAY_REKEY_TOKEN_FILE")]
    rekey_token_file: Option<PathBuf>,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

fn allow_short_lifetimes() -> bool {
    std::env::var(UNSAFE_SHORT_LIFETIMES_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    // Whether gateway mode is on decides the capabilities the relay keeps; they are set before the runtime starts
    // its threads, which then all hold the same sets (iotrelay_sidecar::privileges).
    let (mode, gateway) = match cli.mode {
        Mode::Standalone { file, admin_addr, bgp_aws_side, http } => match load_standalone(&file) {
            Ok(mut loaded) => {
                if bgp_aws_side {
                    loaded.bgp_role = BgpRole::AwsSide;
                }
                let gateway = loaded.spec.gateway.is_some();
                (Run::Standalone(Box::new(loaded), admin_addr, http), gateway)
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
        },
        Mode::Kube { name, namespace, admin_addr, admin_port, http } => {
            (Run::Kube { name, namespace, admin_addr, admin_port, http }, iotrelay_sidecar::kube::gateway_from_env())
        }
        // YAML on stdout or one error line on stderr; it logs nothing.
        Mode::ImportAws(args) => return iotrelay_sidecar::import_aws::main(args),
    };
    match iotrelay_sidecar::privileges::adopt(gateway) {
        Ok(caps) => tracing::info!(gateway, effective = ?caps.effective, "capabilities"),
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = match mode {
        Run::Standalone(loaded, admin_addr, http) => {
            let opts =
                AdminOptions { admin_addr, metrics_addr: http.metrics_addr, rekey_token_file: http.rekey_token_file };
            rt.block_on(standalone(*loaded, opts))
        }
        Run::Kube { name, namespace, admin_addr, admin_port, http } => {
            let mut metrics_addr = http.metrics_addr.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 9464)));
            if let Some(p) = admin_port {
                metrics_addr.set_port(p);
            }
            let opts =
                AdminOptions { admin_addr, metrics_addr: Some(metrics_addr), rekey_token_file: http.rekey_token_file };
            rt.block_on(iotrelay_sidecar::kube::run_kube(name, namespace, opts, allow_short_lifetimes(), gateway))
        }
    };
    // Do not wait for reader tasks blocked in recv.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// What `main` runs once the capabilities are set.
enum Run {
    Standalone(Box<Loaded>, SocketAddr, HttpArgs),
    Kube { name: String, namespace: String, admin_addr: SocketAddr, admin_port: Option<u16>, http: HttpArgs },
}

/// A standalone relay's validated configuration, read before the runtime starts.
struct Loaded {
    spec: iotrelay_api::validate::ValidatedSpec,
    psks: Vec<zeroize::Zeroizing<Vec<u8>>>,
    generation: Option<i64>,
    bgp_role: BgpRole,
}

fn load_standalone(file: &std::path::Path) -> anyhow::Result<Loaded> {
    // The file holds the PSKs: its text is wiped when dropped.
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?,
    );
    let (relay, secrets) =
        iotrelay_api::standalone::load_yaml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let short = allow_short_lifetimes();
    let spec = validate_spec(&relay.spec, short).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if has_short_lifetimes(&spec) {
        tracing::warn!(
            ike_lifetime = ?spec.ike.lifetime,
            esp_lifetime = ?spec.esp.lifetime,
            "{UNSAFE_SHORT_LIFETIMES_ENV} is set: lifetimes below AWS's 900 s minimum (test only)"
        );
    }
    let psks = tunnel_psks(&spec, &secrets).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    tracing::info!(
        relay = relay.metadata.name.as_deref().unwrap_or(""),
        tunnels = spec.tunnels.len(),
        forwards = spec.forwards.len(),
        "configuration loaded"
    );
    Ok(Loaded { spec, psks, generation: relay.metadata.generation, bgp_role: BgpRole::CustomerGateway })
}

async fn standalone(loaded: Loaded, admin: AdminOptions) -> anyhow::Result<()> {
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let shared = Arc::new(Shared {
        published: Mutex::new(Published::default()),
        commands: cmd_tx,
        rekey_token_file: admin.rekey_token_file.clone(),
    });
    iotrelay_sidecar::admin::start(&admin, shared.clone()).await?;
    let Loaded { spec, psks, generation, bgp_role } = loaded;
    if bgp_role == BgpRole::AwsSide {
        tracing::info!("BGP: playing AWS's end of the sessions (--bgp-aws-side)");
    }
    let rs = RunSpec { spec, psks, generation, owner: Owner::Standalone, node_name: None, bgp_role };
    run(rs, shared, cmd_rx, None).await
}
