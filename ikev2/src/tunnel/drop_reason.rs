//! Why a peer message is not processed, and whether it earns an error notify or a silent drop.

use super::*;

/// Why a peer message is not processed, and whether it earns a notify.
#[derive(Debug)]
pub(super) enum Fault {
    /// Drop silently (unauthenticated garbage, wrong SPI, replay...).
    Drop(#[allow(dead_code)] &'static str),
    /// Answer with this error notify and its notification data (only in reply to a request we can answer).
    Notify(NotifyType, Vec<u8>, #[allow(dead_code)] &'static str),
}

/// One decision point for "notify or silent drop": errors in unauthenticated messages other than IKE_SA_INIT
/// requests are dropped (anyone can forge them); syntax errors in IKE_SA_INIT get INVALID_SYNTAX only for
/// requests, and critical unknown payloads get UNSUPPORTED_CRITICAL_PAYLOAD, whose notification data is the
/// one-octet type of that payload (RFC 7296 §3.10.1).
pub(super) fn classify(err: &WireError, is_request: bool) -> Fault {
    match err {
        WireError::UnsupportedCriticalPayload(ty) if is_request => {
            Fault::Notify(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![*ty], "unsupported critical payload")
        }
        WireError::InvalidMajorVersion(_) => Fault::Drop("unsupported IKE version"),
        _ if is_request => Fault::Notify(NotifyType::INVALID_SYNTAX, vec![], "malformed message"),
        _ => Fault::Drop("malformed message"),
    }
}
