//! `kubectl iotrelay diagnose`: walks the path from the IotRelay to traffic (accepted by the operator, Deployment,
//! pod scheduled, pod running, relay reporting, AWS answering, tunnels established, forwards listening, drops,
//! Ready) and says what to check next for the first step that fails. Pure: what the API returned in, a report out.

use iotrelay_api::{IotRelay, StalledReason, TunnelState, condition};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt as _;

use crate::reconcile::replica_failure;
use crate::render::{RELAY_LABEL, child_name};

/// What the API returned for one IotRelay.
pub struct Observed<'a> {
    pub relay: &'a IotRelay,
    /// The relay's Deployment (`iotrelay-<name>`), if it exists.
    pub deployment: Option<&'a Deployment>,
    /// The relay's pods (label `iotrelay.dev/relay`).
    pub pods: &'a [Pod],
    /// Recent Warning Events of the IotRelay, `reason: message`, newest first.
    pub warnings: &'a [String],
}

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Works, but something deserves a look (a tunnel down while the other carries traffic, drops).
    Warn,
    Fail,
    /// Not checked: an earlier step failed.
    Skipped,
}

/// One step of the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    /// What to check next (for `Fail` and `Warn`).
    pub next: Option<String>,
}

/// The walk's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub title: String,
    pub steps: Vec<Step>,
    pub warnings: Vec<String>,
}

impl Report {
    /// False when a step failed (the plugin's exit status is then non-zero).
    pub fn healthy(&self) -> bool {
        !self.steps.iter().any(|s| s.verdict == Verdict::Fail)
    }

    /// The first failed step.
    pub fn failed(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.verdict == Verdict::Fail)
    }

    pub fn render(&self) -> String {
        let mut out = format!("{}\n", self.title);
        for s in &self.steps {
            let mark = match s.verdict {
                Verdict::Ok => "ok",
                Verdict::Warn => "WARN",
                Verdict::Fail => "FAIL",
                Verdict::Skipped => "-",
            };
            let detail = if s.verdict == Verdict::Skipped { "not checked" } else { &s.detail };
            out.push_str(&format!("  {mark:<5} {:<22} {detail}\n", s.name));
            if s.verdict == Verdict::Warn
                && let Some(n) = &s.next
            {
                out.push_str(&format!("        {:<22} check: {n}\n", ""));
            }
        }
        if !self.warnings.is_empty() {
            out.push_str("recent warning events:\n");
            for w in &self.warnings {
                out.push_str(&format!("  {w}\n"));
            }
        }
        match self.failed() {
            Some(s) => out.push_str(&format!("unhealthy: {}\nnext: {}\n", s.name, s.next.as_deref().unwrap_or("-"))),
            None => out.push_str("healthy\n"),
        }
        out
    }
}

type Outcome = (Verdict, String, Option<String>);
/// A step: its name and its check.
type Check = (&'static str, fn(&Ctx) -> Outcome);

fn ok(detail: impl Into<String>) -> Outcome {
    (Verdict::Ok, detail.into(), None)
}
fn fail(detail: impl Into<String>, next: impl Into<String>) -> Outcome {
    (Verdict::Fail, detail.into(), Some(next.into()))
}
fn warn(detail: impl Into<String>, next: impl Into<String>) -> Outcome {
    (Verdict::Warn, detail.into(), Some(next.into()))
}

/// Walks the path for one IotRelay.
pub fn diagnose(o: &Observed) -> Report {
    let r = o.relay;
    let ns = r.namespace().unwrap_or_default();
    let name = r.name_any();
    let child = child_name(&name);
    let ctx = Ctx { o, ns: &ns, child: &child };
    let checks: [Check; 10] = [
        ("IotRelay accepted", accepted),
        ("relay Deployment", deployment),
        ("relay pod scheduled", scheduled),
        ("relay pod running", running),
        ("relay reporting", reporting),
        ("AWS answering", aws_answering),
        ("tunnels established", established),
        ("forwards listening", listening),
        ("drops", drops),
        ("Ready", ready),
    ];
    let mut steps = Vec::new();
    let mut failed = false;
    for (step, check) in checks {
        let (verdict, detail, next) = if failed { (Verdict::Skipped, String::new(), None) } else { check(&ctx) };
        failed |= verdict == Verdict::Fail;
        steps.push(Step { name: step, verdict, detail, next });
    }
    Report { title: format!("IotRelay {ns}/{name}"), steps, warnings: o.warnings.to_vec() }
}

struct Ctx<'a> {
    o: &'a Observed<'a>,
    ns: &'a str,
    child: &'a str,
}

