//! iotrelay-sidecar: the relay process. The only crate doing I/O: it owns the sockets, the clock and the OS RNG,
//! and drives the sans-IO IKEv2 engine, the ESP SAs and the UDP relay from one owner task.

pub mod admin;
pub mod config;
pub mod datapath;
pub mod demux;
pub mod gateway;
pub mod import_aws;
pub mod ingress;
pub mod kube;
pub mod monitoring;
pub mod publish;
pub mod run;
pub mod sockets;
pub mod status;
pub mod tun;
