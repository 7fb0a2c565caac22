//! Status building (pure): engine/datapath snapshots in, the API.md `status` out.

use std::net::Ipv4Addr;
use std::time::Duration;

use iotrelay_api::status::condition;
use iotrelay_api::{
    BgpSessionStatus, ChildSaStatus, DatapathDrops, DatapathStatus, DegradedReason, ForwardDrops, ForwardStatus,
    GatewayDrops, GatewayStatus, IkeSaStatus, IotRelayStatus, ProgressReason, StalledReason, TunnelState,
    TunnelStatus as ApiTunnel, TunnelsReadyReason,
};
use iotrelay_ikev2::{DownReason, TunnelStatus};

use crate::datapath::BgpSnapshot;
use crate::gateway::{GatewayCounters, GatewayDrop};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Per-tunnel traffic counters kept by the datapath over the tunnel's life: ESP inner bytes/packets, and IKE
/// datagrams from the peer's address (`status.tunnels[].ikeMessagesIn`: is AWS answering at all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChildCounters {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub ike_messages_in: u64,
}

/// What status needs from one tunnel.
#[derive(Debug, Clone)]
pub struct TunnelSnapshot {
    pub name: String,
    pub engine: TunnelStatus,
    pub active: bool,
    pub child: ChildCounters,
    /// The tunnel's BGP session (dynamic routing only).
    pub bgp: Option<BgpSnapshot>,
}

/// What status needs from one forward.
#[derive(Debug, Clone, Default)]
pub struct ForwardSnapshot {
    pub name: String,
    pub listen_port: u16,
    pub listening: bool,
    pub sessions: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub drops: ForwardDrops,
}

/// Where the relay runs: what status reports so users know where to send traffic.
#[derive(Debug, Clone)]
pub struct Place {
    /// The Kubernetes node (from the downward API); `None` standalone.
    pub node_name: Option<String>,
    /// The address IKE and ESP-in-UDP are sent from.
    pub outside_address: Ipv4Addr,
    /// `localIdentity` when it is an IPv4 address: the public address behind a NAT.
    pub public_identity: Option<Ipv4Addr>,
}

impl Place {
    /// The host clients send to: behind a NAT the public identity when known, else the outside address.
    fn client_host(&self, nat: bool) -> Ipv4Addr {
        match (nat, self.public_identity) {
            (true, Some(public)) => public,
            _ => self.outside_address,
        }
    }
}

/// Maps the engine's monotonic clock (a `Duration` since the loop started) to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    pub origin: Timestamp,
}

impl WallClock {
    pub fn at(&self, d: Duration) -> Time {
        let sd = SignedDuration::try_from(d).unwrap_or(SignedDuration::ZERO);
        // Whole seconds, as Kubernetes serializes metav1.Time.
        let t = self.origin.checked_add(sd).unwrap_or(self.origin);
        Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
    }

    /// An SA's established, rekey and expiry times, as its status shows them.
    fn sa_times(&self, established: Duration, rekey: Duration, expires: Duration) -> [Option<Time>; 3] {
        [established, rekey, expires].map(|d| Some(self.at(d)))
    }
}

/// Which condition types this writer owns. Standalone: `Ready`, `Degraded`, `Reconciling`, `Stalled`. In-cluster
/// only `TunnelsReady` (what standalone calls `Ready`) and `Degraded`: the operator owns `Ready` (its aggregate),
/// `Reconciling` and `Stalled`, so every condition has one writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Standalone,
    InCluster,
}

impl Owner {
    /// The type of the condition saying whether the relay carries traffic.
    pub fn tunnels_condition(self) -> &'static str {
        match self {
            Owner::Standalone => condition::READY,
            Owner::InCluster => condition::TUNNELS_READY,
        }
    }
}

/// The `TunnelsReady` reason for a tunnel failure only a configuration change can fix; `None` for the others.
/// Which failures are permanent is the engine's call ([`DownReason::is_permanent`]); the condition reason carries
/// the same name.
pub fn permanent_reason(r: &DownReason) -> Option<TunnelsReadyReason> {
    r.is_permanent().then(|| r.reason().parse().ok()).flatten()
}

