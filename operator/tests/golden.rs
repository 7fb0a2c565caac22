//! validate + render are pure: YAML in, objects out, compared with committed golden files.
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test -p iotrelay-operator --test golden`.

use std::path::PathBuf;

use iotrelay_api::{IotRelay, validate};
use iotrelay_operator::render::{CONFIG_HASH_ANNOTATION, Children, RenderConfig, render};

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
    let v = validate(&r.spec).expect("valid spec");
    let cfg = RenderConfig { image_pull_secrets: vec!["regcred".into()], ..RenderConfig::default() };
    render(r, &v, &cfg).unwrap()
}

fn check(name: &str, yaml: String) {
    let path = dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &yaml).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(want == yaml, "{name} differs from the rendered output:\n{yaml}");
}

#[test]
fn plant_7_children_match_golden() {
    let c = render_relay(&relay("plant-7.input.yaml"));
    check("plant-7.deployment.yaml", serde_yaml::to_string(&c.deployment).unwrap());
    check(
        "plant-7.rbac.yaml",
        [
            serde_yaml::to_string(&c.service_account).unwrap(),
            serde_yaml::to_string(&c.role).unwrap(),
            serde_yaml::to_string(&c.role_binding).unwrap(),
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
    let mut privileged = base.clone();
    privileged.spec.privileged = true;
    assert_ne!(h0, hash(&render_relay(&privileged)));
    let mut image = base.clone();
    image.spec.image = Some("example.org/iotrelay:dev".into());
    assert_ne!(h0, hash(&render_relay(&image)));
}

#[test]
fn role_names_only_referenced_secrets_and_own_relay() {
    let mut r = relay("plant-7.input.yaml");
    r.spec.tunnels[1].pre_shared_key_secret_ref.name = "other-vpn".into();
    let c = render_relay(&r);
    let rules = c.role.rules.unwrap();
    let secrets = rules.iter().find(|r| r.resources.as_deref() == Some(&["secrets".to_string()][..])).unwrap();
    assert_eq!(secrets.resource_names.as_deref(), Some(&["aws-vpn".to_string(), "other-vpn".to_string()][..]));
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
