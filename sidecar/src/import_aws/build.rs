//! From the AWS-side tunnels and the user's flags to an `IotRelaySpec`, checked with the same validator as the
//! CRD (errors traced back to the input), and rendered as the IotRelay + Secret YAML. The YAML is loaded back with
//! the standalone loader before it is returned, so what is printed is exactly what was validated.

use std::net::Ipv4Addr;

use iotrelay_api::spec::{
    EspSpec, ForwardSpec, ForwardTarget, IkeSpec, IotRelaySpec, LogFormat, Protocol, SecretKeyRef, StartupAction,
    TunnelSpec,
};
use iotrelay_api::validate::{is_dns_label, is_dns_subdomain};
use zeroize::Zeroizing;

use super::aws::{self, AwsTunnel, Field, ImportError, Kind};

/// What AWS does not say: the flags of `import-aws`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub name: String,
    pub namespace: String,
    pub inside_address: String,
    pub remote_subnets: Vec<String>,
    /// `NAME:LISTEN_PORT:TARGET_IP:TARGET_PORT[:ALLOWED_CIDR[,...]]`.
    pub forwards: Vec<String>,
    pub secret_name: Option<String>,
    pub local_address: Option<String>,
    /// The input's name for the header comment (a file name or `stdin`).
    pub source: String,
}

/// Spec field paths (prefixes) and the input each came from, to put the input's name on a validation error.
struct Origins(Vec<(String, String)>);

