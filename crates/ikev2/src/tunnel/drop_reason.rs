//! Why a peer message is not processed: every drop goes through [`Tunnel::dropped`] with a [`DropReason`], which
//! counts it (`Counters::invalid_messages` and `Counters::dropped`, both in the status) and emits a `tracing` debug
//! event; and, for a message that does not parse, whether it earns an error notify ([`classify`]).

use super::*;

/// What to do with a peer message that does not parse.
#[derive(Debug)]
pub(super) struct Fault {
    pub(super) reason: DropReason,
    /// The error notify and its data to answer with (only in reply to a request we can answer unprotected).
    pub(super) notify: Option<(NotifyType, Vec<u8>)>,
}

/// One decision point for "notify or silent drop": errors in unauthenticated messages other than IKE_SA_INIT
/// requests are dropped (anyone can forge them); syntax errors in IKE_SA_INIT get INVALID_SYNTAX only for
/// requests, and critical unknown payloads get UNSUPPORTED_CRITICAL_PAYLOAD, whose notification data is the
/// one-octet type of that payload (RFC 7296 §3.10.1).
pub(super) fn classify(err: &WireError, is_request: bool) -> Fault {
    let (reason, notify) = match err {
        WireError::UnsupportedCriticalPayload(ty) if is_request => {
            (DropReason::Malformed, Some((NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![*ty])))
        }
        WireError::InvalidMajorVersion(_) => (DropReason::UnsupportedVersion, None),
        _ if is_request => (DropReason::Malformed, Some((NotifyType::INVALID_SYNTAX, vec![]))),
        _ => (DropReason::Malformed, None),
    };
    Fault { reason, notify }
}

impl Tunnel {
    /// A peer message is dropped for `reason`: counted, and a debug event (no message content, no secrets).
    pub(super) fn dropped(&mut self, reason: DropReason) {
        self.counters.invalid_messages += 1;
        self.counters.dropped.add(reason);
        tracing::debug!(peer = %self.remote, reason = reason.as_str(), "IKE message dropped");
    }

    /// A datagram that does not parse: dropped, and answered with an error notify only when it is an IKE_SA_INIT
    /// request (the only message that can be answered without keys).
    pub(super) fn malformed(&mut self, err: &WireError, data: &[u8], local_port: u16, remote: SocketAddr) {
        let init_request =
            Header::parse(data).ok().filter(|h| h.exchange == ExchangeType::IKE_SA_INIT && !h.is_response());
        let fault = classify(err, init_request.is_some());
        self.dropped(fault.reason);
        if let (Some(h), Some((ty, data))) = (init_request, fault.notify) {
            self.send_unprotected_error(h, ty, data, local_port, remote);
        }
    }
}
