//! Watch caches (reflector stores) of everything reconcile reads except Secrets: the children (ServiceAccount,
//! Role, RoleBinding, Deployment) and the relay pods, all selected by the `managed-by` label the operator puts on
//! them. Each object is trimmed to what reconcile reads before it is stored (no `managedFields`, annotations, pod
//! spec, Deployment spec or Role rules: with 1000 relays the full objects were most of the operator's memory).
//! A change of a cached object that reconcile would see (its [`wake_key`]), or its deletion, wakes the IotRelay that
//! owns it (children by their controller owner reference, pods through their Deployment), so a relay whose pod is
//! Pending is looked at again when something happens, not on a timer, and not for every status heartbeat of its
//! Deployment or pod. The event of a child the operator itself just wrote (the version its write returned, see
//! [`Memory::wrote`]) wakes nobody either: the pass that wrote it already knows.
//!
//! Secrets are not watched: that would need `list`/`watch` on every Secret of the cluster, which the operator
//! deliberately does not hold (it only `get`s the Secrets an IotRelay names; [`crate::secrets`] shares the reads).

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{DefaultHasher, Hash, Hasher};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodStatus, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::warn;

use iotrelay_api::{IotRelay, IotRelayStatus};

use crate::memory::{Memory, child_key, live_version};
use crate::reconcile::{pod_outcome, replica_failure};
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
    /// What the reconcile passes wrote (shared with them): the watches do not wake a relay for its own writes.
    pub memory: Memory,
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
            Caches { service_accounts, roles, role_bindings, deployments, pods, memory: Memory::default() },
            Writers { service_accounts: sa, roles: r, role_bindings: rb, deployments: d, pods: p },
        )
    }

    /// Starts the watches (in `namespace`, or everywhere) on the runtime; returns the stores and the queue of
    /// IotRelays whose children or pod changed.
    pub fn start(client: &Client, namespace: Option<&str>) -> (Caches, mpsc::Receiver<ObjectRef<IotRelay>>) {
        let (tx, rx) = mpsc::channel(WAKE_QUEUE);
        let memory = Memory::default();
        let m = &memory;
        let deployments = watch(client, namespace, tx.clone(), m, |d: &Deployment| owning_relay(d.meta()));
        let by_deployment = deployments.clone();
        let caches = Caches {
            service_accounts: watch(client, namespace, tx.clone(), m, |o: &ServiceAccount| owning_relay(o.meta())),
            roles: watch(client, namespace, tx.clone(), m, |o: &Role| owning_relay(o.meta())),
            role_bindings: watch(client, namespace, tx.clone(), m, |o: &RoleBinding| owning_relay(o.meta())),
            pods: watch(client, namespace, tx, m, move |p: &Pod| pod_relay(p, &by_deployment)),
            deployments,
            memory: memory.clone(),
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
/// only traffic counters and SA ages, so they do not start a reconcile; a condition the relay changes
/// (`TunnelsReady`, `Degraded`) does, because the operator's `Ready`, `Reconciling` and `Stalled` follow it.
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

/// What the IotRelay cache keeps: the object without what the operator never reads. Out go the relay's status
/// fields (tunnels, forwards, counters: only `observedGeneration` and the conditions are read), the
/// `last-applied-configuration` annotation of `kubectl apply` (a second copy of the spec), and the managed fields
/// (each condition has one writer, so nothing asks who owns what).
pub fn trim_relay(r: &mut IotRelay) {
    if let Some(a) = r.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    r.metadata.managed_fields = None;
    if let Some(s) = r.status.take() {
        r.status = Some(IotRelayStatus {
            observed_generation: s.observed_generation,
            conditions: s.conditions,
            ..Default::default()
        });
    }
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

/// How a cached kind is stored and when a change of it matters to reconcile.
pub trait Cached {
    /// Drops what reconcile never reads (kept: name, namespace, labels, owner references, generation,
    /// resourceVersion, deletion timestamp, and per kind what is listed below).
    fn trim(&mut self);
    /// Changes when something reconcile reads from this object changes (including our own writes to it).
    fn wake_key(&self) -> u64;
    /// The [`Cached::wake_key`] that means the same to reconcile as no object at all, if any: a first sighting
    /// with it wakes nobody.
    fn absent_key() -> Option<u64> {
        None
    }
    /// The wake key is the object's version alone, so a change of it that leaves the version our own write
    /// returned is that write (for the other kinds only a first sighting can be told apart that way).
    const KEYED_BY_VERSION: bool;
}

fn trim_meta(m: &mut ObjectMeta, keep_labels: bool) {
    m.managed_fields = None;
    m.annotations = None;
    m.finalizers = None;
    if !keep_labels {
        m.labels = None;
    }
}

fn hash_of(v: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// Children other than the Deployment: their version is all reconcile compares (someone changed it, or we did).
macro_rules! cached_by_version {
    ($($k:ty => |$o:ident| $trim:expr),* $(,)?) => {$(
        impl Cached for $k {
            fn trim(&mut self) {
                trim_meta(&mut self.metadata, false);
                let $o = self;
                $trim;
            }
            fn wake_key(&self) -> u64 {
                hash_of((&self.metadata.resource_version, self.metadata.deletion_timestamp.is_some()))
            }
            const KEYED_BY_VERSION: bool = true;
        }
    )*};
}
cached_by_version! {
    ServiceAccount => |o| { o.secrets = None; o.image_pull_secrets = None },
    Role => |o| o.rules = None,
    RoleBinding => |o| o.subjects = None,
}

/// A Deployment: its generation (a spec change by anyone) and what [`crate::reconcile`] reads of its status.
impl Cached for Deployment {
    fn trim(&mut self) {
        trim_meta(&mut self.metadata, false);
        self.spec = None;
    }
    fn wake_key(&self) -> u64 {
        let status = self.status.as_ref();
        let available = status.and_then(|s| s.available_replicas).unwrap_or(0) > 0;
        let failure = status.and_then(replica_failure).map(|o| format!("{o:?}"));
        hash_of((self.metadata.generation, self.metadata.deletion_timestamp.is_some(), available, failure))
    }
    const KEYED_BY_VERSION: bool = false;
}

/// A relay pod: its labels (to find it) and the status [`pod_outcome`] reads.
impl Cached for Pod {
    fn trim(&mut self) {
        trim_meta(&mut self.metadata, true);
        self.metadata.owner_references = None;
        self.spec = None;
        self.status = self.status.take().map(|s| PodStatus {
            phase: s.phase,
            conditions: s.conditions,
            container_statuses: s.container_statuses,
            ..Default::default()
        });
    }
    fn wake_key(&self) -> u64 {
        hash_of(format!("{:?}", pod_outcome(std::slice::from_ref(self))))
    }
    /// A new pod the scheduler has not placed yet reports what no pod does: it wakes nobody.
    fn absent_key() -> Option<u64> {
        Some(hash_of(format!("{:?}", pod_outcome(&[]))))
    }
    const KEYED_BY_VERSION: bool = false;
}

fn watch<K>(
    client: &Client,
    namespace: Option<&str>,
    tx: mpsc::Sender<ObjectRef<IotRelay>>,
    memory: &Memory,
    owner: impl Fn(&K) -> Option<ObjectRef<IotRelay>> + Send + 'static,
) -> Store<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Cached,
    K: Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default().labels(MANAGED_BY_SELECTOR).any_semantic())
        .default_backoff()
        .modify(K::trim)
        .reflect(writer);
    let memory = memory.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut wakes = Wakes::default();
        while let Some(item) = stream.next().await {
            let woken = match &item {
                Ok(event) => wakes.relay_to_wake(event, &owner, &memory),
                Err(e) => {
                    warn!(kind = K::kind(&()).as_ref(), error = %e, "watch failed; retrying");
                    None
                }
            };
            if let Some(r) = woken
                && tx.send(r).await.is_err()
            {
                return;
            }
        }
    });
    reader
}