fn tunnel_status(t: &TunnelSnapshot, clock: &WallClock) -> ApiTunnel {
    let e = &t.engine;
    let ike_sa = e.ike.as_ref().map(|s| {
        let [established_at, rekey_at, expires_at] = clock.sa_times(s.established_at, s.rekey_at, s.expires_at);
        IkeSaStatus {
            local_spi: format!("{:016x}", s.local_spi),
            remote_spi: format!("{:016x}", s.remote_spi),
            proposal: s.proposal.clone(),
            established_at,
            rekey_at,
            expires_at,
        }
    });
    let child_sa = e.child.as_ref().map(|c| {
        let [established_at, rekey_at, expires_at] = clock.sa_times(c.established_at, c.rekey_at, c.expires_at);
        ChildSaStatus {
            inbound_spi: format!("{:08x}", c.inbound_spi),
            outbound_spi: format!("{:08x}", c.outbound_spi),
            proposal: c.proposal.clone(),
            established_at,
            rekey_at,
            expires_at,
            bytes_in: t.child.bytes_in,
            bytes_out: t.child.bytes_out,
            packets_in: t.child.packets_in,
            packets_out: t.child.packets_out,
        }
    });
    ApiTunnel {
        name: t.name.clone(),
        state: e.state,
        active: t.active,
        ike_sa,
        child_sa,
        last_error: e.last_error.clone().unwrap_or_default(),
        bgp: t.bgp.as_ref().map(|b| BgpSessionStatus {
            state: b.state.clone(),
            established_at: b.established_at.map(|d| clock.at(d)),
            prefixes_received: b.prefixes_received,
            prefixes_announced: b.prefixes_announced,
            prepend: b.prepend,
            failback_at: b.failback_at.map(|d| clock.at(d)),
            received: b.received.clone(),
            sessions_established: b.sessions_established,
            last_error: b.last_error.clone().unwrap_or_default(),
        }),
        ike_messages_in: t.child.ike_messages_in,
        child_rekeys: e.counters.child_rekeys,
        ike_rekeys: e.counters.ike_rekeys,
    }
}