impl Ctx<'_> {
    fn status(&self) -> iotrelay_api::IotRelayStatus {
        self.o.relay.status.clone().unwrap_or_default()
    }
    fn running_pod(&self) -> Option<&Pod> {
        self.o.pods.iter().find(|p| {
            let st = p.status.as_ref();
            p.metadata.deletion_timestamp.is_none()
                && st.and_then(|s| s.phase.as_deref()) == Some("Running")
                && st.and_then(|s| s.container_statuses.as_ref()).is_some_and(|cs| {
                    !cs.is_empty() && cs.iter().all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
                })
        })
    }
    fn describe_pods(&self) -> String {
        format!("kubectl -n {} describe pod -l {RELAY_LABEL}={}", self.ns, self.child)
    }
    fn logs(&self) -> String {
        format!("kubectl -n {} logs deploy/{}", self.ns, self.child)
    }
}

fn accepted(c: &Ctx) -> Outcome {
    let r = c.o.relay;
    let Some(s) = r.status.as_ref().filter(|s| s.observed_generation.is_some() || !s.conditions.is_empty()) else {
        return fail(
            "no status: the operator has not processed this IotRelay",
            "is the operator running and watching this namespace? kubectl get deploy -A -l \
             app.kubernetes.io/name=iotrelay-operator, then its logs (and the chart's watchNamespace)",
        );
    };
    // The operator's own refusals end here; a refused pod (FailedCreate) is the Deployment step's, the relay's
    // tunnel failures the later steps'.
    let stalled = s.condition(condition::STALLED).filter(|st| st.status == "True");
    let reason = stalled.and_then(|st| st.reason.parse::<StalledReason>().ok());
    let next = match reason {
        Some(StalledReason::InvalidSpec) => {
            Some("fix the field the message names (kubectl explain iotrelay.spec)".into())
        }
        Some(StalledReason::SecretNotFound | StalledReason::SecretKeyNotFound) => Some(format!(
            "create the Secret/key the message names in namespace {} (kubectl -n {} create secret generic ...); \
             the operator looks again every 30 s",
            c.ns, c.ns
        )),
        Some(StalledReason::PrivilegedNotAllowed | StalledReason::ImageOverrideNotAllowed) => Some(
            "remove spec.privileged / spec.image, or allow them in the chart (relay.allowPrivileged, \
             relay.allowImageOverride)"
                .to_string(),
        ),
        Some(StalledReason::PortConflict) => Some("change the setting the message names".to_string()),
        Some(
            StalledReason::FailedCreate
            | StalledReason::AuthenticationFailed
            | StalledReason::NoProposalChosen
            | StalledReason::TsUnacceptable
            | StalledReason::NotStalled,
        )
        | None => None,
    };
    if let (Some(st), Some(next)) = (stalled, next) {
        return fail(format!("Stalled {}: {}", st.reason, st.message), next);
    }
    match (s.observed_generation, r.metadata.generation) {
        (Some(o), Some(g)) if o < g => warn(
            format!("the operator has acted on generation {o}, the spec is at {g}"),
            "the operator may be busy or down: its logs",
        ),
        (o, _) => ok(format!("generation {} observed by the operator", o.map_or("-".into(), |o| o.to_string()))),
    }
}

fn deployment(c: &Ctx) -> Outcome {
    let Some(d) = c.o.deployment else {
        return fail(
            format!("no Deployment {}", c.child),
            "the operator creates it: the operator's logs (RBAC, API errors)",
        );
    };
    if let Some(crate::conditions::Outcome::Stalled { message, .. }) = d.status.as_ref().and_then(replica_failure) {
        return fail(
            message,
            format!(
                "the API server refused the relay pod: Pod Security (the namespace's pod-security.kubernetes.io/enforce \
                 level must allow hostNetwork, i.e. privileged), a ResourceQuota or an admission webhook; \
                 kubectl -n {} describe rs -l {RELAY_LABEL}={}",
                c.ns, c.child
            ),
        );
    }
    let available = d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0);
    ok(format!("{} ({available} available)", c.child))
}

fn scheduled(c: &Ctx) -> Outcome {
    let live: Vec<&Pod> = c.o.pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    let Some(pod) = live.iter().find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()) else {
        let why = live
            .iter()
            .flat_map(|p| p.status.iter().flat_map(|s| s.conditions.iter().flatten()))
            .find(|c| c.type_ == "PodScheduled" && c.status == "False");
        return match why {
            Some(w) => fail(
                format!(
                    "{}: {}",
                    w.reason.as_deref().unwrap_or("Unschedulable"),
                    w.message.as_deref().unwrap_or_default()
                ),
                format!(
                    "the scheduler's message says why: a nodeSelector, affinity or toleration (spec.nodeSelector, \
                     spec.affinity, spec.tolerations) that no node matches, or every matching node already runs a \
                     relay on UDP 500/4500 (one relay per node); {}",
                    c.describe_pods()
                ),
            ),
            None if live.is_empty() => fail(
                "no relay pod",
                format!("kubectl -n {} describe rs -l {RELAY_LABEL}={} (its events say why)", c.ns, c.child),
            ),
            None => fail("the relay pod is not scheduled yet", c.describe_pods()),
        };
    };
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    ok(format!("{} on node {node}", pod.name_any()))
}

