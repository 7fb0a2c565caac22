//! Reconcile against a mocked API server (tower-test): the error paths (missing Secret, 409 conflict, 500) and the
//! status the operator writes. Every request is recorded so the tests can check what was (not) sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::watcher;
use serde_json::{Value, json};

use iotrelay_api::IotRelay;
use iotrelay_operator::cache::Writers;
use iotrelay_operator::cache::{Caches, relay_change, trim_relay};
use iotrelay_operator::metrics::Metrics;
use iotrelay_operator::reconcile::{Context, Error, RESYNC, STALLED_RECHECK, backoff, error_policy, reconcile};
use iotrelay_operator::render::RenderConfig;
use iotrelay_operator::secrets::FRESH;
use kube::runtime::reflector::ObjectRef;

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    body: Value,
}

type Handler = Arc<dyn Fn(&Method, &str, &Value) -> (u16, Value) + Send + Sync>;

/// A mock API server answering with `handler`; returns the client and the request log.
fn mock(handler: Handler) -> (Client, Arc<Mutex<Vec<Seen>>>) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = read(req).await;
            let path = parts.uri.path().to_string();
            let (code, reply) = handler(&parts.method, &path, &body);
            log.lock().unwrap().push(Seen { method: parts.method.clone(), path, body });
            send.send_response(respond(code, &reply));
        }
    });
    (Client::new(svc, "default"), seen)
}

/// A request's head and its JSON body (`Null` when it has none).
async fn read(req: Request<Body>) -> (http::request::Parts, Value) {
    let (parts, body) = req.into_parts();
    let bytes = http_body_util::BodyExt::collect(body).await.map(|b| b.to_bytes()).unwrap_or_default();
    (parts, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn respond(code: u16, reply: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(reply).unwrap()))
        .unwrap()
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("mock {reason}"), "reason": reason, "code": code})
}

fn relay() -> IotRelay {
    let text = include_str!("golden/plant-7.input.yaml");
    let mut r: IotRelay = serde_saphyr::from_str(text.split("\n---\n").next().unwrap()).unwrap();
    r.metadata.uid = Some("00000000-0000-0000-0000-000000000007".into());
    r.metadata.generation = Some(2);
    r.metadata.resource_version = Some("10".into());
    r
}

fn secret() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws-vpn", "namespace": "iot"},
           "data": {"tunnel1": "cHNrMQ==", "tunnel2": "cHNrMg=="}})
}

/// Answers everything a healthy cluster would: Secrets exist, applies echo the body, events are accepted.
fn healthy(method: &Method, path: &str, body: &Value) -> (u16, Value) {
    match (method.as_str(), path) {
        ("GET", "/api/v1/namespaces/iot/secrets/aws-vpn") => (200, secret()),
        ("GET", p) if p.ends_with("/deployments/iotrelay-plant-7") => (
            200,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "iotrelay-plant-7"},
                         "spec": {"selector": {}, "template": {}}, "status": {"availableReplicas": 1}}),
        ),
        ("GET", p) if p.ends_with("/pods") => {
            (200, json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}))
        }
        ("PATCH", p) if p.ends_with("/status") => {
            let mut r = serde_json::to_value(relay()).unwrap();
            r["status"] = body["status"].clone();
            (200, r)
        }
        ("PATCH", _) | ("POST", _) => {
            let mut b = body.clone();
            if b["metadata"]["name"].is_null() {
                b["metadata"]["name"] = json!("generated");
            }
            // As the API server: a version on every written object, a generation on Deployments.
            b["metadata"]["resourceVersion"] = json!("30");
            if b["kind"] == "Deployment" {
                b["metadata"]["generation"] = json!(1);
            }
            (if method == Method::POST { 201 } else { 200 }, b)
        }
        _ => (404, status(404, "NotFound")),
    }
}

/// The relay's Deployment as the watch cache holds it, with `status`.
fn deployment(status: Value) -> Deployment {
    serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "iotrelay-plant-7", "namespace": "iot", "generation": 1, "resourceVersion": "20",
            "ownerReferences": [{"apiVersion": "iotrelay.dev/v1alpha1", "kind": "IotRelay", "name": "plant-7",
                "uid": "00000000-0000-0000-0000-000000000007", "controller": true}]},
        "spec": {"selector": {}, "template": {}}, "status": status}))
    .unwrap()
}

