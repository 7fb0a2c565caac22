//! In-cluster rekey requests: the relay acts on its IotRelay's `iotrelay.dev/rekey` annotation (see
//! `iotrelay_api::rekey`) once per request id and records what it did in `status.lastRekeyRequest`. No port is
//! involved: whoever may patch the IotRelay may ask for a rekey, nobody else. [`decide`] is pure; [`handle_requests`]
//! feeds it the annotation as `kube::watch_changes` sees it and starts the rekeys through the admin command queue.

use std::sync::Arc;

use iotrelay_api::{LastRekeyRequest, RekeyRequest, RekeyResult, TunnelState, TunnelStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::{oneshot, watch};

use crate::admin::{Command, Shared};

/// What to do about the annotation's current value.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: no annotation, or its id was handled already.
    Nothing,
    /// Rekey these tunnels.
    Rekey { request: RekeyRequest, tunnels: Vec<String> },
    /// Record the request as refused, with this id and message.
    Refuse { id: String, message: String },
}

/// Decides what a rekey annotation asks for, given the id handled last and the tunnels' states now. A request
/// whose id was handled is never acted on again; an unparsable one is refused once (under the id it names, if any).
pub fn decide(annotation: Option<&str>, handled: Option<&LastRekeyRequest>, tunnels: &[TunnelStatus]) -> Decision {
    let Some(value) = annotation else { return Decision::Nothing };
    let request = match RekeyRequest::parse(value) {
        Ok(r) => r,
        Err(e) => {
            let id = iotrelay_api::rekey::request_id(value).unwrap_or_default();
            if handled.is_some_and(|h| h.id == id && h.result == RekeyResult::Refused) {
                return Decision::Nothing;
            }
            return Decision::Refuse {
                id,
                message: format!("invalid {} annotation: {e}", iotrelay_api::REKEY_ANNOTATION),
            };
        }
    };
    if handled.is_some_and(|h| h.id == request.id) {
        return Decision::Nothing;
    }
    let established = |t: &&TunnelStatus| t.state == TunnelState::Established;
    let tunnels: Vec<String> = match &request.tunnel {
        Some(name) => match tunnels.iter().find(|t| &t.name == name) {
            None => return Decision::Refuse { id: request.id, message: format!("no tunnel named {name:?}") },
            Some(t) if !established(&t) => {
                return Decision::Refuse {
                    id: request.id,
                    message: format!("tunnel {name} is not established ({:?})", t.state),
                };
            }
            Some(t) => vec![t.name.clone()],
        },
        None => tunnels.iter().filter(established).map(|t| t.name.clone()).collect(),
    };
    if tunnels.is_empty() {
        return Decision::Refuse { id: request.id, message: "no tunnel is established".into() };
    }
    Decision::Rekey { request, tunnels }
}

/// Acts on every new value of `annotation` (the IotRelay's `iotrelay.dev/rekey`, `None` when absent) and publishes
/// the record in `record`, which `kube_status::write_status` writes to `status.lastRekeyRequest`. `record` starts with the
/// live status's record, so a restarted relay does not act on a request its predecessor handled.
pub async fn handle_requests(
    mut annotation: watch::Receiver<Option<String>>,
    shared: Arc<Shared>,
    record: watch::Sender<Option<LastRekeyRequest>>,
) {
    loop {
        let value = annotation.borrow_and_update().clone();
        let Some(tunnels) = shared.read(|p| p.status.tunnels.clone()) else { return };
        let handled = record.borrow().clone();
        let (id, result, message) = match decide(value.as_deref(), handled.as_ref(), &tunnels) {
            Decision::Nothing => {
                if annotation.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Decision::Refuse { id, message } => (id, RekeyResult::Refused, message),
            Decision::Rekey { request, tunnels } => match start(&shared, &request, &tunnels).await {
                Ok(()) => (
                    request.id.clone(),
                    RekeyResult::Started,
                    format!("{} rekey started on {}", request.sa_name(), tunnels.join(", ")),
                ),
                Err(e) => (request.id.clone(), RekeyResult::Refused, e),
            },
        };
        tracing::info!(id = %id, result = ?result, message = %message, "rekey request handled");
        let handled_at = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(k8s_openapi::jiff::Timestamp::now().as_second())
                .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        ));
        record.send_replace(Some(LastRekeyRequest { id, handled_at, result, message }));
    }
}