fn running(c: &Ctx) -> Outcome {
    if let Some(p) = c.running_pod() {
        let restarts: i32 =
            p.status.iter().flat_map(|s| s.container_statuses.iter().flatten()).map(|cs| cs.restart_count).sum();
        return ok(format!("{} running, {restarts} restarts", p.name_any()));
    }
    let waiting =
        c.o.pods
            .iter()
            .flat_map(|p| p.status.iter().flat_map(|s| s.container_statuses.iter().flatten()))
            .find_map(|cs| cs.state.as_ref().and_then(|s| s.waiting.clone()));
    match waiting {
        Some(w) => {
            let reason = w.reason.unwrap_or_else(|| "Waiting".into());
            let next = if reason.contains("Image") {
                "the image cannot be pulled: the chart's image.repository/image.tag and imagePullSecrets".to_string()
            } else {
                format!("the relay's log says why it stops: {} --previous", c.logs())
            };
            fail(format!("container waiting: {reason}: {}", w.message.unwrap_or_default()), next)
        }
        None => fail("the relay container is not running", c.describe_pods()),
    }
}

fn reporting(c: &Ctx) -> Outcome {
    let s = c.status();
    if s.tunnels.is_empty() {
        return fail(
            "the relay has not written its status (no tunnels in status)",
            format!("{}: it may not reach the API server, or wait for its IotRelay or Secrets", c.logs()),
        );
    }
    ok(format!("{} tunnels, {} forwards in status", s.tunnels.len(), s.forwards.len()))
}

fn peer(c: &Ctx, tunnel: &str) -> String {
    c.o.relay.spec.tunnels.iter().find(|t| t.name == tunnel).map(|t| t.peer_address.clone()).unwrap_or_default()
}

fn aws_answering(c: &Ctx) -> Outcome {
    let s = c.status();
    // An established tunnel has heard from its peer (also from a relay that does not count IKE messages).
    let silent: Vec<String> = s
        .tunnels
        .iter()
        .filter(|t| t.state != TunnelState::Established && t.ike_messages_in == 0)
        .map(|t| format!("{} ({})", t.name, peer(c, &t.name)))
        .collect();
    let heard = s.tunnels.len() - silent.len();
    let detail = format!("no IKE message received from {}", silent.join(", "));
    let next = format!(
        "AWS does not answer: the VPN connection's customer gateway must be this relay's public address (status \
         outsideAddress {}, or the NAT in front of it), UDP 500 and 4500 to and from the peers must pass every \
         firewall, and spec.tunnels[].peerAddress must be the tunnel's outside IP address",
        s.outside_address.as_deref().unwrap_or("-")
    );
    match (silent.is_empty(), heard) {
        (true, _) => ok(format!(
            "IKE messages received: {}",
            s.tunnels.iter().map(|t| format!("{} {}", t.name, t.ike_messages_in)).collect::<Vec<_>>().join(", ")
        )),
        (false, 0) => fail(detail, next),
        (false, _) => warn(detail, next),
    }
}

/// What to check for a tunnel that is not established, from its last error.
fn tunnel_hint(c: &Ctx, error: &str, tunnel: &str) -> String {
    let psk =
        c.o.relay
            .spec
            .tunnels
            .iter()
            .find(|t| t.name == tunnel)
            .map(|t| format!("Secret {} key {}", t.pre_shared_key_secret_ref.name, t.pre_shared_key_secret_ref.key))
            .unwrap_or_else(|| "the tunnel's Secret".into());
    if error.contains("AUTHENTICATION_FAILED") {
        format!(
            "the pre-shared key ({psk}) or spec.localIdentity differs from the tunnel's on AWS: compare with the VPN \
             connection's tunnel options; a changed Secret is used from the next attempt"
        )
    } else if error.contains("NO_PROPOSAL_CHOSEN") {
        "spec.ike.proposals / spec.esp.proposals share no suite with the tunnel's Phase 1 / Phase 2 settings on AWS"
            .into()
    } else if error.contains("TS_UNACCEPTABLE") {
        "spec.insideAddress and spec.remoteSubnets must match the VPN connection's local and remote IPv4 network CIDRs"
            .into()
    } else if error.contains("did not answer") {
        "the peer stopped answering: the AWS tunnel's state in the console, the path for UDP 4500 (NAT timeouts)".into()
    } else {
        format!(
            "the tunnel's lastError and the relay's Events: kubectl -n {} describe iotrelay {}",
            c.ns,
            c.o.relay.name_any()
        )
    }
}