/// A context whose caches hold `deployment` and `pods` (relay pods of plant-7).
fn ctx_with(client: Client, deployment: Option<Deployment>, pods: Vec<Value>) -> Arc<Context> {
    let (c, mut w) = ctx_and_writers(client, deployment);
    for p in pods {
        add_pod(&mut w, p);
    }
    c
}

/// A context whose caches hold `deployment`, and the writers of its caches.
fn ctx_and_writers(client: Client, deployment: Option<Deployment>) -> (Arc<Context>, Writers) {
    let (caches, mut w) = Caches::manual();
    if let Some(d) = deployment {
        w.deployments.apply_watcher_event(&watcher::Event::Apply(d));
    }
    let c = Arc::new(Context::new(
        client,
        RenderConfig::default(),
        Arc::new(Metrics::default()),
        Reporter { controller: "iotrelay-operator".into(), instance: Some("test".into()) },
        caches,
    ));
    (c, w)
}

/// A relay pod of plant-7 into the cache.
fn add_pod(w: &mut Writers, p: Value) {
    let mut p: Pod = serde_json::from_value(p).unwrap();
    p.metadata.namespace = Some("iot".into());
    p.metadata.labels = Some([("iotrelay.dev/relay".to_string(), "iotrelay-plant-7".to_string())].into());
    w.pods.apply_watcher_event(&watcher::Event::Apply(p));
}

/// A healthy cluster: the relay's Deployment has an available pod.
fn ctx(client: Client) -> Arc<Context> {
    ctx_with(client, Some(deployment(json!({"availableReplicas": 1}))), vec![])
}

fn condition<'a>(patch: &'a Value, t: &str) -> &'a Value {
    patch["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == t)).unwrap_or(&Value::Null)
}

fn status_patches(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter().filter(|s| s.method == Method::PATCH && s.path.ends_with("/iotrelays/plant-7/status")).collect()
}

