//! Watch caches (reflector stores) of everything reconcile reads except Secrets: the children (ServiceAccount,
//! Role, RoleBinding, Deployment) and the relay pods, all selected by the `managed-by` label the operator puts on
//! them and kept without `managedFields` (the bulk of a small object). A change of a cached object, or its
//! deletion, wakes the IotRelay that owns it (children by their controller owner reference, pods through their
//! Deployment), so a relay whose pod is Pending is looked at again when something happens, not on a timer.
//!
//! Secrets are not cached: watching them would need `list`/`watch` on every Secret of the cluster, which the
//! operator deliberately does not hold (it only `get`s the Secrets an IotRelay names).

use std::fmt::Debug;
use std::hash::{DefaultHasher, Hash, Hasher};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::warn;

use iotrelay_api::IotRelay;

use crate::render::RELAY_LABEL;

/// Label selector of every object the operator creates (children and, through the pod template, relay pods).
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=iotrelay-operator";
/// Bound of the queue of IotRelays to wake (the controller deduplicates; a full queue slows the watches down).
pub const WAKE_QUEUE: usize = 1024;

/// The stores reconcile reads from.
#[derive(Clone)]
pub struct Caches {
    pub service_accounts: Store<ServiceAccount>,
    pub roles: Store<Role>,
    pub role_bindings: Store<RoleBinding>,
    pub deployments: Store<Deployment>,
    pub pods: Store<Pod>,
}

/// Writers for [`Caches`] built by hand (tests).
pub struct Writers {
    pub service_accounts: reflector::store::Writer<ServiceAccount>,
    pub roles: reflector::store::Writer<Role>,
    pub role_bindings: reflector::store::Writer<RoleBinding>,
    pub deployments: reflector::store::Writer<Deployment>,
    pub pods: reflector::store::Writer<Pod>,
}

impl Caches {
    /// Empty stores and their writers, fed by hand (tests) instead of by watches.
    pub fn manual() -> (Caches, Writers) {
        let (service_accounts, sa) = reflector::store();
        let (roles, r) = reflector::store();
        let (role_bindings, rb) = reflector::store();
        let (deployments, d) = reflector::store();
        let (pods, p) = reflector::store();
        (
            Caches { service_accounts, roles, role_bindings, deployments, pods },
            Writers { service_accounts: sa, roles: r, role_bindings: rb, deployments: d, pods: p },
        )
    }

    /// Starts the watches (in `namespace`, or everywhere) on the runtime; returns the stores and the queue of
    /// IotRelays whose children or pod changed.
    pub fn start(client: &Client, namespace: Option<&str>) -> (Caches, mpsc::Receiver<ObjectRef<IotRelay>>) {
        let (tx, rx) = mpsc::channel(WAKE_QUEUE);
        let deployments = watch(client, namespace, tx.clone(), |d: &Deployment| owning_relay(d.meta()));
        let by_deployment = deployments.clone();
        let caches = Caches {
            service_accounts: watch(client, namespace, tx.clone(), |o: &ServiceAccount| owning_relay(o.meta())),
            roles: watch(client, namespace, tx.clone(), |o: &Role| owning_relay(o.meta())),
            role_bindings: watch(client, namespace, tx.clone(), |o: &RoleBinding| owning_relay(o.meta())),
            pods: watch(client, namespace, tx, move |p: &Pod| pod_relay(p, &by_deployment)),
            deployments,
        };
        (caches, rx)
    }

    /// Resolves once every store has its first complete list.
    pub async fn ready(&self) -> anyhow::Result<()> {
        self.service_accounts.wait_until_ready().await?;
        self.roles.wait_until_ready().await?;
        self.role_bindings.wait_until_ready().await?;
        self.deployments.wait_until_ready().await?;
        self.pods.wait_until_ready().await?;
        Ok(())
    }

    /// The relay pods of the Deployment `child` in `namespace` (by the relay label, as its selector).
    pub fn relay_pods(&self, namespace: &str, child: &str) -> Vec<Pod> {
        self.pods
            .state_filter(|p| {
                p.metadata.namespace.as_deref() == Some(namespace)
                    && p.labels().get(RELAY_LABEL).map(String::as_str) == Some(child)
            })
            .into_iter()
            .map(|p| (*p).clone())
            .collect()
    }
}

