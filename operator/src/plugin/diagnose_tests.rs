//! `diagnose` on fixtures: a healthy relay, and each step failing the way it does in a cluster.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::diagnose::{Observed, Report, Verdict, diagnose};
use iotrelay_api::IotRelay;

fn relay(status: Value) -> IotRelay {
    serde_json::from_value(json!({
        "apiVersion": "iotrelay.dev/v1alpha1", "kind": "IotRelay",
        "metadata": {"name": "plant-7", "namespace": "iot", "generation": 2},
        "spec": {"insideAddress": "100.127.0.1", "remoteSubnets": ["100.64.0.0/16"],
                 "tunnels": [
                    {"name": "tunnel1", "peerAddress": "198.51.100.2",
                     "preSharedKeySecretRef": {"name": "aws-vpn", "key": "tunnel1"}},
                    {"name": "tunnel2", "peerAddress": "198.51.100.3",
                     "preSharedKeySecretRef": {"name": "aws-vpn", "key": "tunnel2"}}],
                 "forwards": [{"name": "admin", "protocol": "UDP", "listenPort": 7000,
                               "allowedSources": ["203.0.113.10/32"], "target": {"address": "100.64.1.10", "port": 7000}}]},
        "status": status,
    }))
    .expect("relay fixture")
}

fn tunnel(name: &str, state: &str, ike_in: u64, error: &str) -> Value {
    json!({"name": name, "state": state, "active": state == "Established", "lastError": error, "ikeMessagesIn": ike_in})
}

fn ready_status(ready: bool, tunnels: Value, forward_listening: bool) -> Value {
    json!({
        "observedGeneration": 2,
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                        "reason": if ready { "TunnelEstablished" } else { "NoTunnelEstablished" }, "message": "m",
                        "lastTransitionTime": "2026-11-30T11:00:00Z"}],
        "outsideAddress": "198.51.100.1",
        "tunnels": tunnels,
        "forwards": [{"name": "admin", "listening": forward_listening, "endpoint": "198.51.100.1:7000",
                      "drops": {}}],
        "datapath": {"drops": {}},
    })
}

fn healthy_status() -> Value {
    ready_status(
        true,
        json!([tunnel("tunnel1", "Established", 40, ""), tunnel("tunnel2", "Established", 38, "")]),
        true,
    )
}

fn deployment(status: Value) -> Deployment {
    serde_json::from_value(json!({"metadata": {"name": "iotrelay-plant-7", "namespace": "iot"}, "status": status}))
        .expect("deployment fixture")
}

fn running_pod() -> Pod {
    pod(
        json!({"nodeName": "node-a"}),
        json!({"phase": "Running", "containerStatuses": [
        {"name": "relay", "image": "i", "imageID": "", "ready": true, "restartCount": 1,
         "state": {"running": {}}}]}),
    )
}

fn pod(spec: Value, status: Value) -> Pod {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "relay"}]);
    serde_json::from_value(json!({"metadata": {"name": "iotrelay-plant-7-abc", "namespace": "iot"},
        "spec": spec, "status": status}))
    .expect("pod fixture")
}

fn run(r: &IotRelay, d: Option<&Deployment>, pods: &[Pod]) -> Report {
    diagnose(&Observed { relay: r, deployment: d, pods, warnings: &[] })
}

fn available() -> Deployment {
    deployment(json!({"availableReplicas": 1}))
}

/// The first failed step's name and its "next" text; panics when nothing failed.
fn first_failure(rep: &Report) -> (&'static str, String, String) {
    let s = rep.failed().unwrap_or_else(|| panic!("nothing failed:\n{}", rep.render()));
    (s.name, s.detail.clone(), s.next.clone().unwrap_or_default())
}

