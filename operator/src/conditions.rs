//! The conditions the operator owns (`Reconciling`, `Stalled`, and `Ready` only while no relay pod runs), built
//! purely from what reconcile observed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

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

fn cond(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    old: &IotRelayStatus,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = match old.condition(type_) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now.clone(),
    };
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time,
    }
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
            let is_true = |t: &str| old.condition(t).is_some_and(|c| c.status == "True");
            let (reconciling, reason, message) = if is_true(condition::READY) {
                (false, "Ready".to_string(), "the relay is ready".to_string())
            } else if old.condition(condition::STALLED).is_some_and(|c| {
                c.status == "True"
                    && c.reason != "SecretNotFound"
                    && c.reason != "SecretKeyNotFound"
                    && c.reason != "InvalidSpec"
            }) {
                (false, "RelayStalled".to_string(), "the relay reports Stalled".to_string())
            } else {
                let why = old.condition(condition::READY).map(|c| c.message.clone()).unwrap_or_default();
                let why = if why.is_empty() { "waiting for the relay to report Ready".to_string() } else { why };
                (true, "Connecting".to_string(), why)
            };
            vec![cond(condition::RECONCILING, reconciling, &reason, &message, generation, old, now)]
        }
    }
}
