//! In-cluster mode: read the own IotRelay and its Secrets, run the relay, and apply forward and PSK changes live
//! (a change to the SAs' settings closes the tunnels and exits, so that the restarted container uses it). What the
//! relay writes back, `/status` and Events, is `kube_status`'s (`Ready`, `Reconciling` and `Stalled` are the
//! operator's alone); rekey requests made through the API (the `iotrelay.dev/rekey` annotation) are `kube_rekey`'s.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use iotrelay_api::{IotRelay, IotRelayStatus, REKEY_ANNOTATION, SIDECAR_FIELD_MANAGER, ValidatedSpec};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource as _};
use tokio::sync::{mpsc, watch};
use zeroize::Zeroizing;

use crate::admin::{AdminOptions, Published, Shared};
use crate::config::{has_short_lifetimes, validate_spec};
use crate::run::{Hooks, Reconfigure, RunSpec, run};
use crate::status::Owner;

/// The node the pod runs on, for `status.nodeName`.
pub const NODE_NAME_ENV: &str = "IOTRELAY_NODE_NAME";
/// `true` in a relay pod the operator rendered for gateway mode (next to `NET_ADMIN` and `/dev/net/tun`): the
/// relay keeps `CAP_NET_ADMIN` only then. Read before the IotRelay is, because capabilities are settled before the
/// runtime's threads start (`crate::privileges`); [`run_kube`] then checks that the IotRelay agrees.
pub const GATEWAY_ENV: &str = "IOTRELAY_GATEWAY";