#[tokio::test]
async fn missing_secret_is_stalled_with_event_and_no_children() {
    let (client, seen) =
        mock(Arc::new(
            |m, p, b| {
                if p.contains("/secrets/") { (404, status(404, "NotFound")) } else { healthy(m, p, b) }
            },
        ));
    let action = reconcile(Arc::new(relay()), ctx(client)).await.expect("a missing Secret is not an error");
    assert_eq!(action, Action::requeue(STALLED_RECHECK));
    let seen = seen.lock().unwrap().clone();
    let patches = status_patches(&seen);
    assert_eq!(patches.len(), 1, "{seen:#?}");
    let st = condition(&patches[0].body, "Stalled");
    assert_eq!((st["status"].as_str(), st["reason"].as_str()), (Some("True"), Some("SecretNotFound")));
    assert!(st["message"].as_str().unwrap().contains("aws-vpn"));
    assert_eq!(condition(&patches[0].body, "Reconciling")["status"], "False");
    assert_eq!(patches[0].body["status"]["observedGeneration"], 2);
    // Not Ready for the same reason; the operator never writes what the relay owns.
    let ready = condition(&patches[0].body, "Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("SecretNotFound")));
    assert!(condition(&patches[0].body, "TunnelsReady").is_null() && condition(&patches[0].body, "Degraded").is_null());
    assert!(patches[0].body["status"]["tunnels"].is_null());
    assert!(
        seen.iter()
            .any(|s| s.method == Method::POST && s.path.contains("events") && s.body["reason"] == "SecretNotFound"),
        "no Event: {seen:#?}"
    );
    assert!(
        !seen.iter().any(|s| s.path.contains("deployments") || s.path.contains("roles")),
        "children applied while stalled"
    );
}

#[tokio::test]
async fn missing_secret_key_is_stalled() {
    let (client, seen) = mock(Arc::new(|m, p, b| {
        if p.contains("/secrets/") {
            let mut s = secret();
            s["data"].as_object_mut().unwrap().remove("tunnel2");
            (200, s)
        } else {
            healthy(m, p, b)
        }
    }));
    reconcile(Arc::new(relay()), ctx(client)).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let st = condition(&status_patches(&seen)[0].body, "Stalled").clone();
    assert_eq!(st["reason"], "SecretKeyNotFound");
    let msg = st["message"].as_str().unwrap();
    assert!(msg.contains("aws-vpn") && msg.contains("tunnel2"), "{msg}");
    assert!(!msg.contains("cHNr"), "secret data leaked: {msg}");
}

#[tokio::test]
async fn invalid_spec_is_stalled_without_api_reads() {
    let (client, seen) = mock(Arc::new(healthy));
    let mut r = relay();
    r.spec.forwards[0].target.port = 0;
    reconcile(Arc::new(r), ctx(client)).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let st = condition(&status_patches(&seen)[0].body, "Stalled").clone();
    assert_eq!(st["reason"], "InvalidSpec");
    assert!(st["message"].as_str().unwrap().contains("spec.forwards[0].target.port: must be 1..65535"));
    assert!(!seen.iter().any(|s| s.path.contains("secrets")));
}

#[tokio::test]
async fn conflict_on_apply_is_transient_and_backs_off() {
    let (client, seen) = mock(Arc::new(|m, p, b| {
        if m == Method::PATCH && p.contains("/deployments/") {
            (409, status(409, "Conflict"))
        } else {
            healthy(m, p, b)
        }
    }));
    let c = ctx(client);
    let obj = Arc::new(relay());
    let err = reconcile(obj.clone(), c.clone()).await.expect_err("409 must surface");
    assert_eq!(err.kind(), "conflict");
    assert!(status_patches(&seen.lock().unwrap()).is_empty(), "status written after a failed apply");
    assert_eq!(error_policy(obj.clone(), &err, c.clone()), Action::requeue(Duration::from_secs(1)));
    assert_eq!(error_policy(obj.clone(), &err, c.clone()), Action::requeue(Duration::from_secs(2)));
    assert_eq!(error_policy(obj, &err, c), Action::requeue(Duration::from_secs(4)));
}

#[tokio::test]
async fn server_error_is_transient() {
    let (client, _seen) =
        mock(Arc::new(
            |m, p, b| {
                if p.contains("/secrets/") { (500, status(500, "InternalError")) } else { healthy(m, p, b) }
            },
        ));
    let err = reconcile(Arc::new(relay()), ctx(client)).await.expect_err("500 must surface");
    assert!(matches!(err, Error::Kube(kube::Error::Api(ref s)) if s.code == 500), "{err:?}");
    assert_eq!(err.kind(), "api");
}

#[tokio::test]
async fn healthy_relay_applies_children_with_ssa_and_owner() {
    let (client, seen) = mock(Arc::new(healthy));
    let action = reconcile(Arc::new(relay()), ctx(client)).await.unwrap();
    assert_eq!(action, Action::requeue(RESYNC));
    let seen = seen.lock().unwrap().clone();
    let applied: Vec<_> = seen.iter().filter(|s| s.method == Method::PATCH && !s.path.ends_with("/status")).collect();
    let kinds: Vec<_> = applied.iter().map(|s| s.body["kind"].as_str().unwrap_or("?")).collect();
    assert_eq!(kinds, ["ServiceAccount", "Role", "RoleBinding", "Deployment"]);
    for a in &applied {
        assert_eq!(a.body["metadata"]["ownerReferences"][0]["uid"], "00000000-0000-0000-0000-000000000007");
    }
    let p = status_patches(&seen);
    // The pod runs but the relay has not reported TunnelsReady yet: still reconciling (kstatus InProgress).
    let c = |t: &str| (condition(&p[0].body, t)["status"].clone(), condition(&p[0].body, t)["reason"].clone());
    assert_eq!(c("Reconciling"), (json!("True"), json!("WaitingForRelay")));
    assert_eq!(c("Ready"), (json!("False"), json!("WaitingForRelay")));
    assert_eq!(c("Stalled"), (json!("False"), json!("NotStalled")), "the operator writes all its conditions");
    assert!(condition(&p[0].body, "TunnelsReady").is_null() && condition(&p[0].body, "Degraded").is_null());
}

#[tokio::test]
async fn ready_relay_is_not_reconciling() {
    let (client, seen) = mock(Arc::new(healthy));
    let mut r = relay();
    r.status = Some(
        serde_json::from_value(
            json!({"conditions": [{"type": "TunnelsReady", "status": "True", "reason": "TunnelEstablished",
        "message": "tunnel1 established", "lastTransitionTime": "2026-11-28T19:40:05Z", "observedGeneration": 2}]}),
        )
        .unwrap(),
    );
    reconcile(Arc::new(r), ctx(client)).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let p = status_patches(&seen);
    assert_eq!(condition(&p[0].body, "Reconciling")["status"], "False");
    let ready = condition(&p[0].body, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str(), ready["message"].as_str()),
        (Some("True"), Some("TunnelEstablished"), Some("tunnel1 established")),
        "Ready is the relay's TunnelsReady"
    );
    assert!(condition(&p[0].body, "TunnelsReady").is_null(), "the operator never writes the relay's condition");
}

