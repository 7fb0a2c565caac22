//! Rekey through the Kubernetes API: the request annotation `iotrelay.dev/rekey` (written by `kubectl iotrelay
//! rekey`, or by hand with `kubectl annotate`), its parser, and the relay's record of the last request it handled
//! (`status.lastRekeyRequest`). Only someone allowed to patch the IotRelay can write the annotation; the relay's own
//! Role may only read its IotRelay and patch its status.
//!
//! The value is `id=<id>[,tunnel=<name>][,sa=child|ike]`: `id` makes a request idempotent (the relay acts on an id
//! once and records it in status, so a restart or a repeated watch event never rekeys again); without `tunnel`
//! every established tunnel is rekeyed; `sa` defaults to `child`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The annotation on an IotRelay that asks its relay for a rekey.
pub const REKEY_ANNOTATION: &str = "iotrelay.dev/rekey";
/// Longest accepted annotation value, in bytes.
pub const MAX_REQUEST_LEN: usize = 256;
/// Longest request id, in bytes.
pub const MAX_ID_LEN: usize = 63;

/// A parsed rekey request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RekeyRequest {
    /// Chosen by the requester; the relay acts on each id once.
    pub id: String,
    /// The tunnel to rekey; `None`: every established tunnel.
    pub tunnel: Option<String>,
    /// Rekey the IKE SA instead of the CHILD_SA.
    pub ike: bool,
}

impl RekeyRequest {
    /// Parses an annotation value. Errors say what is wrong; they never echo more than the offending key.
    pub fn parse(value: &str) -> Result<RekeyRequest, String> {
        if value.len() > MAX_REQUEST_LEN {
            return Err(format!("longer than {MAX_REQUEST_LEN} bytes"));
        }
        let (mut id, mut tunnel, mut sa) = (None, None, None);
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) =
                part.split_once('=').ok_or_else(|| "expected key=value pairs separated by commas".to_string())?;
            let (k, v) = (k.trim(), v.trim());
            let slot = match k {
                "id" => &mut id,
                "tunnel" => &mut tunnel,
                "sa" => &mut sa,
                _ => return Err(format!("unknown key {:?} (want id, tunnel, sa)", truncate(k, 32))),
            };
            if slot.replace(v.to_string()).is_some() {
                return Err(format!("key {k:?} given twice"));
            }
        }
        let id = id.ok_or_else(|| "no id=".to_string())?;
        if !valid_token(&id, MAX_ID_LEN) {
            return Err(format!("id must be 1-{MAX_ID_LEN} characters of A-Z a-z 0-9 . _ : -"));
        }
        if let Some(t) = &tunnel
            && !valid_token(t, MAX_ID_LEN)
        {
            return Err("tunnel must be a tunnel name".into());
        }
        let ike = match sa.as_deref() {
            None | Some("child") => false,
            Some("ike") => true,
            Some(_) => return Err("sa must be child or ike".into()),
        };
        Ok(RekeyRequest { id, tunnel, ike })
    }

    /// The annotation value; [`RekeyRequest::parse`] reads it back.
    pub fn to_annotation(&self) -> String {
        let mut s = format!("id={}", self.id);
        if let Some(t) = &self.tunnel {
            s.push_str(&format!(",tunnel={t}"));
        }
        if self.ike {
            s.push_str(",sa=ike");
        }
        s
    }

    /// `CHILD_SA` or `IKE SA`, for messages.
    pub fn sa_name(&self) -> &'static str {
        if self.ike { "IKE SA" } else { "CHILD_SA" }
    }
}

/// The `id=` of a value that may not parse, so that even a refused request is recorded under its id.
pub fn request_id(value: &str) -> Option<String> {
    value
        .split(',')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim() == "id")
        .map(|(_, v)| v.trim())
        .filter(|v| valid_token(v, MAX_ID_LEN))
        .map(str::to_string)
}

fn valid_token(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// What the relay did with a rekey request.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RekeyResult {
    /// The rekey was started on every tunnel named in `message`.
    #[default]
    Started,
    /// Nothing was started: the request did not parse, named no such tunnel, or the tunnel was not established.
    Refused,
}

/// The last rekey request (`iotrelay.dev/rekey` annotation) the relay handled.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastRekeyRequest {
    /// The request's `id`; the relay acts on each id once. Empty when the annotation had no valid id.
    #[serde(default)]
    pub id: String,
    /// When the relay handled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_at: Option<Time>,
    /// `Started` or `Refused`.
    pub result: RekeyResult,
    /// What was started (e.g. `CHILD_SA rekey started on tunnel1`), or why nothing was.
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for r in [
            RekeyRequest { id: "20261130T121500Z-1a2b".into(), tunnel: None, ike: false },
            RekeyRequest { id: "x".into(), tunnel: Some("tunnel2".into()), ike: true },
            RekeyRequest { id: "a.b_c:d-e".into(), tunnel: Some("t".into()), ike: false },
        ] {
            assert_eq!(RekeyRequest::parse(&r.to_annotation()), Ok(r.clone()));
        }
        // Hand-written: spaces and order do not matter.
        let r = RekeyRequest::parse(" sa=ike , id=7 ,tunnel=tunnel1").unwrap();
        assert_eq!(r, RekeyRequest { id: "7".into(), tunnel: Some("tunnel1".into()), ike: true });
        assert_eq!(r.sa_name(), "IKE SA");
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        let cases = [
            ("", "no id="),
            ("tunnel=tunnel1", "no id="),
            ("id=", "id must be"),
            ("id=has space", "id must be"),
            ("id=1,id=2", "given twice"),
            ("id=1,sa=esp", "sa must be child or ike"),
            ("id=1,tunnel=a/b", "tunnel must be"),
            ("id=1,when=now", "unknown key \"when\""),
            ("id=1;tunnel=x", "id must be"),
            ("rekey please", "key=value"),
        ];
        for (value, want) in cases {
            let e = RekeyRequest::parse(value).expect_err(value);
            assert!(e.contains(want), "{value:?}: {e:?} does not contain {want:?}");
        }
        let long = format!("id={}", "a".repeat(MAX_ID_LEN + 1));
        assert!(RekeyRequest::parse(&long).unwrap_err().contains("id must be"));
        assert!(RekeyRequest::parse(&"x".repeat(MAX_REQUEST_LEN + 1)).unwrap_err().contains("longer than"));
    }

    #[test]
    fn the_id_of_a_refused_request_is_still_found() {
        assert_eq!(request_id("id=7,sa=esp").as_deref(), Some("7"));
        assert_eq!(request_id("sa=esp"), None);
        assert_eq!(request_id("id=has space"), None);
    }

    #[test]
    fn the_record_serializes_in_camel_case() {
        let r =
            LastRekeyRequest { id: "7".into(), handled_at: None, result: RekeyResult::Refused, message: "m".into() };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"id": "7", "result": "Refused", "message": "m"})
        );
    }
}