/// What of an IotRelay the operator reacts to (a `predicate_filter` key): its identity, generation (the spec),
/// labels, annotations and status conditions without their timestamps. The relay's periodic status writes change
/// only traffic counters and SA ages, so they do not start a reconcile; a condition the relay changes (Ready,
/// Degraded) does, because the operator's `Reconciling`/`Stalled` follow it.
pub fn relay_change(r: &IotRelay) -> Option<u64> {
    let mut h = DefaultHasher::new();
    (&r.metadata.uid, r.metadata.generation, &r.metadata.labels, &r.metadata.annotations).hash(&mut h);
    if let Some(s) = &r.status {
        s.observed_generation.hash(&mut h);
        for c in &s.conditions {
            (&c.type_, &c.status, &c.reason, &c.message, c.observed_generation).hash(&mut h);
        }
    }
    Some(h.finish())
}

/// The IotRelay that controls an object (its controller owner reference), if any.
pub fn owning_relay(meta: &ObjectMeta) -> Option<ObjectRef<IotRelay>> {
    let api_version = format!("{}/{}", iotrelay_api::GROUP, iotrelay_api::VERSION);
    let owner = meta
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "IotRelay" && o.api_version == api_version)?;
    Some(ObjectRef::new(&owner.name).within(meta.namespace.as_deref()?))
}

/// The IotRelay of a relay pod: its relay label names the Deployment, which the IotRelay controls.
fn pod_relay(pod: &Pod, deployments: &Store<Deployment>) -> Option<ObjectRef<IotRelay>> {
    let child = pod.labels().get(RELAY_LABEL)?;
    let ns = pod.metadata.namespace.as_deref()?;
    owning_relay(deployments.get(&ObjectRef::new(child).within(ns))?.meta())
}

fn watch<K>(
    client: &Client,
    namespace: Option<&str>,
    tx: mpsc::Sender<ObjectRef<IotRelay>>,
    owner: impl Fn(&K) -> Option<ObjectRef<IotRelay>> + Send + 'static,
) -> Store<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    K: Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default().labels(MANAGED_BY_SELECTOR).any_semantic())
        .default_backoff()
        .modify(|o: &mut K| o.managed_fields_mut().clear())
        .reflect(writer)
        .touched_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            match item {
                Ok(obj) => {
                    if let Some(r) = owner(&obj)
                        && tx.send(r).await.is_err()
                    {
                        return;
                    }
                }
                Err(e) => warn!(kind = K::kind(&()).as_ref(), error = %e, "watch failed; retrying"),
            }
        }
    });
    reader
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn relay(status: serde_json::Value) -> IotRelay {
        serde_json::from_value(json!({"apiVersion": "iotrelay.dev/v1alpha1", "kind": "IotRelay",
            "metadata": {"name": "a", "namespace": "iot", "uid": "u1", "generation": 2},
            "spec": {"insideAddress": "100.127.0.1", "remoteSubnets": ["100.64.0.0/16"], "tunnels": [], "forwards": []},
            "status": status}))
        .unwrap()
    }

    fn ready(since: &str, packets: u64) -> serde_json::Value {
        json!({"conditions": [{"type": "Ready", "status": "True", "reason": "TunnelEstablished", "message": "up",
            "lastTransitionTime": since}],
            "forwards": [{"name": "admin", "listening": true, "sessions": 1, "packetsIn": packets, "packetsOut": packets}]})
    }

    #[test]
    fn counter_writes_do_not_wake_the_operator() {
        let base = relay_change(&relay(ready("2026-01-01T00:00:00Z", 1)));
        assert_eq!(base, relay_change(&relay(ready("2026-01-01T00:00:00Z", 900))), "traffic counters");
        let mut r = relay(ready("2026-01-01T00:00:00Z", 1));
        r.status.as_mut().unwrap().conditions[0].status = "False".into();
        assert_ne!(base, relay_change(&r), "a condition changed");
        let mut r = relay(ready("2026-01-01T00:00:00Z", 1));
        r.metadata.generation = Some(3);
        assert_ne!(base, relay_change(&r), "the spec changed");
        let mut r = relay(ready("2026-01-01T00:00:00Z", 1));
        r.metadata.annotations = Some([("iotrelay.dev/rekey".to_string(), "1".to_string())].into());
        assert_ne!(base, relay_change(&r), "an annotation changed");
    }
}
