//! The conditions the operator owns (`Reconciling`, `Stalled`, and `Ready` only while no relay pod runs), built
//! purely from what reconcile observed.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ManagedFieldsEntry, Time};

use iotrelay_api::{IotRelayStatus, condition};

/// What the reconcile pass concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The spec is invalid or a referenced Secret is missing: nothing will change until the user acts.
    Stalled { reason: String, message: String },
    /// Children applied; the relay pod is not available yet (rolling out, pending, unschedulable).
    PodNotReady { reason: String, message: String },
    /// Children applied and the relay pod is available; the relay itself reports Ready/Degraded.
    PodAvailable,
}

/// A condition built by [`condition::new`] against the old status (one builder for the relay and the operator).
fn cond(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    old: &IotRelayStatus,
    now: &Time,
) -> Condition {
    condition::new(type_, status, reason, message, generation, &old.conditions, now)
}

/// The operator's conditions for `outcome`. `lastTransitionTime` is kept when a condition's status is unchanged.
///
/// `Stalled` is written only while the operator itself is stalled; otherwise it is left out of the operator's
/// server-side apply, so an old operator-owned `Stalled=True` disappears and the relay may report its own
/// (e.g. `AUTHENTICATION_FAILED`). `Ready` is written only while no relay pod is available to write it.
pub fn operator_conditions(
    outcome: &Outcome,
    generation: Option<i64>,
    old: &IotRelayStatus,
    now: &Time,
) -> Vec<Condition> {
    match outcome {
        Outcome::Stalled { reason, message } => vec![
            cond(condition::RECONCILING, false, reason, message, generation, old, now),
            cond(condition::STALLED, true, reason, message, generation, old, now),
        ],
        Outcome::PodNotReady { reason, message } => vec![
            cond(condition::RECONCILING, true, reason, message, generation, old, now),
            // No relay runs to report Ready; say why it is not. The relay takes this condition over once it runs.
            cond(condition::READY, false, reason, message, generation, old, now),
        ],
        Outcome::PodAvailable => {
            let ready = old.condition(condition::READY);
            // In-cluster the relay reports only Ready/Degraded; a tunnel failure that retrying cannot fix (its
            // Ready reason) is the operator's to surface as Stalled, so kstatus says Failed instead of waiting.
            if let Some(r) =
                ready.filter(|c| c.status == "False" && RELAY_PERMANENT_REASONS.contains(&c.reason.as_str()))
            {
                return vec![
                    cond(condition::RECONCILING, false, "RelayStalled", &r.message, generation, old, now),
                    cond(condition::STALLED, true, &r.reason, &r.message, generation, old, now),
                ];
            }
            let (reconciling, reason, message) = if ready.is_some_and(|c| c.status == "True") {
                (false, "Ready".to_string(), "the relay is ready".to_string())
            } else if old
                .condition(condition::STALLED)
                .is_some_and(|c| c.status == "True" && !OPERATOR_STALLED_REASONS.contains(&c.reason.as_str()))
            {
                (false, "RelayStalled".to_string(), "the relay reports Stalled".to_string())
            } else {
                let why = ready.map(|c| c.message.clone()).unwrap_or_default();
                let why = if why.is_empty() { "waiting for the relay to report Ready".to_string() } else { why };
                (true, "Connecting".to_string(), why)
            };
            vec![cond(condition::RECONCILING, reconciling, &reason, &message, generation, old, now)]
        }
    }
}

/// The `Stalled` reasons the operator itself writes (a spec or Secret problem, or what the chart does not allow):
/// once the relay pod runs again they are the operator's to clear, not the relay's report.
pub const OPERATOR_STALLED_REASONS: [&str; 7] = [
    "InvalidSpec",
    crate::reconcile::FAILED_CREATE,
    "SecretNotFound",
    "SecretKeyNotFound",
    crate::admit::IMAGE_OVERRIDE_NOT_ALLOWED,
    crate::admit::PRIVILEGED_NOT_ALLOWED,
    crate::admit::PORT_CONFLICT,
];

/// The relay's `Ready=False` reasons that no retry can fix (`DownReason::is_permanent` in the engine): a wrong
/// pre-shared key, or proposals / traffic selectors the peer refuses.
pub const RELAY_PERMANENT_REASONS: [&str; 3] = ["AuthenticationFailed", "NoProposalChosen", "TsUnacceptable"];