fn established(c: &Ctx) -> Outcome {
    let s = c.status();
    let down: Vec<_> = s.tunnels.iter().filter(|t| t.state != TunnelState::Established).collect();
    if down.is_empty() {
        return ok(format!(
            "{}: all established",
            s.tunnels.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    let detail = down
        .iter()
        .map(|t| {
            let e = if t.last_error.is_empty() { String::new() } else { format!(" ({})", t.last_error) };
            format!("{}: {:?}{e}", t.name, t.state)
        })
        .collect::<Vec<_>>()
        .join("; ");
    let first = down[0];
    let next = tunnel_hint(c, &first.last_error, &first.name);
    if down.len() == s.tunnels.len() { fail(detail, next) } else { warn(detail, next) }
}

fn listening(c: &Ctx) -> Outcome {
    let s = c.status();
    if s.forwards.is_empty() {
        return ok("no forwards configured");
    }
    let not: Vec<String> = s
        .forwards
        .iter()
        .filter(|f| !f.listening)
        .map(|f| {
            let port = c.o.relay.spec.forwards.iter().find(|sf| sf.name == f.name).map(|sf| sf.listen_port);
            format!("{} (UDP {})", f.name, port.map_or("-".into(), |p| p.to_string()))
        })
        .collect();
    if !not.is_empty() {
        return fail(
            format!("not listening: {}", not.join(", ")),
            format!("another process on the node holds the port; the relay logs the bind error: {}", c.logs()),
        );
    }
    ok(s.forwards.iter().filter_map(|f| f.endpoint.clone()).collect::<Vec<_>>().join(", "))
}

/// What a drop reason usually means.
fn drop_hint(reason: &str) -> &'static str {
    match reason {
        "sourceNotAllowed" => "senders outside the forward's allowedSources (add them if they are yours)",
        "noTunnel" => "datagrams arrived while no tunnel was established",
        "noSession" => "replies with no session (after idleTimeout, or unsolicited from the device)",
        "tooBig" => "datagrams larger than the tunnel carries (lower the client's datagram size)",
        "queueFull" => "the relay was overloaded or its session table full",
        "sourceSessionLimit" => "one client opened more than maxSessionsPerSource sessions",
        "integrity" => "ESP that fails the integrity check (forged, or keys out of step)",
        "replay" => "replayed or reordered ESP beyond the replay window",
        "unknownSpi" => "ESP for an SA the relay no longer holds (usual for a moment after a rekey)",
        "malformed" => "unparseable ESP or inner packets",
        _ => "see docs/kubernetes.md",
    }
}

fn nonzero<T: serde::Serialize>(d: &T) -> Vec<(String, u64)> {
    let v = serde_json::to_value(d).unwrap_or_default();
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, n)| n.as_u64().filter(|n| *n > 0).map(|n| (k.clone(), n)))
        .collect()
}

fn drops(c: &Ctx) -> Outcome {
    let s = c.status();
    let mut seen: Vec<(String, String, u64)> = Vec::new();
    for f in &s.forwards {
        seen.extend(nonzero(&f.drops).into_iter().map(|(k, n)| (format!("forward {}", f.name), k, n)));
    }
    if let Some(d) = &s.datapath {
        seen.extend(nonzero(&d.drops).into_iter().map(|(k, n)| ("ESP".to_string(), k, n)));
    }
    if seen.is_empty() {
        return ok("none");
    }
    let detail = seen.iter().map(|(w, k, n)| format!("{w} {k}={n}")).collect::<Vec<_>>().join(", ");
    let mut reasons: Vec<&str> = seen.iter().map(|(_, k, _)| k.as_str()).collect();
    reasons.dedup();
    let next = reasons.iter().map(|k| format!("{k}: {}", drop_hint(k))).collect::<Vec<_>>().join("; ");
    warn(detail, next)
}

fn ready(c: &Ctx) -> Outcome {
    let s = c.status();
    match s.condition(condition::READY) {
        Some(r) if r.status == "True" => ok(format!("{}: {}", r.reason, r.message)),
        Some(r) => fail(
            format!("Ready={} {}: {}", r.status, r.reason, r.message),
            format!("kubectl -n {} describe iotrelay {}", c.ns, c.o.relay.name_any()),
        ),
        None => fail("no Ready condition", c.logs()),
    }
}
