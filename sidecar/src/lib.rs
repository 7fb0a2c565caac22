//! iotrelay-sidecar: the relay process. The only crate doing I/O: it owns the sockets, the clock and the OS RNG,
//! and drives the sans-IO IKEv2 engine, the ESP SAs and the UDP relay from one owner task.
//!
//! The path of one admin packet, in four files: [`sockets`] (`reader.rs`: a forward's listen socket receives it,
//! checks the allow-list, queues it in the [`ingress`] tagged with the forward's id) → [`run`] (the owner loop
//! takes it from the ingress) → [`datapath`] (`datapath_esp.rs`, `handle_forward`: the relay's session and inner
//! IPv4/UDP packet, sealed with the tunnel's outbound ESP SA; on the way back `handle_esp` opens the device's
//! reply and the relay finds the client) → [`sockets`] (`outbox.rs`: sent at the end of the pass, GSO-batched).
//! Around it: [`demux`] (what a reader keeps), [`publish`] and [`status`] (the status), [`admin`] (HTTP),
//! [`kube`] (in-cluster mode), [`config`] (spec to engine configuration), [`gateway`] and [`tun`] (gateway mode;
//! [`tun_gso`] and [`tun_gro`]: the device's offloads, segmenting what it reads and coalescing what it writes),
//! [`privileges`] (capabilities), [`import_aws`].

pub mod admin;
pub mod config;
pub mod datapath;
pub mod demux;
pub mod gateway;
pub mod import_aws;
pub mod ingress;
pub mod kube;
pub mod kube_rekey;
pub mod kube_status;
pub mod monitoring;
pub mod privileges;
pub mod publish;
pub mod run;
pub mod sockets;
pub mod status;
pub mod tun;
pub mod tun_gro;
pub mod tun_gso;
