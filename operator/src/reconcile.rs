//! The reconcile pipeline: validate -> admit (what the chart allows) -> dereference (Secrets) -> build (pure) ->
//! apply (server-side) -> status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DeploymentStatus;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;
use tracing::{Instrument, info, warn};

use iotrelay_api::{
    IotRelay, IotRelayStatus, OPERATOR_FIELD_MANAGER, ProgressReason, StalledReason, condition, validate,
};

use crate::admit::admit;
use crate::cache::{Caches, relay_change, trim_relay};
use crate::conditions::{Outcome, legacy_relay, operator_conditions, status_is_current};
use crate::memory::{Memory, child_key, hash_json, live_version};
use crate::metrics::{Metrics, ReconcileResult};
use crate::render::{Children, RenderConfig, RenderError, render};
use crate::secrets::{SecretKeys, key_names};

/// How often a relay stalled on a Secret is looked at again (a missing Secret may appear; Secrets are not watched).
pub const STALLED_RECHECK: Duration = Duration::from_secs(30);
// The recheck must find a Secret read that has expired, or it would look at the read before the user's fix.
const _: () = assert!(STALLED_RECHECK.as_millis() > crate::secrets::FRESH.as_millis());
/// Resync period of every other relay (changes of the IotRelay, its children and its pod wake it earlier).
pub const RESYNC: Duration = Duration::from_secs(300);

/// Errors that end a reconcile pass early; all are transient and requeued with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("serializing {0}: {1}")]
    Serialize(&'static str, serde_json::Error),
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
}

impl Error {
    /// Short bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::Serialize(..) => "serialize",
            Error::Render(_) => "render",
        }
    }
}

/// Shared state of the controller.
pub struct Context {
    pub client: Client,
    pub config: RenderConfig,
    pub metrics: Arc<Metrics>,
    pub reporter: Reporter,
    /// Watch caches of the children and relay pods (reads come from here, not from the API server).
    pub caches: Caches,
    /// Per-IotRelay failures and what was last written.
    pub memory: Memory,
    /// Recent reads of the Secrets IotRelays name (key names only).
    pub secrets: SecretKeys,
}

impl Context {
    pub fn new(
        client: Client,
        config: RenderConfig,
        metrics: Arc<Metrics>,
        reporter: Reporter,
        caches: Caches,
    ) -> Self {
        let memory = caches.memory.clone();
        Context { client, config, metrics, reporter, caches, memory, secrets: SecretKeys::default() }
    }

    /// 1 s, 2 s, 4 s ... capped at 5 min.
    fn next_backoff(&self, r: &ObjectRef<IotRelay>) -> Duration {
        backoff(self.memory.fail(r))
    }
}

/// Exponential backoff for the `n`th consecutive failure (n >= 1).
pub fn backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

/// The controller's reconcile function: one pass, in a span naming the object and its generation.
pub async fn reconcile(relay: Arc<IotRelay>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = tracing::info_span!("reconcile", relay = %relay.name_any(),
        namespace = relay.namespace().unwrap_or_default(), generation = relay.metadata.generation.unwrap_or(0));
    let started = std::time::Instant::now();
    let result = reconcile_inner(&relay, &ctx).instrument(span).await;
    let label = match &result {
        Ok((_, Outcome::Stalled { .. })) => ReconcileResult::Stalled,
        Ok(_) => ReconcileResult::Ok,
        Err(_) => ReconcileResult::Error,
    };
    ctx.metrics.observe(label, started.elapsed());
    match result {
        Ok((action, _)) => {
            ctx.memory.succeeded(&ObjectRef::from_obj(&*relay));
            Ok(action)
        }
        Err(e) => Err(e),
    }
}

