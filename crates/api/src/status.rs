//! Status types. In-cluster each condition has one writer: the relay writes TunnelsReady, Degraded, tunnels,
//! forwards, datapath, gateway and the summary columns; the operator writes Ready (its aggregate), Reconciling,
//! Stalled and observedGeneration. Standalone the relay writes Ready, Degraded, Reconciling and Stalled itself; the
//! same JSON is served at the standalone `/status`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition types.
pub mod condition {
    /// In-cluster: the operator's aggregate (the relay pod runs and its `TunnelsReady` is True for the current
    /// generation). Standalone: the relay's own `TunnelsReady` under this name.
    pub const READY: &str = "Ready";
    /// In-cluster, written by the relay: it carries traffic (a tunnel is established, with `spec.bgp` its BGP
    /// session too, and all forwards listen).
    pub const TUNNELS_READY: &str = "TunnelsReady";
    /// A configured tunnel is down while another carries traffic.
    pub const DEGRADED: &str = "Degraded";
    /// kstatus: work in progress (pod rolling out, tunnel connecting).
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: cannot progress without a change (bad config, missing Secret, authentication failed, ...).
    pub const STALLED: &str = "Stalled";

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    /// A condition of `type_`, `True` when `status`. Its `lastTransitionTime` is the one of `previous`'s condition
    /// of that type while the status is unchanged, else `now`. The one way both writers (relay and operator)
    /// build a condition.
    pub fn new(
        type_: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
        generation: Option<i64>,
        previous: &[Condition],
        now: &Time,
    ) -> Condition {
        let status = if status { "True" } else { "False" }.to_string();
        let last_transition_time = match previous.iter().find(|c| c.type_ == type_) {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => now.clone(),
        };
        Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time,
        }
    }
}

/// Observed state of an IotRelay.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IotRelayStatus {
    /// The `metadata.generation` the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// TunnelsReady, Degraded (written by the relay), Ready, Reconciling, Stalled (written by the operator; Ready is
    /// the relay's TunnelsReady once its pod runs); kstatus-compatible. Standalone: Ready, Degraded, Reconciling,
    /// Stalled, all from the relay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Established tunnels / configured tunnels, e.g. `2/2` (the `Tunnels` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnels_up: Option<String>,
    /// Name of the tunnel carrying outbound traffic now (the `Active` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_tunnel: Option<String>,
    /// Listening forwards / configured forwards, e.g. `1/1` (the `Forwards` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwards_listening: Option<String>,
    /// The Kubernetes node the relay runs on (the `Node` column of `kubectl get -o wide`); unset standalone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The outside IPv4 address IKE and ESP-in-UDP are sent from: `spec.localAddress`, or the source address of
    /// the route to the first tunnel's peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside_address: Option<String>,
    /// Whether a NAT rewrites the outside address on the way to AWS (IKEv2 NAT detection on the established
    /// tunnels); unset until a tunnel is established. Behind a NAT, AWS sees the NAT's public address, which
    /// must be the customer gateway's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_detected: Option<bool>,
    /// One entry per configured tunnel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub tunnels: Vec<TunnelStatus>,
    /// One entry per configured forward.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub forwards: Vec<ForwardStatus>,
    /// Datapath-wide counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapath: Option<DatapathStatus>,
    /// The last rekey request (annotation `iotrelay.dev/rekey`, e.g. from `kubectl iotrelay rekey`) the relay
    /// handled, and what it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rekey_request: Option<crate::rekey::LastRekeyRequest>,
    /// Gateway mode's counters (`spec.gateway`); absent without gateway mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayStatus>,
}

impl IotRelayStatus {
    /// Fills `tunnelsUp`, `activeTunnel` and `forwardsListening` from `tunnels` and `forwards`.
    pub fn summarize(&mut self) {
        let up = self.tunnels.iter().filter(|t| t.state == TunnelState::Established).count();
        self.tunnels_up = Some(format!("{up}/{}", self.tunnels.len()));
        self.active_tunnel = self.tunnels.iter().find(|t| t.active).map(|t| t.name.clone());
        let listening = self.forwards.iter().filter(|f| f.listening).count();
        self.forwards_listening = Some(format!("{listening}/{}", self.forwards.len()));
    }

