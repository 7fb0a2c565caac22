//! The pure "build" step: a validated IotRelay in, the Kubernetes objects it owns out. No API calls, no clock.
//!
//! The relay pod runs with least privilege: uid 65532, every capability dropped but NET_BIND_SERVICE (UDP 500 and
//! forward ports below 1024; the image grants it to `iotrelay-sidecar` as a file capability, which a non-root
//! process only keeps when the container's capability sets hold it too), no privilege escalation, a read-only
//! root filesystem, the runtime's default seccomp profile. The admin server listens on the node's loopback only;
//! the probes reach it there (a hostNetwork pod shares the node's network namespace with the kubelet).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, HostPathVolumeSource, KeyToPath,
    LocalObjectReference, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use sha2::{Digest, Sha256};

use iotrelay_api::{IotRelay, LogFormat, ValidatedSpec};

use crate::admit::{Refusal, admit};

/// Pod-template annotation holding a hash of the rendered pod spec: it changes exactly when the pod would.
pub const CONFIG_HASH_ANNOTATION: &str = "iotrelay.dev/config-hash";
/// Label on every child naming the IotRelay.
pub const RELAY_LABEL: &str = "iotrelay.dev/relay";
/// Grace period: long enough for the relay to send IKE DELETEs for every SA before it is killed.
pub const TERMINATION_GRACE_SECONDS: i64 = 15;
/// The relay's uid and gid (the image's `nonroot` user). The operator's own pod runs as the same user.
pub const RELAY_UID: i64 = 65532;
/// Where the `/rekey` token Secret key is mounted in the relay container.
pub const REKEY_TOKEN_DIR: &str = "/var/run/secrets/iotrelay.dev/rekey";
/// The file name of the token inside [`REKEY_TOKEN_DIR`].
pub const REKEY_TOKEN_FILE: &str = "token";
/// Default port of the relay's metrics listener (the chart's `relay.metricsAddress` is `0.0.0.0:9465`).
pub const DEFAULT_METRICS_PORT: u16 = 9465;

/// Operator-wide settings that shape the children.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderConfig {
    /// Relay image used when the spec sets none (the operator's own image: it holds both binaries).
    pub relay_image: String,
    /// `IfNotPresent`, `Always`, `Never`.
    pub image_pull_policy: String,
    /// Pull secrets for the relay pod.
    pub image_pull_secrets: Vec<String>,
    /// Honour `spec.image` (chart `relay.allowImageOverride`, default false).
    pub allow_image_override: bool,
    /// Honour `spec.privileged` (chart `relay.allowPrivileged`, default false).
    pub allow_privileged: bool,
    /// Where the relay serves `/metrics`, `/healthz` and `/readyz` (nothing else) for scraping (chart
    /// `relay.metricsAddress`); `127.0.0.1:PORT` keeps it on the node.
    pub metrics_addr: SocketAddr,
    /// Requests/limits of a relay container whose IotRelay sets no `spec.resources` (chart `relay.resources`), so
    /// relay pods are not BestEffort (the first evicted under node pressure).
    pub default_resources: Option<ResourceRequirements>,
    /// `priorityClassName` of relay pods (chart `relay.priorityClassName`; none when unset).
    pub priority_class_name: Option<String>,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            relay_image: "ghcr.io/iotrelay/iotrelay:0.1.0".into(),
            image_pull_policy: "IfNotPresent".into(),
            image_pull_secrets: vec![],
            allow_image_override: false,
            allow_privileged: false,
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], DEFAULT_METRICS_PORT)),
            default_resources: None,
            priority_class_name: None,
        }
    }
}

/// Why the objects could not be rendered: the IotRelay lacks server-set metadata, or asks for something the
/// operator's configuration does not allow (nothing is rendered for it, so nothing is applied).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("IotRelay has no {0}")]
    MissingMetadata(&'static str),
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// Everything one IotRelay owns.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub deployment: Deployment,
}

