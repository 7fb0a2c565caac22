//! The `IotRelay` spec: what users write. Field names are the user contract: each is documented in the CRD schema
//! (`kubectl explain iotrelay.spec`) and in `docs/kubernetes.md`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::IotRelayStatus;

/// A relay: one AWS Site-to-Site VPN connection (one or two tunnels), the relay's address inside the tunnel, and
/// the UDP forwards it relays from allowed senders on the node to devices inside the VPC.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "iotrelay.dev",
    version = "v1alpha1",
    kind = "IotRelay",
    plural = "iotrelays",
    singular = "iotrelay",
    shortname = "ir",
    category = "iotrelay",
    namespaced,
    status = "IotRelayStatus",
    printcolumn = r#"{"name":"Ready","type":"string","description":"Ready condition status","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Tunnels","type":"string","description":"Established tunnels / configured tunnels","jsonPath":".status.tunnelsUp"}"#,
    printcolumn = r#"{"name":"Active","type":"string","description":"Tunnel carrying outbound traffic","jsonPath":".status.activeTunnel"}"#,
    printcolumn = r#"{"name":"Forwards","type":"string","description":"Listening forwards / configured forwards","jsonPath":".status.forwardsListening"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Node","type":"string","description":"Node the relay runs on","jsonPath":".status.nodeName","priority":1}"#,
    printcolumn = r#"{"name":"Reason","type":"string","description":"Reason of the Ready condition","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!isIP(self.insideAddress) || self.remoteSubnets.all(s, !isCIDR(s) || !cidr(s).containsIP(self.insideAddress))",
        "message": "insideAddress must not be inside remoteSubnets",
        "fieldPath": ".insideAddress"
    },
    {
        "rule": "!has(self.ike) || !has(self.esp) || !has(self.ike.lifetime) || !has(self.esp.lifetime) || duration(self.esp.lifetime) < duration(self.ike.lifetime)",
        "message": "esp.lifetime must be shorter than ike.lifetime",
        "fieldPath": ".esp.lifetime"
    },
    {
        "rule": "!has(self.forwards) || self.forwards.all(f, !isIP(f.target.address) || self.remoteSubnets.exists(s, isCIDR(s) && cidr(s).containsIP(f.target.address)))",
        "message": "forwards[].target.address must be inside remoteSubnets"
    },
    {
        "rule": "!has(self.forwards) || self.forwards.all(f, f.listenPort != 500 && f.listenPort != 4500)",
        "message": "forwards[].listenPort must not be 500 or 4500 (used by IKE and ESP-in-UDP)"
    },
    {
        "rule": "!has(self.forwards) || !has(self.adminPort) || self.forwards.all(f, f.listenPort != self.adminPort)",
        "message": "forwards[].listenPort must differ from adminPort"
    },
    {
        "rule": "!has(self.gateway) || !has(self.gateway.routes) || self.gateway.routes.all(r, !isCIDR(r) || self.remoteSubnets.exists(s, isCIDR(s) && cidr(s).containsCIDR(r)))",
        "message": "gateway.routes[] must be inside remoteSubnets",
        "fieldPath": ".gateway.routes"
    },
    {
        "rule": "!has(self.gateway) || !has(self.gateway.localSubnets) || self.gateway.localSubnets.all(l, !isCIDR(l) || self.remoteSubnets.all(s, !isCIDR(s) || !(cidr(s).containsCIDR(l) || cidr(l).containsCIDR(s))))",
        "message": "gateway.localSubnets[] must not overlap remoteSubnets",
        "fieldPath": ".gateway.localSubnets"
    },
    {
        "rule": "!has(self.bgp) || !has(self.bgp.announce) || !has(self.gateway) || !has(self.gateway.localSubnets) || self.gateway.localSubnets.all(l, !isCIDR(l) || self.bgp.announce.exists(a, isCIDR(a) && cidr(a).containsCIDR(l)))",
        "message": "gateway.localSubnets[] must be inside bgp.announce (AWS routes answers only to announced prefixes)",
        "fieldPath": ".gateway.localSubnets"
    },
    {
        "rule": "!has(self.bgp) || self.tunnels.all(t, has(t.insideCidr))",
        "message": "tunnels[].insideCidr is required with bgp",
        "fieldPath": ".tunnels"
    }
]))]
pub struct IotRelaySpec {
    /// The relay's IPv4 address inside the tunnel: the source address of every packet relayed into the VPC. A
    /// static route on the AWS VPN connection must cover it, and it must not lie inside `remoteSubnets`.
    #[schemars(schema_with = "crate::schema::ipv4")]
    pub inside_address: String,