#[test]
fn a_healthy_relay_passes_every_step() {
    let r = relay(healthy_status());
    let rep = run(&r, Some(&available()), &[running_pod()]);
    assert!(rep.healthy(), "{}", rep.render());
    assert!(rep.steps.iter().all(|s| s.verdict == Verdict::Ok), "{}", rep.render());
    let text = rep.render();
    assert!(text.starts_with("IotRelay iot/plant-7\n"), "{text}");
    assert!(text.contains("ok    relay pod scheduled    iotrelay-plant-7-abc on node node-a"), "{text}");
    assert!(text.contains("ok    AWS answering          IKE messages received: tunnel1 40, tunnel2 38"), "{text}");
    assert!(text.ends_with("healthy\n"), "{text}");
}

#[test]
fn no_status_points_at_the_operator() {
    let r = relay(Value::Null);
    let (step, _, next) = first_failure(&run(&r, None, &[]));
    assert_eq!(step, "IotRelay accepted");
    assert!(next.contains("is the operator running"), "{next}");
}

#[test]
fn a_missing_secret_is_the_first_failure_and_later_steps_are_not_checked() {
    let r = relay(json!({"observedGeneration": 2, "conditions": [{"type": "Stalled", "status": "True",
        "reason": "SecretNotFound", "message": "Secret \"aws-vpn\" not found", "lastTransitionTime": "2026-11-30T11:00:00Z"}]}));
    let rep = run(&r, None, &[]);
    let (step, detail, next) = first_failure(&rep);
    assert_eq!((step, detail.as_str()), ("IotRelay accepted", "Stalled SecretNotFound: Secret \"aws-vpn\" not found"));
    assert!(next.contains("create the Secret/key the message names in namespace iot"), "{next}");
    assert!(rep.steps[1..].iter().all(|s| s.verdict == Verdict::Skipped), "{}", rep.render());
    assert!(rep.render().contains("unhealthy: IotRelay accepted\nnext: create the Secret"), "{}", rep.render());
}

#[test]
fn a_refused_pod_names_pod_security() {
    let r = relay(json!({"observedGeneration": 2, "conditions": [{"type": "Stalled", "status": "True",
        "reason": "FailedCreate", "message": "x", "lastTransitionTime": "2026-11-30T11:00:00Z"}]}));
    let d = deployment(json!({"conditions": [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
        "message": "pods \"p\" is forbidden: violates PodSecurity \"restricted:latest\": host namespaces"}]}));
    let (step, detail, next) = first_failure(&run(&r, Some(&d), &[]));
    assert_eq!(step, "relay Deployment");
    assert!(detail.contains("violates PodSecurity"), "{detail}");
    assert!(next.contains("pod-security.kubernetes.io/enforce"), "{next}");
}

#[test]
fn an_unschedulable_pod_quotes_the_scheduler() {
    let r = relay(json!({"observedGeneration": 2, "conditions": []}));
    let p = pod(
        json!({"nodeSelector": {"x": "y"}}),
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
        "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."}]}),
    );
    let (step, detail, next) = first_failure(&run(&r, Some(&deployment(json!({}))), &[p]));
    assert_eq!(step, "relay pod scheduled");
    assert!(detail.starts_with("Unschedulable: 0/1 nodes are available"), "{detail}");
    assert!(next.contains("spec.nodeSelector") && next.contains("UDP 500/4500"), "{next}");
    let (step, _, next) = first_failure(&run(&r, Some(&deployment(json!({}))), &[]));
    assert_eq!(step, "relay pod scheduled");
    assert!(next.contains("describe rs -l iotrelay.dev/relay=iotrelay-plant-7"), "{next}");
}