/// A relay older than `TunnelsReady` writes `Ready` itself (with force): the operator's `Ready` is the same, so
/// neither overwrites the other, and it is applied on every pass, so that the operator owns all of `Ready`'s
/// fields once the new relay, which no longer writes `Ready`, replaces it.
#[tokio::test]
async fn a_relay_older_than_tunnels_ready_is_taken_as_is() {
    let mut r = relay();
    r.status = Some(
        serde_json::from_value(json!({"observedGeneration": 2, "conditions": [
            {"type": "Ready", "status": "True", "reason": "TunnelEstablished", "message": "established: tunnel1",
             "lastTransitionTime": "2026-11-28T19:40:05Z", "observedGeneration": 2},
            {"type": "Degraded", "status": "True", "reason": "TunnelDown", "message": "tunnel down: tunnel2",
             "lastTransitionTime": "2026-11-28T19:40:05Z", "observedGeneration": 2},
            {"type": "Reconciling", "status": "False", "reason": "Ready", "message": "the relay is ready",
             "lastTransitionTime": "2026-11-28T19:40:05Z", "observedGeneration": 2},
            {"type": "Stalled", "status": "False", "reason": "NotStalled", "message": "",
             "lastTransitionTime": "2026-11-28T19:40:05Z", "observedGeneration": 2}]}))
        .unwrap(),
    );
    // The live status already says all of it, and it is still applied.
    let (client, seen) = mock(Arc::new(healthy));
    reconcile(Arc::new(r.clone()), ctx(client)).await.unwrap();
    let p = status_patches(&seen.lock().unwrap()).iter().map(|s| s.body.clone()).collect::<Vec<_>>();
    assert_eq!(p.len(), 1);
    let ready = condition(&p[0], "Ready");
    assert_eq!((ready["status"].as_str(), ready["message"].as_str()), (Some("True"), Some("established: tunnel1")));
    // Once the relay reports TunnelsReady, the same status is not written again.
    let written: iotrelay_api::IotRelayStatus = serde_json::from_value(p[0]["status"].clone()).unwrap();
    let s = r.status.as_mut().unwrap();
    s.conditions.truncate(2);
    s.conditions[0].type_ = "TunnelsReady".into();
    s.conditions.extend(written.conditions);
    let (client, seen) = mock(Arc::new(healthy));
    reconcile(Arc::new(r), ctx(client)).await.unwrap();
    assert!(status_patches(&seen.lock().unwrap()).is_empty(), "{:#?}", seen.lock().unwrap());
}

