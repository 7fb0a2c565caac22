//! Config mapping (pure): an `IotRelay` spec plus Secret values in, one `ikev2::Config` per tunnel out.

use std::net::Ipv4Addr;
use std::time::Duration;

use iotrelay_api::standalone::SecretValues;
use iotrelay_api::{FieldError, IotRelaySpec, ValidatedSpec, parse_duration, validate};
use iotrelay_ikev2::{Config, Identity, StartupAction};
use zeroize::Zeroizing;

/// Env var that allows lifetimes below AWS's 900 s minimum. Test-only: rekeys can then be exercised in seconds.
pub const UNSAFE_SHORT_LIFETIMES_ENV: &str = "IOTRELAY_UNSAFE_SHORT_LIFETIMES";
/// Overrides the largest IKE message sent unfragmented (octets; RFC 7383). For tests and unusual paths only.
pub const IKE_FRAGMENT_SIZE_ENV: &str = "IOTRELAY_IKE_FRAGMENT_SIZE";

/// The fragment size from [`IKE_FRAGMENT_SIZE_ENV`] when it holds a number in 256..=65535 (RFC 7383 leaves the
/// size to the sender; below 256 a fragment carries too little), else `None`.
pub fn fragment_size_override(value: Option<&str>) -> Option<usize> {
    value?.trim().parse::<usize>().ok().filter(|n| (256..=65535).contains(n))
}

/// Why a configuration cannot be used. Never contains a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}", join_fields(.0))]
    Invalid(Vec<FieldError>),
    #[error("Secret {name:?} has no key {key:?} (referenced by spec.tunnels[{tunnel}].preSharedKeySecretRef)")]
    MissingSecretKey { name: String, key: String, tunnel: usize },
    #[error("Secret {name:?} key {key:?}: the pre-shared key is empty")]
    EmptySecretKey { name: String, key: String },
}

fn join_fields(errs: &[FieldError]) -> String {
    errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
}

fn field(path: &str, message: &str) -> FieldError {
    FieldError { path: path.into(), message: message.into() }
}

/// Validates the spec. With `allow_short_lifetimes`, IKE/ESP lifetimes below AWS's 900 s minimum are accepted
/// (every other rule still applies, including ESP lifetime < IKE lifetime).
pub fn validate_spec(spec: &IotRelaySpec, allow_short_lifetimes: bool) -> Result<ValidatedSpec, ConfigError> {
    let floor = Duration::from_secs(900);
    let ike = parse_duration(&spec.ike.lifetime).ok();
    let esp = parse_duration(&spec.esp.lifetime).ok();
    let short = ike.is_some_and(|d| d < floor) || esp.is_some_and(|d| d < floor);
    let (true, true, Some(ike), Some(esp)) = (allow_short_lifetimes, short, ike, esp) else {
        return validate(spec).map_err(ConfigError::Invalid);
    };
    // Validate with in-range placeholders, then put the short values back.
    let mut s = spec.clone();
    s.ike.lifetime = "8h".into();
    s.esp.lifetime = "1h".into();
    let mut v = validate(&s).map_err(ConfigError::Invalid)?;
    let mut errs = Vec::new();
    if ike < Duration::from_secs(10) || ike > Duration::from_secs(8 * 3600) {
        errs.push(field("spec.ike.lifetime", "must be between 10s (test-only minimum) and 8h"));
    }
    if esp < Duration::from_secs(5) || esp > Duration::from_secs(3600) {
        errs.push(field("spec.esp.lifetime", "must be between 5s (test-only minimum) and 1h"));
    }
    if esp >= ike {
        errs.push(field("spec.esp.lifetime", "must be shorter than ike.lifetime"));
    }
    if !errs.is_empty() {
        return Err(ConfigError::Invalid(errs));
    }
    v.ike.lifetime = ike;
    v.esp.lifetime = esp;
    Ok(v)
}

/// True when the lifetimes are below AWS's minimum (only possible with the unsafe env var).
pub fn has_short_lifetimes(v: &ValidatedSpec) -> bool {
    v.ike.lifetime < Duration::from_secs(900) || v.esp.lifetime < Duration::from_secs(900)
}

