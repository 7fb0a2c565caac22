//! `kubectl iotrelay status`: IotRelays (from their `.status`) as kubectl-style tables: one row per relay, one per
//! tunnel (state, SA ages, rekeys, IKE messages from the peer, last error), one per forward (endpoint, traffic,
//! drops by reason). Pure: the objects and the current time in, text out.

use iotrelay_api::{IotRelay, condition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;

/// Columns separated by three spaces and padded to the widest cell, as `kubectl get` prints them.
pub fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> =
        (0..n).map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(width[i] - c.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A duration as kubectl prints ages: `45s`, `12m`, `5h10m`, `3d4h`.
pub fn human(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..120 => format!("{s}s"),
        120..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// Time since `t`; `-` when unknown.
pub fn age(t: Option<&Time>, now: Timestamp) -> String {
    t.map_or_else(|| "-".into(), |t| human(now.as_second() - t.0.as_second()))
}

/// Time until `t` (`in 52m`, or `overdue 3s`); `-` when unknown.
pub fn until(t: Option<&Time>, now: Timestamp) -> String {
    match t {
        None => "-".into(),
        Some(t) if t.0 >= now => format!("in {}", human(t.0.as_second() - now.as_second())),
        Some(t) => format!("overdue {}", human(now.as_second() - t.0.as_second())),
    }
}

/// The non-zero counters of a drop struct as `reason=count`, in name order; `none` when all are zero. Read through
/// serde so a new drop reason shows up without a change here.
pub fn drops<T: serde::Serialize>(d: &T) -> String {
    let v = serde_json::to_value(d).unwrap_or_default();
    let parts: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, n)| n.as_u64().filter(|n| *n > 0).map(|n| format!("{k}={n}")))
        .collect();
    if parts.is_empty() { "none".into() } else { parts.join(" ") }
}

/// The three tables for `relays`; with `namespaces` every row starts with the relay's namespace.
pub fn render_status(relays: &[IotRelay], namespaces: bool, now: Timestamp) -> String {
    let head = |cols: &[&str]| -> Vec<String> {
        let mut h: Vec<String> = if namespaces { vec!["NAMESPACE".into()] } else { vec![] };
        h.extend(cols.iter().map(|c| c.to_string()));
        h
    };
    let who = |r: &IotRelay| -> Vec<String> {
        let mut w = if namespaces { vec![r.namespace().unwrap_or_default()] } else { vec![] };
        w.push(r.name_any());
        w
    };
    let dash = |s: Option<&String>| s.filter(|s| !s.is_empty()).cloned().unwrap_or_else(|| "-".into());

    let mut summary = vec![head(&[
        "NAME",
        "READY",
        "REASON",
        "TUNNELS",
        "ACTIVE",
        "FORWARDS",
        "NODE",
        "OUTSIDE ADDRESS",
        "ESP DROPS",
        "LAST REKEY REQUEST",
    ])];
    let mut tunnels = vec![head(&[
        "NAME",
        "TUNNEL",
        "STATE",
        "ACTIVE",
        "IKE SA AGE",
        "CHILD SA AGE",
        "CHILD REKEY",
        "REKEYS CHILD/IKE",
        "IKE MSGS IN",
        "LAST ERROR",
    ])];
    let mut forwards = vec![head(&["NAME", "FORWARD", "LISTENING", "ENDPOINT", "SESSIONS", "PACKETS IN/OUT", "DROPS"])];
    for r in relays {
        let s = r.status.clone().unwrap_or_default();
        let ready = s.condition(condition::READY);
        let rekey = s.last_rekey_request.as_ref().map(|l| {
            format!(
                "{} {:?} {} ago",
                if l.id.is_empty() { "-" } else { &l.id },
                l.result,
                age(l.handled_at.as_ref(), now)
            )
        });
        let mut row = who(r);
        row.extend([
            dash(ready.map(|c| &c.status)),
            dash(ready.map(|c| &c.reason)),
            dash(s.tunnels_up.as_ref()),
            dash(s.active_tunnel.as_ref()),
            dash(s.forwards_listening.as_ref()),
            dash(s.node_name.as_ref()),
            dash(s.outside_address.as_ref()),
            s.datapath.as_ref().map_or_else(|| "-".into(), |d| drops(&d.drops)),
            dash(rekey.as_ref()),
        ]);
        summary.push(row);
        for t in &s.tunnels {
            let mut row = who(r);
            row.extend([
                t.name.clone(),
                format!("{:?}", t.state),
                if t.active { "yes".into() } else { "-".into() },
                age(t.ike_sa.as_ref().and_then(|i| i.established_at.as_ref()), now),
                age(t.child_sa.as_ref().and_then(|c| c.established_at.as_ref()), now),
                until(t.child_sa.as_ref().and_then(|c| c.rekey_at.as_ref()), now),
                format!("{}/{}", t.child_rekeys, t.ike_rekeys),
                t.ike_messages_in.to_string(),
                dash(Some(&t.last_error)),
            ]);
            tunnels.push(row);
        }
        for f in &s.forwards {
            let mut row = who(r);
            row.extend([
                f.name.clone(),
                if f.listening { "yes".into() } else { "NO".into() },
                dash(f.endpoint.as_ref()),
                f.sessions.to_string(),
                format!("{}/{}", f.packets_in, f.packets_out),
                drops(&f.drops),
            ]);
            forwards.push(row);
        }
    }
    let mut out = columns(&summary);
    for t in [tunnels, forwards] {
        if t.len() > 1 {
            out.push('\n');
            out.push_str(&columns(&t));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn relay(status: serde_json::Value) -> IotRelay {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "iotrelay.dev/v1alpha1", "kind": "IotRelay",
            "metadata": {"name": "plant-7", "namespace": "iot", "generation": 1},
            "spec": {"insideAddress": "100.127.0.1", "remoteSubnets": ["100.64.0.0/16"],
                     "tunnels": [{"name": "tunnel1", "peerAddress": "198.51.100.2",
                                  "preSharedKeySecretRef": {"name": "aws-vpn", "key": "tunnel1"}}]},
            "status": status,
        }))
        .expect("fixture parses")
    }

    const NOW: &str = "2026-11-30T12:00:00Z";

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human(45), "45s");
        assert_eq!(human(119), "119s");
        assert_eq!(human(720), "12m");
        assert_eq!(human(5 * 3600 + 600), "5h10m");
        assert_eq!(human(3 * 86400 + 4 * 3600), "3d4h");
        assert_eq!(human(-5), "0s");
        let now: Timestamp = NOW.parse().unwrap();
        let t = |s: &str| Time(s.parse().unwrap());
        assert_eq!(until(Some(&t("2026-11-30T12:52:00Z")), now), "in 52m");
        assert_eq!(until(Some(&t("2026-11-30T11:59:57Z")), now), "overdue 3s");
        assert_eq!(age(None, now), "-");
    }

    #[test]
    fn drops_list_only_non_zero_reasons() {
        let d = iotrelay_api::ForwardDrops { source_not_allowed: 3, too_big: 1, ..Default::default() };
        assert_eq!(drops(&d), "sourceNotAllowed=3 tooBig=1");
        assert_eq!(drops(&iotrelay_api::DatapathDrops::default()), "none");
    }

    #[test]
    fn columns_align_and_trim() {
        let rows = vec![vec!["NAME".into(), "READY".into()], vec!["plant-7".into(), "True".into()]];
        assert_eq!(columns(&rows), "NAME      READY\nplant-7   True\n");
    }

    #[test]
    fn a_healthy_relay_reads_as_three_tables() {
        let r = relay(serde_json::json!({
            "conditions": [{"type": "Ready", "status": "True", "reason": "TunnelEstablished", "message": "",
                            "lastTransitionTime": "2026-11-30T11:00:00Z"}],
            "tunnelsUp": "1/1", "activeTunnel": "tunnel1", "forwardsListening": "1/1", "nodeName": "node-a",
            "outsideAddress": "198.51.100.1",
            "tunnels": [{"name": "tunnel1", "state": "Established", "active": true, "lastError": "",
                         "ikeMessagesIn": 120, "childRekeys": 2, "ikeRekeys": 0,
                         "ikeSa": {"localSpi": "8035ad4451a597a3", "remoteSpi": "ca77882f005cd577", "proposal": "p",
                                   "establishedAt": "2026-11-30T07:00:00Z"},
                         "childSa": {"inboundSpi": "c2da9d90", "outboundSpi": "7dcbf756", "proposal": "p",
                                     "establishedAt": "2026-11-30T11:55:00Z", "rekeyAt": "2026-11-30T12:47:00Z"}}],
            "forwards": [{"name": "admin", "listening": true, "endpoint": "198.51.100.1:7000", "sessions": 1,
                          "packetsIn": 12, "packetsOut": 11, "drops": {"sourceNotAllowed": 3}}],
            "datapath": {"drops": {"replay": 1}},
            "lastRekeyRequest": {"id": "r1", "result": "Started", "message": "m", "handledAt": "2026-11-30T11:58:00Z"},
        }));
        let out = render_status(&[r], false, NOW.parse().unwrap());
        let want = "\
NAME      READY   REASON              TUNNELS   ACTIVE    FORWARDS   NODE     OUTSIDE ADDRESS   ESP DROPS   LAST REKEY REQUEST
plant-7   True    TunnelEstablished   1/1       tunnel1   1/1        node-a   198.51.100.1      replay=1    r1 Started 2m ago

NAME      TUNNEL    STATE         ACTIVE   IKE SA AGE   CHILD SA AGE   CHILD REKEY   REKEYS CHILD/IKE   IKE MSGS IN   LAST ERROR
plant-7   tunnel1   Established   yes      5h0m         5m             in 47m        2/0                120           -

NAME      FORWARD   LISTENING   ENDPOINT            SESSIONS   PACKETS IN/OUT   DROPS
plant-7   admin     yes         198.51.100.1:7000   1          12/11            sourceNotAllowed=3
";
        assert_eq!(out, want, "\n{out}");
    }

    #[test]
    fn a_relay_without_status_and_all_namespaces() {
        let mut r = relay(serde_json::Value::Null);
        r.status = None;
        let out = render_status(&[r], true, NOW.parse().unwrap());
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.starts_with("NAMESPACE   NAME"), "{out}");
        assert!(out.lines().nth(1).unwrap().starts_with("iot         plant-7   -       -"), "{out}");
    }
}
