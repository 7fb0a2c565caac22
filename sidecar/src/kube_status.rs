//! In-cluster status and Events: the relay's part of `/status` (`TunnelsReady`, `Degraded`, tunnels, forwards,
//! datapath, the last rekey request) written with server-side apply as field manager `iotrelay-sidecar`, at once on a
//! state change and at most every 10 s for counters, written again when another writer replaced it; and the Events
//! for SA established / lost / rekey failed / authentication failed and BGP sessions.

use std::time::Duration;

use iotrelay_api::{IotRelay, IotRelayStatus, LastRekeyRequest, SIDECAR_FIELD_MANAGER};
use iotrelay_ikev2::DownReason;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event as KEvent, EventType, Recorder};
use tokio::sync::{mpsc, watch};

use crate::datapath::Notice;

/// Counter-only status changes are written at most this often.
const COUNTER_WRITE_INTERVAL: Duration = Duration::from_secs(10);

/// The status without counters: a change here is a state change, written at once.
fn without_counters(s: &IotRelayStatus) -> IotRelayStatus {
    let mut s = s.clone();
    for t in &mut s.tunnels {
        if let Some(c) = t.child_sa.as_mut() {
            (c.bytes_in, c.bytes_out, c.packets_in, c.packets_out) = (0, 0, 0, 0);
        }
    }
    for t in &mut s.tunnels {
        t.ike_messages_in = 0;
    }
    for f in &mut s.forwards {
        (f.sessions, f.packets_in, f.packets_out) = (0, 0, 0);
        f.drops = Default::default();
    }
    s.datapath = None;
    for c in &mut s.conditions {
        c.last_transition_time =
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    }
    s
}

/// True when a condition this relay wrote reads differently in the live object (nobody else writes
/// `TunnelsReady`/`Degraded`, but a status can be replaced wholesale, e.g. by a restore or `kubectl replace
/// --subresource=status`): the relay writes it again.
/// `lastTransitionTime` and `observedGeneration` are not compared.
fn overwritten(written: &IotRelayStatus, live: &[Condition]) -> bool {
    written.conditions.iter().any(|w| {
        !live
            .iter()
            .any(|l| l.type_ == w.type_ && l.status == w.status && l.reason == w.reason && l.message == w.message)
    })
}

pub(crate) async fn write_status(
    relays: Api<IotRelay>,
    name: String,
    mut rx: watch::Receiver<IotRelayStatus>,
    mut live: watch::Receiver<Vec<Condition>>,
    mut rekey: watch::Receiver<Option<LastRekeyRequest>>,
) {
    let pp = PatchParams::apply(SIDECAR_FIELD_MANAGER).force();
    let mut written: Option<IotRelayStatus> = None;
    let mut last_write = tokio::time::Instant::now() - COUNTER_WRITE_INTERVAL;
    let mut live_open = true;
    let mut rekey_open = true;
    loop {
        let mut reassert = false;
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            // A new rekey record is written with the next status; none is written before the relay's first one.
            r = rekey.changed(), if rekey_open => {
                if r.is_err() {
                    rekey_open = false;
                    continue;
                }
                if written.is_none() {
                    continue;
                }
            }
            r = live.changed(), if live_open => {
                if r.is_err() {
                    live_open = false;
                    continue;
                }
                let conditions = live.borrow_and_update().clone();
                if !written.as_ref().is_some_and(|w| overwritten(w, &conditions)) {
                    continue;
                }
                tracing::info!("status conditions were overwritten by another writer: writing them again");
                reassert = true;
            }
        }
        let mut status = rx.borrow_and_update().clone();
        // The relay loop builds everything but the rekey record; this writer owns both (one field manager).
        status.last_rekey_request = rekey.borrow_and_update().clone();
        let state_changed =
            reassert || written.as_ref().is_none_or(|w| without_counters(w) != without_counters(&status));
        if !state_changed {
            if written.as_ref() == Some(&status) {
                continue;
            }
            let wait = COUNTER_WRITE_INTERVAL.saturating_sub(last_write.elapsed());
            if !wait.is_zero() {
                // Let more changes accumulate; a state change during the wait is written right after it.
                tokio::time::sleep(wait).await;
                rx.mark_changed();
                continue;
            }
        }
        // Only the fields this field manager owns; Ready/Reconciling/Stalled/observedGeneration are the operator's.
        let patch = serde_json::json!({
            "apiVersion": format!("{}/{}", iotrelay_api::GROUP, iotrelay_api::VERSION),
            "kind": "IotRelay",
            "status": status,
        });
        match relays.patch_status(&name, &pp, &Patch::Apply(patch)).await {
            Ok(_) => {
                written = Some(status);
                last_write = tokio::time::Instant::now();
            }
            // The IotRelay is gone (deleted: this pod follows it by garbage collection): nothing to write to, and
            // retrying every 2 s until the pod stops would only load the API server.
            Err(kube::Error::Api(s)) if s.code == 404 => {
                tracing::info!("the IotRelay is gone: no more status writes");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "writing status failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                rx.mark_changed();
            }
        }
    }
}