/// The PSK of each tunnel, in spec order.
pub fn tunnel_psks(v: &ValidatedSpec, secrets: &SecretValues) -> Result<Vec<Zeroizing<Vec<u8>>>, ConfigError> {
    v.tunnels
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let key = (t.psk.name.clone(), t.psk.key.clone());
            match secrets.get(&key) {
                None => Err(ConfigError::MissingSecretKey { name: key.0, key: key.1, tunnel: i }),
                Some(v) if v.is_empty() => Err(ConfigError::EmptySecretKey { name: key.0, key: key.1 }),
                Some(v) => Ok(Zeroizing::new(v.as_slice().to_vec())),
            }
        })
        .collect()
}

/// AWS's shortest lifetime (IKE and ESP), and the shortest the API accepts without the unsafe switch.
const AWS_MIN_LIFETIME: Duration = Duration::from_secs(900);
/// AWS rekeys between `lifetime - 540 s` and `lifetime - 270 s`: its default rekey margin (270 s) plus up to
/// 100 % fuzz (its default) of that margin.
const AWS_EARLIEST_REKEY_BEFORE_EXPIRY: Duration = Duration::from_secs(2 * 270);
/// Our latest rekey comes at least this long before AWS's earliest (our jitter only makes it earlier).
const AHEAD_OF_AWS: Duration = Duration::from_secs(60);
/// The shortest time an SA lives before we rekey it (before our jitter), so short lifetimes never rekey in a loop.
const MIN_SA_USE: Duration = Duration::from_secs(300);

/// The rekey margin for `lifetime` (the engine rekeys at `lifetime - margin - jitter`, jitter below
/// `rekey_fuzz`). For every lifetime AWS accepts (900 s and up) the relay rekeys before AWS would: the margin is
/// at least AWS's earliest rekey plus [`AHEAD_OF_AWS`] (600 s), `default` when that is larger, and never more
/// than `lifetime - 300 s`. Below 900 s (test-only lifetimes) it is `default` capped at 30 % of the lifetime.
fn margin(lifetime: Duration, default: Duration) -> Duration {
    if lifetime < AWS_MIN_LIFETIME {
        return default.min(lifetime.mul_f64(0.3));
    }
    default.max(AWS_EARLIEST_REKEY_BEFORE_EXPIRY + AHEAD_OF_AWS).min(lifetime - MIN_SA_USE)
}