/// The fields of condition `type_` in `/status` that `manager` owns and no other manager co-owns (from
/// `metadata.managedFields`). A server-side apply that leaves the condition out removes exactly these fields; if
/// another manager still owns the entry's key (the relay owns `Ready` once it has written it), what remains is a
/// condition without `status`/`reason`/... that the API server rejects. So while this is non-empty the operator
/// keeps applying the condition (with the live values) until the relay has taken those fields back.
pub fn sole_owned_condition_fields(managed: &[ManagedFieldsEntry], manager: &str, type_: &str) -> BTreeSet<String> {
    let key = format!("k:{}", serde_json::json!({ "type": type_ }));
    let fields = |e: &ManagedFieldsEntry| -> BTreeSet<String> {
        if e.subresource.as_deref() != Some("status") {
            return BTreeSet::new();
        }
        e.fields_v1
            .as_ref()
            .and_then(|f| f.0.get("f:status"))
            .and_then(|s| s.get("f:conditions"))
            .and_then(|c| c.get(&key))
            .and_then(|c| c.as_object())
            .map(|o| o.keys().filter(|k| k.as_str() != "." && k.as_str() != "f:type").cloned().collect())
            .unwrap_or_default()
    };
    let mine: BTreeSet<String> =
        managed.iter().filter(|e| e.manager.as_deref() == Some(manager)).flat_map(fields).collect();
    let others: BTreeSet<String> =
        managed.iter().filter(|e| e.manager.as_deref() != Some(manager)).flat_map(fields).collect();
    mine.difference(&others).cloned().collect()
}

/// True when the live status `old` already says what `new` (the operator's status apply, by `manager`) would:
/// the same `observedGeneration`, each condition of `new` with the same status, reason, message and
/// observedGeneration, and no other condition owned by `manager` in `managed` (the apply would remove it). Then
/// the apply would change nothing and is not sent.
pub fn status_is_current(
    old: &IotRelayStatus,
    managed: &[ManagedFieldsEntry],
    manager: &str,
    new: &IotRelayStatus,
) -> bool {
    let same = |c: &Condition| {
        old.condition(&c.type_).is_some_and(|o| {
            (&o.status, &o.reason, &o.message, o.observed_generation)
                == (&c.status, &c.reason, &c.message, c.observed_generation)
        })
    };
    let written: BTreeSet<&str> = new.conditions.iter().map(|c| c.type_.as_str()).collect();
    old.observed_generation == new.observed_generation
        && new.conditions.iter().all(same)
        && owned_condition_types(managed, manager).iter().all(|t| written.contains(t.as_str()))
}

