//! validate + render are pure: YAML in, objects out, compared with committed golden files.
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test -p iotrelay-operator --test golden`.

use std::path::PathBuf;

use iotrelay_api::{IotRelay, SecretKeyRef, validate};
use iotrelay_operator::render::{CONFIG_HASH_ANNOTATION, Children, RELAY_UID, RenderConfig, RenderError, render};
use k8s_openapi::api::core::v1::{Container, PodSpec};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn relay(input: &str) -> IotRelay {
    let text = std::fs::read_to_string(dir().join(input)).unwrap();
    let (mut r, _) = iotrelay_api::standalone::load_yaml(&text).unwrap();
    r.metadata.uid = Some("00000000-0000-0000-0000-000000000007".into());
    r
}

fn render_relay(r: &IotRelay) -> Children {
    render_with(r, &RenderConfig { image_pull_secrets: vec!["regcred".into()], ..RenderConfig::default() })
}

fn render_with(r: &IotRelay, cfg: &RenderConfig) -> Children {
    let v = validate(&r.spec).expect("valid spec");
    render(r, &v, cfg).unwrap()
}

fn pod(c: &Children) -> &PodSpec {
    c.deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn relay_container(c: &Children) -> &Container {
    &pod(c).containers[0]
}

fn env(c: &Container, name: &str) -> Option<String> {
    c.env.as_ref().unwrap().iter().find(|e| e.name == name).and_then(|e| e.value.clone())
}

fn check(name: &str, yaml: String) {
    let path = dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &yaml).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(want == yaml, "{name} differs from the rendered output:\n{yaml}");
}

/// Gateway mode, and only gateway mode, gets NET_ADMIN and /dev/net/tun; everything else stays least-privilege.
#[test]
fn net_admin_and_tun_only_in_gateway_mode() {
    let caps = |c: &Children| {
        let sc = relay_container(c).security_context.clone().unwrap();
        (sc.capabilities.unwrap().add.unwrap(), sc.allow_privilege_escalation, sc.run_as_user)
    };
    let tun_mounted = |c: &Children| {
        let vols = pod(c).volumes.clone().unwrap_or_default();
        let mounts = relay_container(c).volume_mounts.clone().unwrap_or_default();
        vols.iter().any(|v| v.host_path.as_ref().is_some_and(|h| h.path == "/dev/net/tun"))
            && mounts.iter().any(|m| m.mount_path == "/dev/net/tun")
    };
    let plain = render_relay(&relay("plant-7.input.yaml"));
    assert_eq!(caps(&plain), (vec!["NET_BIND_SERVICE".to_string()], Some(false), Some(RELAY_UID)));
    assert!(!tun_mounted(&plain), "no TUN device without gateway mode");
    assert_eq!(
        env(relay_container(&plain), "IOTRELAY_GATEWAY"),
        None,
        "the relay is told gateway mode only in gateway mode"
    );
    let mut r = relay("plant-7.input.yaml");
    r.spec.gateway = Some(Default::default());
    let gw = render_relay(&r);
    assert_eq!(
        caps(&gw),
        (vec!["NET_BIND_SERVICE".to_string(), "NET_ADMIN".to_string()], Some(false), Some(RELAY_UID))
    );
    assert!(tun_mounted(&gw));
    assert_eq!(env(relay_container(&gw), "IOTRELAY_GATEWAY").as_deref(), Some("true"));
    let sc = relay_container(&gw).security_context.clone().unwrap();
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
}

#[test]
fn plant_7_children_match_golden() {
    let c = render_relay(&relay("plant-7.input.yaml"));
    check("plant-7.deployment.yaml", iotrelay_operator::crdgen::to_yaml(&c.deployment).unwrap());
    check(
        "plant-7.rbac.yaml",
        [
            iotrelay_operator::crdgen::to_yaml(&c.service_account).unwrap(),
            iotrelay_operator::crdgen::to_yaml(&c.role).unwrap(),
            iotrelay_operator::crdgen::to_yaml(&c.role_binding).unwrap(),
        ]
        .join("---\n"),
    );
}

fn hash(c: &Children) -> String {
    c.deployment.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()
        [CONFIG_HASH_ANNOTATION]
        .clone()
}

#[test]
fn config_hash_changes_only_with_the_pod() {
    let base = relay("plant-7.input.yaml");
    let h0 = hash(&render_relay(&base));
    assert_eq!(h0, hash(&render_relay(&base)), "deterministic");

    // Forwards and tunnel settings are applied live by the relay: the pod template must not change.
    let mut fwd = base.clone();
    let mut f = fwd.spec.forwards[0].clone();
    f.name = "admin2".into();
    f.listen_port = 7001;
    fwd.spec.forwards.push(f);
    fwd.spec.ike.lifetime = "4h".into();
    let c = render_relay(&fwd);
    assert_eq!(h0, hash(&c));
    assert_eq!(c.deployment, render_relay(&base).deployment);

    // Pod-level settings change it.
    let allow = RenderConfig { allow_privileged: true, allow_image_override: true, ..RenderConfig::default() };
    let h0 = hash(&render_with(&base, &allow));
    let mut privileged = base.clone();
    privileged.spec.privileged = true;
    assert_ne!(h0, hash(&render_with(&privileged, &allow)));
    let mut image = base.clone();
    image.spec.image = Some("example.org/iotrelay:dev".into());
    assert_ne!(h0, hash(&render_with(&image, &allow)));
    let mut token = base.clone();
    token.spec.rekey_token_secret_ref = Some(SecretKeyRef { name: "rekey".into(), key: "token".into() });
    assert_ne!(h0, hash(&render_with(&token, &allow)));
}

#[test]
fn relay_pod_is_unprivileged_and_its_admin_port_loopback_only() {
    let c = render_relay(&relay("plant-7.input.yaml"));
    let ctr = relay_container(&c);
    let sc = ctr.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!((sc.run_as_user, sc.run_as_group), (Some(RELAY_UID), Some(RELAY_UID)));
    assert_ne!(RELAY_UID, 0);
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()), Some("RuntimeDefault"));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.add.as_deref(), Some(&["NET_BIND_SERVICE".to_string()][..]), "only NET_BIND_SERVICE");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    let spec_json = serde_json::to_string(pod(&c)).unwrap();
    assert!(!spec_json.contains("NET_ADMIN") && !spec_json.contains("NET_RAW") && !spec_json.contains("SYS_"));

    // Admin on loopback, probes there; no port of the pod is the admin port; metrics on the chart's address.
    assert_eq!(env(ctr, "IOTRELAY_ADMIN_ADDR").as_deref(), Some("127.0.0.1:9464"));
    assert_eq!(env(ctr, "IOTRELAY_METRICS_ADDR").as_deref(), Some("0.0.0.0:9465"));
    for p in [&ctr.liveness_probe, &ctr.readiness_probe] {
        let g = p.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(g.host.as_deref(), Some("127.0.0.1"));
    }
    let ports = ctr.ports.as_ref().unwrap();
    assert!(ports.iter().all(|p| p.container_port != 9464 && p.host_port != Some(9464)), "{ports:?}");
    assert!(ports.iter().any(|p| p.name.as_deref() == Some("metrics") && p.container_port == 9465));
    // No /rekey unless asked for: no token file, no volume.
    assert_eq!(env(ctr, "IOTRELAY_REKEY_TOKEN_FILE"), None);
    assert!(pod(&c).volumes.is_none());
}

#[test]
fn rekey_token_is_a_mounted_file_not_an_api_permission() {
    let mut r = relay("plant-7.input.yaml");
    r.spec.rekey_token_secret_ref = Some(SecretKeyRef { name: "plant-7-rekey".into(), key: "token".into() });
    let c = render_relay(&r);
    let ctr = relay_container(&c);
    let file = env(ctr, "IOTRELAY_REKEY_TOKEN_FILE").unwrap();
    let mount = &ctr.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(mount.read_only, Some(true));
    assert!(file.starts_with(&format!("{}/", mount.mount_path)), "{file} under {}", mount.mount_path);
    let vol = &pod(&c).volumes.as_ref().unwrap()[0];
    assert_eq!(vol.name, mount.name);
    let secret = vol.secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("plant-7-rekey"));
    assert_eq!(secret.items.as_ref().unwrap()[0].key, "token");
    assert_eq!(secret.default_mode, Some(0o440));
    assert_eq!(pod(&c).security_context.as_ref().unwrap().fs_group, Some(RELAY_UID));
    // The relay's Role still names only the pre-shared-key Secret.
    let rules = c.role.rules.unwrap();
    let secrets = rules.iter().find(|r| r.resources.as_deref() == Some(&["secrets".to_string()][..])).unwrap();
    assert_eq!(secrets.resource_names.as_deref(), Some(&["aws-vpn".to_string()][..]));
}

#[test]
fn privileged_and_image_only_rendered_when_allowed() {
    let mut r = relay("plant-7.input.yaml");
    r.spec.privileged = true;
    let v = validate(&r.spec).unwrap();
    match render(&r, &v, &RenderConfig::default()) {
        Err(RenderError::Refused(refusal)) => {
            assert_eq!(refusal.reason, iotrelay_api::StalledReason::PrivilegedNotAllowed)
        }
        other => panic!("rendered a privileged relay the chart does not allow: {other:?}"),
    }
    let c = render_with(&r, &RenderConfig { allow_privileged: true, ..RenderConfig::default() });
    assert_eq!(relay_container(&c).security_context.as_ref().unwrap().privileged, Some(true));

    let mut r = relay("plant-7.input.yaml");
    r.spec.image = Some("example.org/iotrelay:dev".into());
    let v = validate(&r.spec).unwrap();
    assert!(matches!(render(&r, &v, &RenderConfig::default()), Err(RenderError::Refused(_))));
    let c = render_with(&r, &RenderConfig { allow_image_override: true, ..RenderConfig::default() });
    assert_eq!(relay_container(&c).image.as_deref(), Some("example.org/iotrelay:dev"));
}

#[test]
fn role_names_only_referenced_secrets_and_own_relay() {
    let mut r = relay("plant-7.input.yaml");
    r.spec.tunnels[1].pre_shared_key_secret_ref.name = "other-vpn".into();
    let c = render_relay(&r);
    let rules = c.role.rules.unwrap();
    let secrets = rules.iter().find(|r| r.resources.as_deref() == Some(&["secrets".to_string()][..])).unwrap();
    assert_eq!(secrets.resource_names.as_deref(), Some(&["aws-vpn".to_string(), "other-vpn".to_string()][..]));
    assert_eq!(secrets.verbs, ["get"], "the relay only gets its Secrets: no list/watch");
    for rule in &rules {
        if rule.api_groups.as_deref() == Some(&["iotrelay.dev".to_string()][..]) {
            assert_eq!(rule.resource_names.as_deref(), Some(&["plant-7".to_string()][..]));
            assert!(!rule.verbs.iter().any(|v| v == "*" || v == "delete" || v == "update"));
        }
    }
}

#[test]
fn long_names_stay_valid_labels() {
    let n = "a".repeat(200);
    let c = iotrelay_operator::render::child_name(&n);
    assert!(c.len() <= 56 && c.starts_with("iotrelay-"), "{c}");
    assert_ne!(c, iotrelay_operator::render::child_name(&"a".repeat(199)));
}

/// Relay pods are not BestEffort: the chart's default requests/limits apply unless the IotRelay sets its own, and
/// the chart's priorityClassName is used.
#[test]
fn default_resources_and_priority_class() {
    let resources: k8s_openapi::api::core::v1::ResourceRequirements =
        serde_json::from_str(r#"{"requests":{"cpu":"50m","memory":"64Mi"},"limits":{"memory":"256Mi"}}"#).unwrap();
    let cfg = RenderConfig {
        default_resources: Some(resources.clone()),
        priority_class_name: Some("iot-critical".into()),
        ..RenderConfig::default()
    };
    let mut r = relay("plant-7.input.yaml");
    r.spec.resources = None;
    let c = render_with(&r, &cfg);
    assert_eq!(relay_container(&c).resources.as_ref(), Some(&resources));
    assert_eq!(pod(&c).priority_class_name.as_deref(), Some("iot-critical"));
    let own: k8s_openapi::api::core::v1::ResourceRequirements =
        serde_json::from_str(r#"{"requests":{"memory":"16Mi"}}"#).unwrap();
    r.spec.resources = Some(own.clone());
    assert_eq!(relay_container(&render_with(&r, &cfg)).resources.as_ref(), Some(&own), "the IotRelay's own wins");
    let plain = render_with(&r, &RenderConfig::default());
    assert!(pod(&plain).priority_class_name.is_none());
}