    /// IPv4 CIDRs reachable through the tunnel (the VPC, e.g. `100.64.0.0/16`). Forward targets must lie inside
    /// one of them.
    #[schemars(schema_with = "crate::schema::cidr_list")]
    pub remote_subnets: Vec<String>,

    /// Outside IPv4 address used for IKE and ESP-in-UDP. Default: the source address of the route to the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::ipv4_opt")]
    pub local_address: Option<String>,

    /// IKE identity (IDi) sent to AWS: an IPv4 address or an FQDN. Default: `localAddress`. Behind NAT, set the
    /// public IP address configured as the customer gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::identity_opt")]
    pub local_identity: Option<String>,

    /// The VPN connection's tunnels, 1 or 2 (AWS gives two). The order is the preference: traffic uses the first
    /// established tunnel. Names and peer addresses must be unique.
    #[schemars(length(min = 1, max = 2))]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["name"],
        "x-kubernetes-validations" = [{
            "rule": "self.all(t, self.exists_one(u, u.peerAddress == t.peerAddress))",
            "message": "tunnel peerAddress values must be unique"
        }, {
            "rule": "self.all(t, !has(t.insideCidr) || self.exists_one(u, has(u.insideCidr) && u.insideCidr == t.insideCidr))",
            "message": "tunnel insideCidr values must be unique"
        }]
    ))]
    pub tunnels: Vec<TunnelSpec>,

    /// IKE SA settings shared by all tunnels. Defaults are AWS-compatible.
    #[serde(default)]
    pub ike: IkeSpec,

    /// ESP (CHILD_SA) settings shared by all tunnels. Defaults are AWS-compatible.
    #[serde(default)]
    pub esp: EspSpec,

    /// Dynamic routing: run a BGP session with AWS inside each tunnel, for VPN connections created with dynamic
    /// routing (each tunnel then needs `insideCidr`). Unset: static routing, where the VPN connection needs a
    /// static route covering `insideAddress`. See docs/bgp.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<crate::bgp::BgpSpec>,

    /// UDP forwards: packets from `allowedSources` to `listenPort` on the node are relayed to `target` through
    /// the tunnel, replies are relayed back. Names and listen ports must be unique.
    #[serde(default)]
    #[schemars(length(max = 64))]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["name"],
        "x-kubernetes-validations" = [{
            "rule": "self.all(f, self.exists_one(g, g.listenPort == f.listenPort))",
            "message": "forward listenPort values must be unique"
        }]
    ))]
    pub forwards: Vec<ForwardSpec>,

    /// Gateway mode: present (`gateway: {}` for the defaults) to route whole subnets through the tunnel, with TCP,
    /// ICMP and any other IPv4 protocol, through a TUN device on the node (or host). Absent (the default): only
    /// the UDP forwards, and the relay pod gets no `NET_ADMIN` and no `/dev/net/tun`. Forwards keep working side
    /// by side with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewaySpec>,
    /// At most this many relay sessions (sender address:port pairs with a return path) per sender IP address,
    /// across all forwards, so that one allowed sender sending from many ports cannot take the whole session table
    /// (4096 sessions) from the others. A new session beyond it is dropped and counted in
    /// `status.forwards[].drops.sourceSessionLimit`; the sender's existing sessions keep working. 1..4096, default
    /// 512 (an eighth of the table). Applied live, without touching the tunnels.
    #[serde(default = "default_max_sessions_per_source")]
    #[schemars(range(min = 1, max = 4096))]
    pub max_sessions_per_source: i32,

    /// Run the relay container fully privileged (uid 0, every capability, host devices). Default false: the relay
    /// runs as uid 65532 with only NET_BIND_SERVICE, which is all the userspace datapath needs. Honoured only when
    /// the operator's Helm chart sets `relay.allowPrivileged: true`; otherwise the IotRelay is `Stalled` with
    /// reason `PrivilegedNotAllowed` and no relay pod is created or changed.
    #[serde(default)]
    pub privileged: bool,

    /// TCP port of the relay's admin HTTP server (`/healthz`, `/readyz`, `/status`, `/metrics`, `POST /rekey`). In
    /// Kubernetes it listens on the node's loopback address only (127.0.0.1): the kubelet's probes reach it there,
    /// nothing off the node does. Metrics for scraping are served on a separate address (the chart's
    /// `relay.metricsAddress`).
    #[serde(default = "default_admin_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub admin_port: i32,

    /// Enables `POST /rekey` on the admin port, for requests carrying this token (`Authorization: Bearer
    /// <token>`). The Secret key is mounted into the relay pod as a file; the relay itself gets no API access to
    /// it. Unset (the default): `/rekey` is refused. Kubernetes only; standalone mode takes a token file flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rekey_token_secret_ref: Option<SecretKeyRef>,

    /// Log format of the relay: `JSON` (default) or `Text`.
    #[serde(default)]
    pub log_format: LogFormat,

    /// Relay container image. Default: the image the operator was configured with. Honoured only when the
    /// operator's Helm chart sets `relay.allowImageOverride: true`; otherwise the IotRelay is `Stalled` with reason
    /// `ImageOverrideNotAllowed` and no relay pod is created or changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// Node selector for the relay pod (e.g. pin it to the node whose public IP is the customer gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Tolerations for the relay pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Affinity for the relay pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Compute resources of the relay container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Gateway mode: a TUN device carrying `insideAddress`, with routes to `routes` through it. What the host sends