/// Starts the rekeys in the relay's owner task (the same queue as the admin `POST /rekey`).
async fn start(shared: &Shared, request: &RekeyRequest, tunnels: &[String]) -> Result<(), String> {
    for t in tunnels {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Rekey { tunnel: t.clone(), ike: request.ike, reply: tx };
        shared.commands.send(cmd).await.map_err(|_| "the relay is shutting down".to_string())?;
        rx.await.map_err(|_| "the relay is shutting down".to_string())??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel(name: &str, state: TunnelState) -> TunnelStatus {
        TunnelStatus { name: name.into(), state, ..Default::default() }
    }

    fn up() -> Vec<TunnelStatus> {
        vec![tunnel("tunnel1", TunnelState::Established), tunnel("tunnel2", TunnelState::Established)]
    }

    fn handled(id: &str, result: RekeyResult) -> LastRekeyRequest {
        LastRekeyRequest { id: id.into(), handled_at: None, result, message: String::new() }
    }

    #[test]
    fn a_new_request_rekeys_the_named_or_every_established_tunnel() {
        let d = decide(Some("id=1,tunnel=tunnel2"), None, &up());
        assert!(matches!(&d, Decision::Rekey { tunnels, request } if tunnels == &["tunnel2"] && !request.ike), "{d:?}");
        let mut one_down = up();
        one_down[1].state = TunnelState::Connecting;
        let d = decide(Some("id=2,sa=ike"), Some(&handled("1", RekeyResult::Started)), &one_down);
        assert!(matches!(&d, Decision::Rekey { tunnels, request } if tunnels == &["tunnel1"] && request.ike), "{d:?}");
    }

    #[test]
    fn a_handled_id_is_never_acted_on_again() {
        assert_eq!(decide(Some("id=1"), Some(&handled("1", RekeyResult::Started)), &up()), Decision::Nothing);
        assert_eq!(decide(Some("id=1"), Some(&handled("1", RekeyResult::Refused)), &up()), Decision::Nothing);
        assert_eq!(decide(None, Some(&handled("1", RekeyResult::Started)), &up()), Decision::Nothing);
        assert_eq!(decide(None, None, &up()), Decision::Nothing);
        // A bad annotation is refused once, then left alone.
        let d = decide(Some("id=9,sa=esp"), None, &up());
        assert!(matches!(&d, Decision::Refuse { id, message } if id == "9" && message.contains("sa must be")), "{d:?}");
        assert_eq!(decide(Some("id=9,sa=esp"), Some(&handled("9", RekeyResult::Refused)), &up()), Decision::Nothing);
    }

    #[test]
    fn requests_that_cannot_start_are_refused_saying_why() {
        let mut down = up();
        down[0].state = TunnelState::Down;
        let refused = |d: Decision| match d {
            Decision::Refuse { message, .. } => message,
            d => panic!("not refused: {d:?}"),
        };
        assert!(refused(decide(Some("id=1,tunnel=tunnel9"), None, &up())).contains("no tunnel named \"tunnel9\""));
        assert!(
            refused(decide(Some("id=1,tunnel=tunnel1"), None, &down)).contains("tunnel tunnel1 is not established")
        );
        down[1].state = TunnelState::Connecting;
        assert_eq!(refused(decide(Some("id=1"), None, &down)), "no tunnel is established");
        assert_eq!(refused(decide(Some("id=1"), None, &[])), "no tunnel is established");
    }
}