#[tokio::test]
async fn unschedulable_pod_explains_ready_false() {
    let (client, seen) = mock(Arc::new(healthy));
    let pod = json!({"metadata": {"name": "iotrelay-plant-7-abc"},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."}]}});
    let c = ctx_with(client, Some(deployment(json!({"replicas": 1, "unavailableReplicas": 1}))), vec![pod]);
    let action = reconcile(Arc::new(relay()), c).await.unwrap();
    // Not polled: the pod's and the Deployment's changes wake the relay.
    assert_eq!(action, Action::requeue(RESYNC));
    let seen = seen.lock().unwrap().clone();
    let p = status_patches(&seen);
    let ready = condition(&p[0].body, "Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("Unschedulable")));
    assert!(ready["message"].as_str().unwrap().contains("free ports"));
    assert_eq!(condition(&p[0].body, "Reconciling")["status"], "True");
}

/// Pod Security (or a quota, or an admission webhook) refuses the pod: the ReplicaSet reports FailedCreate, the
/// Deployment `ReplicaFailure`; the IotRelay is Stalled with that message, not "waiting for the pod".
#[tokio::test]
async fn refused_pod_is_stalled_with_the_api_servers_message() {
    let (client, seen) = mock(Arc::new(healthy));
    let refused = "pods \"iotrelay-plant-7-x\" is forbidden: violates PodSecurity \"restricted:latest\": host namespaces (hostNetwork=true)";
    let d = deployment(json!({"replicas": 0, "conditions": [
        {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "message": "no"},
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": refused}]}));
    let action = reconcile(Arc::new(relay()), ctx_with(client, Some(d), vec![])).await.unwrap();
    assert_eq!(action, Action::requeue(RESYNC), "a change of the Deployment wakes it");
    let seen = seen.lock().unwrap().clone();
    let p = status_patches(&seen);
    let st = condition(&p[0].body, "Stalled");
    assert_eq!((st["status"].as_str(), st["reason"].as_str()), (Some("True"), Some("FailedCreate")));
    assert!(st["message"].as_str().unwrap().contains("violates PodSecurity"), "{st}");
    assert!(seen.iter().any(|s| s.path.contains("events") && s.body["reason"] == "FailedCreate"), "no Event");
}

/// No reconcile storm: a second pass over an unchanged IotRelay whose children are in the cache as the first pass
/// left them writes nothing at all (no apply, no status patch, no event).
#[tokio::test]
async fn unchanged_relay_is_not_written_again() {
    let (client, seen) = mock(Arc::new(healthy));
    let pod = json!({"metadata": {"name": "iotrelay-plant-7-abc"}, "status": {"phase": "Pending"}});
    let (caches, mut w) = Caches::manual();
    let c = Arc::new(Context::new(
        client,
        RenderConfig::default(),
        Arc::new(Metrics::default()),
        Reporter { controller: "iotrelay-operator".into(), instance: Some("test".into()) },
        caches,
    ));
    let mut p: Pod = serde_json::from_value(pod).unwrap();
    p.metadata.namespace = Some("iot".into());
    p.metadata.labels = Some([("iotrelay.dev/relay".to_string(), "iotrelay-plant-7".to_string())].into());
    w.pods.apply_watcher_event(&watcher::Event::Apply(p));
    let mut r = relay();
    reconcile(Arc::new(r.clone()), c.clone()).await.unwrap();
    let first = seen.lock().unwrap().clone();
    let writes = |s: &[Seen]| s.iter().filter(|s| s.method != Method::GET).count();
    assert_eq!(writes(&first), 5, "4 applies and a status patch: {first:#?}");
    // The watches deliver what was written: the children (the mock echoes the applied body) and the status.
    for s in first.iter().filter(|s| s.method == Method::PATCH && !s.path.ends_with("/status")) {
        let mut b = s.body.clone();
        b["metadata"]["resourceVersion"] = json!("30");
        if b["kind"] == "Deployment" {
            b["metadata"]["generation"] = json!(1);
        }
        match b["kind"].as_str().unwrap() {
            "ServiceAccount" => w.service_accounts.apply_watcher_event(&watcher::Event::Apply(from(b))),
            "Role" => w.roles.apply_watcher_event(&watcher::Event::Apply(from(b))),
            "RoleBinding" => w.role_bindings.apply_watcher_event(&watcher::Event::Apply(from(b))),
            _ => w.deployments.apply_watcher_event(&watcher::Event::Apply(from(b))),
        }
    }
    r.status = Some(serde_json::from_value(status_patches(&first)[0].body["status"].clone()).unwrap());
    // The watch event of that status write is recognised as the operator's own (it starts no pass); a condition
    // the relay changes afterwards is not.
    let me = ObjectRef::from_obj(&r);
    let key = |r: &IotRelay| {
        let mut t = r.clone();
        trim_relay(&mut t);
        relay_change(&t).unwrap()
    };
    assert!(c.memory.left_by_own_status(&me, key(&r)), "own status write not remembered");
    let mut changed = r.clone();
    changed.status.as_mut().unwrap().conditions[0].message = "the relay says otherwise".into();
    assert!(!c.memory.left_by_own_status(&me, key(&changed)));
    seen.lock().unwrap().clear();
    reconcile(Arc::new(r.clone()), c.clone()).await.unwrap();
    let second = seen.lock().unwrap().clone();
    assert_eq!(writes(&second), 0, "an unchanged relay was written again: {second:#?}");
    // Someone else changes a child (its version moves): that one child is applied again, nothing else.
    let sa = c.caches.service_accounts.state()[0].clone();
    let mut sa = (*sa).clone();
    sa.metadata.resource_version = Some("31".into());
    w.service_accounts.apply_watcher_event(&watcher::Event::Apply(sa));
    reconcile(Arc::new(r), c).await.unwrap();
    let third = seen.lock().unwrap().clone();
    let paths: Vec<_> = third.iter().filter(|s| s.method != Method::GET).map(|s| s.path.clone()).collect();
    assert_eq!(paths, ["/api/v1/namespaces/iot/serviceaccounts/iotrelay-plant-7"], "{third:#?}");
}

fn from<K: serde::de::DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).unwrap()
}

#[test]
fn backoff_is_capped() {
    assert_eq!(backoff(1), Duration::from_secs(1));
    assert_eq!(backoff(3), Duration::from_secs(4));
    assert_eq!(backoff(50), Duration::from_secs(300));
}

/// As the real API server: a RoleBinding to a Role that does not exist yet is refused (the RBAC escalation check
/// looks the Role up), and each answer takes a while, so requests sent at once overlap. The Role must be written
/// (answered) before its RoleBinding is sent, and the ServiceAccount before the Deployment.
#[tokio::test(start_paused = true)]
async fn rbac_children_are_applied_in_dependency_order() {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let written: Arc<Mutex<Vec<String>>> = Arc::default();
    let refused: Arc<Mutex<Vec<String>>> = Arc::default();
    let (w, r) = (written.clone(), refused.clone());
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = read(req).await;
            let path = parts.uri.path().to_string();
            let kind = body["kind"].as_str().unwrap_or_default().to_string();
            let needs = match kind.as_str() {
                "RoleBinding" => Some("Role"),
                "Deployment" => Some("ServiceAccount"),
                _ => None,
            };
            let (w, r) = (w.clone(), r.clone());
            tokio::spawn(async move {
                let missing = needs.filter(|n| !w.lock().unwrap().iter().any(|k| k == n));
                tokio::time::sleep(Duration::from_millis(100)).await;
                let (code, reply) = match missing {
                    Some(n) if parts.method == Method::PATCH => {
                        r.lock().unwrap().push(format!("{kind} before its {n}"));
                        (404, status(404, "NotFound"))
                    }
                    _ => healthy(&parts.method, &path, &body),
                };
                if parts.method == Method::PATCH && code == 200 && !kind.is_empty() {
                    w.lock().unwrap().push(kind);
                }
                send.send_response(respond(code, &reply));
            });
        }
    });
    let c = ctx_with(Client::new(svc, "default"), None, vec![]);
    let result = reconcile(Arc::new(relay()), c).await;
    assert_eq!(refused.lock().unwrap().clone(), Vec::<String>::new(), "written: {:?}", written.lock().unwrap());
    result.expect("a healthy cluster");
    let written = written.lock().unwrap().clone();
    for kind in ["ServiceAccount", "Role", "RoleBinding", "Deployment"] {
        assert!(written.iter().any(|k| k == kind), "{kind} not written: {written:?}");
    }
}

fn secret_reads(seen: &Mutex<Vec<Seen>>) -> usize {
    seen.lock().unwrap().iter().filter(|s| s.method == Method::GET && s.path.contains("/secrets/")).count()
}

/// 1000 IotRelays naming one Secret read it about 3,300 times at start-up (once per pass): one read now answers
/// every pass, of any IotRelay, for `FRESH`; the first pass after that reads it again.
#[tokio::test(start_paused = true)]
async fn one_secret_read_serves_every_pass_while_fresh() {
    let (client, seen) = mock(Arc::new(healthy));
    let c = ctx(client);
    reconcile(Arc::new(relay()), c.clone()).await.unwrap();
    assert_eq!(secret_reads(&seen), 1, "both tunnels name the same Secret");
    tokio::time::advance(FRESH - Duration::from_millis(1)).await;
    let mut other = relay();
    other.metadata.name = Some("plant-8".into());
    other.metadata.uid = Some("00000000-0000-0000-0000-000000000008".into());
    reconcile(Arc::new(other), c.clone()).await.unwrap();
    reconcile(Arc::new(relay()), c.clone()).await.unwrap();
    assert_eq!(secret_reads(&seen), 1, "read again while fresh");
    tokio::time::advance(Duration::from_millis(1)).await;
    reconcile(Arc::new(relay()), c).await.unwrap();
    assert_eq!(secret_reads(&seen), 2, "an expired read was used");
}

/// A relay stalled on a missing Secret looks again after `STALLED_RECHECK` and then reads the API server, not
/// the answer it got before (which other passes still share meanwhile).
#[tokio::test(start_paused = true)]
async fn the_recheck_of_a_missing_secret_reads_it_again() {
    let exists = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let e = exists.clone();
    let (client, seen) = mock(Arc::new(move |m, p, b| {
        if p.contains("/secrets/") && !e.load(std::sync::atomic::Ordering::SeqCst) {
            (404, status(404, "NotFound"))
        } else {
            healthy(m, p, b)
        }
    }));
    let c = ctx(client);
    assert_eq!(reconcile(Arc::new(relay()), c.clone()).await.unwrap(), Action::requeue(STALLED_RECHECK));
    exists.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(reconcile(Arc::new(relay()), c.clone()).await.unwrap(), Action::requeue(STALLED_RECHECK));
    assert_eq!(secret_reads(&seen), 1, "the fresh answer was not used");
    tokio::time::advance(STALLED_RECHECK).await;
    assert_eq!(reconcile(Arc::new(relay()), c).await.unwrap(), Action::requeue(RESYNC), "the Secret exists now");
    assert_eq!(secret_reads(&seen), 2);
}

/// The IotRelay with the status `patch` wrote, as the API server leaves it after that status apply.
fn as_written(mut r: IotRelay, patch: &Value) -> IotRelay {
    r.status = Some(serde_json::from_value(patch["status"].clone()).unwrap());
    r
}

/// An operator that restarts (it remembers nothing) does not write again the status an IotRelay already has:
/// with 1000 IotRelays that was 1000 writes after every restart or leader change.
#[tokio::test]
async fn a_status_the_relay_already_has_is_not_written_again() {
    let (client, seen) = mock(Arc::new(healthy));
    let unschedulable = json!({"metadata": {"name": "iotrelay-plant-7-abc"}, "status": {"phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no node"}]}});
    let pending = || deployment(json!({"replicas": 1, "unavailableReplicas": 1}));
    reconcile(Arc::new(relay()), ctx_with(client, Some(pending()), vec![unschedulable.clone()])).await.unwrap();
    let patch = status_patches(&seen.lock().unwrap())[0].body.clone();
    let r = as_written(relay(), &patch);
    let (client, seen) = mock(Arc::new(healthy));
    reconcile(Arc::new(r.clone()), ctx_with(client, Some(pending()), vec![unschedulable])).await.unwrap();
    assert!(status_patches(&seen.lock().unwrap()).is_empty(), "{:#?}", seen.lock().unwrap());
    // Once the pod runs the operator reports that it waits for the relay: a change, written.
    let (client, seen) = mock(Arc::new(healthy));
    reconcile(Arc::new(r), ctx(client)).await.unwrap();
    let p = status_patches(&seen.lock().unwrap()).iter().map(|s| s.body.clone()).collect::<Vec<_>>();
    assert_eq!(p.len(), 1);
    assert_eq!(condition(&p[0], "Reconciling")["reason"], "WaitingForRelay");
}