/// Builds the status. `previous` supplies `lastTransitionTime` for conditions whose status did not change; `now`
/// is used for the ones that did.
#[allow(clippy::too_many_arguments)]
pub fn build_status(
    owner: Owner,
    generation: Option<i64>,
    place: &Place,
    tunnels: &[TunnelSnapshot],
    forwards: &[ForwardSnapshot],
    datapath: DatapathDrops,
    gateway: Option<&GatewayCounters>,
    clock: &WallClock,
    now: Time,
    previous: &[Condition],
) -> IotRelayStatus {
    let cond = |type_, ok, reason: &str, message: String| {
        condition::new(type_, ok, reason, message, generation, previous, &now)
    };
    let tunnels_c =
        |ok, reason: TunnelsReadyReason, message: String| cond(owner.tunnels_condition(), ok, reason.as_str(), message);
    let degraded_c =
        |ok, reason: DegradedReason, message: String| cond(condition::DEGRADED, ok, reason.as_str(), message);
    let api_tunnels: Vec<ApiTunnel> = tunnels.iter().map(|t| tunnel_status(t, clock)).collect();
    // Known once a tunnel is established; a NAT on any of them means the outside address is not public.
    let nat_detected =
        tunnels.iter().filter_map(|t| t.engine.ike.as_ref().map(|s| s.nat_detected)).reduce(|a, b| a || b);
    let host = place.client_host(nat_detected == Some(true));
    let api_forwards: Vec<ForwardStatus> = forwards
        .iter()
        .map(|f| ForwardStatus {
            name: f.name.clone(),
            listening: f.listening,
            endpoint: Some(format!("{host}:{}", f.listen_port)),
            sessions: f.sessions,
            packets_in: f.packets_in,
            packets_out: f.packets_out,
            drops: f.drops,
        })
        .collect();

    let up: Vec<&str> =
        api_tunnels.iter().filter(|t| t.state == TunnelState::Established).map(|t| t.name.as_str()).collect();
    let down: Vec<&str> =
        api_tunnels.iter().filter(|t| t.state != TunnelState::Established).map(|t| t.name.as_str()).collect();
    let not_listening: Vec<&str> = api_forwards.iter().filter(|f| !f.listening).map(|f| f.name.as_str()).collect();
    // A tunnel that failed in a way only a configuration change can fix.
    let stalled = tunnels
        .iter()
        .filter(|t| t.engine.state != TunnelState::Established)
        .find_map(|t| t.engine.last_down_reason.as_ref().and_then(permanent_reason).map(|r| (t, r)));
    let stalled_msg =
        |t: &TunnelSnapshot| format!("tunnel {}: {}", t.name, t.engine.last_error.clone().unwrap_or_default());

    let bgp_on = tunnels.iter().any(|t| t.bgp.is_some());
    let bgp_up: Vec<&str> = tunnels
        .iter()
        .filter(|t| t.engine.state == TunnelState::Established && t.bgp.as_ref().is_some_and(|b| b.established))
        .map(|t| t.name.as_str())
        .collect();
    use TunnelsReadyReason as T;
    let ready = if up.is_empty() {
        match stalled {
            Some((t, r)) => tunnels_c(false, r, stalled_msg(t)),
            None => tunnels_c(false, T::NoTunnelEstablished, "no tunnel has an established CHILD_SA".into()),
        }
    } else if !not_listening.is_empty() {
        let msg = format!("forwards not listening: {}", not_listening.join(", "));
        tunnels_c(false, T::ForwardNotListening, msg)
    } else if bgp_on && bgp_up.is_empty() {
        // Dynamic routing: AWS routes nothing into a tunnel until its BGP session is Established.
        let msg = "no established tunnel has an Established BGP session: AWS routes nothing to the relay".into();
        tunnels_c(false, T::NoBgpSessionEstablished, msg)
    } else if bgp_on {
        tunnels_c(true, T::TunnelEstablished, format!("established with BGP: {}", bgp_up.join(", ")))
    } else {
        tunnels_c(true, T::TunnelEstablished, format!("established: {}", up.join(", ")))
    };
    // Dynamic routing: an established tunnel whose BGP session is not Established carries no return traffic.
    let bgp_down: Vec<&str> = tunnels
        .iter()
        .filter(|t| t.engine.state == TunnelState::Established && t.bgp.as_ref().is_some_and(|b| !b.established))
        .map(|t| t.name.as_str())
        .collect();
    use DegradedReason as D;
    let degraded = if !up.is_empty() && !down.is_empty() {
        degraded_c(true, D::TunnelDown, format!("tunnel down: {}", down.join(", ")))
    } else if !bgp_down.is_empty() {
        let msg = format!("tunnel up but its BGP session is not Established: {}", bgp_down.join(", "));
        degraded_c(true, D::BgpSessionDown, msg)
    } else if up.is_empty() {
        degraded_c(false, D::NoTunnelEstablished, "no tunnel carries traffic".into())
    } else {
        degraded_c(false, D::AllTunnelsEstablished, "all configured tunnels are established".into())
    };
    let mut conditions = vec![ready, degraded];
    if owner == Owner::Standalone {
        let reconciling = if up.is_empty() && stalled.is_none() {
            let msg = "waiting for a tunnel to be established".into();
            cond(condition::RECONCILING, true, ProgressReason::Connecting.as_str(), msg)
        } else {
            cond(condition::RECONCILING, false, ProgressReason::Reconciled.as_str(), String::new())
        };
        let stalled_c = match stalled.and_then(|(t, r)| Some((t, StalledReason::from_tunnels(r)?))) {
            Some((t, r)) => cond(condition::STALLED, true, r.as_str(), stalled_msg(t)),
            None => cond(condition::STALLED, false, StalledReason::NotStalled.as_str(), String::new()),
        };
        conditions.push(reconciling);
        conditions.push(stalled_c);
    }
    let mut s = IotRelayStatus {
        observed_generation: if owner == Owner::Standalone { generation } else { None },
        conditions,
        node_name: place.node_name.clone(),
        outside_address: Some(place.outside_address.to_string()),
        nat_detected,
        tunnels: api_tunnels,
        forwards: api_forwards,
        datapath: Some(DatapathStatus { drops: datapath }),
        gateway: gateway.map(gateway_status),
        ..Default::default()
    };
    s.summarize();
    s
}