pub(crate) async fn emit_events(
    recorder: Recorder,
    obj: k8s_openapi::api::core::v1::ObjectReference,
    mut rx: mpsc::Receiver<Notice>,
) {
    while let Some(n) = rx.recv().await {
        if let Err(e) = recorder.publish(&event_of(&n), &obj).await {
            tracing::warn!(error = %e, "publishing event failed");
        }
    }
}

/// The Event for a notice. kube-runtime's Recorder folds an Event into an earlier one of the last 6 minutes with
/// the same type, reason and action (a series: count and last time go up, the note stays the first one). So the
/// reason says what happened (for a lost IKE SA, why: `DeadPeer`, `DeletedByPeer`, ...) and the action names the
/// tunnel: two Events are folded only when their notes are the same.
fn event_of(n: &Notice) -> KEvent {
    let (type_, reason, tunnel, note) = match n {
        Notice::SaEstablished { tunnel } => {
            (EventType::Normal, "SaEstablished", tunnel, format!("tunnel {tunnel}: CHILD_SA established"))
        }
        Notice::ChildRekeyed { tunnel } => {
            (EventType::Normal, "ChildSaRekeyed", tunnel, format!("tunnel {tunnel}: CHILD_SA rekeyed"))
        }
        Notice::SaLost { tunnel, reason: DownReason::AuthenticationFailed { .. } } => {
            (EventType::Warning, "AuthenticationFailed", tunnel, format!("tunnel {tunnel}: authentication failed"))
        }
        Notice::SaLost { tunnel, reason: DownReason::Closed } => {
            (EventType::Normal, "SaClosed", tunnel, format!("tunnel {tunnel}: closed"))
        }
        Notice::SaLost { tunnel, reason } => {
            let reason = reason.reason();
            (EventType::Warning, reason, tunnel, format!("tunnel {tunnel}: IKE SA lost ({reason})"))
        }
        Notice::RekeyFailed { tunnel } => {
            (EventType::Warning, "RekeyFailed", tunnel, format!("tunnel {tunnel}: CHILD_SA rekey failed"))
        }
        Notice::BgpEstablished { tunnel } => {
            (EventType::Normal, "BgpEstablished", tunnel, format!("tunnel {tunnel}: BGP session established"))
        }
        // The reason says why (HoldTimerExpired, NotificationSent, ...), so one series has one note.
        Notice::BgpDown { tunnel, reason } => {
            (EventType::Warning, *reason, tunnel, format!("tunnel {tunnel}: BGP session down ({reason})"))
        }
    };
    KEvent { type_, reason: reason.into(), note: Some(note), action: tunnel.clone(), secondary: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Events that kube-runtime would fold into one series (same type, reason and action) have the same note, so
    /// no Event is hidden behind an earlier one's message (a peer DELETE on tunnel2 behind tunnel1's DeadPeer).
    #[test]
    fn events_folded_into_one_series_say_the_same() {
        let mut notices = Vec::new();
        for t in ["tunnel1", "tunnel2"] {
            let tunnel = t.to_string();
            notices.push(Notice::SaEstablished { tunnel: tunnel.clone() });
            notices.push(Notice::ChildRekeyed { tunnel: tunnel.clone() });
            notices.push(Notice::RekeyFailed { tunnel: tunnel.clone() });
            for reason in [
                DownReason::AuthenticationFailed { by_peer: true },
                DownReason::Closed,
                DownReason::DeadPeer,
                DownReason::DeletedByPeer,
                DownReason::NoProposalChosen { by_peer: false },
            ] {
                notices.push(Notice::SaLost { tunnel: tunnel.clone(), reason });
            }
            notices.push(Notice::BgpEstablished { tunnel: tunnel.clone() });
            for reason in ["HoldTimerExpired", "NotificationSent", "NotificationReceived", "ConnectionClosed"] {
                notices.push(Notice::BgpDown { tunnel: tunnel.clone(), reason });
            }
        }
        let events: Vec<KEvent> = notices.iter().map(event_of).collect();
        for a in &events {
            for b in &events {
                let key = |e: &KEvent| (format!("{:?}", e.type_), e.reason.clone(), e.action.clone());
                if key(a) == key(b) {
                    assert_eq!(a.note, b.note, "folded into one series: {:?}", key(a));
                }
            }
        }
        let lost = event_of(&Notice::SaLost { tunnel: "tunnel2".into(), reason: DownReason::DeletedByPeer });
        assert_eq!((lost.reason.as_str(), lost.action.as_str()), ("DeletedByPeer", "tunnel2"));
        assert_eq!(lost.note.as_deref(), Some("tunnel tunnel2: IKE SA lost (DeletedByPeer)"));
    }

    fn status(conds: &[(&str, &str, &str)]) -> IotRelayStatus {
        let c: Vec<_> = conds
            .iter()
            .map(|(t, s, r)| {
                serde_json::json!({"type": t, "status": s, "reason": r, "message": format!("{t} {r}"),
                    "lastTransitionTime": "2026-01-01T00:00:00Z"})
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "conditions": c })).unwrap()
    }

    /// A mock API server answering every request with `code`; returns the IotRelay API and the request count.
    fn api_answering(code: u16) -> (Api<IotRelay>, Arc<AtomicUsize>) {
        let (svc, mut handle) = tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<_>>();
        let count = Arc::new(AtomicUsize::new(0));
        let n = count.clone();
        tokio::spawn(async move {
            while let Some((_req, send)) = handle.next_request().await {
                n.fetch_add(1, Ordering::SeqCst);
                let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "mock", "reason": "Mock", "code": code});
                let resp = http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap();
                send.send_response(resp);
            }
        });
        (Api::namespaced(kube::Client::new(svc, "iot"), "iot"), count)
    }

    /// The IotRelay deleted (404): one write, and the writer ends instead of retrying until the pod is gone. Any
    /// other failure is retried every 2 s.
    #[tokio::test(start_paused = true)]
    async fn a_deleted_iotrelay_ends_the_status_writer_other_errors_are_retried() {
        for (code, ends) in [(404, true), (500, false)] {
            let (api, requests) = api_answering(code);
            let (tx, rx) = watch::channel(IotRelayStatus::default());
            let (_live_tx, live) = watch::channel(Vec::new());
            let (_rekey_tx, rekey) = watch::channel(None);
            let writer = tokio::spawn(write_status(api, "plant-7".into(), rx, live, rekey));
            tx.send_replace(status(&[("TunnelsReady", "True", "TunnelEstablished")]));
            tokio::time::sleep(Duration::from_secs(30)).await;
            let sent = requests.load(Ordering::SeqCst);
            assert_eq!(writer.is_finished(), ends, "HTTP {code}");
            if ends {
                assert_eq!(sent, 1, "HTTP {code}: written once");
            } else {
                assert!(sent >= 10, "HTTP {code}: retried, {sent} writes in 30 s");
            }
            writer.abort();
        }
    }

    #[test]
    fn overwritten_conditions_are_noticed() {
        let mine =
            status(&[("TunnelsReady", "True", "TunnelEstablished"), ("Degraded", "False", "AllTunnelsEstablished")]);
        // Live as written, plus the operator's conditions (whatever they say): nothing to do.
        let live = status(&[
            ("Reconciling", "True", "RelayNotUpdated"),
            ("Ready", "False", "RelayNotUpdated"),
            ("TunnelsReady", "True", "TunnelEstablished"),
            ("Degraded", "False", "AllTunnelsEstablished"),
        ]);
        assert!(!overwritten(&mine, &live.conditions));
        // A status replaced with one where TunnelsReady says something else.
        let live =
            status(&[("TunnelsReady", "False", "NoTunnelEstablished"), ("Degraded", "False", "AllTunnelsEstablished")]);
        assert!(overwritten(&mine, &live.conditions));
        // A condition of ours is missing.
        assert!(overwritten(&mine, &status(&[("TunnelsReady", "True", "TunnelEstablished")]).conditions));
        // Nothing written yet: nothing can have been overwritten.
        assert!(!overwritten(&IotRelayStatus::default(), &live.conditions));
    }
}
