//! The metrics that alerts and the dashboard need beyond the traffic counters of [`crate::admin`]: which build
//! runs, when each SA was established, is rekeyed and expires, and why a tunnel is down. The chart's
//! PrometheusRule and Grafana dashboard query them (tests/monitoring.rs checks each queried name is exported).

use iotrelay_api::IotRelayStatus;
use iotrelay_ikev2::TunnelState;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::status::TunnelSnapshot;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SaLabels {
    tunnel: String,
    sa: &'static str,
}

/// The `reason` label of a tunnel that has not failed yet.
const NO_DOWN_REASON: &str = "None";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DownLabels {
    tunnel: String,
    reason: &'static str,
}

/// Adds build info, SA timestamps and down reasons to `reg` (prefix `iotrelay`). Label values are bounded:
/// tunnel names from the spec, `sa` is `ike` or `child`, `reason` one of the engine's fixed reasons or `None`.
pub fn register(reg: &mut Registry, status: &IotRelayStatus, tunnels: &[TunnelSnapshot]) {
    reg.register(
        "build",
        "The running iotrelay version (value 1)",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );

    let established = Family::<SaLabels, Gauge>::default();
    let rekey = Family::<SaLabels, Gauge>::default();
    let expiry = Family::<SaLabels, Gauge>::default();
    let seconds = |t: &Option<Time>| t.as_ref().map(|t| t.0.as_second());
    for t in &status.tunnels {
        let sas = [
            ("ike", t.ike_sa.as_ref().map(|s| (&s.established_at, &s.rekey_at, &s.expires_at))),
            ("child", t.child_sa.as_ref().map(|s| (&s.established_at, &s.rekey_at, &s.expires_at))),
        ];
        for (sa, times) in sas {
            let Some((e, r, x)) = times else { continue };
            let l = SaLabels { tunnel: t.name.clone(), sa };
            for (family, v) in [(&established, seconds(e)), (&rekey, seconds(r)), (&expiry, seconds(x))] {
                if let Some(v) = v {
                    family.get_or_create(&l).set(v);
                }
            }
        }
    }
    reg.register(
        "sa_established_timestamp_seconds",
        "When the current SA was established (Unix time), by tunnel and sa (ike, child)",
        established,
    );
    reg.register("sa_rekey_timestamp_seconds", "When the relay will rekey the current SA (Unix time)", rekey);
    reg.register(
        "sa_expiry_timestamp_seconds",
        "When the current SA's lifetime ends (Unix time); the peer deletes it then unless it was rekeyed",
        expiry,
    );

    // One series per tunnel, also while it is up (0), so the family always exists: a dashboard or alert that
    // queries it never meets "no data" on a healthy relay.
    let down = Family::<DownLabels, Gauge>::default();
    for t in tunnels {
        let reason = t.engine.last_down_reason.as_ref().map_or(NO_DOWN_REASON, |r| r.reason());
        let is_down = t.engine.state != TunnelState::Established;
        down.get_or_create(&DownLabels { tunnel: t.name.clone(), reason }).set(i64::from(is_down));
    }
    reg.register(
        "tunnel_down_reason",
        "1 while the tunnel is not established, 0 while it is, labelled with the reason of its last failure \
         (None before any)",
        down,
    );
}