    /// The condition of the given type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

pub use iotrelay_types::TunnelState;

/// Status of one tunnel.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TunnelStatus {
    /// Tunnel name from the spec.
    pub name: String,
    /// Connecting, Established or Down.
    pub state: TunnelState,
    /// Whether this tunnel carries outbound traffic now.
    #[serde(default)]
    pub active: bool,
    /// The current IKE SA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ike_sa: Option<IkeSaStatus>,
    /// The current CHILD_SA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_sa: Option<ChildSaStatus>,
    /// Last error seen on this tunnel, e.g. `peer sent AUTHENTICATION_FAILED`; empty when none.
    #[serde(default)]
    pub last_error: String,
    /// The BGP session with AWS inside this tunnel (dynamic routing, `spec.bgp`); unset with static routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpSessionStatus>,
    /// IKE datagrams received from the tunnel's peer address since the relay started (answers, requests, DPD),
    /// authenticated or not: 0 means AWS has never answered.
    #[serde(default)]
    pub ike_messages_in: u64,
    /// CHILD_SA rekeys completed since the relay started (started by either side).
    #[serde(default)]
    pub child_rekeys: u64,
    /// IKE SA rekeys completed since the relay started (started by either side).
    #[serde(default)]
    pub ike_rekeys: u64,
}

/// The BGP session inside one tunnel.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BgpSessionStatus {
    /// RFC 4271 session state: `Idle` (tunnel down, or waiting to reconnect), `Connect` (TCP connect to AWS's
    /// inside address, port 179), `OpenSent`, `OpenConfirm`, `Established`.
    pub state: String,
    /// When the session became Established (its uptime); unset when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub established_at: Option<Time>,
    /// Prefixes AWS announces on this session now (they are the relay's remote subnets while it lasts).
    #[serde(default)]
    pub prefixes_received: u64,
    /// Prefixes we announce on this session now (`spec.bgp.announce`).
    #[serde(default)]
    pub prefixes_announced: u64,
    /// AS-path prepends on our announcements here: 0 on the active tunnel, `spec.bgp.standbyPrepend` on the others.
    #[serde(default)]
    pub prepend: u8,
    /// Set while this tunnel, lost earlier and usable again, waits out `spec.bgp.failbackDelay` before it takes
    /// traffic and the plain announcement back from a tunnel later in order: when that happens, unless it is lost
    /// again before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback_at: Option<Time>,
    /// The learned prefixes in address order (at most 32 listed; `prefixesReceived` counts all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub received: Vec<String>,
    /// Times the session was Established since the relay started.
    #[serde(default)]
    pub sessions_established: u64,
    /// Why the session last went down, or the last UPDATE treated as withdraw, e.g.
    /// `sent NOTIFICATION Message Header Error / Connection Not Synchronized (...)`; empty when none.
    #[serde(default)]
    pub last_error: String,
}

/// An IKE SA as strongSwan would print it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IkeSaStatus {
    /// Our SPI, 16 lowercase hex digits without `0x`.
    pub local_spi: String,
    /// The peer's SPI, 16 lowercase hex digits without `0x`.
    pub remote_spi: String,
    /// Negotiated transforms, e.g. `AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024`.
    pub proposal: String,
    /// When the SA was established.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub established_at: Option<Time>,
    /// When the relay will rekey it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rekey_at: Option<Time>,
    /// When its lifetime (`spec.ike.lifetime`) ends; AWS deletes it then unless it was rekeyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
}

/// A CHILD_SA (ESP SA pair) with its traffic counters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChildSaStatus {
    /// Inbound ESP SPI, 8 lowercase hex digits.
    pub inbound_spi: String,
    /// Outbound ESP SPI, 8 lowercase hex digits.
    pub outbound_spi: String,
    /// Negotiated transforms, e.g. `AES_CBC-128/HMAC_SHA1_96`.
    pub proposal: String,
    /// When the SA was established.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub established_at: Option<Time>,
    /// When the relay will rekey it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rekey_at: Option<Time>,
    /// When its lifetime (`spec.esp.lifetime`) ends; AWS deletes it then unless it was rekeyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Decrypted inner bytes received.
    #[serde(default)]
    pub bytes_in: u64,
    /// Inner bytes sent.
    #[serde(default)]
    pub bytes_out: u64,
    /// Packets received.
    #[serde(default)]
    pub packets_in: u64,
    /// Packets sent.
    #[serde(default)]
    pub packets_out: u64,
}