/// `status.gateway` from the datapath's gateway counters (the same numbers as `iotrelay_gateway_*`).
pub fn gateway_status(c: &GatewayCounters) -> GatewayStatus {
    let d = |why| c.drops_of(why);
    GatewayStatus {
        packets_to_tunnel: c.to_tunnel,
        packets_to_device: c.to_device,
        fragmented: c.fragmented,
        mss_clamped: c.mss_clamped,
        bgp_routes: c.bgp_routes,
        bgp_routes_refused: c.bgp_routes_refused,
        route_errors: c.route_errors,
        drops: GatewayDrops {
            not_ipv4: d(GatewayDrop::NotIpv4),
            no_tunnel: d(GatewayDrop::NoTunnel),
            outside_selectors: d(GatewayDrop::OutsideSelectors),
            too_big: d(GatewayDrop::TooBig),
            spoofed_source: d(GatewayDrop::SpoofedSource),
            malformed: d(GatewayDrop::Malformed),
            send_failed: d(GatewayDrop::SendFailed),
        },
    }
}

/// `/readyz`: Ok once a tunnel has an installed CHILD_SA and every forward listens, else the reason. Reads the
/// relay's own condition (`TunnelsReady` in-cluster, `Ready` standalone: see [`Owner::tunnels_condition`]).
pub fn readiness(status: &IotRelayStatus) -> Result<(), String> {
    let own = status.condition(condition::TUNNELS_READY).or_else(|| status.condition(condition::READY));
    match own {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) => Err(format!("{}: {}", c.reason, c.message)),
        None => Err("starting".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotrelay_ikev2::{ChildSaInfo, Counters, DownReason, IkeSaInfo};

    fn engine(state: TunnelState) -> TunnelStatus {
        TunnelStatus {
            state,
            ike: None,
            child: None,
            last_error: None,
            last_down_reason: None,
            counters: Counters::default(),
        }
    }

    fn established() -> TunnelStatus {
        let mut e = engine(TunnelState::Established);
        e.ike = Some(IkeSaInfo {
            local_spi: 0x8035ad4451a597a3,
            remote_spi: 0x0a77882f005cd577,
            proposal: "AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024".into(),
            established_at: Duration::from_secs(1),
            rekey_at: Duration::from_secs(27000),
            expires_at: Duration::from_secs(28801),
            nat_detected: false,
        });
        e.child = Some(ChildSaInfo {
            inbound_spi: 0xc2da9d90,
            outbound_spi: 0x07dcbf75,
            proposal: "AES_CBC-128/HMAC_SHA1_96".into(),
            established_at: Duration::from_millis(2500),
            rekey_at: Duration::from_secs(3000),
            expires_at: Duration::from_millis(3602500),
        });
        e
    }

    fn place() -> Place {
        Place {
            node_name: Some("node-a".into()),
            outside_address: Ipv4Addr::new(192, 0, 2, 2),
            public_identity: Some(Ipv4Addr::new(198, 51, 100, 7)),
        }
    }

    fn clock() -> WallClock {
        WallClock { origin: "2026-11-28T20:00:00Z".parse().unwrap() }
    }

    fn now() -> Time {
        Time("2026-11-28T20:00:05Z".parse().unwrap())
    }

    /// Tunnel `tunnel1` with the engine's status `engine`, no traffic counted.
    fn tunnel1(engine: TunnelStatus, active: bool) -> TunnelSnapshot {
        TunnelSnapshot { name: "tunnel1".into(), engine, active, child: Default::default(), bgp: None }
    }

    /// The status of `tunnels` with [`forward`], nothing dropped, at [`now`], with no previous conditions.
    fn status_of(owner: Owner, tunnels: &[TunnelSnapshot], gateway: Option<&GatewayCounters>) -> IotRelayStatus {
        build_status(owner, None, &place(), tunnels, &[forward()], Default::default(), gateway, &clock(), now(), &[])
    }

    fn forward() -> ForwardSnapshot {
        ForwardSnapshot {
            name: "admin".into(),
            listen_port: 7000,
            listening: true,
            sessions: 1,
            packets_in: 12,
            packets_out: 12,
            drops: ForwardDrops { source_not_allowed: 3, ..Default::default() },
        }
    }

    #[test]
    fn golden_one_tunnel_up_one_down() {
        let mut down = engine(TunnelState::Connecting);
        down.last_error = Some("peer did not answer (dead peer detection)".into());
        down.last_down_reason = Some(DownReason::DeadPeer);
        let mut up = established();
        (up.counters.child_rekeys, up.counters.ike_rekeys) = (2, 1);
        let tunnels = vec![
            TunnelSnapshot {
                name: "tunnel1".into(),
                engine: up,
                active: true,
                child: ChildCounters {
                    bytes_in: 100,
                    bytes_out: 200,
                    packets_in: 1,
                    packets_out: 2,
                    ike_messages_in: 7,
                },
                bgp: None,
            },
            TunnelSnapshot {
                name: "tunnel2".into(),
                engine: down,
                active: false,
                child: ChildCounters::default(),
                bgp: None,
            },
        ];
        let s = build_status(
            Owner::Standalone,
            Some(3),
            &place(),
            &tunnels,
            &[forward()],
            DatapathDrops { replay: 2, ..Default::default() },
            None,
            &clock(),
            now(),
            &[],
        );
        let got = serde_json::to_value(&s).unwrap();
        let want: serde_json::Value =
            serde_json::from_str(include_str!("../tests/golden/status_degraded.json")).unwrap();
        assert_eq!(got, want, "{}", serde_json::to_string_pretty(&got).unwrap());
        assert!(readiness(&s).is_ok());
    }

    #[test]
    fn auth_failure_is_stalled() {
        let mut t = engine(TunnelState::Connecting);
        t.last_error = Some("peer sent AUTHENTICATION_FAILED".into());
        t.last_down_reason = Some(DownReason::AuthenticationFailed { by_peer: true });
        let tunnels = vec![tunnel1(t, false)];
        let s = status_of(Owner::Standalone, &tunnels, None);
        let st = s.condition("Stalled").unwrap();
        assert_eq!((st.status.as_str(), st.reason.as_str()), ("True", "AuthenticationFailed"));
        assert_eq!(s.condition("Ready").unwrap().status, "False");
        assert_eq!(s.condition("Reconciling").unwrap().status, "False");
        assert!(readiness(&s).unwrap_err().contains("AuthenticationFailed"));
        // In-cluster the relay writes only its own types: the same condition as TunnelsReady, and Degraded; the
        // operator owns Ready, Reconciling and Stalled.
        let in_cluster = status_of(Owner::InCluster, &tunnels, None);
        let types: Vec<&str> = in_cluster.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["TunnelsReady", "Degraded"]);
        let (a, b) = (s.condition("Ready").unwrap(), in_cluster.condition("TunnelsReady").unwrap());
        assert_eq!((&a.status, &a.reason, &a.message), (&b.status, &b.reason, &b.message));
        assert!(readiness(&in_cluster).unwrap_err().contains("AuthenticationFailed"));
    }

    #[test]
    fn the_permanent_down_reasons_are_the_engines() {
        let all = [
            DownReason::AuthenticationFailed { by_peer: false },
            DownReason::NoProposalChosen { by_peer: true },
            DownReason::TsUnacceptable { by_peer: false },
            DownReason::PeerError { notify: 7 },
            DownReason::InvalidSyntax,
            DownReason::DeadPeer,
            DownReason::DeletedByPeer,
            DownReason::ReplacedByPeer,
            DownReason::Closed,
        ];
        for r in &all {
            let p = permanent_reason(r);
            assert_eq!(p.is_some(), r.is_permanent(), "{r:?}");
            assert!(p.is_none_or(|p| p.is_permanent() && p.as_str() == r.reason()), "{r:?}");
        }
    }

    #[test]
    fn where_to_send_follows_nat_detection() {
        let one = |nat: Option<bool>| {
            let mut e = established();
            match nat {
                Some(nat) => e.ike.iter_mut().for_each(|s| s.nat_detected = nat),
                // Unknown until an IKE SA is established.
                None => e.ike = None,
            }
            let t = vec![tunnel1(e, true)];
            status_of(Owner::InCluster, &t, None)
        };
        let s = one(Some(true));
        assert_eq!((s.nat_detected, s.node_name.as_deref()), (Some(true), Some("node-a")));
        assert_eq!(s.outside_address.as_deref(), Some("192.0.2.2"));
        assert_eq!(s.forwards[0].endpoint.as_deref(), Some("198.51.100.7:7000"), "behind a NAT: the public identity");
        let s = one(Some(false));
        assert_eq!(s.forwards[0].endpoint.as_deref(), Some("192.0.2.2:7000"), "no NAT: the outside address");
        let s = one(None);
        assert_eq!((s.nat_detected, s.forwards[0].endpoint.as_deref()), (None, Some("192.0.2.2:7000")));
        let mut no_public = place();
        no_public.public_identity = None;
        let mut e = established();
        e.ike.iter_mut().for_each(|s| s.nat_detected = true);
        let t = vec![tunnel1(e, true)];
        let s = build_status(
            Owner::InCluster,
            None,
            &no_public,
            &t,
            &[forward()],
            Default::default(),
            None,
            &clock(),
            now(),
            &[],
        );
        assert_eq!(s.forwards[0].endpoint.as_deref(), Some("192.0.2.2:7000"), "FQDN identity: the outside address");
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let tunnels = vec![tunnel1(established(), true)];
        let b = |f: &[ForwardSnapshot], now: Time, prev: &[Condition]| {
            build_status(Owner::Standalone, None, &place(), &tunnels, f, Default::default(), None, &clock(), now, prev)
        };
        let first = b(&[forward()], now(), &[]);
        let later = Time("2026-11-28T21:00:00Z".parse().unwrap());
        let second = b(&[forward()], later.clone(), &first.conditions);
        assert_eq!(second.condition("Ready").unwrap().last_transition_time, now());
        let mut f = forward();
        f.listening = false;
        let third = b(&[f], later.clone(), &second.conditions);
        let r = third.condition("Ready").unwrap();
        assert_eq!((r.status.as_str(), r.last_transition_time.clone()), ("False", later));
        assert!(readiness(&third).unwrap_err().contains("ForwardNotListening"));
    }

    /// Every gateway counter lands in its own status field (distinct values, so a swap shows), and a relay
    /// without gateway mode has no `status.gateway`.
    #[test]
    fn gateway_counters_in_status() {
        let mut c = GatewayCounters {
            to_tunnel: 11,
            to_device: 12,
            fragmented: 13,
            mss_clamped: 14,
            bgp_routes: 15,
            bgp_routes_refused: 16,
            route_errors: 17,
            ..Default::default()
        };
        for (n, why) in GatewayDrop::ALL.into_iter().enumerate() {
            for _ in 0..=n {
                c.drop(why);
            }
        }
        let t = vec![tunnel1(established(), true)];
        let b = |g| status_of(Owner::InCluster, &t, g);
        let got = serde_json::to_value(b(Some(&c)).gateway).unwrap();
        let want = serde_json::json!({
            "packetsToTunnel": 11, "packetsToDevice": 12, "fragmented": 13, "mssClamped": 14,
            "bgpRoutes": 15, "bgpRoutesRefused": 16, "routeErrors": 17,
            "drops": {"notIpv4": 1, "noTunnel": 2, "outsideSelectors": 3, "tooBig": 4, "spoofedSource": 5,
                      "malformed": 6, "sendFailed": 7},
        });
        assert_eq!(got, want);
        // The status field names are the metric's reason labels.
        for why in GatewayDrop::ALL {
            assert!(got["drops"].get(why.name()).is_some(), "no status.gateway.drops.{}", why.name());
        }
        let off = serde_json::to_value(b(None)).unwrap();
        assert!(off.get("gateway").is_none(), "status.gateway without gateway mode: {off}");
    }
}
