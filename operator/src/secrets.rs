//! What reconcile knows of the Secrets an IotRelay names: whether each exists and which keys it holds (key names
//! only; values are never kept). A Secret is read with `get` and the answer serves every pass, of any IotRelay, for
//! [`FRESH`]: the passes of one IotRelay come in bursts (its children written, its pod created, its pod scheduled)
//! and many IotRelays often share one Secret, so at start-up with 1000 IotRelays on one Secret the operator read
//! it about 3,300 times (once per pass), and now about once per [`FRESH`].
//!
//! Secrets are not watched: that needs `list`/`watch` on every Secret of the cluster (Kubernetes authorizes a
//! metadata-only list like a full one), which the operator deliberately does not hold (the chart's RBAC and the
//! e2e case `relay-and-operator-get-secrets-only`). So a change of a Secret is seen by the next pass that reads it
//! after the cached answer expired, and a relay stalled on a Secret looks again every
//! [`crate::reconcile::STALLED_RECHECK`] (longer than [`FRESH`], so that look always asks the API server).
//!
//! Bounded by time: [`SecretKeys::sweep`] (run with the memory sweep) drops every expired answer, so the table
//! holds at most the Secrets read in the last sweep interval.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use tokio::time::Instant;

/// How long one read of a Secret answers for every pass.
pub const FRESH: Duration = Duration::from_secs(10);

/// What a read of a Secret said: `None` when it does not exist, else the names of its keys.
pub type Keys = Option<BTreeSet<String>>;

/// The key names of a Secret (`data` and `stringData`), never the values.
pub fn key_names(s: &Secret) -> BTreeSet<String> {
    let data = s.data.iter().flat_map(|d| d.keys());
    let string_data = s.string_data.iter().flat_map(|d| d.keys());
    data.chain(string_data).cloned().collect()
}

/// A Secret by (namespace, name).
type SecretId = (String, String);

/// The recent answers, each with the time it was read, shared by all passes (a clone shares the same table).
#[derive(Debug, Default, Clone)]
pub struct SecretKeys {
    entries: Arc<Mutex<HashMap<SecretId, (Instant, Keys)>>>,
}

impl SecretKeys {
    /// The answer for Secret `name` in `namespace` if it was read less than [`FRESH`] before `now`.
    pub fn fresh(&self, namespace: &str, name: &str, now: Instant) -> Option<Keys> {
        let map = self.entries.lock().ok()?;
        let (read_at, keys) = map.get(&(namespace.to_string(), name.to_string()))?;
        (now.saturating_duration_since(*read_at) < FRESH).then(|| keys.clone())
    }

    /// Records what a read of the Secret at `now` said.
    pub fn record(&self, namespace: &str, name: &str, now: Instant, keys: Keys) {
        if let Ok(mut map) = self.entries.lock() {
            map.insert((namespace.to_string(), name.to_string()), (now, keys));
        }
    }

    /// Drops every answer that is no longer fresh at `now`.
    pub fn sweep(&self, now: Instant) {
        if let Ok(mut map) = self.entries.lock() {
            map.retain(|_, (read_at, _)| now.saturating_duration_since(*read_at) < FRESH);
        }
    }

    /// How many answers are held.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when no answer is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_answer_serves_for_fresh_then_is_read_again_and_swept() {
        let s = SecretKeys::default();
        let t0 = Instant::now();
        assert_eq!(s.fresh("iot", "aws-vpn", t0), None, "never read");
        s.record("iot", "aws-vpn", t0, Some(["tunnel1".to_string()].into()));
        s.record("iot", "gone", t0, None);
        let later = t0 + FRESH - Duration::from_millis(1);
        assert_eq!(s.fresh("iot", "aws-vpn", later), Some(Some(["tunnel1".to_string()].into())));
        assert_eq!(s.fresh("iot", "gone", later), Some(None), "a missing Secret is an answer too");
        assert_eq!(s.fresh("other", "aws-vpn", later), None, "per namespace");
        assert_eq!(s.fresh("iot", "aws-vpn", t0 + FRESH), None, "expired: read it again");
        s.record("iot", "gone", t0 + FRESH, None);
        s.sweep(t0 + FRESH);
        assert_eq!(s.len(), 1, "the expired answer is dropped, the new one kept");
        s.sweep(t0 + 2 * FRESH);
        assert!(s.is_empty());
    }

    #[test]
    fn only_key_names_are_kept() {
        let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "aws-vpn"},
            "data": {"tunnel1": "cHNrMQ=="}, "stringData": {"tunnel2": "psk2"}}))
        .unwrap();
        let keys = key_names(&secret);
        assert_eq!(keys, ["tunnel1".to_string(), "tunnel2".to_string()].into());
        assert!(!format!("{keys:?}").contains("psk"), "a value was kept");
    }
}
