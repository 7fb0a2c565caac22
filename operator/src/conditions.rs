//! The conditions the operator owns, `Ready`, `Reconciling` and `Stalled`, built purely from what reconcile
//! observed and the relay's own `TunnelsReady`. Every condition has one writer: the relay writes only
//! `TunnelsReady` and `Degraded`, the operator always applies all three of its own (with force, so it takes over
//! what an older relay wrote), so nothing needs to know who owns which field.
//!
//! `Ready` aggregates:
//! - the operator is stalled (spec, Secret, chart policy, pod refused): False with the `Stalled` reason;
//! - no relay pod runs: False with the pod's reason (`PodPending`, `Unschedulable`, `CrashLoopBackOff`, ...);
//! - the relay pod runs: the relay's `TunnelsReady` (status, reason, message) when it is for the current
//!   generation; False `RelayNotUpdated` while it is for an older one, False `WaitingForRelay` while there is none.
//!
//! `Stalled` is True for the operator's own reasons and for the relay's permanent tunnel failures (a wrong
//! pre-shared key, no proposal chosen, traffic selectors refused: `TunnelsReadyReason::is_permanent`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use iotrelay_api::{IotRelayStatus, ProgressReason, StalledReason, TunnelsReadyReason, condition};

/// What the reconcile pass concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The spec is invalid, a referenced Secret is missing, or the pod is refused: nothing will change until the
    /// user acts.
    Stalled { reason: StalledReason, message: String },
    /// Children applied; the relay pod is not available yet (rolling out, pending, unschedulable). `reason` is the
    /// pod's (as Kubernetes wrote it) or a [`ProgressReason`].
    PodNotReady { reason: String, message: String },
    /// Children applied and the relay pod is available; the relay itself reports `TunnelsReady`/`Degraded`.
    PodAvailable,
}

/// What the relay reports of its tunnels, as the operator reads it from the live status.
#[derive(Debug, Clone)]
enum Report<'a> {
    /// `TunnelsReady` for the current generation (or, from a relay older than `TunnelsReady`, its `Ready`).
    Current(&'a Condition),
    /// `TunnelsReady` for an older generation (the relay has not applied the current spec yet).
    Stale(Option<i64>),
    /// Nothing yet.
    None,
}

/// True when the live status comes from a relay older than `TunnelsReady`: it reports `Degraded` and writes `Ready`
/// itself. Its `Ready` is taken as the relay's report, so the operator's `Ready` equals it and the two never
/// overwrite each other; the status is applied on every pass then, so that the operator owns all of `Ready`'s
/// fields once the new relay stops writing it.
pub fn legacy_relay(old: &IotRelayStatus) -> bool {
    old.condition(condition::TUNNELS_READY).is_none()
        && old.condition(condition::DEGRADED).is_some()
        && old.condition(condition::READY).is_some()
}

fn report(old: &IotRelayStatus, generation: Option<i64>) -> Report<'_> {
    match old.condition(condition::TUNNELS_READY) {
        Some(c) if c.observed_generation == generation => Report::Current(c),
        Some(c) => Report::Stale(c.observed_generation),
        None if legacy_relay(old) => old.condition(condition::READY).map_or(Report::None, Report::Current),
        None => Report::None,
    }
}

/// The operator's conditions for `outcome`: always `Ready`, `Reconciling` and `Stalled`, in that order.
/// `lastTransitionTime` is kept when a condition's status is unchanged.
pub fn operator_conditions(
    outcome: &Outcome,
    generation: Option<i64>,
    old: &IotRelayStatus,
    now: &Time,
) -> Vec<Condition> {
    let cond = |type_: &str, status: bool, reason: &str, message: &str| {
        condition::new(type_, status, reason, message, generation, &old.conditions, now)
    };
    let not_stalled = || cond(condition::STALLED, false, StalledReason::NotStalled.as_str(), "");
    match outcome {
        Outcome::Stalled { reason, message } => vec![
            cond(condition::READY, false, reason.as_str(), message),
            cond(condition::RECONCILING, false, reason.as_str(), message),
            cond(condition::STALLED, true, reason.as_str(), message),
        ],
        Outcome::PodNotReady { reason, message } => vec![
            cond(condition::READY, false, reason, message),
            cond(condition::RECONCILING, true, reason, message),
            not_stalled(),
        ],
        Outcome::PodAvailable => match report(old, generation) {
            Report::Current(t) => {
                let ready = cond(condition::READY, t.status == "True", &t.reason, &t.message);
                // A failure retrying cannot fix is Stalled, so kstatus says Failed instead of waiting.
                let permanent = (t.status == "False")
                    .then(|| t.reason.parse::<TunnelsReadyReason>().ok())
                    .flatten()
                    .and_then(StalledReason::from_tunnels);
                if let Some(r) = permanent {
                    let relay_stalled = ProgressReason::RelayStalled.as_str();
                    vec![
                        ready,
                        cond(condition::RECONCILING, false, relay_stalled, &t.message),
                        cond(condition::STALLED, true, r.as_str(), &t.message),
                    ]
                } else if t.status == "True" {
                    let r = ProgressReason::Ready.as_str();
                    vec![ready, cond(condition::RECONCILING, false, r, "the relay is ready"), not_stalled()]
                } else {
                    let r = ProgressReason::Connecting.as_str();
                    vec![ready, cond(condition::RECONCILING, true, r, &t.message), not_stalled()]
                }
            }
            Report::Stale(seen) => {
                let r = ProgressReason::RelayNotUpdated.as_str();
                let message = format!(
                    "the relay reports generation {}; waiting for it to apply generation {}",
                    seen.map_or("-".into(), |g| g.to_string()),
                    generation.map_or("-".into(), |g| g.to_string())
                );
                vec![
                    cond(condition::READY, false, r, &message),
                    cond(condition::RECONCILING, true, r, &message),
                    not_stalled(),
                ]
            }
            Report::None => {
                let r = ProgressReason::WaitingForRelay.as_str();
                let message = "the relay pod runs; waiting for the relay to report TunnelsReady";
                vec![
                    cond(condition::READY, false, r, message),
                    cond(condition::RECONCILING, true, r, message),
                    not_stalled(),
                ]
            }
        },
    }
}