/// Name of every child object of the IotRelay `name`: `iotrelay-<name>`, shortened with a hash when needed so it
/// stays a valid label value (<= 63).
pub fn child_name(name: &str) -> String {
    const MAX: usize = 56; // leaves room for the ReplicaSet/Pod suffixes in pod names
    let full = format!("iotrelay-{name}");
    if full.len() <= MAX {
        return full;
    }
    let digest = Sha256::digest(name.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let head: String = full.chars().take(MAX - 9).collect();
    format!("{}-{hash}", head.trim_end_matches(['-', '.']))
}

/// Renders the children of `relay` (whose spec validated to `spec`).
pub fn render(relay: &IotRelay, spec: &ValidatedSpec, cfg: &RenderConfig) -> Result<Children, RenderError> {
    admit(&relay.spec, spec, cfg)?;
    let name = relay.metadata.name.clone().ok_or(RenderError::MissingMetadata("metadata.name"))?;
    let namespace = relay.metadata.namespace.clone().ok_or(RenderError::MissingMetadata("metadata.namespace"))?;
    relay.metadata.uid.as_ref().ok_or(RenderError::MissingMetadata("metadata.uid"))?;
    let child = child_name(&name);
    // apiVersion, kind, name, uid and controller from kube's Resource impl; foreground deletion of the IotRelay
    // waits for its children.
    let mut owner = relay.controller_owner_ref(&()).ok_or(RenderError::MissingMetadata("metadata.uid"))?;
    owner.block_owner_deletion = Some(true);
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "iotrelay-relay".to_string()),
        ("app.kubernetes.io/managed-by".to_string(), "iotrelay-operator".to_string()),
        (RELAY_LABEL.to_string(), child.clone()),
    ]);
    let meta = ObjectMeta {
        name: Some(child.clone()),
        namespace: Some(namespace.clone()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner]),
        ..Default::default()
    };

    let service_account =
        ServiceAccount { metadata: meta.clone(), automount_service_account_token: Some(true), ..Default::default() };

    let secret_names: Vec<String> = {
        let mut v: Vec<String> = spec.secret_refs().into_iter().map(|r| r.name).collect();
        v.dedup();
        v
    };
    let rule = |groups: &str, resources: &[&str], names: Option<Vec<String>>, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![groups.to_string()]),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        resource_names: names,
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        non_resource_urls: None,
    };
    let role = Role {
        metadata: meta.clone(),
        rules: Some(vec![
            rule(iotrelay_api::GROUP, &["iotrelays"], Some(vec![name.clone()]), &["get", "list", "watch"]),
            rule(iotrelay_api::GROUP, &["iotrelays/status"], Some(vec![name.clone()]), &["get", "patch"]),
            // The relay only ever `get`s its pre-shared-key Secrets (it re-reads them periodically): no list/watch,
            // which Kubernetes would not narrow to resourceNames for a plain list anyway. The /rekey token Secret
            // is mounted by the kubelet and not readable through this Role.
            rule("", &["secrets"], Some(secret_names), &["get"]),
            rule("", &["events"], None, &["create", "patch"]),
            rule("events.k8s.io", &["events"], None, &["create", "patch"]),
        ]),
    };
    let role_binding = RoleBinding {
        metadata: meta.clone(),
        role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "Role".into(), name: child.clone() },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: child.clone(),
            namespace: Some(namespace.clone()),
            api_group: None,
        }]),
    };

    let pod_spec = pod_spec(relay, spec, cfg, &name, &namespace, &child);
    let hash = config_hash(&pod_spec);
    let deployment = Deployment {
        metadata: meta,
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            // Two relays can never share UDP 500/4500 on a node: the old pod must be gone before the new starts.
            strategy: Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None }),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(RELAY_LABEL.to_string(), child.clone())])),
                match_expressions: None,
            },
            revision_history_limit: Some(3),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_string(), hash)])),
                    ..Default::default()
                }),
                spec: Some(pod_spec),
            },
            ..Default::default()
        }),
        status: None,
    };
    Ok(Children { service_account, role, role_binding, deployment })
}