/// The relay's pod appears right after the pass that wrote its Deployment, and the pass it wakes often reads the
/// IotRelay before the cache has the first pass's status write. Nothing is written: a pod the scheduler has not
/// placed yet reports what no pod did, and the same status is not sent again for the same version of the IotRelay.
/// A later version without it (someone removed it) is written again.
#[tokio::test]
async fn a_pod_not_scheduled_yet_writes_no_status() {
    let (client, seen) = mock(Arc::new(healthy));
    let (c, mut w) = ctx_and_writers(client, Some(deployment(json!({"replicas": 1, "unavailableReplicas": 1}))));
    reconcile(Arc::new(relay()), c.clone()).await.unwrap();
    let first = status_patches(&seen.lock().unwrap()).iter().map(|s| s.body.clone()).collect::<Vec<_>>();
    assert_eq!(first.len(), 1);
    assert_eq!(condition(&first[0], "Ready")["reason"], "PodPending");
    add_pod(&mut w, json!({"metadata": {"name": "iotrelay-plant-7-abc"}, "status": {"phase": "Pending"}}));
    seen.lock().unwrap().clear();
    reconcile(Arc::new(relay()), c.clone()).await.unwrap();
    assert!(status_patches(&seen.lock().unwrap()).is_empty(), "{:#?}", seen.lock().unwrap());
    let mut later = relay();
    later.metadata.resource_version = Some("11".into());
    reconcile(Arc::new(later), c).await.unwrap();
    assert_eq!(status_patches(&seen.lock().unwrap()).len(), 1, "a newer version without the status");
}