/// True when the live status `old` already says what `new` (the operator's status apply) would: the same
/// `observedGeneration`, and each condition of `new` with the same status, reason, message and
/// observedGeneration. The operator applies all of its condition types every time, so nothing else of the live
/// status can be its to remove; then the apply would change nothing and is not sent.
pub fn status_is_current(old: &IotRelayStatus, new: &IotRelayStatus) -> bool {
    let same = |c: &Condition| {
        old.condition(&c.type_).is_some_and(|o| {
            (&o.status, &o.reason, &o.message, o.observed_generation)
                == (&c.status, &c.reason, &c.message, c.observed_generation)
        })
    };
    old.observed_generation == new.observed_generation && new.conditions.iter().all(same)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
    }

    /// A status with the relay's `TunnelsReady` for generation `gen`.
    fn with_tunnels(status: &str, reason: &str, generation: i64) -> IotRelayStatus {
        serde_json::from_value(json!({"conditions": [{"type": "TunnelsReady", "status": status, "reason": reason,
            "message": "tunnel tunnel1: authentication failed", "observedGeneration": generation,
            "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Degraded", "status": "False", "reason": "NoTunnelEstablished", "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}))
        .unwrap()
    }

    fn find<'a>(c: &'a [Condition], t: &str) -> (&'a str, &'a str) {
        let c = c.iter().find(|c| c.type_ == t).unwrap_or_else(|| panic!("no {t}"));
        (c.status.as_str(), c.reason.as_str())
    }

    fn types(c: &[Condition]) -> Vec<&str> {
        c.iter().map(|c| c.type_.as_str()).collect()
    }

    #[test]
    fn a_relay_failure_retries_cannot_fix_is_stalled() {
        let c = operator_conditions(
            &Outcome::PodAvailable,
            Some(3),
            &with_tunnels("False", "AuthenticationFailed", 3),
            &now(),
        );
        assert_eq!(find(&c, "Stalled"), ("True", "AuthenticationFailed"));
        assert!(c.iter().find(|c| c.type_ == "Stalled").unwrap().message.contains("tunnel1"));
        assert_eq!(find(&c, "Ready"), ("False", "AuthenticationFailed"));
        assert_eq!(find(&c, "Reconciling"), ("False", "RelayStalled"));
        // A transient failure keeps reconciling and is not Stalled; a ready relay is neither.
        let c = operator_conditions(
            &Outcome::PodAvailable,
            Some(3),
            &with_tunnels("False", "NoTunnelEstablished", 3),
            &now(),
        );
        assert_eq!(find(&c, "Stalled"), ("False", "NotStalled"));
        assert_eq!(find(&c, "Reconciling"), ("True", "Connecting"));
        assert_eq!(find(&c, "Ready"), ("False", "NoTunnelEstablished"));
        let c =
            operator_conditions(&Outcome::PodAvailable, Some(3), &with_tunnels("True", "TunnelEstablished", 3), &now());
        assert_eq!(find(&c, "Stalled"), ("False", "NotStalled"));
        assert_eq!(find(&c, "Reconciling"), ("False", "Ready"));
        assert_eq!(find(&c, "Ready"), ("True", "TunnelEstablished"));
    }

    #[test]
    fn ready_is_the_relays_only_for_the_current_generation() {
        // The relay has not applied generation 4 yet: its True says nothing about it.
        let old = with_tunnels("True", "TunnelEstablished", 3);
        let c = operator_conditions(&Outcome::PodAvailable, Some(4), &old, &now());
        assert_eq!(find(&c, "Ready"), ("False", "RelayNotUpdated"));
        assert_eq!(find(&c, "Reconciling"), ("True", "RelayNotUpdated"));
        assert!(c[0].message.contains("generation 3") && c[0].message.contains("generation 4"), "{}", c[0].message);
        // No report at all: waiting.
        let c = operator_conditions(&Outcome::PodAvailable, Some(4), &IotRelayStatus::default(), &now());
        assert_eq!(find(&c, "Ready"), ("False", "WaitingForRelay"));
        assert_eq!(find(&c, "Reconciling"), ("True", "WaitingForRelay"));
        // No pod: the pod's reason, whatever the relay said before.
        let pod = Outcome::PodNotReady { reason: "Unschedulable".into(), message: "no node".into() };
        let c = operator_conditions(&pod, Some(3), &old, &now());
        assert_eq!(find(&c, "Ready"), ("False", "Unschedulable"));
        assert_eq!(find(&c, "Reconciling"), ("True", "Unschedulable"));
        // Stalled: not Ready either, for the same reason.
        let stalled = Outcome::Stalled { reason: StalledReason::SecretNotFound, message: "Secret psk".into() };
        let c = operator_conditions(&stalled, Some(3), &old, &now());
        assert_eq!(find(&c, "Ready"), ("False", "SecretNotFound"));
        assert_eq!(find(&c, "Stalled"), ("True", "SecretNotFound"));
        assert_eq!(find(&c, "Reconciling"), ("False", "SecretNotFound"));
    }

    #[test]
    fn every_outcome_writes_exactly_the_operators_three_types() {
        let old = with_tunnels("True", "TunnelEstablished", 3);
        for o in [
            Outcome::PodAvailable,
            Outcome::PodNotReady { reason: "PodPending".into(), message: String::new() },
            Outcome::Stalled { reason: StalledReason::InvalidSpec, message: String::new() },
        ] {
            for g in [Some(3), Some(4)] {
                assert_eq!(types(&operator_conditions(&o, g, &old, &now())), ["Ready", "Reconciling", "Stalled"]);
            }
        }
    }

    #[test]
    fn a_relay_older_than_tunnels_ready_is_not_fought() {
        // It writes Ready and Degraded itself: the operator's Ready is the same, so the relay never writes again
        // because of it.
        let old: IotRelayStatus = serde_json::from_value(json!({"conditions": [
            {"type": "Ready", "status": "False", "reason": "NoProposalChosen", "message": "tunnel tunnel1: x",
            "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Degraded", "status": "False", "reason": "NoTunnelEstablished", "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}))
        .unwrap();
        assert!(legacy_relay(&old));
        let c = operator_conditions(&Outcome::PodAvailable, Some(3), &old, &now());
        let ready = c.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.reason.as_str(), ready.message.as_str()), ("NoProposalChosen", "tunnel tunnel1: x"));
        assert_eq!(find(&c, "Stalled"), ("True", "NoProposalChosen"));
        // Once the relay reports TunnelsReady, or before any relay reported, that is not the case.
        assert!(!legacy_relay(&with_tunnels("True", "TunnelEstablished", 3)));
        let ours = IotRelayStatus { conditions: c, ..Default::default() };
        assert!(!legacy_relay(&ours), "the operator's own Ready without Degraded");
    }

    fn status(conditions: serde_json::Value) -> IotRelayStatus {
        serde_json::from_value(json!({"observedGeneration": 3, "conditions": conditions})).unwrap()
    }

    #[test]
    fn a_status_already_live_is_current_and_nothing_else_is() {
        let reconciling = |message: &str| {
            json!({"type": "Reconciling", "status": "True", "reason": "Unschedulable", "message": message,
                "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"})
        };
        let ready = json!({"type": "Ready", "status": "False", "reason": "Unschedulable", "message": "no node",
            "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"});
        let stalled = json!({"type": "Stalled", "status": "False", "reason": "NotStalled", "message": "",
            "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"});
        let new = status(json!([ready.clone(), reconciling("no node"), stalled.clone()]));
        assert!(status_is_current(&new, &new), "the same status");
        // The relay's conditions are not the operator's business.
        let with_relays = status(json!([ready.clone(), reconciling("no node"), stalled.clone(),
            {"type": "Degraded", "status": "False", "reason": "AllTunnelsEstablished", "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]));
        assert!(status_is_current(&with_relays, &new));
        let other = status(json!([ready.clone(), reconciling("other"), stalled.clone()]));
        assert!(!status_is_current(&other, &new), "a message differs");
        assert!(!status_is_current(&status(json!([ready, reconciling("no node")])), &new), "Stalled is missing");
        let mut old_gen = new.clone();
        old_gen.observed_generation = Some(2);
        assert!(!status_is_current(&old_gen, &new), "observedGeneration differs");
    }
}
