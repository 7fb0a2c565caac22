//! iotrelay-operator: reconciles `IotRelay` resources into a relay Deployment (running `iotrelay-sidecar kube`),
//! its ServiceAccount, Role and RoleBinding, and reports `Reconciling` / `Stalled` / `observedGeneration`.
//! Reads come from watch caches (`cache`) and, for Secrets, from recent reads (`secrets`); writes only when
//! something changed (`memory`).
//!
//! Library with thin binaries (`iotrelay-operator`, `crdgen`, the `kubectl-iotrelay` plugin). `admit`, `render`,
//! `conditions` and `plugin` are pure.

#![forbid(unsafe_code)]

pub mod admit;
pub mod cache;
pub mod conditions;
pub mod crdgen;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod plugin;
pub mod reconcile;
pub mod render;
pub mod run;
pub mod secrets;
