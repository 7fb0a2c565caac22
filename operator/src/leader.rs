//! Leader election with a `coordination.k8s.io/v1` Lease, so two operator replicas never reconcile at once.
//!
//! kube-rs has no built-in elector. This is the client-go algorithm, reduced: read the Lease; take it when it is
//! free or expired (a replace with the read resourceVersion, so two candidates can't both win); renew it every
//! `renew_every`; a leader that has not renewed within `renew_deadline` (shorter than the lease) stops leading (the
//! binary exits, and its pod restarts as a candidate). Because it stops `lease_duration - renew_deadline` before
//! any other replica may take the expired lease (5 s with client-go's 10 s in 15 s), two leaders never overlap,
//! even when the API server stops answering in the middle of a renewal.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};

/// Settings of the election.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    pub lease_duration: Duration,
    /// A leader that could not renew for this long steps down; must be shorter than `lease_duration`.
    pub renew_deadline: Duration,
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: a 15 s lease, renewed every 2 s, given up 10 s after the last renewal.
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        LeaseConfig {
            namespace,
            name,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew_every: Duration::from_secs(2),
        }
    }
}

/// Result of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the lease (acquired or renewed).
    Leader,
    /// Someone else holds a valid lease.
    Follower,
}

/// Pure: whether a lease held by someone else has expired at `now`.
pub fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let (Some(renew), Some(secs)) = (spec.renew_time.as_ref(), spec.lease_duration_seconds) else {
        return true;
    };
    let deadline = renew.0.checked_add(SignedDuration::from_secs(i64::from(secs)));
    deadline.map(|d| d < now).unwrap_or(true)
}

/// One acquire-or-renew step.
pub async fn try_acquire(client: &Client, cfg: &LeaseConfig) -> Result<Attempt, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let now = Timestamp::now();
    let secs = i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(15);
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(cfg.name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leader),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Follower),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let ours = spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
            let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
            if !ours && !free && !expired(&spec, now) {
                return Ok(Attempt::Follower);
            }
            let mut new = spec.clone();
            if !ours {
                new.acquire_time = Some(MicroTime(now));
                new.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            }
            new.holder_identity = Some(cfg.identity.clone());
            new.lease_duration_seconds = Some(secs);
            new.renew_time = Some(MicroTime(now));
            lease.spec = Some(new);
            // replace carries the resourceVersion we read: a concurrent winner makes this a 409.
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leader),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Follower),
                Err(e) => Err(e),
            }
        }
    }
}

/// Gives the lease up (on graceful shutdown) so a standby takes over at once instead of after expiry.
pub async fn release(client: &Client, cfg: &LeaseConfig) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    if let Some(mut lease) = api.get_opt(&cfg.name).await? {
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() == Some(cfg.identity.as_str()) {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            lease.spec = Some(spec);
            api.replace(&cfg.name, &PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

/// Blocks until this replica is the leader.
pub async fn acquire(client: &Client, cfg: &LeaseConfig) {
    loop {
        match try_acquire(client, cfg).await {
            Ok(Attempt::Leader) => return,
            Ok(Attempt::Follower) => {}
            Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
        }
        tokio::time::sleep(cfg.renew_every).await;
    }
}

/// Renews until leadership is lost: another replica holds the lease, or no renewal succeeded for `renew_deadline`
/// (a renewal still in flight at the deadline is abandoned). Returns then; the caller must stop leading at once.
pub async fn hold(client: &Client, cfg: &LeaseConfig) {
    // A renewal writes the time it started; the deadline counts from there.
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(cfg.renew_every).await;
        let left = cfg.renew_deadline.saturating_sub(last_ok.elapsed());
        if left.is_zero() {
            tracing::warn!("no lease renewal within the renew deadline: stepping down");
            return;
        }
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(left, try_acquire(client, cfg)).await {
            Ok(Ok(Attempt::Leader)) => last_ok = started,
            Ok(Ok(Attempt::Follower)) => return,
            Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed"),
            Err(_) => {
                tracing::warn!("lease renewal did not finish before the renew deadline: stepping down");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(renew_secs_ago: i64, duration: i32) -> LeaseSpec {
        let now = Timestamp::now();
        LeaseSpec {
            holder_identity: Some("other".into()),
            renew_time: Some(MicroTime(now.checked_sub(SignedDuration::from_secs(renew_secs_ago)).unwrap())),
            lease_duration_seconds: Some(duration),
            ..Default::default()
        }
    }

    #[test]
    fn lease_expiry() {
        let now = Timestamp::now();
        assert!(!expired(&spec(5, 15), now), "renewed 5 s ago, 15 s lease");
        assert!(expired(&spec(20, 15), now), "renewed 20 s ago, 15 s lease");
        assert!(expired(&LeaseSpec::default(), now), "never renewed");
    }
}