/// into it is encrypted on the active tunnel (only inside the negotiated traffic selectors); what the tunnel
/// delivers that is not a forward's reply is written to it (only from sources inside `remoteSubnets` and the
/// peer's traffic selectors). On the AWS side of a test (`ike.startupAction: Add`), `remoteSubnets` are the
/// peer relay's inside subnets, so the default routes send the VPC's answers back through the tunnel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Name of the TUN interface (1..15 characters: letters, digits, `-`, `_`, starting with a letter). Default
    /// `iotrelay0`. The relay creates it on start, removes it (with its routes) on stop, and removes a leftover
    /// of the same name from a relay that was killed.
    #[serde(default = "default_gateway_interface")]
    #[schemars(length(min = 1, max = 15), regex(pattern = r"^[a-zA-Z][a-zA-Z0-9_-]{0,14}$"))]
    pub interface: String,
    /// MTU of the TUN interface: the largest inner packet, 576..1446. Default: what the negotiated ESP suite
    /// leaves of an outside MTU of 1500 (at most 1446, AWS's limit). Larger packets with DF get ICMP
    /// "fragmentation needed" back, others are fragmented before encryption; TCP SYNs have their MSS clamped to
    /// fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 576, max = 1446))]
    pub mtu: Option<i32>,
    /// IPv4 CIDRs routed into the TUN interface, each inside `remoteSubnets`. Default: `remoteSubnets`; with `bgp`,
    /// none: the prefixes AWS announces are routed (added and removed as they are announced and withdrawn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::cidr_list")]
    pub routes: Option<Vec<String>>,
    /// IPv4 CIDRs of the site networks behind this host that reach the far side through the device (the host, with
    /// IP forwarding on, routes them into it), at most 32; none may overlap `remoteSubnets`. When set, gateway mode
    /// carries only traffic from and to `insideAddress` and these: what the host sends into the device from
    /// another source, and what the tunnel delivers to another destination, is dropped and counted
    /// (`outsideSelectors`). With `bgp` they are announced to AWS, so that AWS routes their answers into the
    /// tunnel: the default `bgp.announce` is `insideAddress/32` plus these (an explicit `bgp.announce` must cover
    /// each of them), and the announced prefixes are what gateway mode carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::cidr_list")]
    pub local_subnets: Option<Vec<String>>,
}

impl Default for GatewaySpec {
    fn default() -> Self {
        GatewaySpec { interface: default_gateway_interface(), mtu: None, routes: None, local_subnets: None }
    }
}

