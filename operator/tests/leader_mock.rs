//! Lease leader election against a mocked API server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use iotrelay_operator::leader::{Attempt, LeaseConfig, hold, try_acquire};

type Handler = Arc<dyn Fn(&Method, &Value) -> (u16, Value) + Send + Sync>;
type Log = Arc<Mutex<Vec<(Method, Value)>>>;

fn mock(handler: Handler) -> (Client, Log) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = http_body_util::BodyExt::collect(body).await.map(|b| b.to_bytes()).unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (code, reply) = handler(&parts.method, &body);
            log.lock().unwrap().push((parts.method.clone(), body));
            send.send_response(
                Response::builder().status(code).body(Body::from(serde_json::to_vec(&reply).unwrap())).unwrap(),
            );
        }
    });
    (Client::new(svc, "default"), seen)
}

fn cfg() -> LeaseConfig {
    LeaseConfig {
        namespace: "sys".into(),
        name: "iotrelay-operator-leader".into(),
        identity: "me".into(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        renew_every: Duration::from_secs(2),
    }
}

fn lease(holder: &str, renewed: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": {"name": "iotrelay-operator-leader", "namespace": "sys", "resourceVersion": "7"},
           "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed, "leaseTransitions": 3}})
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "nf"})
}

fn conflict() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "c"})
}

fn now_rfc3339(offset_secs: i64) -> String {
    let t = k8s_openapi::jiff::Timestamp::now()
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(offset_secs))
        .unwrap();
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

#[tokio::test]
async fn creates_a_missing_lease() {
    let (client, seen) = mock(Arc::new(|m, b| if m == Method::GET { (404, not_found()) } else { (201, b.clone()) }));
    assert_eq!(try_acquire(&client, &cfg()).await.unwrap(), Attempt::Leader);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[1].0, Method::POST);
    assert_eq!(seen[1].1["spec"]["holderIdentity"], "me");
}

#[tokio::test]
async fn respects_a_fresh_lease_of_another_replica() {
    let fresh = lease("other", &now_rfc3339(-3));
    let (client, seen) = mock(Arc::new(move |_, _| (200, fresh.clone())));
    assert_eq!(try_acquire(&client, &cfg()).await.unwrap(), Attempt::Follower);
    assert_eq!(seen.lock().unwrap().len(), 1, "must not write a lease it does not hold");
}

#[tokio::test]
async fn takes_over_an_expired_lease_with_optimistic_concurrency() {
    let stale = lease("other", &now_rfc3339(-60));
    let (client, seen) =
        mock(Arc::new(move |m, b| if m == Method::GET { (200, stale.clone()) } else { (200, b.clone()) }));
    assert_eq!(try_acquire(&client, &cfg()).await.unwrap(), Attempt::Leader);
    let seen = seen.lock().unwrap();
    let (m, body) = &seen[1];
    assert_eq!(*m, Method::PUT);
    assert_eq!(body["metadata"]["resourceVersion"], "7", "replace must carry the read resourceVersion");
    assert_eq!(body["spec"]["holderIdentity"], "me");
    assert_eq!(body["spec"]["leaseTransitions"], 4);
}

#[tokio::test]
async fn losing_the_race_is_follower_not_error() {
    let stale = lease("other", &now_rfc3339(-60));
    let (client, _) =
        mock(Arc::new(move |m, _| if m == Method::GET { (200, stale.clone()) } else { (409, conflict()) }));
    assert_eq!(try_acquire(&client, &cfg()).await.unwrap(), Attempt::Follower);
}

/// The production settings renew well before the lease could expire, and give up before it does.
#[test]
fn renew_deadline_is_shorter_than_the_lease() {
    let c = LeaseConfig::new("sys".into(), "l".into(), "me".into());
    assert!(c.renew_every < c.renew_deadline && c.renew_deadline < c.lease_duration, "{c:?}");
    assert_eq!((c.renew_deadline, c.lease_duration), (Duration::from_secs(10), Duration::from_secs(15)));
}

/// Two leaders never overlap: when the API server fails every renewal, the leader steps down by the renew
/// deadline (10 s), before another replica may take the lease (15 s after the last renewal).
#[tokio::test(start_paused = true)]
async fn leader_steps_down_before_the_lease_expires_when_renewals_fail() {
    let server_error = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "message": "x"});
    let (client, _) = mock(Arc::new(move |_, _| (500, server_error.clone())));
    let t0 = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(60), hold(&client, &cfg())).await.expect("still leading after 60 s");
    assert!(t0.elapsed() <= cfg().renew_deadline, "stepped down after {:?}", t0.elapsed());
}

/// The same when a renewal hangs (the API server accepts the connection and never answers).
#[tokio::test(start_paused = true)]
async fn leader_steps_down_when_a_renewal_hangs() {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(req) = handle.next_request().await {
            held.push(req); // never answered
        }
    });
    let client = Client::new(svc, "default");
    let t0 = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(60), hold(&client, &cfg())).await.expect("still leading after 60 s");
    assert!(t0.elapsed() <= cfg().renew_deadline, "stepped down after {:?}", t0.elapsed());
}