/// The controller's error policy: transient errors requeue with exponential backoff per object.
pub fn error_policy(relay: Arc<IotRelay>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.next_backoff(&ObjectRef::from_obj(&*relay));
    warn!(relay = %relay.name_any(), namespace = relay.namespace().unwrap_or_default(), error = %err,
        kind = err.kind(), retry_in_s = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_inner(relay: &IotRelay, ctx: &Context) -> Result<(Action, Outcome), Error> {
    let ns = relay.namespace().unwrap_or_default();
    let me = ObjectRef::from_obj(relay);
    let outcome = match check(relay, ctx, &ns).await? {
        Err(stalled) => stalled,
        Ok(children) => {
            apply(ctx, &me, &ns, &children).await?;
            observe_pod(ctx, &ns, &children)
        }
    };
    update_status(relay, ctx, &me, &ns, &outcome).await?;
    let action = match &outcome {
        Outcome::Stalled { reason, .. } => {
            info!(reason = %reason, "stalled");
            // Secrets are not watched: a missing one is looked for again. Anything else waits for a change of the
            // IotRelay, its children or its pod (or the resync).
            if reason.is_secret() { Action::requeue(STALLED_RECHECK) } else { Action::requeue(RESYNC) }
        }
        Outcome::PodNotReady { .. } | Outcome::PodAvailable => Action::requeue(RESYNC),
    };
    Ok((action, outcome))
}

/// Validate + admit + dereference + build. `Ok(Err(outcome))` is a permanent problem to report as Stalled;
/// nothing is applied then, so a refused spec never creates or changes the relay's Deployment.
async fn check(relay: &IotRelay, ctx: &Context, ns: &str) -> Result<Result<Children, Outcome>, Error> {
    let spec = match validate(&relay.spec) {
        Ok(v) => v,
        Err(errs) => {
            let message = errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
            return Ok(Err(Outcome::Stalled { reason: StalledReason::InvalidSpec, message }));
        }
    };
    if let Err(r) = admit(&relay.spec, &spec, &ctx.config) {
        return Ok(Err(Outcome::Stalled { reason: r.reason, message: r.message }));
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let refs = spec.secret_refs().into_iter().map(|r| (r, "preSharedKeySecretRef"));
    let now = Instant::now();
    for (r, field) in refs.chain(spec.rekey_token.clone().map(|r| (r, "rekeyTokenSecretRef"))) {
        // Read once per [`crate::secrets::FRESH`] for every pass and IotRelay naming it.
        let keys = match ctx.secrets.fresh(ns, &r.name, now) {
            Some(keys) => keys,
            None => {
                let keys = secrets.get_opt(&r.name).await?.as_ref().map(key_names);
                ctx.secrets.record(ns, &r.name, now, keys.clone());
                keys
            }
        };
        match keys {
            None => {
                return Ok(Err(Outcome::Stalled {
                    reason: StalledReason::SecretNotFound,
                    message: format!("Secret {:?} (referenced by {field}) not found in namespace {ns:?}", r.name),
                }));
            }
            Some(keys) if !keys.contains(&r.key) => {
                return Ok(Err(Outcome::Stalled {
                    reason: StalledReason::SecretKeyNotFound,
                    message: format!("Secret {:?} has no key {:?} (referenced by {field})", r.name, r.key),
                }));
            }
            Some(_) => {}
        }
    }
    match render(relay, &spec, &ctx.config) {
        Ok(children) => Ok(Ok(children)),
        Err(RenderError::Refused(r)) => Ok(Err(Outcome::Stalled { reason: r.reason, message: r.message })),
        Err(e) => Err(e.into()),
    }
}

/// Applies the children that differ from what this operator last wrote (or that someone else changed since).
async fn apply(ctx: &Context, me: &ObjectRef<IotRelay>, ns: &str, c: &Children) -> Result<(), Error> {
    let pp = PatchParams::apply(OPERATOR_FIELD_MANAGER).force();
    let cache = &ctx.caches;
    // The ServiceAccount and the Role at once, then the RoleBinding: the API server refuses a RoleBinding to a Role
    // it cannot find yet (its escalation check reads the Role), and `try_join!` would drop the Role's request on
    // that refusal, so the two would never both be written. The Deployment last: a pod naming a ServiceAccount that
    // does not exist yet is refused, which would show as a passing FailedCreate.
    futures::try_join!(
        apply_one(ctx, me, ns, &c.service_account, &pp, |r| cache.service_accounts.get(r)),
        apply_one(ctx, me, ns, &c.role, &pp, |r| cache.roles.get(r)),
    )?;
    apply_one(ctx, me, ns, &c.role_binding, &pp, |r| cache.role_bindings.get(r)).await?;
    apply_one(ctx, me, ns, &c.deployment, &pp, |r| cache.deployments.get(r)).await?;
    Ok(())
}

async fn apply_one<K>(
    ctx: &Context,
    me: &ObjectRef<IotRelay>,
    ns: &str,
    obj: &K,
    pp: &PatchParams,
    cached: impl Fn(&ObjectRef<K>) -> Option<Arc<K>>,
) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Serialize + Clone + std::fmt::Debug,
    K: serde::de::DeserializeOwned,
    <K as Resource>::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let dt = K::DynamicType::default();
    let mut value = serde_json::to_value(obj).map_err(|e| Error::Serialize("child", e))?;
    value["apiVersion"] = json!(K::api_version(&dt));
    value["kind"] = json!(K::kind(&dt));
    let name = obj.meta().name.clone().unwrap_or_default();
    let key = child_key(obj);
    let hash = hash_json(&value);
    let live = cached(&ObjectRef::new_with(&name, dt).within(ns));
    if ctx.memory.child_unchanged(me, &key, hash, live.as_deref().and_then(live_version).as_deref()) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let written = api.patch(&name, pp, &Patch::Apply(value)).await?;
    ctx.memory.child_written(me, &key, hash, live_version(&written));
    Ok(())
}

/// The relay's Deployment and pod from the caches: available, or why not (the ReplicaSet cannot create the pod,
/// e.g. Pod Security or a quota; the scheduler's "didn't have free ports"; a crashing container).
fn observe_pod(ctx: &Context, ns: &str, c: &Children) -> Outcome {
    let name = c.deployment.metadata.name.clone().unwrap_or_default();
    let deployment = ctx.caches.deployments.get(&ObjectRef::new(&name).within(ns));
    let status = deployment.as_ref().and_then(|d| d.status.as_ref());
    if status.and_then(|s| s.available_replicas).unwrap_or(0) > 0 {
        return Outcome::PodAvailable;
    }
    if let Some(stalled) = status.and_then(replica_failure) {
        return stalled;
    }
    pod_outcome(&ctx.caches.relay_pods(ns, &name))
}

/// Pure: `Stalled` when the Deployment reports that its pod cannot be created (`ReplicaFailure=True`, e.g.
/// `FailedCreate` because Pod Security, a ResourceQuota or an admission webhook refused it), with the API
/// server's reason and message.
pub fn replica_failure(status: &DeploymentStatus) -> Option<Outcome> {
    let c = status.conditions.as_ref()?.iter().find(|c| c.type_ == "ReplicaFailure" && c.status == "True")?;
    Some(Outcome::Stalled {
        reason: StalledReason::FailedCreate,
        message: format!(
            "the relay pod cannot be created ({}): {}",
            c.reason.as_deref().unwrap_or("ReplicaFailure"),
            c.message.as_deref().unwrap_or_default()
        ),
    })
}

/// Pure: the relay pod's state as the operator reports it. A pod whose container runs counts as available even
/// when its readiness probe fails: the relay then reports TunnelsReady/Degraded itself (with the real reason, e.g.
/// both tunnels down), and the operator's Ready passes that on.
pub fn pod_outcome(pods: &[Pod]) -> Outcome {
    let running = |p: &Pod| {
        let st = p.status.as_ref();
        p.metadata.deletion_timestamp.is_none()
            && st.and_then(|s| s.phase.as_deref()) == Some("Running")
            && st.and_then(|s| s.container_statuses.as_ref()).is_some_and(|cs| {
                !cs.is_empty() && cs.iter().all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
            })
    };
    if pods.iter().any(running) {
        return Outcome::PodAvailable;
    }
    let Some(pod) = pods.first() else {
        return waiting_for_pod();
    };
    let status = pod.status.clone().unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    for c in &conditions {
        if c.type_ == "PodScheduled" && c.status == "False" {
            return Outcome::PodNotReady {
                reason: c.reason.clone().unwrap_or_else(|| "Unschedulable".into()),
                message: format!("relay pod cannot be scheduled: {}", c.message.clone().unwrap_or_default()),
            };
        }
    }
    for cs in status.container_statuses.unwrap_or_default() {
        if let Some(w) = cs.state.and_then(|s| s.waiting) {
            return Outcome::PodNotReady {
                reason: w.reason.unwrap_or_else(|| "ContainerWaiting".into()),
                message: format!("relay container waiting: {}", w.message.unwrap_or_default()),
            };
        }
    }
    // Created, but the scheduler has not decided yet (a moment, usually): nothing new to report, so the same as no
    // pod at all (a status write for it would be followed at once by the scheduler's verdict).
    if !conditions.iter().any(|c| c.type_ == "PodScheduled") {
        return waiting_for_pod();
    }
    Outcome::PodNotReady {
        reason: ProgressReason::PodNotReady.as_str().into(),
        message: format!("relay pod is {}", status.phase.unwrap_or_else(|| "Pending".into())),
    }
}

/// No relay pod yet, or one the scheduler has not placed yet.
fn waiting_for_pod() -> Outcome {
    Outcome::PodNotReady {
        reason: ProgressReason::PodPending.as_str().into(),
        message: "waiting for the relay pod to be created and scheduled".into(),
    }
}

async fn update_status(
    relay: &IotRelay,
    ctx: &Context,
    me: &ObjectRef<IotRelay>,
    ns: &str,
    outcome: &Outcome,
) -> Result<(), Error> {
    let old = relay.status.clone().unwrap_or_default();
    let generation = relay.metadata.generation;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let conditions = operator_conditions(outcome, generation, &old, &now);

    let status = IotRelayStatus { observed_generation: generation, conditions, ..Default::default() };
    let patch = json!({
        "apiVersion": format!("{}/{}", iotrelay_api::GROUP, iotrelay_api::VERSION),
        "kind": "IotRelay",
        "status": status,
    });
    // Not written when the live status already says it (however it got there: an earlier pass, an operator
    // before a restart), nor when this same status was written by a pass that read the IotRelay at the version
    // the cache still holds (the cache has not caught up with that write yet; the pod's next state often wakes
    // the relay before the write's own watch event arrives). With a relay older than `TunnelsReady` the operator's
    // Ready is the relay's own: it is applied anyway, so that the operator owns all of Ready's fields (the relay's
    // replacement stops writing Ready; fields only the relay owned would then be removed from a live condition).
    if !legacy_relay(&old) && status_is_current(&old, &status) {
        return Ok(());
    }
    let hash = hash_json(&patch_without_times(&patch));
    let version = relay.metadata.resource_version.clone();
    if ctx.memory.status_pending(me, hash, version.as_deref()) {
        return Ok(());
    }
    // Events only on a transition into Stalled (or a different stall reason), so requeues don't spam.
    if let Outcome::Stalled { reason, message } = outcome {
        let was = old.condition(condition::STALLED);
        let changed = !was.is_some_and(|c| c.status == "True" && c.reason == reason.as_str() && &c.message == message);
        if changed {
            let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
            let event = Event {
                type_: EventType::Warning,
                reason: reason.as_str().into(),
                note: Some(truncate(message, 1000)),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&event, &relay.object_ref(&())).await {
                warn!(error = %e, "publishing event failed");
            }
        }
    }

    let api: Api<IotRelay> = Api::namespaced(ctx.client.clone(), ns);
    let mut written = api
        .patch_status(&relay.name_any(), &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(), &Patch::Apply(patch))
        .await?;
    ctx.memory.status_written(me, hash, version);
    trim_relay(&mut written);
    if let Some(key) = relay_change(&written) {
        ctx.memory.status_left(me, key);
    }
    Ok(())
}

/// The status patch without the conditions' `lastTransitionTime`: two passes that reached the same conditions
/// from the same (stale) status differ only there.
fn patch_without_times(patch: &serde_json::Value) -> serde_json::Value {
    let mut p = patch.clone();
    if let Some(cs) = p["status"]["conditions"].as_array_mut() {
        for c in cs.iter_mut().filter_map(|c| c.as_object_mut()) {
            c.remove("lastTransitionTime");
        }
    }
    p
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn running_unready_pod_leaves_ready_to_the_relay() {
        let p = pod(json!({"metadata": {"name": "r"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "relay", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"running": {}}}]}}));
        assert_eq!(pod_outcome(&[p]), Outcome::PodAvailable);
    }

    #[test]
    fn waiting_container_and_missing_pod_explain_themselves() {
        let p = pod(json!({"metadata": {"name": "r"}, "status": {"phase": "Pending",
            "containerStatuses": [{"name": "relay", "image": "i", "imageID": "", "ready": false, "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}}}]}}));
        assert!(matches!(pod_outcome(&[p]), Outcome::PodNotReady { reason, .. } if reason == "CrashLoopBackOff"));
        assert!(matches!(pod_outcome(&[]), Outcome::PodNotReady { reason, .. } if reason == "PodPending"));
    }

    #[test]
    fn a_pod_not_scheduled_yet_reports_what_no_pod_does() {
        let created = pod(json!({"metadata": {"name": "r"}, "status": {"phase": "Pending"}}));
        assert_eq!(pod_outcome(&[created]), pod_outcome(&[]), "nothing new until the scheduler decides");
        let scheduled = pod(json!({"metadata": {"name": "r"}, "status": {"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}]}}));
        assert!(matches!(pod_outcome(&[scheduled]), Outcome::PodNotReady { reason, .. } if reason == "PodNotReady"));
    }
}