fn pod_spec(
    relay: &IotRelay,
    spec: &ValidatedSpec,
    cfg: &RenderConfig,
    name: &str,
    namespace: &str,
    child: &str,
) -> PodSpec {
    let port = |n: &str, p: u16, proto: &str| ContainerPort {
        name: Some(n.to_string()),
        container_port: i32::from(p),
        host_port: Some(i32::from(p)),
        protocol: Some(proto.to_string()),
        host_ip: None,
    };
    // IKE and NAT-T are host ports: they keep two relays off one node. The admin port is not declared (it listens on
    // loopback only); the metrics port is, so a PodMonitor can name it (a hostNetwork pod's ports are host ports). The forwards' listen ports are left out on
    // purpose, so adding or removing a forward does not change the pod template and the relay applies it live
    // without restarting its tunnels.
    let ports =
        vec![port("ike", 500, "UDP"), port("nat-t", 4500, "UDP"), port("metrics", cfg.metrics_addr.port(), "TCP")];
    let admin_addr = SocketAddr::from(([127, 0, 0, 1], spec.admin_port));
    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            host: Some(admin_addr.ip().to_string()),
            path: Some(path.to_string()),
            port: IntOrString::Int(i32::from(spec.admin_port)),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Default::default()
    };
    let env = |k: &str, v: String| EnvVar { name: k.to_string(), value: Some(v), value_from: None };
    let log_format = match spec.log_format {
        LogFormat::Json => "json",
        LogFormat::Text => "text",
    };
    let mut envs = vec![
        env("IOTRELAY_NAME", name.to_string()),
        env("IOTRELAY_NAMESPACE", namespace.to_string()),
        env("IOTRELAY_ADMIN_ADDR", admin_addr.to_string()),
        env("IOTRELAY_METRICS_ADDR", cfg.metrics_addr.to_string()),
    ];
    let (mut volumes, mut mounts) = (vec![], vec![]);
    if let Some(token) = &spec.rekey_token {
        envs.push(env("IOTRELAY_REKEY_TOKEN_FILE", format!("{REKEY_TOKEN_DIR}/{REKEY_TOKEN_FILE}")));
        volumes.push(Volume {
            name: "rekey-token".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(token.name.clone()),
                items: Some(vec![KeyToPath { key: token.key.clone(), path: REKEY_TOKEN_FILE.into(), mode: None }]),
                // Readable by the relay's group only (fsGroup below).
                default_mode: Some(0o440),
                optional: Some(false),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "rekey-token".into(),
            mount_path: REKEY_TOKEN_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    // Gateway mode (spec.gateway) only: the TUN device node; NET_ADMIN is added below, and the relay keeps
    // CAP_NET_ADMIN only when told it runs for gateway mode (it settles its capabilities before reading the
    // IotRelay; iotrelay-sidecar's `privileges`).
    if spec.gateway.is_some() {
        envs.push(env("IOTRELAY_GATEWAY", "true".into()));
        volumes.push(Volume {
            name: "dev-net-tun".into(),
            host_path: Some(HostPathVolumeSource { path: "/dev/net/tun".into(), type_: Some("CharDevice".into()) }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "dev-net-tun".into(),
            mount_path: "/dev/net/tun".into(),
            ..Default::default()
        });
    }
    envs.push(env("IOTRELAY_LOG_FORMAT", log_format.to_string()));
    // For status.nodeName (where the relay runs).
    envs.push(EnvVar {
        name: "IOTRELAY_NODE_NAME".into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: "spec.nodeName".into(), api_version: None }),
            ..Default::default()
        }),
    });
    let security_context = if spec.privileged {
        // Only when the chart allows it (see `admit`).
        SecurityContext {
            privileged: Some(true),
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(true),
            ..Default::default()
        }
    } else {
        SecurityContext {
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_user: Some(RELAY_UID),
            run_as_group: Some(RELAY_UID),
            run_as_non_root: Some(true),
            // NET_BIND_SERVICE must be in the container's sets for the binary's file capability to take effect
            // under no_new_privs; nothing else is needed: plain UDP sockets, GSO/GRO and PMTU options need none.
            // Gateway mode adds NET_ADMIN (create the TUN device, add its routes), and only gateway mode.
            capabilities: Some(Capabilities {
                add: Some(if spec.gateway.is_some() {
                    vec!["NET_BIND_SERVICE".into(), "NET_ADMIN".into()]
                } else {
                    vec!["NET_BIND_SERVICE".into()]
                }),
                drop: Some(vec!["ALL".into()]),
            }),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
            ..Default::default()
        }
    };
    let container = Container {
        name: "relay".into(),
        image: Some(relay.spec.image.clone().unwrap_or_else(|| cfg.relay_image.clone())),
        image_pull_policy: Some(cfg.image_pull_policy.clone()),
        command: Some(vec!["iotrelay-sidecar".into(), "kube".into()]),
        env: Some(envs),
        ports: Some(ports),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        readiness_probe: Some(probe("/readyz", 5, 1)),
        resources: relay.spec.resources.clone().or_else(|| cfg.default_resources.clone()),
        security_context: Some(security_context),
        volume_mounts: if mounts.is_empty() { None } else { Some(mounts) },
        ..Default::default()
    };
    PodSpec {
        service_account_name: Some(child.to_string()),
        automount_service_account_token: Some(true),
        host_network: Some(true),
        dns_policy: Some("ClusterFirstWithHostNet".into()),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        security_context: if volumes.is_empty() {
            None
        } else {
            Some(PodSecurityContext { fs_group: Some(RELAY_UID), ..Default::default() })
        },
        volumes: if volumes.is_empty() { None } else { Some(volumes) },
        node_selector: relay.spec.node_selector.clone(),
        priority_class_name: cfg.priority_class_name.clone(),
        tolerations: relay.spec.tolerations.clone(),
        affinity: relay.spec.affinity.clone(),
        image_pull_secrets: if cfg.image_pull_secrets.is_empty() {
            None
        } else {
            Some(cfg.image_pull_secrets.iter().map(|n| LocalObjectReference { name: n.clone() }).collect())
        },
        containers: vec![container],
        ..Default::default()
    }
}

/// First 16 hex digits of SHA-256 over the pod spec's JSON (field order is fixed by the types, maps are sorted).
fn config_hash(pod: &PodSpec) -> String {
    let json = serde_json::to_vec(pod).unwrap_or_default();
    Sha256::digest(&json).iter().take(8).map(|b| format!("{b:02x}")).collect()
}