/// Status of one forward.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardStatus {
    /// Forward name from the spec.
    pub name: String,
    /// Whether the UDP socket is bound.
    #[serde(default)]
    pub listening: bool,
    /// The `host:port` clients send to: the relay's public address and `listenPort`. The host is the outside
    /// address, or, when a NAT was detected and `localIdentity` is an IPv4 address, that address (the customer
    /// gateway's public IP). The forward listens on every address of the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Live sessions (sender address/port pairs with a return path).
    #[serde(default)]
    pub sessions: u64,
    /// Packets from allowed sources relayed into the tunnel.
    #[serde(default)]
    pub packets_in: u64,
    /// Replies relayed back to the sender.
    #[serde(default)]
    pub packets_out: u64,
    /// Packets dropped, by reason.
    #[serde(default)]
    pub drops: ForwardDrops,
}

pub use iotrelay_types::ForwardDrops;

/// Datapath-wide state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatapathStatus {
    /// ESP packets dropped, by reason.
    #[serde(default)]
    pub drops: DatapathDrops,
}

/// Gateway mode's packet counters, since the relay started.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Packets the host routed into the TUN device that were sent into the tunnel (a packet fragmented before
    /// encryption counts once).
    #[serde(default)]
    pub packets_to_tunnel: u64,
    /// Packets from the tunnel written to the TUN device.
    #[serde(default)]
    pub packets_to_device: u64,
    /// Packets larger than the MTU without DF, fragmented before encryption.
    #[serde(default)]
    pub fragmented: u64,
    /// TCP SYNs (both directions) whose MSS option was lowered to the MTU - 40.
    #[serde(default)]
    pub mss_clamped: u64,
    /// With `spec.bgp`: prefixes AWS announces that are routed through the TUN device now (at most 1000).
    #[serde(default)]
    pub bgp_routes: u64,
    /// With `spec.bgp`: learned prefixes not routed through the device now: beyond the bound of 1000, or covering
    /// a tunnel's peer address (e.g. `0.0.0.0/0`: it would route the tunnel itself into the device).
    #[serde(default)]
    pub bgp_routes_refused: u64,
    /// Route changes (BGP routes added or removed) the kernel refused; retried on the next change.
    #[serde(default)]
    pub route_errors: u64,
    /// Packets dropped, by reason.
    #[serde(default)]
    pub drops: GatewayDrops,
}

/// Gateway mode's drop counters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayDrops {
    /// From the device: not a valid IPv4 packet (e.g. IPv6 the host sent to the device).
    #[serde(default)]
    pub not_ipv4: u64,
    /// From the device: no tunnel has a CHILD_SA.
    #[serde(default)]
    pub no_tunnel: u64,
    /// From the device: source outside the negotiated local traffic selectors or this side's networks (with
    /// `bgp` the announced prefixes, else `insideAddress` and `gateway.localSubnets` when set), or destination
    /// outside the peer's selectors or `remoteSubnets`; never sent. From the tunnel: destination outside this
    /// side's networks; not written to the device.
    #[serde(default)]
    pub outside_selectors: u64,
    /// From the device: larger than the MTU with DF set; each is answered with ICMP "fragmentation needed".
    #[serde(default)]
    pub too_big: u64,
    /// From the tunnel: source outside the peer's traffic selectors or `remoteSubnets` (anti-spoofing).
    #[serde(default)]
    pub spoofed_source: u64,
    /// From the tunnel: not a valid IPv4 packet.
    #[serde(default)]
    pub malformed: u64,
    /// Encrypting or queueing for the tunnel failed, or the device did not take the packet.
    #[serde(default)]
    pub send_failed: u64,
}

/// ESP drop counters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatapathDrops {
    /// Unparseable packets.
    #[serde(default)]
    pub malformed: u64,
    /// Replayed or too old sequence numbers.
    #[serde(default)]
    pub replay: u64,
    /// ICV check failed.
    #[serde(default)]
    pub integrity: u64,
    /// SPI not known.
    #[serde(default)]
    pub unknown_spi: u64,
}
