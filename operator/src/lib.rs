//! iotrelay-operator: reconciles `IotRelay` resources into a relay Deployment (running `iotrelay-sidecar kube`),
//! its ServiceAccount, Role and RoleBinding, and reports `Reconciling` / `Stalled` / `observedGeneration`.
//!
//! Library with thin binaries (`iotrelay-operator`, `crdgen`). `admit`, `render` and `conditions` are pure.

#![forbid(unsafe_code)]

pub mod admit;
pub mod conditions;
pub mod crdgen;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod render;
pub mod run;