#[test]
fn a_crashing_container_points_at_its_log() {
    let r = relay(json!({"observedGeneration": 2}));
    let p = pod(
        json!({"nodeName": "node-a"}),
        json!({"phase": "Running", "containerStatuses": [
        {"name": "relay", "image": "i", "imageID": "", "ready": false, "restartCount": 4,
         "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}}]}),
    );
    let (step, detail, next) = first_failure(&run(&r, Some(&deployment(json!({}))), &[p]));
    assert_eq!((step, detail.as_str()), ("relay pod running", "container waiting: CrashLoopBackOff: back-off 40s"));
    assert_eq!(next, "the relay's log says why it stops: kubectl -n iot logs deploy/iotrelay-plant-7 --previous");
}

#[test]
fn a_relay_that_never_wrote_status() {
    let r = relay(json!({"observedGeneration": 2, "conditions": [{"type": "Reconciling", "status": "True",
        "reason": "Connecting", "message": "", "lastTransitionTime": "2026-11-30T11:00:00Z"}]}));
    let (step, _, next) = first_failure(&run(&r, Some(&available()), &[running_pod()]));
    assert_eq!(step, "relay reporting");
    assert!(next.starts_with("kubectl -n iot logs deploy/iotrelay-plant-7"), "{next}");
}

#[test]
fn silent_peers_mean_aws_is_not_answering() {
    let r = relay(ready_status(
        false,
        json!([tunnel("tunnel1", "Connecting", 0, "peer did not answer"), tunnel("tunnel2", "Connecting", 0, "")]),
        true,
    ));
    let (step, detail, next) = first_failure(&run(&r, Some(&available()), &[running_pod()]));
    assert_eq!(step, "AWS answering");
    assert_eq!(detail, "no IKE message received from tunnel1 (198.51.100.2), tunnel2 (198.51.100.3)");
    assert!(next.contains("customer gateway") && next.contains("198.51.100.1"), "{next}");
}

#[test]
fn a_wrong_psk_is_named_after_aws_answered() {
    let r = relay(ready_status(
        false,
        json!([tunnel("tunnel1", "Down", 3, "peer sent AUTHENTICATION_FAILED"), tunnel("tunnel2", "Down", 2, "x")]),
        true,
    ));
    let rep = run(&r, Some(&available()), &[running_pod()]);
    let (step, detail, next) = first_failure(&rep);
    assert_eq!(step, "tunnels established");
    assert!(detail.starts_with("tunnel1: Down (peer sent AUTHENTICATION_FAILED)"), "{detail}");
    assert!(next.contains("pre-shared key (Secret aws-vpn key tunnel1)"), "{next}");
    assert_eq!(rep.steps.iter().find(|s| s.name == "AWS answering").unwrap().verdict, Verdict::Ok);
}

#[test]
fn one_tunnel_down_or_drops_warn_but_stay_healthy() {
    let mut s = ready_status(
        true,
        json!([tunnel("tunnel1", "Established", 9, ""), tunnel("tunnel2", "Connecting", 0, "")]),
        true,
    );
    s["forwards"][0]["drops"] = json!({"sourceNotAllowed": 3});
    s["datapath"]["drops"] = json!({"unknownSpi": 1});
    let rep = run(&relay(s), Some(&available()), &[running_pod()]);
    assert!(rep.healthy(), "{}", rep.render());
    let verdict = |n: &str| rep.steps.iter().find(|s| s.name == n).unwrap().clone();
    assert_eq!(verdict("AWS answering").verdict, Verdict::Warn);
    assert_eq!(verdict("tunnels established").verdict, Verdict::Warn);
    let d = verdict("drops");
    assert_eq!((d.verdict, d.detail.as_str()), (Verdict::Warn, "forward admin sourceNotAllowed=3, ESP unknownSpi=1"));
    assert!(d.next.unwrap().starts_with("sourceNotAllowed: senders outside the forward's allowedSources"));
    assert!(rep.render().contains("check: sourceNotAllowed"), "{}", rep.render());
}

#[test]
fn a_forward_that_cannot_bind_fails() {
    let s = ready_status(
        false,
        json!([tunnel("tunnel1", "Established", 9, ""), tunnel("tunnel2", "Established", 9, "")]),
        false,
    );
    let (step, detail, _) = first_failure(&run(&relay(s), Some(&available()), &[running_pod()]));
    assert_eq!((step, detail.as_str()), ("forwards listening", "not listening: admin (UDP 7000)"));
}