/// The condition types `manager` owns an entry of in `/status` (from `metadata.managedFields`).
fn owned_condition_types(managed: &[ManagedFieldsEntry], manager: &str) -> BTreeSet<String> {
    managed
        .iter()
        .filter(|e| e.manager.as_deref() == Some(manager) && e.subresource.as_deref() == Some("status"))
        .filter_map(|e| e.fields_v1.as_ref()?.0.get("f:status")?.get("f:conditions")?.as_object())
        .flat_map(|c| c.keys())
        .filter_map(|k| {
            let key: serde_json::Value = serde_json::from_str(k.strip_prefix("k:")?).ok()?;
            key.get("type")?.as_str().map(String::from)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
    use serde_json::json;

    fn entry(manager: &str, subresource: &str, ready_fields: &[&str]) -> ManagedFieldsEntry {
        let mut c = serde_json::Map::new();
        c.insert(".".into(), json!({}));
        c.insert("f:type".into(), json!({}));
        for f in ready_fields {
            c.insert(format!("f:{f}"), json!({}));
        }
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Apply".into()),
            subresource: Some(subresource.into()),
            fields_v1: Some(FieldsV1(json!({"f:status": {"f:conditions": {r#"k:{"type":"Ready"}"#: c}}}))),
            ..Default::default()
        }
    }

    #[test]
    fn ready_fields_the_operator_alone_owns() {
        let all = ["status", "reason", "message", "lastTransitionTime", "observedGeneration"];
        // The operator wrote Ready after the relay: it alone owns the values, the relay only the key.
        let m = [entry("iotrelay-sidecar", "status", &[]), entry("iotrelay-operator", "status", &all)];
        assert_eq!(sole_owned_condition_fields(&m, "iotrelay-operator", "Ready").len(), 5);
        // The relay wrote Ready again (same observedGeneration): nothing would be stripped.
        let m =
            [entry("iotrelay-sidecar", "status", &all), entry("iotrelay-operator", "status", &["observedGeneration"])];
        assert!(sole_owned_condition_fields(&m, "iotrelay-operator", "Ready").is_empty());
        // Fields of the main resource (not /status) and other conditions do not count.
        let m = [entry("iotrelay-operator", "", &all)];
        assert!(sole_owned_condition_fields(&m, "iotrelay-operator", "Ready").is_empty());
        let m = [entry("iotrelay-operator", "status", &all)];
        assert!(sole_owned_condition_fields(&m, "iotrelay-operator", "Degraded").is_empty());
        assert_eq!(
            sole_owned_condition_fields(&m, "iotrelay-operator", "Ready"),
            ["f:lastTransitionTime", "f:message", "f:observedGeneration", "f:reason", "f:status"]
                .map(String::from)
                .into()
        );
    }

    fn with_ready(status: &str, reason: &str) -> IotRelayStatus {
        serde_json::from_value(json!({"conditions": [{"type": "Ready", "status": status, "reason": reason,
            "message": "tunnel tunnel1: authentication failed", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}))
        .unwrap()
    }

    #[test]
    fn a_relay_failure_retries_cannot_fix_is_stalled() {
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let c =
            operator_conditions(&Outcome::PodAvailable, Some(3), &with_ready("False", "AuthenticationFailed"), &now);
        let stalled = c.iter().find(|c| c.type_ == condition::STALLED).expect("Stalled written");
        assert_eq!((stalled.status.as_str(), stalled.reason.as_str()), ("True", "AuthenticationFailed"));
        assert!(stalled.message.contains("tunnel1"));
        assert!(c.iter().any(|c| c.type_ == condition::RECONCILING && c.status == "False"));
        // A transient failure keeps reconciling and is not Stalled; a ready relay is neither.
        let c = operator_conditions(&Outcome::PodAvailable, Some(3), &with_ready("False", "DeadPeer"), &now);
        assert!(c.iter().all(|c| c.type_ != condition::STALLED));
        assert!(c.iter().any(|c| c.type_ == condition::RECONCILING && c.status == "True"));
        let c = operator_conditions(&Outcome::PodAvailable, Some(3), &with_ready("True", "TunnelEstablished"), &now);
        assert!(c.iter().all(|c| c.type_ != condition::STALLED));
        assert!(c.iter().any(|c| c.type_ == condition::RECONCILING && c.status == "False"));
    }

    fn status(conditions: serde_json::Value) -> IotRelayStatus {
        serde_json::from_value(json!({"observedGeneration": 3, "conditions": conditions})).unwrap()
    }

    fn operator_owns(types: &[&str]) -> Vec<ManagedFieldsEntry> {
        let mut c = serde_json::Map::new();
        for t in types {
            c.insert(format!("k:{}", json!({ "type": t })), json!({".": {}, "f:status": {}}));
        }
        vec![ManagedFieldsEntry {
            manager: Some("iotrelay-operator".into()),
            operation: Some("Apply".into()),
            subresource: Some("status".into()),
            fields_v1: Some(FieldsV1(json!({"f:status": {"f:conditions": c}}))),
            ..Default::default()
        }]
    }

    #[test]
    fn a_status_already_live_is_current_and_nothing_else_is() {
        let reconciling = |message: &str| {
            json!({"type": "Reconciling", "status": "True", "reason": "Unschedulable", "message": message,
                "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"})
        };
        let ready = json!({"type": "Ready", "status": "False", "reason": "Unschedulable", "message": "no node",
            "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"});
        let new = status(json!([reconciling("no node"), ready.clone()]));
        let m = operator_owns(&["Reconciling", "Ready"]);
        let current =
            |old: &IotRelayStatus, m: &[ManagedFieldsEntry]| status_is_current(old, m, "iotrelay-operator", &new);
        assert!(current(&new, &m), "the same status");
        // A Degraded the relay owns is not the operator's business.
        let with_relays = status(json!([reconciling("no node"), ready.clone(), {"type": "Degraded", "status": "False",
            "reason": "AllUp", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]));
        assert!(current(&with_relays, &m));
        assert!(!current(&status(json!([reconciling("other"), ready.clone()])), &m), "a message differs");
        assert!(!current(&status(json!([reconciling("no node")])), &m), "Ready is missing");
        let mut old_gen = new.clone();
        old_gen.observed_generation = Some(2);
        assert!(!current(&old_gen, &m), "observedGeneration differs");
        // The operator still owns a Stalled it no longer writes: the apply would remove it.
        let stalled = json!({"type": "Stalled", "status": "True", "reason": "SecretNotFound", "message": "x",
            "lastTransitionTime": "2026-01-01T00:00:00Z"});
        let old = status(json!([reconciling("no node"), ready, stalled]));
        assert!(!current(&old, &operator_owns(&["Reconciling", "Ready", "Stalled"])));
        assert!(current(&old, &m), "a Stalled owned by the relay stays");
    }
}