/// One AWS VPN tunnel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TunnelSpec {
    /// Tunnel name (a DNS label), used in status, metrics and events, e.g. `tunnel1`.
    #[schemars(schema_with = "crate::schema::name")]
    pub name: String,
    /// The AWS tunnel's outside IPv4 address.
    #[schemars(schema_with = "crate::schema::ipv4")]
    pub peer_address: String,
    /// The Secret key holding the tunnel's pre-shared key (same namespace).
    pub pre_shared_key_secret_ref: SecretKeyRef,
    /// The tunnel's inside IPv4 CIDR as AWS shows it, a /30 inside 169.254.0.0/16 (e.g. `169.254.10.40/30`): AWS's
    /// BGP address is its first host (`.41`), the relay's the second (`.42`). Required with `bgp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::inside_cidr")]
    pub inside_cidr: Option<String>,
}

/// A key in a Secret in the IotRelay's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
    /// Key inside the Secret's `data` / `stringData`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

pub use iotrelay_types::StartupAction;

/// Log output format.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    #[serde(rename = "JSON")]
    Json,
    /// Human-readable text.
    Text,
}

/// IKE SA settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.lifetime) || (duration(self.lifetime) >= duration('900s') && duration(self.lifetime) <= duration('8h'))",
        "message": "lifetime must be between 900s and 8h (AWS phase 1 range)",
        "fieldPath": ".lifetime"
    },
    {
        "rule": "!has(self.dpdInterval) || (duration(self.dpdInterval) >= duration('1s') && duration(self.dpdInterval) <= duration('1h'))",
        "message": "dpdInterval must be between 1s and 1h",
        "fieldPath": ".dpdInterval"
    },
    {
        "rule": "!has(self.dpdTimeout) || !has(self.dpdInterval) || duration(self.dpdTimeout) > duration(self.dpdInterval)",
        "message": "dpdTimeout must be longer than dpdInterval",
        "fieldPath": ".dpdTimeout"
    }
]))]
pub struct IkeSpec {
    /// IKE proposals in strongSwan syntax (as in AWS's downloadable configurations), e.g.
    /// `aes128-sha1-modp1024` or `aes256gcm16-prfsha384-ecp384`. Default: AES-GCM/CBC with SHA-2/SHA-1 and DH
    /// groups 20, 19, 14, 2, which AWS's default tunnel options accept.
    #[serde(default = "default_ike_proposals")]
    #[schemars(schema_with = "crate::schema::proposals")]
    pub proposals: Vec<String>,
    /// IKE SA lifetime, 900s..8h (AWS phase 1 range). The relay rekeys before AWS does.
    #[serde(default = "default_ike_lifetime")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub lifetime: String,
    /// Interval of dead peer detection probes when the tunnel is idle (AWS recommends 10s).
    #[serde(default = "default_dpd_interval")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub dpd_interval: String,
    /// A peer that answers nothing for this long is declared dead and the tunnel is restarted.
    #[serde(default = "default_dpd_timeout")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub dpd_timeout: String,
    /// `Start`: the relay initiates (default). `Add`: it waits for AWS to initiate.
    #[serde(default)]
    pub startup_action: StartupAction,
    /// Defence against spoofed IKE_SA_INIT floods (anyone can send them with the AWS endpoint's address): from this
    /// many half-open IKE SAs on (IKE_SA_INIT answered, the peer's AUTH not yet verified; counted across all tunnels
    /// of the relay), a new IKE_SA_INIT must first return a COOKIE (RFC 7296 §2.6), which a sender that cannot
    /// receive at the address it spoofs never does, so it creates no state. Cookies sent are counted in
    /// `iotrelay_ike_cookies_sent_total`. 0 demands a cookie for every IKE_SA_INIT. 0..64, default 2 (AWS has at
    /// most one IKE_SA_INIT of its own in flight per tunnel).
    #[serde(default = "default_cookie_threshold")]
    #[schemars(range(min = 0, max = 64))]
    pub cookie_threshold: i32,
    /// At most this many half-open IKE SAs per tunnel (as strongSwan's `block_threshold`); further IKE_SA_INIT
    /// requests are dropped, and counted in `iotrelay_ike_half_open_refused_total`, until one completes or
    /// expires (30 s). An established tunnel is never affected. 1..64, default 5.
    #[serde(default = "default_half_open_limit")]
    #[schemars(range(min = 1, max = 64))]
    pub half_open_limit: i32,
}

impl Default for IkeSpec {
    fn default() -> Self {
        IkeSpec {
            proposals: default_ike_proposals(),
            lifetime: default_ike_lifetime(),
            dpd_interval: default_dpd_interval(),
            dpd_timeout: default_dpd_timeout(),
            startup_action: StartupAction::Start,
            cookie_threshold: default_cookie_threshold(),
            half_open_limit: default_half_open_limit(),
        }
    }
}

