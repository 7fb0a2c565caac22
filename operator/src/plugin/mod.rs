//! `kubectl iotrelay` (the `kubectl-iotrelay` binary): `status`, `rekey`, `diagnose`. The decisions and the text
//! are pure functions here (`table`, `diagnose`); the binary only reads and patches objects through the API.

pub mod diagnose;
pub mod table;

#[cfg(test)]
mod diagnose_tests;
