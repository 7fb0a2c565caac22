//! iotrelay-api: the `IotRelay` custom resource (`iotrelay.dev/v1alpha1`), its defaults, its status types, a pure
//! validator that enforces the same rules as the CRD schema, and loading of the standalone multi-document YAML.
//!
//! Used by the operator (CRD generation, reconcile) and by the sidecar (in-cluster and standalone mode). No I/O.
//!
//! The types the engine and the relay share with the spec and the status (`Ipv4Cidr`, `TunnelState`,
//! `StartupAction`, `Identity`, `ForwardDrops`) are defined once in `iotrelay-types` (`crates/types/`) and re-exported
//! here; `status::condition::new` is the one builder of a status condition.

#![forbid(unsafe_code)]

pub mod bgp;
pub mod duration;
pub mod reason;
pub mod rekey;
mod schema;
pub mod spec;
pub mod standalone;
pub mod status;
pub mod validate;

pub use bgp::{BgpSpec, TunnelInside, ValidatedBgp};
pub use duration::{DurationError, format_duration, parse_duration};
pub use iotrelay_types::{CidrError, Identity, Ipv4Cidr};
pub use reason::{DegradedReason, ProgressReason, StalledReason, TunnelsReadyReason, UnknownReason};
pub use rekey::{LastRekeyRequest, REKEY_ANNOTATION, RekeyRequest, RekeyResult};
pub use spec::*;
pub use status::*;
pub use validate::{FieldError, ValidatedSpec, validate};

/// API group of the resource.
pub const GROUP: &str = "iotrelay.dev";
/// API version of the resource.
pub const VERSION: &str = "v1alpha1";
/// Field manager the operator uses for server-side apply (children, `observedGeneration` and the `Ready`,
/// `Reconciling` and `Stalled` conditions).
pub const OPERATOR_FIELD_MANAGER: &str = "iotrelay-operator";
/// Field manager the sidecar uses for server-side apply of `TunnelsReady`, `Degraded`, tunnels, forwards, datapath.
pub const SIDECAR_FIELD_MANAGER: &str = "iotrelay-sidecar";
/// Default port of the sidecar's admin HTTP server (`/healthz`, `/readyz`, `/metrics`, `/status`).
pub const DEFAULT_ADMIN_PORT: u16 = 9464;