/// The last [`Cached::wake_key`] seen per object of one watch, to tell which events matter.
#[derive(Default)]
struct Wakes {
    keys: HashMap<(Option<String>, String), u64>,
    /// The first complete list was seen: objects listed before it wake nobody (every IotRelay gets a pass at
    /// start anyway), objects a later relist brings back wake their IotRelay if they changed meanwhile.
    listed: bool,
}

impl Wakes {
    /// The IotRelay an event wakes, if any: not for the operator's own write of a child.
    fn relay_to_wake<K: Resource<DynamicType = ()> + Cached>(
        &mut self,
        event: &watcher::Event<K>,
        owner: impl Fn(&K) -> Option<ObjectRef<IotRelay>>,
        memory: &Memory,
    ) -> Option<ObjectRef<IotRelay>> {
        let (o, maybe_ours) = self.on(event)?;
        let r = owner(o)?;
        let ours = maybe_ours && memory.wrote(&r, &child_key(o), live_version(o).as_deref());
        (!ours).then_some(r)
    }

    /// The object whose IotRelay an event wakes, if any, and whether the change may be the operator's own write
    /// (to be looked up in its [`Memory`]): an object seen for the first time, or a version-keyed one that changed.
    fn on<'e, K: Resource + Cached>(&mut self, event: &'e watcher::Event<K>) -> Option<(&'e K, bool)> {
        let id = |o: &K| (o.meta().namespace.clone(), o.meta().name.clone().unwrap_or_default());
        match event {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                let key = o.wake_key();
                let before = self.keys.insert(id(o), key);
                let initial = matches!(event, watcher::Event::InitApply(_)) && !self.listed;
                let maybe_ours = before.is_none() || K::KEYED_BY_VERSION;
                (before.or_else(K::absent_key) != Some(key) && !initial).then_some((o, maybe_ours))
            }
            watcher::Event::Delete(o) => {
                self.keys.remove(&id(o));
                Some((o, false))
            }
            watcher::Event::Init => None,
            watcher::Event::InitDone => {
                self.listed = true;
                None
            }
        }
    }
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

    fn deployment(v: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": "iotrelay-a", "namespace": "iot", "generation": 1,
            "ownerReferences": [{"apiVersion": "iotrelay.dev/v1alpha1", "kind": "IotRelay", "name": "a", "uid": "u1",
                "controller": true}],
            "managedFields": [{"manager": "x"}], "annotations": {"deployment.kubernetes.io/revision": "1"}},
            "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "relay"}]}}},
            "status": v}))
        .unwrap()
    }

    #[test]
    fn deployment_heartbeats_do_not_wake_but_availability_and_failures_do() {
        let base = deployment(json!({"observedGeneration": 1, "replicas": 1, "unavailableReplicas": 1}));
        let key = base.wake_key();
        let beat = deployment(json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated"}]}));
        assert_eq!(key, beat.wake_key(), "rollout bookkeeping is not read by reconcile");
        assert_ne!(key, deployment(json!({"availableReplicas": 1})).wake_key(), "the pod became available");
        let failed = deployment(json!({"conditions": [{"type": "ReplicaFailure", "status": "True",
            "reason": "FailedCreate", "message": "exceeded quota"}]}));
        assert_ne!(key, failed.wake_key(), "the pod cannot be created");
        let mut trimmed = failed.clone();
        trimmed.trim();
        assert_eq!(trimmed.wake_key(), failed.wake_key(), "trimming keeps what the key reads");
        assert!(trimmed.spec.is_none() && trimmed.metadata.managed_fields.is_none());
        assert!(trimmed.metadata.annotations.is_none());
        assert_eq!(owning_relay(&trimmed.metadata), Some(ObjectRef::new("a").within("iot")), "owner kept");
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "iot",
            "labels": {RELAY_LABEL: "iotrelay-a"}}, "spec": {"containers": [{"name": "relay"}]}, "status": status}))
        .unwrap()
    }

    #[test]
    fn pod_wakes_only_for_what_its_outcome_reads() {
        let unschedulable = |t: &str| {
            pod(json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/1 nodes are available", "lastProbeTime": t}]}))
        };
        let p = unschedulable("2026-01-01T00:00:00Z");
        assert_eq!(p.wake_key(), unschedulable("2026-01-01T00:05:00Z").wake_key(), "a retry of the scheduler");
        assert_ne!(p.wake_key(), pod(json!({"phase": "Pending"})).wake_key());
        let mut t = p.clone();
        t.trim();
        assert!(t.spec.is_none());
        assert_eq!(t.wake_key(), p.wake_key());
        assert_eq!(t.labels().get(RELAY_LABEL).map(String::as_str), Some("iotrelay-a"), "found by its label");
    }

    #[test]
    fn wakes_skip_the_first_list_and_unchanged_objects_but_not_deletions() {
        let mut w = Wakes::default();
        let p = pod(json!({"phase": "Pending"}));
        assert!(w.on(&watcher::Event::InitApply(p.clone())).is_none(), "initial list: every relay gets a pass anyway");
        assert!(w.on(&watcher::Event::<Pod>::InitDone).is_none());
        assert!(w.on(&watcher::Event::Apply(p.clone())).is_none(), "nothing reconcile reads changed");
        let running = pod(json!({"phase": "Running", "containerStatuses": [{"name": "relay", "image": "i",
            "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]}));
        assert!(w.on(&watcher::Event::Apply(running.clone())).is_some(), "the pod runs");
        assert!(w.on(&watcher::Event::InitApply(running.clone())).is_none(), "a relist of an unchanged object");
        assert!(w.on(&watcher::Event::Delete(running)).is_some(), "a deletion always wakes");
    }

    #[test]
    fn a_new_pod_wakes_only_once_the_scheduler_decided() {
        let mut w = Wakes { listed: true, ..Default::default() };
        assert!(w.on(&watcher::Event::Apply(pod(json!({"phase": "Pending"})))).is_none(), "reports what no pod does");
        let unschedulable = pod(json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available"}]}));
        assert!(w.on(&watcher::Event::Apply(unschedulable.clone())).is_some(), "the scheduler's verdict");
        assert!(w.on(&watcher::Event::Delete(unschedulable.clone())).is_some());
        assert!(w.on(&watcher::Event::Apply(unschedulable)).is_some(), "first seen already unschedulable");
    }

    #[test]
    fn own_writes_of_children_wake_nobody() {
        let memory = Memory::default();
        let me = ObjectRef::<IotRelay>::new("a").within("iot");
        let role = |version: &str| -> Role {
            serde_json::from_value(json!({"metadata": {"name": "iotrelay-a", "namespace": "iot",
                "resourceVersion": version, "ownerReferences": [{"apiVersion": "iotrelay.dev/v1alpha1",
                "kind": "IotRelay", "name": "a", "uid": "u1", "controller": true}]}}))
            .unwrap()
        };
        let owner = |o: &Role| owning_relay(o.meta());
        let mut w = Wakes { listed: true, ..Default::default() };
        memory.child_written(&me, "Role/iotrelay-a", 1, Some("5".into()));
        assert_eq!(w.relay_to_wake(&watcher::Event::Apply(role("5")), owner, &memory), None, "our create");
        assert_eq!(w.relay_to_wake(&watcher::Event::Apply(role("6")), owner, &memory), Some(me.clone()), "edited");
        memory.child_written(&me, "Role/iotrelay-a", 1, Some("7".into()));
        assert_eq!(w.relay_to_wake(&watcher::Event::Apply(role("7")), owner, &memory), None, "our repair");
        assert_eq!(w.relay_to_wake(&watcher::Event::Delete(role("7")), owner, &memory), Some(me.clone()));

        // A Deployment: our create wakes nobody, its pod becoming available at the same generation does.
        let owner = |o: &Deployment| owning_relay(o.meta());
        let mut w = Wakes { listed: true, ..Default::default() };
        memory.child_written(&me, "Deployment/iotrelay-a", 1, Some("g1".into()));
        let created = deployment(json!({"replicas": 1}));
        assert_eq!(w.relay_to_wake(&watcher::Event::Apply(created), owner, &memory), None, "our create");
        let available = deployment(json!({"availableReplicas": 1}));
        assert_eq!(w.relay_to_wake(&watcher::Event::Apply(available), owner, &memory), Some(me.clone()));
        let other = ObjectRef::<IotRelay>::new("b").within("iot");
        assert!(!memory.wrote(&other, "Deployment/iotrelay-a", Some("g1")), "per IotRelay");
    }

    #[test]
    fn trimmed_relay_keeps_what_reconcile_reads() {
        let mut r = relay(ready("2026-01-01T00:00:00Z", 7));
        r.metadata.annotations = Some(
            [
                ("kubectl.kubernetes.io/last-applied-configuration".to_string(), "{...}".to_string()),
                ("iotrelay.dev/rekey".to_string(), "1".to_string()),
            ]
            .into(),
        );
        r.metadata.managed_fields = Some(
            serde_json::from_value(json!([
                {"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {"f:tunnels": {}}}},
                {"manager": "iotrelay-operator", "operation": "Apply", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:observedGeneration": {}, "f:conditions": {"k:{\"type\":\"Ready\"}":
                    {".": {}, "f:type": {}, "f:status": {}, "f:reason": {}}}}}},
                {"manager": "iotrelay-sidecar", "operation": "Apply", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:forwards": {}, "f:conditions": {"k:{\"type\":\"Ready\"}":
                    {".": {}, "f:type": {}, "f:status": {}}}}}}
            ]))
            .unwrap(),
        );
        let mut t = r.clone();
        trim_relay(&mut t);
        assert!(t.metadata.managed_fields.is_none(), "nothing reads who owns what");
        let s = t.status.as_ref().unwrap();
        assert!(s.forwards.is_empty() && s.conditions.len() == 1, "counters dropped, conditions kept");
        let a = t.metadata.annotations.as_ref().unwrap();
        assert!(a.contains_key("iotrelay.dev/rekey") && a.len() == 1);
    }

    #[test]
    fn counter_writes_do_not_wake_the_operator() {
        let base = relay_change(&relay(ready("2026-01-01T00:00:00Z", 1)));
        assert_eq!(base, relay_change(&relay(ready("2026-01-01T00:00:00Z", 900))), "traffic counters");
        let mut r = relay(ready("2026-01-01T00:00:00Z", 1));
        r.status.as_mut().unwrap().conditions[0].status = "False".into();
        assert_ne!(base, relay_change(&r), "a condition changed");
        // The relay's TunnelsReady (what the operator's Ready follows) wakes it, also for a new generation only.
        let tunnels = |status: &str, generation: i64| {
            let mut r = relay(ready("2026-01-01T00:00:00Z", 1));
            let mut c = r.status.as_ref().unwrap().conditions[0].clone();
            (c.type_, c.status, c.observed_generation) = ("TunnelsReady".into(), status.into(), Some(generation));
            r.status.as_mut().unwrap().conditions.push(c);
            relay_change(&r)
        };
        assert_ne!(tunnels("True", 1), tunnels("False", 1), "TunnelsReady's status");
        assert_ne!(tunnels("True", 1), tunnels("True", 2), "TunnelsReady's observedGeneration");
        let mut r = relay(ready("2026-01-01T00:00:00Z", 1));
        r.metadata.generation = Some(3);
        assert_ne!(base, relay_change(&r), "the spec changed");
        let mut r = relay(ready("2026-01-01T00:00:00Z", 1));
        r.metadata.annotations = Some([("iotrelay.dev/rekey".to_string(), "1".to_string())].into());
        assert_ne!(base, relay_change(&r), "an annotation changed");
    }
}