impl Origins {
    fn add(&mut self, path: impl Into<String>, at: impl Into<String>) {
        self.0.push((path.into(), at.into()));
    }
    /// The input behind the longest matching prefix of `path`.
    fn of(&self, path: &str) -> String {
        self.0
            .iter()
            .filter(|(p, _)| path.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map_or_else(|| "the generated IotRelay".to_string(), |(_, at)| at.clone())
    }
}

/// Imports the tunnels: the IotRelay + Secret YAML, validated.
pub fn import(tunnels: &[AwsTunnel], o: &Options) -> Result<Zeroizing<String>, ImportError> {
    check_name("--name", &o.name, 63)?;
    check_name("--namespace", &o.namespace, 63)?;
    let secret_name = o.secret_name.clone().unwrap_or_else(|| format!("{}-psk", o.name));
    if !is_dns_subdomain(&secret_name) {
        return Err(ImportError::new("--secret-name", format!("{secret_name:?} is not a Secret name (DNS subdomain)")));
    }
    if tunnels.len() > 2 {
        return Err(ImportError::new(tunnels[2].at.clone(), "an AWS VPN connection has at most 2 tunnels"));
    }
    let mut origins = Origins(Vec::new());
    origins.add("spec.insideAddress", "--inside-address");
    origins.add("spec.remoteSubnets", "--remote-subnet");
    origins.add("spec.localAddress", "--local-address");

    // Per tunnel: addresses, keys, proposals; shared settings collected across tunnels.
    let mut specs = Vec::new();
    let mut psks: Vec<Zeroizing<String>> = Vec::new();
    let mut ike_props: Vec<String> = Vec::new();
    let mut esp_props: Vec<String> = Vec::new();
    let mut cgw: Option<(Ipv4Addr, String)> = None;
    let mut ike_life: Option<(u64, String, String)> = None;
    let mut esp_life: Option<(u64, String, String)> = None;
    let mut dpd: Option<(u64, u64, String, String)> = None;
    for (i, t) in tunnels.iter().enumerate() {
        let name = format!("tunnel{}", i + 1);
        let path = format!("spec.tunnels[{i}]");
        let vgw = t.need(&t.vpn_gateway, "the VPN gateway's outside address")?;
        vgw.ipv4()?;
        origins.add(format!("{path}.peerAddress"), vgw.at.clone());
        let c = t.need(&t.customer_gateway, "the customer gateway's outside address")?;
        let ca = c.ipv4()?;
        match &cgw {
            None => cgw = Some((ca, c.at.clone())),
            Some((first, at)) if *first != ca => {
                return Err(ImportError::new(
                    c.at.clone(),
                    format!("customer gateway {ca} differs from {first} at {at}: not one VPN connection"),
                ));
            }
            Some(_) => {}
        }
        let psk = t
            .psk
            .as_ref()
            .ok_or_else(|| ImportError::new(t.at.clone(), "missing the pre-shared key (ike/pre_shared_key)"))?;
        psk.check()?;
        psks.push(psk.value.clone());
        for p in aws::proposals(t, &t.ike, Kind::Ike, "IKE")? {
            if !ike_props.contains(&p) {
                ike_props.push(p);
            }
        }
        for p in aws::proposals(t, &t.ipsec, Kind::Esp, "IPsec")? {
            if !esp_props.contains(&p) {
                esp_props.push(p);
            }
        }
        shorter(&mut ike_life, aws::lifetime(t, &t.ike.lifetime, "the IKE lifetime")?, &t.ike.lifetime);
        shorter(&mut esp_life, aws::lifetime(t, &t.ipsec.lifetime, "the IPsec lifetime")?, &t.ipsec.lifetime);
        if let (Some(iv), Some(r)) = (&t.dpd_interval, &t.dpd_retries) {
            let (iv_s, r_n) = (iv.seconds()?, r.seconds()?);
            if iv_s == 0 {
                return Err(ImportError::new(iv.at.clone(), "a DPD interval of 0"));
            }
            if r_n < 2 {
                return Err(ImportError::new(r.at.clone(), "at least 2 DPD retries are needed (AWS uses 3)"));
            }
            if dpd.as_ref().is_none_or(|(d, _, _, _)| iv_s < *d) {
                dpd = Some((iv_s, iv_s * r_n, iv.at.clone(), r.at.clone()));
            }
        }
        specs.push(TunnelSpec {
            name: name.clone(),
            peer_address: vgw.value.trim().to_string(),
            pre_shared_key_secret_ref: SecretKeyRef { name: secret_name.clone(), key: name },
            inside_cidr: None,
        });
    }
    let (cgw, cgw_at) = cgw.ok_or_else(|| ImportError::new("input", "no tunnel"))?;
    let (local_address, local_identity) = match o.local_address.as_deref() {
        Some(l) => {
            let la: Ipv4Addr = l.parse().map_err(|_| ImportError::new("--local-address", "not an IPv4 address"))?;
            (Some(la.to_string()), (la != cgw).then(|| cgw.to_string()))
        }
        // The customer gateway's address is the identity AWS expects, with or without NAT.
        None => (None, Some(cgw.to_string())),
    };
    origins.add("spec.localIdentity", cgw_at);

    let mut ike = IkeSpec { proposals: ike_props, startup_action: StartupAction::Start, ..IkeSpec::default() };
    let mut esp = EspSpec { proposals: esp_props, ..EspSpec::default() };
    origins.add("spec.ike.proposals", tunnels[0].ike.encryption.as_ref().map_or("IKE", |f| f.at.as_str()));
    origins.add("spec.esp.proposals", tunnels[0].ipsec.encryption.as_ref().map_or("IPsec", |f| f.at.as_str()));
    if let Some((_, d, at)) = ike_life {
        ike.lifetime = d;
        origins.add("spec.ike.lifetime", at);
    }
    if let Some((_, d, at)) = esp_life {
        esp.lifetime = d;
        origins.add("spec.esp.lifetime", at);
    }
    if let Some((iv, timeout, iv_at, r_at)) = dpd {
        ike.dpd_interval = secs(iv);
        ike.dpd_timeout = secs(timeout);
        origins.add("spec.ike.dpdInterval", iv_at);
        origins.add("spec.ike.dpdTimeout", r_at);
    }
    let bgp = super::bgp::import(tunnels)?;
    if let Some(b) = &bgp {
        for (t, c) in specs.iter_mut().zip(&b.inside_cidrs) {
            t.inside_cidr = Some(c.clone());
        }
        b.origins.iter().for_each(|(p, at)| origins.add(p.clone(), at.clone()));
    }
    let mut forwards = Vec::new();
    for (i, f) in o.forwards.iter().enumerate() {
        forwards.push(forward(f)?);
        origins.add(format!("spec.forwards[{i}]"), format!("--forward {f}"));
    }
    let spec = IotRelaySpec {
        inside_address: o.inside_address.clone(),
        remote_subnets: o.remote_subnets.clone(),
        local_address,
        local_identity,
        tunnels: specs,
        ike,
        esp,
        bgp: bgp.map(|b| b.spec),
        forwards,
        gateway: None,
        max_sessions_per_source: iotrelay_relay::DEFAULT_MAX_SESSIONS_PER_SOURCE as i32,
        privileged: false,
        admin_port: i32::from(iotrelay_api::DEFAULT_ADMIN_PORT),
        log_format: LogFormat::Json,
        image: None,
        node_selector: None,
        tolerations: None,
        affinity: None,
        resources: None,
        rekey_token_secret_ref: None,
    };
    if let Err(errs) = iotrelay_api::validate(&spec) {
        let e = &errs[0];
        let more = if errs.len() > 1 { format!(" (and {} more)", errs.len() - 1) } else { String::new() };
        return Err(ImportError::new(origins.of(&e.path), format!("{}: {}{more}", e.path, e.message)));
    }
    let yaml = render(o, &secret_name, &spec, &psks);
    // Load it back: what is printed must be exactly what was validated.
    let (relay, secrets) = iotrelay_api::standalone::load_yaml(&yaml)
        .map_err(|e| ImportError::new("the generated YAML", format!("does not load: {e}")))?;
    let keys_same = psks.iter().enumerate().all(|(i, p)| {
        secrets.get(&(secret_name.clone(), format!("tunnel{}", i + 1))).map(|v| v.as_slice()) == Some(p.as_bytes())
    });
    if relay.spec != spec || !keys_same {
        return Err(ImportError::new("the generated YAML", "loads back differently (a bug in import-aws)"));
    }
    Ok(yaml)
}

/// Keeps the shorter lifetime of the tunnels (one setting serves both).
fn shorter(acc: &mut Option<(u64, String, String)>, (d, s): (String, u64), f: &Option<Field>) {
    let at = f.as_ref().map_or(String::new(), |f| f.at.clone());
    if acc.as_ref().is_none_or(|(cur, _, _)| s < *cur) {
        *acc = Some((s, d, at));
    }
}

fn secs(s: u64) -> String {
    iotrelay_api::format_duration(std::time::Duration::from_secs(s))
}

/// `NAME:LISTEN_PORT:TARGET_IP:TARGET_PORT[:ALLOWED_CIDR[,...]]`.
fn forward(s: &str) -> Result<ForwardSpec, ImportError> {
    let at = format!("--forward {s}");
    let parts: Vec<&str> = s.split(':').collect();
    if !(4..=5).contains(&parts.len()) {
        return Err(ImportError::new(at, "expected NAME:LISTEN_PORT:TARGET_IP:TARGET_PORT[:ALLOWED_CIDR[,...]]"));
    }
    let port = |p: &str, what: &str| -> Result<i32, ImportError> {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .map(i32::from)
            .ok_or_else(|| ImportError::new(at.clone(), format!("{what} must be a port 1..65535, got {p:?}")))
    };
    let allowed: Vec<String> = match parts.get(4) {
        Some(list) => list.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect(),
        None => vec!["0.0.0.0/0".into()],
    };
    Ok(ForwardSpec {
        name: parts[0].to_string(),
        protocol: Protocol::Udp,
        listen_port: port(parts[1], "LISTEN_PORT")?,
        allowed_sources: allowed,
        target: ForwardTarget { address: parts[2].to_string(), port: port(parts[3], "TARGET_PORT")? },
        idle_timeout: "60s".into(),
    })
}

fn check_name(flag: &str, s: &str, max: usize) -> Result<(), ImportError> {
    if is_dns_label(s) && s.len() <= max {
        Ok(())
    } else {
        Err(ImportError::new(flag, format!("{s:?} must be a DNS label (lowercase letters, digits, '-')")))
    }
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "))
}

fn render(o: &Options, secret_name: &str, spec: &IotRelaySpec, psks: &[Zeroizing<String>]) -> Zeroizing<String> {
    let mut y = Zeroizing::new(String::new());
    let mut w = |line: String| {
        y.push_str(&line);
        y.push('\n');
    };
    w(format!("# Generated by `iotrelay-sidecar import-aws` from {}.", o.source.replace('\n', " ")));
    w("# Holds the tunnels' pre-shared keys: keep it out of git (or move the Secret to your secret store).".into());
    w("# Kubernetes: kubectl apply -f THIS_FILE. A plain host: iotrelay-sidecar standalone --file THIS_FILE.".into());
    w("apiVersion: iotrelay.dev/v1alpha1".into());
    w("kind: IotRelay".into());
    w("metadata:".into());
    w(format!("  name: {}", q(&o.name)));
    w(format!("  namespace: {}", q(&o.namespace)));
    w("spec:".into());
    w(format!("  insideAddress: {}   # a static route on the VPN connection must cover it", q(&spec.inside_address)));
    w(format!("  remoteSubnets: {}", list(&spec.remote_subnets)));
    if let Some(a) = &spec.local_address {
        w(format!("  localAddress: {}", q(a)));
    }
    if let Some(id) = &spec.local_identity {
        w(format!("  localIdentity: {}   # the customer gateway's address: the IKE identity AWS expects", q(id)));
    }
    w("  tunnels:".into());
    for t in &spec.tunnels {
        w(format!("  - name: {}", q(&t.name)));
        w(format!("    peerAddress: {}", q(&t.peer_address)));
        let r = &t.pre_shared_key_secret_ref;
        w(format!("    preSharedKeySecretRef: {{name: {}, key: {}}}", q(&r.name), q(&r.key)));
        if let Some(c) = &t.inside_cidr {
            w(format!("    insideCidr: {}", q(c)));
        }
    }
    if let Some(b) = &spec.bgp {
        w("  bgp:   # the VPN connection uses dynamic routing: a BGP session per tunnel (docs/bgp.md)".into());
        w(format!("    localAsn: {}", b.local_asn));
        w(format!("    awsAsn: {}", b.aws_asn));
        w(format!("    holdTime: {}", q(&b.hold_time)));
        w(format!("    standbyPrepend: {}", b.standby_prepend));
        w(format!("    failbackDelay: {}", q(&b.failback_delay)));
    }
    w("  ike:".into());
    w(format!("    proposals: {}", list(&spec.ike.proposals)));
    w(format!("    lifetime: {}", q(&spec.ike.lifetime)));
    w(format!("    dpdInterval: {}", q(&spec.ike.dpd_interval)));
    w(format!("    dpdTimeout: {}", q(&spec.ike.dpd_timeout)));
    w("    startupAction: Start".into());
    w("  esp:".into());
    w(format!("    proposals: {}", list(&spec.esp.proposals)));
    w(format!("    lifetime: {}", q(&spec.esp.lifetime)));
    if spec.forwards.is_empty() {
        w("  forwards: []   # add some with --forward NAME:LISTEN_PORT:TARGET_IP:TARGET_PORT:ALLOWED_CIDR".into());
    } else {
        w("  forwards:".into());
    }
    for f in &spec.forwards {
        w(format!("  - name: {}", q(&f.name)));
        w("    protocol: UDP".into());
        w(format!("    listenPort: {}", f.listen_port));
        let open = if f.allowed_sources.iter().any(|s| s == "0.0.0.0/0") { "   # every sender" } else { "" };
        w(format!("    allowedSources: {}{open}", list(&f.allowed_sources)));
        w(format!("    target: {{address: {}, port: {}}}", q(&f.target.address), f.target.port));
        w(format!("    idleTimeout: {}", q(&f.idle_timeout)));
    }
    w("---".into());
    w("apiVersion: v1".into());
    w("kind: Secret".into());
    w("metadata:".into());
    w(format!("  name: {}", q(secret_name)));
    w(format!("  namespace: {}", q(&o.namespace)));
    w("type: Opaque".into());
    w("stringData:".into());
    for (i, p) in psks.iter().enumerate() {
        // Validated: letters, digits, '.', '_' only, so quoting cannot leak into the rest of the line.
        w(format!("  tunnel{}: \"{}\"", i + 1, p.as_str()));
    }
    y
}
