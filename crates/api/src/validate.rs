//! The pure validator: the same rules as the CRD schema (OpenAPI + CEL), so standalone mode reports the same
//! problems `kubectl apply` would, with the same field paths. Output: a [`ValidatedSpec`] of parsed values.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use iotrelay_crypto::proposal::{EspProposal, IkeProposal};

use crate::bgp::{TunnelInside, ValidatedBgp, tunnel_inside, validate_bgp};
use crate::duration::parse_duration;
use crate::spec::{IotRelaySpec, LogFormat, SecretKeyRef, StartupAction};
use iotrelay_types::{CidrError, Ipv4Cidr};

/// One problem, e.g. `spec.forwards[0].target.port: must be 1..65535`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    /// JSON path of the field, starting at `spec`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The local IKE identity: `Ipv4` or `Fqdn` from `spec.localIdentity`.
pub use iotrelay_types::Identity;

/// A tunnel with parsed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedTunnel {
    pub name: String,
    pub peer: Ipv4Addr,
    pub psk: SecretKeyRef,
    /// `insideCidr` and the two addresses in it (set for every tunnel when `bgp` is).
    pub inside: Option<TunnelInside>,
}

/// IKE settings with parsed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedIke {
    pub proposals: Vec<IkeProposal>,
    pub lifetime: Duration,
    pub dpd_interval: Duration,
    pub dpd_timeout: Duration,
    pub startup_action: StartupAction,
    pub cookie_threshold: usize,
    pub half_open_limit: usize,
}

/// ESP settings with parsed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedEsp {
    pub proposals: Vec<EspProposal>,
    pub lifetime: Duration,
    pub replay_window: u32,
}

/// A forward with parsed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedForward {
    pub name: String,
    pub listen_port: u16,
    pub allowed_sources: Vec<Ipv4Cidr>,
    pub target: SocketAddrV4,
    pub idle_timeout: Duration,
}

/// Gateway mode with parsed values and defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedGateway {
    /// The TUN interface's name.
    pub interface: String,
    /// `mtu` when set; `None`: derived from the negotiated ESP suite.
    pub mtu: Option<u16>,
    /// `routes`; when unset, `remoteSubnets`, or none with `spec.bgp` (the learned prefixes are routed then).
    pub routes: Vec<Ipv4Cidr>,
    /// `localSubnets`: site networks behind the host (empty when unset).
    pub local_subnets: Vec<Ipv4Cidr>,
}

/// The most a gateway MTU may be: AWS's largest inner packet for an outside MTU of 1500.
pub const GATEWAY_MAX_MTU: u16 = 1446;
/// The least a gateway MTU may be (every IPv4 host must accept 576-octet datagrams, RFC 791).
pub const GATEWAY_MIN_MTU: u16 = 576;

/// A spec that passed every rule, with parsed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedSpec {
    pub inside_address: Ipv4Addr,
    pub remote_subnets: Vec<Ipv4Cidr>,
    pub local_address: Option<Ipv4Addr>,
    /// `localIdentity`, else `localAddress` as an IPv4 identity, else `None` (the sidecar uses the address it
    /// ends up sending from).
    pub local_identity: Option<Identity>,
    pub tunnels: Vec<ValidatedTunnel>,
    pub ike: ValidatedIke,
    pub esp: ValidatedEsp,
    pub forwards: Vec<ValidatedForward>,
    /// `maxSessionsPerSource`.
    pub max_sessions_per_source: usize,
    pub privileged: bool,
    pub admin_port: u16,
    /// `rekeyTokenSecretRef`: the Secret key holding the `/rekey` token (mounted as a file, never read by the relay
    /// through the API).
    pub rekey_token: Option<SecretKeyRef>,
    pub log_format: LogFormat,
    /// Gateway mode (`spec.gateway` present).
    pub gateway: Option<ValidatedGateway>,
    /// `spec.bgp`: dynamic routing.
    pub bgp: Option<ValidatedBgp>,
}

