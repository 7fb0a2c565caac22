//! What the cluster administrator allows an IotRelay to ask for (pure). `spec.image` and `spec.privileged` let
//! whoever may create an IotRelay run any image, or run as root with every capability, on a node's host network:
//! they are honoured only when the chart turned them on (`relay.allowImageOverride`, `relay.allowPrivileged`).
//! Also refused here: a spec whose ports collide with the relay's metrics port, which only the chart knows.

use iotrelay_api::{IotRelaySpec, StalledReason, ValidatedSpec};

use crate::render::RenderConfig;

/// Why an IotRelay is refused: `reason` is the `Stalled` condition's reason, `message` names the chart value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub reason: StalledReason,
    pub message: String,
}

/// Checks `spec` (already validated to `v`) against what the operator was configured to allow.
pub fn admit(spec: &IotRelaySpec, v: &ValidatedSpec, cfg: &RenderConfig) -> Result<(), Refusal> {
    if let Some(image) = &spec.image
        && !cfg.allow_image_override
    {
        return Err(Refusal {
            reason: StalledReason::ImageOverrideNotAllowed,
            message: format!(
                "spec.image ({image:?}) is not allowed: the operator runs relays only with its configured image; \
                 an administrator can allow overrides with the Helm value relay.allowImageOverride=true"
            ),
        });
    }
    if spec.privileged && !cfg.allow_privileged {
        return Err(Refusal {
            reason: StalledReason::PrivilegedNotAllowed,
            message: "spec.privileged is not allowed: relays run as non-root with only NET_BIND_SERVICE; an \
                      administrator can allow privileged relays with the Helm value relay.allowPrivileged=true"
                .into(),
        });
    }
    let m = cfg.metrics_addr;
    let port = m.port();
    let clash = if v.admin_port == port {
        Some("spec.adminPort".to_string())
    } else {
        v.forwards.iter().position(|f| f.listen_port == port).map(|i| format!("spec.forwards[{i}].listenPort"))
    };
    if let Some(field) = clash {
        return Err(Refusal {
            reason: StalledReason::PortConflict,
            message: format!(
                "{field} is {port}, the relay metrics port (Helm value relay.metricsAddress={m}): choose another port"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> IotRelaySpec {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/plant-7.input.yaml")).unwrap();
        iotrelay_api::standalone::load_yaml(&text).unwrap().0.spec
    }

    fn check(spec: &IotRelaySpec, cfg: &RenderConfig) -> Result<(), Refusal> {
        admit(spec, &iotrelay_api::validate(spec).unwrap(), cfg)
    }

    #[test]
    fn image_and_privileged_only_when_the_chart_allows_them() {
        let deny = RenderConfig::default();
        assert!(!deny.allow_image_override && !deny.allow_privileged, "default: off");
        assert_eq!(check(&spec(), &deny), Ok(()));

        let mut s = spec();
        s.image = Some("example.org/evil:1".into());
        let r = check(&s, &deny).unwrap_err();
        assert_eq!(r.reason, StalledReason::ImageOverrideNotAllowed);
        assert!(r.message.contains("relay.allowImageOverride"), "{}", r.message);
        let allow = RenderConfig { allow_image_override: true, ..RenderConfig::default() };
        assert_eq!(check(&s, &allow), Ok(()));

        let mut s = spec();
        s.privileged = true;
        let r = check(&s, &deny).unwrap_err();
        assert_eq!(r.reason, StalledReason::PrivilegedNotAllowed);
        assert!(r.message.contains("relay.allowPrivileged"), "{}", r.message);
        // Allowing images does not allow privileged, and the other way round.
        assert_eq!(check(&s, &allow).unwrap_err().reason, StalledReason::PrivilegedNotAllowed);
        let allow = RenderConfig { allow_privileged: true, ..RenderConfig::default() };
        assert_eq!(check(&s, &allow), Ok(()));
        s.image = Some("example.org/evil:1".into());
        assert_eq!(check(&s, &allow).unwrap_err().reason, StalledReason::ImageOverrideNotAllowed);
    }

    #[test]
    fn ports_must_not_take_the_metrics_port() {
        let cfg = RenderConfig::default();
        let port = cfg.metrics_addr.port();
        let mut s = spec();
        s.forwards[0].listen_port = i32::from(port);
        let r = check(&s, &cfg).unwrap_err();
        assert_eq!(r.reason, StalledReason::PortConflict);
        assert!(r.message.contains("spec.forwards[0].listenPort") && r.message.contains("relay.metricsAddress"));
        let mut s = spec();
        s.admin_port = i32::from(port);
        assert!(check(&s, &cfg).unwrap_err().message.contains("spec.adminPort"));
        let elsewhere = RenderConfig { metrics_addr: "127.0.0.1:9999".parse().unwrap(), ..cfg };
        assert_eq!(check(&s, &elsewhere), Ok(()));
    }
}