/// Whether the pod was started for gateway mode ([`GATEWAY_ENV`]).
pub fn gateway_from_env() -> bool {
    std::env::var(GATEWAY_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// How often referenced Secrets are re-read (besides on every IotRelay change).
const SECRET_POLL: Duration = Duration::from_secs(10);

/// The PSKs of the spec's tunnels, read from the API. Errors name the Secret and key, never a value.
async fn read_psks(secrets: &Api<Secret>, spec: &ValidatedSpec) -> anyhow::Result<Vec<Zeroizing<Vec<u8>>>> {
    let mut cache = WipedSecrets::default();
    let cache = &mut cache.0;
    let mut out = Vec::new();
    for (i, t) in spec.tunnels.iter().enumerate() {
        let r = &t.psk;
        if !cache.contains_key(&r.name) {
            let s =
                secrets.get_opt(&r.name).await.with_context(|| format!("reading Secret {:?}", r.name))?.with_context(
                    || format!("Secret {:?} referenced by spec.tunnels[{i}].preSharedKeySecretRef not found", r.name),
                )?;
            cache.insert(r.name.clone(), s);
        }
        let s = &cache[&r.name];
        let v = s
            .data
            .as_ref()
            .and_then(|d| d.get(&r.key))
            .map(|b| Zeroizing::new(b.0.clone()))
            .or_else(|| {
                s.string_data.as_ref().and_then(|d| d.get(&r.key)).map(|v| Zeroizing::new(v.as_bytes().to_vec()))
            })
            .with_context(|| {
                format!(
                    "Secret {:?} has no key {:?} (referenced by spec.tunnels[{i}].preSharedKeySecretRef)",
                    r.name, r.key
                )
            })?;
        anyhow::ensure!(!v.is_empty(), "Secret {:?} key {:?}: the pre-shared key is empty", r.name, r.key);
        out.push(v);
    }
    Ok(out)
}

/// Secrets as read from the API, their values wiped when dropped (on every path out of `read_psks`): the PSKs
/// live on only in the `Zeroizing` copies handed to the engines.
#[derive(Default)]
struct WipedSecrets(BTreeMap<String, Secret>);

impl Drop for WipedSecrets {
    fn drop(&mut self) {
        wipe_secrets(&mut self.0);
    }
}

/// Overwrites every value of the Secrets with zeros (`zeroize`), in place.
fn wipe_secrets(secrets: &mut BTreeMap<String, Secret>) {
    use zeroize::Zeroize as _;
    for s in secrets.values_mut() {
        for v in s.data.iter_mut().flat_map(|d| d.values_mut()) {
            v.0.zeroize();
        }
        for v in s.string_data.iter_mut().flat_map(|d| d.values_mut()) {
            v.zeroize();
        }
    }
}

/// Waits until the IotRelay exists, validates and its Secrets are readable.
async fn load(
    relays: &Api<IotRelay>,
    secrets: &Api<Secret>,
    name: &str,
    allow_short: bool,
) -> (IotRelay, ValidatedSpec, Vec<Zeroizing<Vec<u8>>>) {
    let mut delay = Duration::from_secs(1);
    loop {
        let r: anyhow::Result<_> = async {
            let relay = relays.get(name).await.with_context(|| format!("reading IotRelay {name:?}"))?;
            let spec = validate_spec(&relay.spec, allow_short)?;
            let psks = read_psks(secrets, &spec).await?;
            Ok((relay, spec, psks))
        }
        .await;
        match r {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?delay, "cannot start yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// `gateway`: whether the pod was started for gateway mode ([`gateway_from_env`]); the IotRelay must agree.
pub async fn run_kube(
    name: String,
    namespace: String,
    admin: AdminOptions,
    allow_short: bool,
    gateway: bool,
) -> anyhow::Result<()> {
    let client = Client::try_default().await.context("reading the in-cluster Kubernetes configuration")?;
    let relays: Api<IotRelay> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);

    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let shared = Arc::new(Shared {
        published: Mutex::new(Published::default()),
        commands: cmd_tx,
        rekey_token_file: admin.rekey_token_file.clone(),
    });
    crate::admin::start(&admin, shared.clone()).await?;

    let (relay, spec, psks) = load(&relays, &secrets, &name, allow_short).await;
    // A pod rendered before spec.gateway was added or removed: the operator replaces it (the pod template
    // differs), so this one stops rather than run without the capability or with one it should not hold.
    if spec.gateway.is_some() != gateway {
        anyhow::bail!(
            "spec.gateway is {} but this pod was started {} gateway mode ({GATEWAY_ENV}): waiting for the operator \
             to replace the pod",
            if spec.gateway.is_some() { "set" } else { "not set" },
            if gateway { "for" } else { "without" }
        );
    }
    if has_short_lifetimes(&spec) {
        tracing::warn!("IOTRELAY_UNSAFE_SHORT_LIFETIMES is set: lifetimes below AWS's 900 s minimum (test only)");
    }
    tracing::info!(relay = %name, %namespace, tunnels = spec.tunnels.len(), forwards = spec.forwards.len(), "configuration loaded");

    let (rc_tx, rc_rx) = mpsc::channel(16);
    let (status_tx, status_rx) = watch::channel(IotRelayStatus::default());
    let (notice_tx, notice_rx) = mpsc::channel(64);
    let hooks = Hooks { reconfigure: rc_rx, status: status_tx, notices: notice_tx };

    let reporter = Reporter { controller: SIDECAR_FIELD_MANAGER.into(), instance: std::env::var("HOSTNAME").ok() };
    let obj_ref = relay.object_ref(&());
    let (live_tx, live_rx) = watch::channel(Vec::new());
    // The live record of the last rekey request handled, so a restarted relay neither repeats nor erases it.
    let (rekey_tx, rekey_rx) = watch::channel(relay.status.as_ref().and_then(|s| s.last_rekey_request.clone()));
    let (annotation_tx, annotation_rx) = watch::channel(None);
    tokio::spawn(crate::kube_status::write_status(relays.clone(), name.clone(), status_rx, live_rx, rekey_rx));
    tokio::spawn(crate::kube_rekey::handle_requests(annotation_rx, shared.clone(), rekey_tx));
    tokio::spawn(crate::kube_status::emit_events(Recorder::new(client.clone(), reporter), obj_ref, notice_rx));
    tokio::spawn(watch_changes(
        relays.clone(),
        secrets.clone(),
        name.clone(),
        spec.clone(),
        psks.clone(),
        allow_short,
        Outputs { reconfigure: rc_tx, live: live_tx, rekey_annotation: annotation_tx },
    ));

    // Set by the operator from the downward API (`spec.nodeName`).
    let node_name = std::env::var(NODE_NAME_ENV).ok().filter(|n| !n.is_empty());
    let rs = RunSpec {
        spec,
        psks,
        generation: relay.metadata.generation,
        owner: Owner::InCluster,
        node_name,
        bgp_role: crate::datapath::BgpRole::CustomerGateway,
    };
    run(rs, shared, cmd_rx, Some(hooks)).await
}

/// True when `new` differs from `old` in what shapes the SAs (only a restart applies it); forwards and the admin
/// settings are not part of it.
fn tunnels_changed(old: &ValidatedSpec, new: &ValidatedSpec) -> bool {
    new.tunnels != old.tunnels
        || new.ike != old.ike
        || new.esp != old.esp
        || new.inside_address != old.inside_address
        || new.local_address != old.local_address
        || new.local_identity != old.local_identity
        || new.gateway != old.gateway
}

/// Where [`watch_changes`] sends what it sees.
struct Outputs {
    /// Live changes for the relay loop.
    reconfigure: mpsc::Sender<Reconfigure>,
    /// The live object's status conditions, for [`write_status`] to notice an overwrite.
    live: watch::Sender<Vec<Condition>>,
    /// The `iotrelay.dev/rekey` annotation, for `kube_rekey::handle_requests`.
    rekey_annotation: watch::Sender<Option<String>>,
}

/// Watches the IotRelay (and re-reads its Secrets) and sends live changes: forwards and PSKs. A change of tunnel
/// settings (tunnels, IKE/ESP, addresses, identity) stops the relay gracefully so that its restart applies it.
async fn watch_changes(
    relays: Api<IotRelay>,
    secrets: Api<Secret>,
    name: String,
    mut spec: ValidatedSpec,
    mut psks: Vec<Zeroizing<Vec<u8>>>,
    allow_short: bool,
    out: Outputs,
) {
    let Outputs { reconfigure: tx, live, rekey_annotation } = out;
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(relays, cfg).boxed();
    let mut tick = tokio::time::interval(SECRET_POLL);
    // The first event repeats the generation the relay started with; sending it again is harmless.
    let mut applied_generation = None;
    loop {
        let mut candidate: Option<IotRelay> = None;
        tokio::select! {
            ev = stream.next() => match ev {
                Some(Ok(watcher::Event::Apply(r))) | Some(Ok(watcher::Event::InitApply(r))) => candidate = Some(r),
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching the IotRelay failed; retrying");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
                None => return,
            },
            _ = tick.tick() => {}
        }
        if let Some(r) = candidate {
            live.send_replace(r.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default());
            let annotation = r.metadata.annotations.as_ref().and_then(|a| a.get(REKEY_ANNOTATION)).cloned();
            rekey_annotation.send_if_modified(|v| {
                let changed = *v != annotation;
                *v = annotation;
                changed
            });
            match validate_spec(&r.spec, allow_short) {
                Ok(new) => {
                    if new.forwards != spec.forwards {
                        tracing::info!("IotRelay forwards changed: applying live (tunnels untouched)");
                        if tx.send(Reconfigure::Forwards(new.forwards.clone())).await.is_err() {
                            return;
                        }
                    }
                    if new.max_sessions_per_source != spec.max_sessions_per_source
                        && tx.send(Reconfigure::SessionsPerSource(new.max_sessions_per_source)).await.is_err()
                    {
                        return;
                    }
                    if tunnels_changed(&spec, &new) {
                        // Tunnel settings shape the IKE/CHILD SAs: they need new SAs, so the relay closes its
                        // tunnels (DELETEs, as on any SIGTERM) and exits; the kubelet restarts the container, which
                        // reads the new spec. (The operator does not roll the pod: the pod template does not carry
                        // tunnel settings, so forward changes never restart anything.)
                        tracing::warn!(
                            "IotRelay tunnel settings changed: closing the tunnels and exiting so that the restarted \
                             relay uses them"
                        );
                        match nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM) {
                            Ok(()) => return,
                            Err(e) => tracing::error!(
                                error = %e,
                                "cannot stop for the new tunnel settings; they apply at the next restart"
                            ),
                        }
                    }
                    spec = new;
                    if r.metadata.generation != applied_generation {
                        applied_generation = r.metadata.generation;
                        if tx.send(Reconfigure::Generation(applied_generation)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "IotRelay spec invalid; keeping the running configuration"),
            }
        }
        match read_psks(&secrets, &spec).await {
            Ok(new) => {
                for (i, (a, b)) in new.iter().zip(psks.iter()).enumerate() {
                    if a.as_slice() != b.as_slice()
                        && let Some(t) = spec.tunnels.get(i)
                        && tx.send(Reconfigure::Psk { tunnel: t.name.clone(), psk: a.clone() }).await.is_err()
                    {
                        return;
                    }
                }
                psks = new;
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "reading the pre-shared keys failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_read_from_the_api_are_wiped() {
        let mut m = BTreeMap::new();
        let s: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "aws-vpn"},
            "data": {"tunnel1": "cHNrX29uZQ=="},
            "stringData": {"tunnel2": "psk_two"}
        }))
        .unwrap();
        m.insert("aws-vpn".to_string(), s);
        wipe_secrets(&mut m);
        let s = &m["aws-vpn"];
        let d = &s.data.as_ref().unwrap()["tunnel1"].0;
        assert_eq!(d.len(), 0, "zeroize clears the Vec (after overwriting its bytes)");
        assert!(s.string_data.as_ref().unwrap()["tunnel2"].is_empty());
    }

    const RELAY: &str = r#"
apiVersion: iotrelay.dev/v1alpha1
kind: IotRelay
metadata: {name: plant-7, namespace: iot}
spec:
  insideAddress: 100.127.0.1
  remoteSubnets: ["100.64.0.0/16"]
  localAddress: 198.51.100.1
  tunnels:
  - {name: tunnel1, peerAddress: 198.51.100.2, preSharedKeySecretRef: {name: aws-vpn, key: tunnel1}}
  - {name: tunnel2, peerAddress: 198.51.100.3, preSharedKeySecretRef: {name: aws-vpn, key: tunnel2}}
  forwards:
  - {name: admin, protocol: UDP, listenPort: 7000, allowedSources: ["203.0.113.10/32"],
     target: {address: 100.64.1.10, port: 7000}}
---
apiVersion: v1
kind: Secret
metadata: {name: aws-vpn, namespace: iot}
stringData: {tunnel1: one, tunnel2: two}
"#;

    fn spec(edit: impl FnOnce(&mut iotrelay_api::IotRelaySpec)) -> ValidatedSpec {
        let (mut r, _) = iotrelay_api::standalone::load_yaml(RELAY).expect("test relay parses");
        edit(&mut r.spec);
        validate_spec(&r.spec, false).expect("test relay is valid")
    }

    #[test]
    fn only_sa_settings_need_a_restart() {
        let base = spec(|_| {});
        assert!(!tunnels_changed(&base, &spec(|_| {})));
        // A new forward is applied live.
        let more = spec(|s| {
            let mut f = s.forwards[0].clone();
            f.name = "admin2".into();
            f.listen_port = 7001;
            s.forwards.push(f);
        });
        assert!(!tunnels_changed(&base, &more));
        // IKE lifetime, a peer address, the PSK reference: new SAs, so a restart.
        assert!(tunnels_changed(&base, &spec(|s| s.ike.lifetime = "4h".into())));
        assert!(tunnels_changed(&base, &spec(|s| s.tunnels[1].peer_address = "198.51.100.4".into())));
        assert!(tunnels_changed(&base, &spec(|s| s.tunnels[0].pre_shared_key_secret_ref.key = "other".into())));
        // Gateway mode on, or a gateway setting: a new TUN device and routes, so a restart.
        let gw = spec(|s| s.gateway = Some(Default::default()));
        assert!(tunnels_changed(&base, &gw));
        let mtu = spec(|s| s.gateway = Some(iotrelay_api::GatewaySpec { mtu: Some(1400), ..Default::default() }));
        assert!(tunnels_changed(&gw, &mtu));
    }
}