/// The engine configuration of one tunnel. `local` is the outside address IKE is sent from (used as the identity
/// when neither `localIdentity` nor `localAddress` is set).
pub fn ike_config(v: &ValidatedSpec, psk: Zeroizing<Vec<u8>>, local: Ipv4Addr) -> Config {
    let id = v.local_identity.clone().unwrap_or(Identity::Ipv4(local));
    let mut c = Config::aws_defaults(psk, id);
    c.ike_proposals = v.ike.proposals.clone();
    c.esp_proposals = v.esp.proposals.clone();
    c.ike_lifetime = v.ike.lifetime;
    c.child_lifetime = v.esp.lifetime;
    c.ike_rekey_margin = margin(v.ike.lifetime, c.ike_rekey_margin);
    c.child_rekey_margin = margin(v.esp.lifetime, c.child_rekey_margin);
    c.rekey_fuzz = c.rekey_fuzz.min(v.esp.lifetime.mul_f64(0.1));
    c.dpd_interval = v.ike.dpd_interval;
    c.dpd_timeout = v.ike.dpd_timeout;
    c.startup = v.ike.startup_action;
    // With BGP the routes are learned at run time (and the sessions run between the tunnels' inside addresses):
    // both sides stay `0.0.0.0/0`, as AWS's dynamic-routing tunnels do, and the learned prefixes do the narrowing.
    if let (Some(g), StartupAction::Add, None) = (&v.gateway, v.ike.startup_action, &v.bgp) {
        // Traffic selectors. An initiator offers `0.0.0.0/0 <-> 0.0.0.0/0`, what AWS accepts with its default tunnel
        // options (a VPN connection whose local/remote network CIDRs are set refuses anything else). A responder in
        // gateway mode (`startupAction: Add`: iotrelay standing in for AWS, whose `gateway.routes` are the peer's
        // inside subnets it routes back) narrows the peer's side to those routes, one selector per route, as AWS
        // narrows to a VPN connection's local network CIDR; its own side stays `0.0.0.0/0`. The relay then drops and
        // counts what it would send from outside them (`outsideSelectors`), and this side drops what arrives from
        // outside them.
        c.remote_ts = g.routes.clone();
    }
    c.force_encap = true;
    c.initial_contact = true;
    c.cookie_threshold = v.ike.cookie_threshold;
    c.half_open_limit = v.ike.half_open_limit;
    if let Some(n) = fragment_size_override(std::env::var(IKE_FRAGMENT_SIZE_ENV).ok().as_deref()) {
        c.fragment_size = n;
    }
    c
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use iotrelay_api::standalone::load_yaml;
    use iotrelay_ikev2::Ipv4Cidr;

    pub const SAMPLE: &str = r#"
apiVersion: iotrelay.dev/v1alpha1
kind: IotRelay
metadata: {name: plant-7, namespace: iot}
spec:
  insideAddress: 100.127.0.1
  remoteSubnets: ["100.64.0.0/16"]
  tunnels:
  - name: tunnel1
    peerAddress: 198.51.100.2
    preSharedKeySecretRef: {name: aws-vpn, key: tunnel1}
  - name: tunnel2
    peerAddress: 198.51.100.3
    preSharedKeySecretRef: {name: aws-vpn, key: tunnel2}
  ike:
    proposals: ["aes128-sha1-modp1024"]
    lifetime: LIFE_IKE
    startupAction: Add
  esp:
    proposals: ["aes128-sha1-modp1024"]
    lifetime: LIFE_ESP
  forwards:
  - name: admin
    listenPort: PORT
    allowedSources: ["203.0.113.10/32"]
    target: {address: 100.64.1.10, port: 7000}
---
apiVersion: v1
kind: Secret
metadata: {name: aws-vpn, namespace: iot}
stringData: {tunnel1: "psk_one_12345", tunnel2: "psk_two_12345"}
"#;

    pub fn sample(ike: &str, esp: &str, port: &str) -> String {
        SAMPLE.replace("LIFE_IKE", ike).replace("LIFE_ESP", esp).replace("PORT", port)
    }

    #[test]
    fn maps_spec_to_engine_config() {
        let (relay, secrets) = load_yaml(&sample("8h", "1h", "7000")).unwrap();
        let v = validate_spec(&relay.spec, false).unwrap();
        let psks = tunnel_psks(&v, &secrets).unwrap();
        assert_eq!(psks[1].as_slice(), b"psk_two_12345");
        let local = Ipv4Addr::new(192, 0, 2, 1);
        let c = ike_config(&v, psks[0].clone(), local);
        assert_eq!(c.local_id, Identity::Ipv4(local));
        assert_eq!(c.startup, StartupAction::Add);
        assert_eq!(c.ike_lifetime, Duration::from_secs(8 * 3600));
        assert_eq!(c.child_lifetime, Duration::from_secs(3600));
        assert_eq!(c.ike_proposals.len(), 1);
        assert_eq!(c.esp_proposals.len(), 1);
        assert!(c.force_encap && c.initial_contact);
        let any = Ipv4Cidr::ANY;
        assert_eq!(c.local_ts, vec![any]);
        assert_eq!(c.remote_ts, vec![any]);
        assert_eq!(c.child_rekey_margin, Duration::from_secs(10 * 60));
        assert!(c.child_rekey_margin + c.rekey_fuzz < c.child_lifetime);
        assert_eq!(c.dpd_interval, Duration::from_secs(10));
        assert_eq!(c.dpd_timeout, Duration::from_secs(30));
        assert!(!format!("{c:?}").contains("psk_one"));
        // Unset in the spec: the engine's own defaults.
        let d = Config::aws_defaults(Zeroizing::new(b"x".to_vec()), Identity::Ipv4(local));
        assert_eq!((c.cookie_threshold, c.half_open_limit), (d.cookie_threshold, d.half_open_limit));
    }

    #[test]
    fn hostile_input_bounds_reach_the_engine() {
        let text = sample("8h", "1h", "7000")
            .replace("    startupAction: Add", "    startupAction: Add\n    cookieThreshold: 0\n    halfOpenLimit: 9");
        let (relay, _) = load_yaml(&text).unwrap();
        let v = validate_spec(&relay.spec, false).unwrap();
        let c = ike_config(&v, Zeroizing::new(b"x".to_vec()), Ipv4Addr::LOCALHOST);
        assert_eq!((c.cookie_threshold, c.half_open_limit), (0, 9));
        let bad = text.replace("halfOpenLimit: 9", "halfOpenLimit: 0");
        let (relay, _) = load_yaml(&bad).unwrap();
        let err = validate_spec(&relay.spec, false).unwrap_err().to_string();
        assert!(err.contains("spec.ike.halfOpenLimit: must be 1..64"), "{err}");
    }

    #[test]
    fn gateway_responder_narrows_the_peer_side_to_its_routes() {
        let any = Ipv4Cidr::ANY;
        let p = |a: [u8; 4], len| Ipv4Cidr::new(Ipv4Addr::from(a), len).unwrap();
        let routes = "  remoteSubnets: [\"100.120.0.0/16\", \"100.121.0.0/24\"]\n  gateway: {}\n";
        let text = sample("8h", "1h", "7000")
            .replace("  remoteSubnets: [\"100.64.0.0/16\"]\n", routes)
            .replace("target: {address: 100.64.1.10", "target: {address: 100.120.1.10");
        let (relay, _) = load_yaml(&text).unwrap();
        let v = validate_spec(&relay.spec, false).unwrap();
        let c = ike_config(&v, Zeroizing::new(b"x".to_vec()), Ipv4Addr::LOCALHOST);
        assert_eq!(c.remote_ts, vec![p([100, 120, 0, 0], 16), p([100, 121, 0, 0], 24)], "one selector per route");
        assert_eq!(c.local_ts, vec![any]);
        // gateway.routes narrower than remoteSubnets: the routes.
        let (relay, _) = load_yaml(&text.replace("gateway: {}", "gateway: {routes: [\"100.120.5.0/24\"]}")).unwrap();
        let c =
            ike_config(&validate_spec(&relay.spec, false).unwrap(), Zeroizing::new(b"x".to_vec()), Ipv4Addr::LOCALHOST);
        assert_eq!(c.remote_ts, vec![p([100, 120, 5, 0], 24)]);
        // An initiator (the relay facing AWS) offers 0/0 both ways, gateway mode or not.
        let (relay, _) = load_yaml(&text.replace("startupAction: Add", "startupAction: Start")).unwrap();
        let c =
            ike_config(&validate_spec(&relay.spec, false).unwrap(), Zeroizing::new(b"x".to_vec()), Ipv4Addr::LOCALHOST);
        assert_eq!((c.local_ts, c.remote_ts), (vec![any], vec![any]));
        // A responder in gateway mode with BGP (iotrelay as AWS's side of a dynamic-routing connection): 0/0, the
        // learned prefixes narrow; the sessions' own packets are between the inside addresses.
        let bgp = "  bgp: {localAsn: 65000}\n  tunnels:\n";
        let with_bgp = text
            .replace("  tunnels:\n", bgp)
            .replace(
                "    preSharedKeySecretRef: {name: aws-vpn, key: tunnel1}",
                "    insideCidr: 169.254.10.0/30\n    preSharedKeySecretRef: {name: aws-vpn, key: tunnel1}",
            )
            .replace(
                "    preSharedKeySecretRef: {name: aws-vpn, key: tunnel2}",
                "    insideCidr: 169.254.11.0/30\n    preSharedKeySecretRef: {name: aws-vpn, key: tunnel2}",
            );
        let (relay, _) = load_yaml(&with_bgp).unwrap();
        let c =
            ike_config(&validate_spec(&relay.spec, false).unwrap(), Zeroizing::new(b"x".to_vec()), Ipv4Addr::LOCALHOST);
        assert_eq!((c.local_ts, c.remote_ts), (vec![any], vec![any]), "gateway mode with BGP");
        // A responder without gateway mode: 0/0 (the interop's AWS-initiated tunnels).
        let (relay, _) = load_yaml(&sample("8h", "1h", "7000")).unwrap();
        let c =
            ike_config(&validate_spec(&relay.spec, false).unwrap(), Zeroizing::new(b"x".to_vec()), Ipv4Addr::LOCALHOST);
        assert_eq!(c.remote_ts, vec![any]);
    }

    #[test]
    fn local_identity_wins() {
        let text = sample("8h", "1h", "7000").replace("  tunnels:", "  localIdentity: relay.example.com\n  tunnels:");
        let (relay, _) = load_yaml(&text).unwrap();
        let v = validate_spec(&relay.spec, false).unwrap();
        let c = ike_config(&v, Zeroizing::new(b"x".to_vec()), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(c.local_id, Identity::Fqdn("relay.example.com".into()));
    }

    #[test]
    fn bad_port_names_field_and_rule() {
        let (relay, _) = load_yaml(&sample("8h", "1h", "70000")).unwrap();
        let err = validate_spec(&relay.spec, false).unwrap_err().to_string();
        assert!(err.contains("spec.forwards[0].listenPort"), "{err}");
    }

    #[test]
    fn short_lifetimes_need_the_unsafe_switch() {
        let (relay, _) = load_yaml(&sample("60s", "20s", "7000")).unwrap();
        let err = validate_spec(&relay.spec, false).unwrap_err().to_string();
        assert!(err.contains("spec.ike.lifetime"), "{err}");
        let v = validate_spec(&relay.spec, true).unwrap();
        assert!(has_short_lifetimes(&v));
        assert_eq!(v.esp.lifetime, Duration::from_secs(20));
        let c = ike_config(&v, Zeroizing::new(b"x".to_vec()), Ipv4Addr::LOCALHOST);
        assert_eq!(c.child_rekey_margin, Duration::from_secs(6));
        assert!(c.child_rekey_margin + c.rekey_fuzz < c.child_lifetime);
        let (relay, _) = load_yaml(&sample("60s", "2m", "7000")).unwrap();
        let err = validate_spec(&relay.spec, true).unwrap_err().to_string();
        assert!(err.contains("spec.esp.lifetime: must be shorter"), "{err}");
    }

    /// When the relay rekeys an SA of `lifetime` with `margin` (and up to `fuzz` jitter): (earliest, latest).
    fn our_rekey(lifetime: Duration, margin: Duration, fuzz: Duration) -> (Duration, Duration) {
        let latest = lifetime.saturating_sub(margin).max(Duration::from_secs(1));
        (latest.saturating_sub(fuzz).max(Duration::from_secs(1)), latest)
    }

    /// AWS (default options: 270 s margin, 100 % fuzz) rekeys no earlier than `lifetime - 540 s`: ours comes
    /// first, with room to spare, and never in a loop.
    fn assert_ahead_of_aws(what: &str, lifetime: Duration, margin: Duration, fuzz: Duration) {
        let aws_earliest = lifetime - Duration::from_secs(540);
        let (earliest, latest) = our_rekey(lifetime, margin, fuzz);
        assert!(
            latest + Duration::from_secs(60) <= aws_earliest,
            "{what} {lifetime:?}: ours by {latest:?}, AWS from {aws_earliest:?}"
        );
        assert!(earliest >= Duration::from_secs(240), "{what} {lifetime:?}: rekeyed after only {earliest:?}");
    }

    #[test]
    fn relay_rekeys_before_aws_at_the_lifetime_limits() {
        for (ike, esp) in [("8h", "900s"), ("8h", "1799s"), ("8h", "3600s"), ("901s", "900s"), ("3601s", "3600s")] {
            let (relay, _) = load_yaml(&sample(ike, esp, "7000")).unwrap();
            let v = validate_spec(&relay.spec, false).unwrap();
            let c = ike_config(&v, Zeroizing::new(b"x".to_vec()), Ipv4Addr::LOCALHOST);
            assert_ahead_of_aws("ESP", c.child_lifetime, c.child_rekey_margin, c.rekey_fuzz);
            assert_ahead_of_aws("IKE", c.ike_lifetime, c.ike_rekey_margin, c.rekey_fuzz);
        }
        // Every lifetime the API accepts, to the second (IKE 900 s .. 8 h, ESP 900 s .. 1 h).
        let d = Config::aws_defaults(Zeroizing::new(b"x".to_vec()), Identity::Ipv4(Ipv4Addr::LOCALHOST));
        for secs in 900..=8 * 3600 {
            let l = Duration::from_secs(secs);
            assert_ahead_of_aws("IKE", l, margin(l, d.ike_rekey_margin), d.rekey_fuzz);
            if secs <= 3600 {
                assert_ahead_of_aws("ESP", l, margin(l, d.child_rekey_margin), d.rekey_fuzz);
            }
        }
    }

    #[test]
    fn missing_secret_key_names_secret_and_key() {
        let (relay, mut secrets) = load_yaml(&sample("8h", "1h", "7000")).unwrap();
        secrets.remove(&("aws-vpn".to_string(), "tunnel2".to_string()));
        let v = validate_spec(&relay.spec, false).unwrap();
        let err = tunnel_psks(&v, &secrets).unwrap_err().to_string();
        assert!(err.contains("\"aws-vpn\"") && err.contains("\"tunnel2\""), "{err}");
    }

    #[test]
    fn fragment_size_override_accepts_only_sane_numbers() {
        assert_eq!(fragment_size_override(Some("300")), Some(300));
        assert_eq!(fragment_size_override(Some(" 1248 ")), Some(1248));
        for bad in ["", "abc", "-1", "255", "65536", "1e3"] {
            assert_eq!(fragment_size_override(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(fragment_size_override(None), None);
    }
}