/// ESP (CHILD_SA) settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.lifetime) || (duration(self.lifetime) >= duration('900s') && duration(self.lifetime) <= duration('1h'))",
        "message": "lifetime must be between 900s and 1h (AWS phase 2 range)",
        "fieldPath": ".lifetime"
    }
]))]
pub struct EspSpec {
    /// ESP proposals in strongSwan syntax, e.g. `aes128-sha1-modp1024` (a DH group means PFS). Default:
    /// AES-GCM/CBC with SHA-2/SHA-1 and PFS groups AWS accepts.
    #[serde(default = "default_esp_proposals")]
    #[schemars(schema_with = "crate::schema::proposals")]
    pub proposals: Vec<String>,
    /// CHILD_SA lifetime, 900s..1h (AWS phase 2 range), shorter than `ike.lifetime`.
    #[serde(default = "default_esp_lifetime")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub lifetime: String,
    /// Anti-replay window in packets, 64..2048 (AWS default 1024).
    #[serde(default = "default_replay_window")]
    #[schemars(range(min = 64, max = 2048))]
    pub replay_window: i32,
}

impl Default for EspSpec {
    fn default() -> Self {
        EspSpec {
            proposals: default_esp_proposals(),
            lifetime: default_esp_lifetime(),
            replay_window: default_replay_window(),
        }
    }
}

/// Transport protocol of a forward.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Protocol {
    /// UDP (the only protocol supported).
    #[default]
    #[serde(rename = "UDP")]
    Udp,
}

/// One UDP forward.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardSpec {
    /// Forward name (a DNS label), used in status and metrics.
    #[schemars(schema_with = "crate::schema::name")]
    pub name: String,
    /// Protocol; only `UDP`.
    #[serde(default)]
    pub protocol: Protocol,
    /// UDP port the relay listens on, on the node (hostNetwork) or host (standalone). Not 500 or 4500.
    #[schemars(range(min = 1, max = 65535))]
    pub listen_port: i32,
    /// IPv4 CIDRs allowed to send to this forward; packets from anyone else are dropped and counted
    /// (`drops.sourceNotAllowed`). Use `0.0.0.0/0` to allow everyone.
    #[schemars(schema_with = "crate::schema::cidr_list")]
    pub allowed_sources: Vec<String>,
    /// The device inside the VPC that receives the packets.
    pub target: ForwardTarget,
    /// How long a session (and its return path) lives without traffic, 1s..24h.
    #[serde(default = "default_idle_timeout")]
    #[schemars(schema_with = "crate::schema::duration")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "duration(self) >= duration('1s') && duration(self) <= duration('24h')",
        "message": "must be between 1s and 24h"
    }]))]
    pub idle_timeout: String,
}

/// Address and port of a device inside the VPC.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardTarget {
    /// IPv4 address of the device; must be inside `remoteSubnets`.
    #[schemars(schema_with = "crate::schema::ipv4")]
    pub address: String,
    /// UDP port of the device.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

fn default_gateway_interface() -> String {
    "iotrelay0".into()
}
fn default_admin_port() -> i32 {
    i32::from(crate::DEFAULT_ADMIN_PORT)
}
fn default_ike_proposals() -> Vec<String> {
    iotrelay_crypto::proposal::DEFAULT_IKE_PROPOSALS.iter().map(|s| s.to_string()).collect()
}
fn default_esp_proposals() -> Vec<String> {
    iotrelay_crypto::proposal::DEFAULT_ESP_PROPOSALS.iter().map(|s| s.to_string()).collect()
}
fn default_ike_lifetime() -> String {
    "8h".into()
}
fn default_esp_lifetime() -> String {
    "1h".into()
}
fn default_dpd_interval() -> String {
    "10s".into()
}
fn default_dpd_timeout() -> String {
    "30s".into()
}
fn default_replay_window() -> i32 {
    1024
}
fn default_cookie_threshold() -> i32 {
    2
}
fn default_half_open_limit() -> i32 {
    5
}
fn default_max_sessions_per_source() -> i32 {
    512
}
fn default_idle_timeout() -> String {
    "60s".into()
}