impl ValidatedSpec {
    /// What gateway mode carries on this side (the only sources the host may send from through the device, the
    /// only destinations the tunnel may deliver to): with `spec.bgp` the announced prefixes (by default
    /// `insideAddress/32` and `gateway.localSubnets`: AWS routes answers to nothing else); without it
    /// `insideAddress/32` and `gateway.localSubnets` when those are set. `None`: no restriction (static routing
    /// without `localSubnets`: the VPN connection's static routes decide).
    pub fn gateway_local(&self) -> Option<Vec<Ipv4Cidr>> {
        let gw = self.gateway.as_ref()?;
        if let Some(b) = &self.bgp {
            return Some(b.announce.clone());
        }
        if gw.local_subnets.is_empty() {
            return None;
        }
        let inside = Ipv4Cidr::new(self.inside_address, 32).unwrap_or(Ipv4Cidr::ANY);
        Some(std::iter::once(inside).chain(gw.local_subnets.iter().copied()).collect())
    }

    /// Every (Secret, key) holding a tunnel's pre-shared key, sorted and deduplicated: the Secrets the relay reads
    /// through the API (and the only ones its Role may `get`).
    pub fn secret_refs(&self) -> BTreeSet<SecretKeyRef> {
        self.tunnels.iter().map(|t| t.psk.clone()).collect()
    }
}

const AWS_IKE_LIFETIME: (Duration, Duration) = (Duration::from_secs(900), Duration::from_secs(8 * 3600));
const AWS_ESP_LIFETIME: (Duration, Duration) = (Duration::from_secs(900), Duration::from_secs(3600));

pub(crate) struct Errors(pub(crate) Vec<FieldError>);

impl Errors {
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { path: path.into(), message: message.into() });
    }
    fn ipv4(&mut self, path: &str, s: &str) -> Option<Ipv4Addr> {
        match s.parse::<Ipv4Addr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.push(path, format!("must be an IPv4 address, got {s:?}"));
                None
            }
        }
    }
    pub(crate) fn cidr(&mut self, path: &str, s: &str) -> Option<Ipv4Cidr> {
        match s.parse::<Ipv4Cidr>() {
            Ok(c) => Some(c),
            Err(CidrError::HostBits(c)) => {
                self.push(path, format!("host bits must be zero in {s:?} (did you mean {c}?)"));
                None
            }
            Err(CidrError::Syntax) => {
                self.push(path, format!("must be an IPv4 CIDR like 100.64.0.0/16, got {s:?}"));
                None
            }
        }
    }
    fn cidrs(&mut self, path: &str, list: &[String]) -> Vec<Ipv4Cidr> {
        if list.is_empty() {
            self.push(path, "must have at least 1 item");
        } else if list.len() > 32 {
            self.push(path, "must have at most 32 items");
        }
        list.iter().enumerate().filter_map(|(i, s)| self.cidr(&format!("{path}[{i}]"), s)).collect()
    }
    fn port(&mut self, path: &str, p: i32) -> Option<u16> {
        match u16::try_from(p) {
            Ok(p) if p >= 1 => Some(p),
            _ => {
                self.push(path, "must be 1..65535");
                None
            }
        }
    }
    /// An integer in `min..=max`; the message names the range and `what` it counts.
    fn count(&mut self, path: &str, v: i32, min: usize, max: usize, what: &str) -> Option<usize> {
        match usize::try_from(v) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.push(path, format!("must be {min}..{max} {what}, got {v}"));
                None
            }
        }
    }
    fn duration(&mut self, path: &str, s: &str, min: Duration, max: Duration, range: &str) -> Option<Duration> {
        match parse_duration(s) {
            Ok(d) if d >= min && d <= max => Some(d),
            Ok(_) => {
                self.push(path, format!("must be between {range}"));
                None
            }
            Err(e) => {
                self.push(path, e.to_string());
                None
            }
        }
    }
    fn name(&mut self, path: &str, s: &str) {
        if !is_dns_label(s) {
            self.push(path, format!("must be a DNS label (lowercase letters, digits, '-'; at most 63), got {s:?}"));
        }
    }
    fn secret_ref(&mut self, path: &str, r: &SecretKeyRef) {
        if !is_dns_subdomain(&r.name) {
            self.push(format!("{path}.name"), "must be a Secret name (DNS subdomain)");
        }
        let key_ok = !r.key.is_empty()
            && r.key.len() <= 253
            && r.key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !key_ok {
            self.push(format!("{path}.key"), "must be a Secret key (letters, digits, '-', '_', '.')");
        }
    }
}

/// A Kubernetes DNS label (RFC 1123): lowercase letters, digits and '-', 1..=63 octets, no '-' at either end.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A Kubernetes DNS subdomain (RFC 1123): DNS labels joined by '.', at most 253 octets (e.g. a Secret's name).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// What the CRD allows as `gateway.interface` (a subset of what Linux accepts: no '/', ':', '.', whitespace).
fn is_interface_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

fn proposal_syntax_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.split('-').all(|t| !t.is_empty() && t.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
}

/// Checks every rule the CRD schema enforces and parses the values. All problems are reported, not just the first.
pub fn validate(spec: &IotRelaySpec) -> Result<ValidatedSpec, Vec<FieldError>> {
    let mut e = Errors(Vec::new());

    let inside = e.ipv4("spec.insideAddress", &spec.inside_address);
    let remote = e.cidrs("spec.remoteSubnets", &spec.remote_subnets);
    if let Some(inside) = inside
        && let Some(c) = remote.iter().find(|c| c.contains(inside))
    {
        e.push("spec.insideAddress", format!("must not be inside remoteSubnets (it is inside {c})"));
    }
    let local_address = spec.local_address.as_deref().and_then(|s| e.ipv4("spec.localAddress", s));
    let local_identity = match spec.local_identity.as_deref() {
        Some(s) if s.is_empty() || s.len() > 253 || s.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            e.push("spec.localIdentity", "must be an IPv4 address or an FQDN (1..253 characters, no spaces)");
            None
        }
        Some(s) => Some(match s.parse::<Ipv4Addr>() {
            Ok(a) => Identity::Ipv4(a),
            Err(_) => Identity::Fqdn(s.to_string()),
        }),
        None => local_address.map(Identity::Ipv4),
    };

    // Tunnels.
    if spec.tunnels.is_empty() || spec.tunnels.len() > 2 {
        e.push("spec.tunnels", "must have 1 or 2 tunnels");
    }
    let mut tunnels = Vec::new();
    let mut names = BTreeSet::new();
    let mut peers = BTreeSet::new();
    let mut inside_cidrs = BTreeSet::new();
    for (i, t) in spec.tunnels.iter().enumerate() {
        let p = format!("spec.tunnels[{i}]");
        e.name(&format!("{p}.name"), &t.name);
        if !names.insert(t.name.as_str()) {
            e.push(format!("{p}.name"), format!("duplicate tunnel name {:?}", t.name));
        }
        let peer = e.ipv4(&format!("{p}.peerAddress"), &t.peer_address);
        if let Some(peer) = peer
            && !peers.insert(peer)
        {
            e.push(format!("{p}.peerAddress"), format!("duplicate peer address {peer}"));
        }
        e.secret_ref(&format!("{p}.preSharedKeySecretRef"), &t.pre_shared_key_secret_ref);
        let inside = t.inside_cidr.as_deref().and_then(|s| tunnel_inside(&mut e, &format!("{p}.insideCidr"), s));
        if let Some(i) = inside
            && !inside_cidrs.insert(i.cidr.addr())
        {
            e.push(format!("{p}.insideCidr"), format!("duplicate inside CIDR {}", i.cidr));
        }
        if spec.bgp.is_some() && t.inside_cidr.is_none() {
            e.push(format!("{p}.insideCidr"), "required with spec.bgp");
        }
        if let Some(peer) = peer {
            tunnels.push(ValidatedTunnel {
                name: t.name.clone(),
                peer,
                psk: t.pre_shared_key_secret_ref.clone(),
                inside,
            });
        }
    }
    // Gateway mode's site networks: announced by default with BGP, so parsed first.
    let local_subnets = match spec.gateway.as_ref().and_then(|g| g.local_subnets.as_ref()) {
        Some(list) => {
            let l = e.cidrs("spec.gateway.localSubnets", list);
            for (i, c) in l.iter().enumerate() {
                if let Some(s) = remote.iter().find(|s| s.contains_cidr(c) || c.contains_cidr(s)) {
                    e.push(
                        format!("spec.gateway.localSubnets[{i}]"),
                        format!("must not overlap remoteSubnets ({c} overlaps {s})"),
                    );
                }
            }
            l
        }
        None => Vec::new(),
    };
    let bgp = spec.bgp.as_ref().and_then(|b| validate_bgp(&mut e, b, inside, &local_subnets));

    // IKE.
    let ike_proposals = proposals(&mut e, "spec.ike.proposals", &spec.ike.proposals, IkeProposal::parse);
    let ike_lifetime = e.duration(
        "spec.ike.lifetime",
        &spec.ike.lifetime,
        AWS_IKE_LIFETIME.0,
        AWS_IKE_LIFETIME.1,
        "900s and 8h (AWS phase 1 range)",
    );
    let dpd_interval = e.duration(
        "spec.ike.dpdInterval",
        &spec.ike.dpd_interval,
        Duration::from_secs(1),
        Duration::from_secs(3600),
        "1s and 1h",
    );
    let dpd_timeout = match parse_duration(&spec.ike.dpd_timeout) {
        Ok(d) => Some(d),
        Err(err) => {
            e.push("spec.ike.dpdTimeout", err.to_string());
            None
        }
    };
    if let (Some(i), Some(t)) = (dpd_interval, dpd_timeout)
        && t <= i
    {
        e.push("spec.ike.dpdTimeout", "must be longer than dpdInterval");
    }
    let cookie_threshold = e.count(
        "spec.ike.cookieThreshold",
        spec.ike.cookie_threshold,
        0,
        64,
        "(half-open IKE SAs from which an IKE_SA_INIT must return a cookie; 0: always)",
    );
    let half_open_limit = e.count(
        "spec.ike.halfOpenLimit",
        spec.ike.half_open_limit,
        1,
        64,
        "(half-open IKE SAs per tunnel; at least 1, or AWS's own IKE_SA_INIT could not be answered)",
    );

    // ESP.
    let esp_proposals = proposals(&mut e, "spec.esp.proposals", &spec.esp.proposals, EspProposal::parse);
    let esp_lifetime = e.duration(
        "spec.esp.lifetime",
        &spec.esp.lifetime,
        AWS_ESP_LIFETIME.0,
        AWS_ESP_LIFETIME.1,
        "900s and 1h (AWS phase 2 range)",
    );
    if let (Some(i), Some(c)) = (ike_lifetime, esp_lifetime)
        && c >= i
    {
        e.push("spec.esp.lifetime", "must be shorter than ike.lifetime");
    }
    let replay_window = match u32::try_from(spec.esp.replay_window) {
        Ok(w) if (64..=2048).contains(&w) => Some(w),
        _ => {
            e.push("spec.esp.replayWindow", "must be 64..2048");
            None
        }
    };

    // Admin port and forwards.
    let admin_port = e.port("spec.adminPort", spec.admin_port);
    if spec.forwards.len() > 64 {
        e.push("spec.forwards", "must have at most 64 forwards");
    }
    let mut forwards = Vec::new();
    let mut fnames = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for (i, f) in spec.forwards.iter().enumerate() {
        let p = format!("spec.forwards[{i}]");
        e.name(&format!("{p}.name"), &f.name);
        if !fnames.insert(f.name.as_str()) {
            e.push(format!("{p}.name"), format!("duplicate forward name {:?}", f.name));
        }
        let listen = e.port(&format!("{p}.listenPort"), f.listen_port);
        if let Some(l) = listen {
            if !ports.insert(l) {
                e.push(format!("{p}.listenPort"), format!("duplicate listen port {l}"));
            }
            if l == 500 || l == 4500 {
                e.push(format!("{p}.listenPort"), "must not be 500 or 4500 (used by IKE and ESP-in-UDP)");
            }
            if Some(l) == admin_port {
                e.push(format!("{p}.listenPort"), "must differ from adminPort");
            }
        }
        let sources = e.cidrs(&format!("{p}.allowedSources"), &f.allowed_sources);
        let addr = e.ipv4(&format!("{p}.target.address"), &f.target.address);
        if let Some(a) = addr
            && !remote.is_empty()
            && !remote.iter().any(|c| c.contains(a))
        {
            e.push(format!("{p}.target.address"), "must be inside remoteSubnets");
        }
        let tport = e.port(&format!("{p}.target.port"), f.target.port);
        let idle = e.duration(
            &format!("{p}.idleTimeout"),
            &f.idle_timeout,
            Duration::from_secs(1),
            Duration::from_secs(86_400),
            "1s and 24h",
        );
        if let (Some(listen_port), Some(a), Some(tp), Some(idle_timeout)) = (listen, addr, tport, idle) {
            forwards.push(ValidatedForward {
                name: f.name.clone(),
                listen_port,
                allowed_sources: sources,
                target: SocketAddrV4::new(a, tp),
                idle_timeout,
            });
        }
    }

    let gateway = spec.gateway.as_ref().map(|g| {
        if !is_interface_name(&g.interface) {
            e.push(
                "spec.gateway.interface",
                format!(
                    "must be an interface name: 1..15 letters, digits, '-' or '_', starting with a letter, got {:?}",
                    g.interface
                ),
            );
        }
        let mtu = g.mtu.and_then(|m| match u16::try_from(m) {
            Ok(m) if (GATEWAY_MIN_MTU..=GATEWAY_MAX_MTU).contains(&m) => Some(m),
            _ => {
                e.push(
                    "spec.gateway.mtu",
                    format!(
                        "must be {GATEWAY_MIN_MTU}..{GATEWAY_MAX_MTU} (1446 is the largest inner packet for an outside \
                         MTU of 1500), got {m}"
                    ),
                );
                None
            }
        });
        let routes = match &g.routes {
            // With BGP the routes are the prefixes AWS announces, added and removed at run time.
            None if spec.bgp.is_some() => Vec::new(),
            None => remote.clone(),
            Some(list) => {
                let routes = e.cidrs("spec.gateway.routes", list);
                for (i, r) in routes.iter().enumerate() {
                    if !remote.is_empty() && !remote.iter().any(|s| s.contains_cidr(r)) {
                        e.push(format!("spec.gateway.routes[{i}]"), format!("must be inside remoteSubnets, got {r}"));
                    }
                }
                routes
            }
        };
        ValidatedGateway { interface: g.interface.clone(), mtu, routes, local_subnets: local_subnets.clone() }
    });
    let max_sessions_per_source = e.count(
        "spec.maxSessionsPerSource",
        spec.max_sessions_per_source,
        1,
        4096,
        "(sessions per sender IP address; the session table holds 4096)",
    );

    if let Some(img) = &spec.image
        && (img.is_empty() || img.len() > 512)
    {
        e.push("spec.image", "must be 1..512 characters");
    }

    if !e.0.is_empty() {
        return Err(e.0);
    }
    // Every Option below is Some when no error was recorded; the fallbacks are unreachable but keep this panic-free.
    let (Some(inside_address), Some(lifetime), Some(dpd_interval), Some(dpd_timeout), Some(esp_lifetime)) =
        (inside, ike_lifetime, dpd_interval, dpd_timeout, esp_lifetime)
    else {
        return Err(vec![FieldError { path: "spec".into(), message: "invalid".into() }]);
    };
    Ok(ValidatedSpec {
        inside_address,
        remote_subnets: remote,
        local_address,
        local_identity,
        tunnels,
        ike: ValidatedIke {
            proposals: ike_proposals,
            lifetime,
            dpd_interval,
            dpd_timeout,
            startup_action: spec.ike.startup_action,
            cookie_threshold: cookie_threshold.unwrap_or(2),
            half_open_limit: half_open_limit.unwrap_or(5),
        },
        esp: ValidatedEsp {
            proposals: esp_proposals,
            lifetime: esp_lifetime,
            replay_window: replay_window.unwrap_or(1024),
        },
        forwards,
        max_sessions_per_source: max_sessions_per_source.unwrap_or(512),
        privileged: spec.privileged,
        admin_port: admin_port.unwrap_or(crate::DEFAULT_ADMIN_PORT),
        rekey_token: spec.rekey_token_secret_ref.clone(),
        log_format: spec.log_format,
        gateway,
        bgp,
    })
}

fn proposals<P, E: fmt::Display>(
    e: &mut Errors,
    path: &str,
    list: &[String],
    parse: impl Fn(&str) -> Result<P, E>,
) -> Vec<P> {
    if list.is_empty() {
        e.push(path, "must have at least 1 proposal");
    } else if list.len() > 16 {
        e.push(path, "must have at most 16 proposals");
    }
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if !proposal_syntax_ok(s) {
            e.push(p, format!("must look like aes128-sha1-modp1024 (lowercase tokens joined by '-'), got {s:?}"));
            continue;
        }
        match parse(s) {
            Ok(v) => out.push(v),
            Err(err) => e.push(p, err.to_string()),
        }
    }
    out
}
